"""The lease-keepalive benchmark: grant leases, then refresh them in a loop.

Through the v3 API only (the seed API has no leases).  ``leases`` leases of
``lease_ttl`` seconds are granted first (unmeasured); the measured phase
sends ``POST /v3/lease/keepalive`` for leases drawn at random.  The leases
are left to expire.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace

from metastore.bench.apis import V3, UnsupportedRequest, lease_id_of
from metastore.bench.load import BenchConfig, LoadRun, MonotonicClock, Operation, Workload, benchmark_run
from metastore.bench.stats import LEASE_GRANT, BenchResult
from metastore.bench.wire import ParsedResponse


def require_leases(config: BenchConfig) -> None:
    """Refuse an API without leases, before anything is sent."""
    if config.api != V3:
        raise UnsupportedRequest(f"the {config.api} API has no leases: use --api v3")


async def grant_leases(reactor, config: BenchConfig, leases: int, now: MonotonicClock = time.perf_counter
                       ) -> tuple[list[int], BenchResult]:
    """Grant ``leases`` leases; their IDs, and the result of that run."""
    require_leases(config)
    ids: list[int] = []

    def keep_id(op: str, _index: int, response: ParsedResponse) -> None:
        if response.status == 200:
            ids.append(lease_id_of(response.body))

    run = LoadRun(
        reactor, config.targets, min(config.clients, leases), Workload(LEASE_GRANT, lambda: 0),
        replace(config, operation=Operation.PUT).builders(random.Random(config.seed)),
        requests=leases, request_timeout=config.request_timeout, now=now, observe=keep_id, tls_for=config.tls_for,
    )
    result = await run.start()
    return ids, result


def keepalive_run(reactor, config: BenchConfig, lease_ids: list[int], now: MonotonicClock = time.perf_counter,
                  **hooks) -> LoadRun:
    """The measured keepalive phase over ``lease_ids``, not yet started."""
    require_leases(config)
    if not lease_ids:
        raise ValueError("no lease was granted")
    rng = random.Random(config.seed)
    choose = rng.choice
    return benchmark_run(reactor, replace(config, operation=Operation.KEEPALIVE), now,
                         next_key=lambda: choose(lease_ids), **hooks)
