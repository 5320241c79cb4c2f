"""One chaos run: a cluster, a workload, faults, then the verdict.

The run:

1. starts a ``ProxiedCluster`` and waits for a leader;
2. runs, for ``duration`` seconds, concurrent clients spread over all
   members (register clients doing read / write / compare-and-swap on a few
   keys at a time, and set clients writing unique keys), while the nemesis
   alternates inject, hold, heal, quiet;
3. heals everything (links, paused and dead members) and waits for the
   cluster to converge;
4. reads every register key once more, and every key the set clients tried
   to write;
5. checks the register history for linearizability and the set for lost
   acknowledged writes, and writes ``history.jsonl`` and ``report.json``.

The ``lease`` and ``watch`` workloads (``metastore/chaos/lease_watch.py``)
run beside them when asked for (``workloads``): lease keepers renew leases
through the faults and must never lose one they kept alive; resuming
watchers must end with exactly the history every member reads back.  The
members then keep their whole history (``--auto-compaction-retention 0``)
so that it can be read back from revision 1.

Client outcomes: 2xx, 404 on GET, and 412 are definite; a refused
connection is a definite failure (nothing was sent); a timeout, a 503 or any
other error leaves a write ``unknown``.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass, field
from urllib.parse import quote

import treq
import treq.client
from twisted.internet import defer, task
from twisted.internet.error import ConnectionRefusedError
from twisted.web import client

from metastore.chaos.auth import ChaosAuth
from metastore.chaos.tls import chaos_tls
from metastore.chaos.checker import (
    CAS,
    FAIL,
    OK,
    READ,
    UNKNOWN,
    WRITE,
    HistoryRecorder,
    check_history,
    check_set,
)
from metastore.chaos.cluster import ProxiedCluster
from metastore.chaos.lease_watch import LEASE, WATCH, LeaseWatchConfig, LeaseWatchWorkload
from metastore.chaos.nemesis import NEMESES, Fault
from metastore.chaos.v3client import V3Client, member_agent, non_retrying_pool


REGISTER = "register"
SET = "set"
WORKLOADS = (REGISTER, SET, LEASE, WATCH)
"""Every workload a run can drive, by its command-line name."""


@dataclass
class RunConfig:
    """Everything a run needs to know; defaults suit a 2-core machine."""

    size: int = 3
    duration: float = 60.0
    nemeses: tuple[str, ...] = ("kill", "pause", "partition", "leader-kill")
    workdir: str = "chaos-run"
    seed: int = 0
    register_clients: int = 6
    set_clients: int = 2
    active_keys: int = 4
    ops_per_key: int = 150
    client_timeout: float = 3.0
    request_timeout: float = 2.0
    fault_hold: tuple[float, float] = (2.0, 6.0)
    quiet: tuple[float, float] = (2.0, 5.0)
    converge_timeout: float = 90.0
    max_states: int = 2_000_000
    extra_member_args: tuple[str, ...] = ()
    workloads: tuple[str, ...] = (REGISTER, SET)
    lease_keepers: int = 4
    lease_ttl: int = 6
    watchers_per_member: int = 2

    def lease_watch_config(self) -> LeaseWatchConfig:
        """The lease and watch workloads' configuration."""
        return LeaseWatchConfig(lease_keepers=self.lease_keepers, lease_ttl=self.lease_ttl,
                                watchers_per_member=self.watchers_per_member, client_timeout=self.client_timeout,
                                seed=self.seed)

    @property
    def lease_watch_workloads(self) -> tuple[str, ...]:
        """The lease and watch workloads of this run, if any."""
        return tuple(w for w in self.workloads if w in (LEASE, WATCH))
    tls: bool = False
    """Client HTTPS, mutual peer TLS and a peer token on every member (``metastore.chaos.tls``)."""
    auth: bool = False
    """Auth enabled; the workloads run as a user with READWRITE on their prefixes (``metastore.chaos.auth``)."""

    @property
    def prefixes(self) -> list[bytes]:
        """The key prefixes the workloads write under: register keys
        ``r<n>``, set keys ``s<i>-<n>``, the lease and watch workloads'."""
        return [b"r", b"s"] + ([self.lease_watch_config().prefix] if self.lease_watch_workloads else [])


@dataclass
class RunReport:
    """The outcome of one run (``to_json`` is ``report.json``)."""

    config: dict
    operations: int = 0
    ok: int = 0
    failed: int = 0
    unknown: int = 0
    register_operations_checked: int = 0
    keys_checked: int = 0
    linearizable: bool | None = None
    violations: list[dict] = field(default_factory=list)
    undecided_keys: list[str] = field(default_factory=list)
    set_acknowledged: int = 0
    set_unknown: int = 0
    set_unknown_present: int = 0
    lost_writes: list[str] = field(default_factory=list)
    faults: list[dict] = field(default_factory=list)
    converged: bool = False
    history_file: str = ""
    elapsed: float = 0.0
    lease_watch: dict | None = None
    lease_watch_lines: list[str] = field(default_factory=list)
    tokens_obtained: int = 0
    """With ``--auth``: tokens the workload user obtained (one per member, then one per refusal)."""
    tokens_refused: int = 0
    """With ``--auth``: tokens a member refused (restarted, expired, old auth revision)."""

    @property
    def passed(self) -> bool:
        """Linearizable, nothing lost, the cluster came back, and (when they
        ran) the lease and watch checks passed."""
        lease_watch_ok = self.lease_watch is None or self.lease_watch["passed"]
        return self.linearizable is True and not self.lost_writes and self.converged and lease_watch_ok

    def to_json(self) -> dict:
        """A JSON-ready dict."""
        data = dict(self.__dict__)
        data["passed"] = self.passed
        return data

    def summary(self) -> str:
        """The human-readable end-of-run report."""
        lines = [
            f"members: {self.config['size']}, nemeses: {', '.join(self.config['nemeses'])}, "
            f"duration: {self.config['duration']}s, seed: {self.config['seed']}, elapsed: {self.elapsed:.1f}s",
            f"operations: {self.operations} (ok {self.ok}, failed {self.failed}, unknown {self.unknown})",
            f"faults injected: {len(self.faults)}",
        ]
        for fault in self.faults:
            end = "-" if fault["end"] is None else f"{fault['end']:.1f}"
            lines.append(f"  {fault['start']:7.1f} .. {end:>7}  {fault['kind']}: {fault['description']}")
        if self.config.get("tls") or self.config.get("auth"):
            auth = f"yes ({self.tokens_obtained} tokens obtained, {self.tokens_refused} refused)"
            lines.append(f"tls: {'yes' if self.config.get('tls') else 'no'}, "
                         f"auth: {auth if self.config.get('auth') else 'no'}")
        verdict = {True: "yes", False: "NO", None: "unknown (search too big)"}[self.linearizable]
        lines.append(f"register operations checked: {self.register_operations_checked} on {self.keys_checked} keys")
        lines.append(f"linearizable: {verdict}")
        for violation in self.violations:
            lines.append(f"  key {violation['key']}: stuck on {violation['stuck_on']}")
            for text in violation["candidates"][:10]:
                lines.append(f"    concurrent: {text}")
            for text in violation["prefix_tail"]:
                lines.append(f"    linearized before: {text}")
        if self.undecided_keys:
            lines.append(f"  undecided keys: {self.undecided_keys}")
        lines.append(
            f"set: {self.set_acknowledged} acknowledged, {self.set_unknown} unknown "
            f"({self.set_unknown_present} of them present)"
        )
        lines.append(f"acknowledged writes lost: {len(self.lost_writes)} {self.lost_writes[:20] or ''}".rstrip())
        lines += self.lease_watch_lines
        lines.append(f"cluster converged after healing: {'yes' if self.converged else 'NO'}")
        lines.append(f"history: {self.history_file}")
        lines.append("PASS" if self.passed else "FAIL")
        return "\n".join(lines)


class _Clock:
    """Seconds since the run started (monotonic)."""

    def __init__(self) -> None:
        self.origin = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.origin


class _Outcome:
    """What one HTTP request came back with."""

    def __init__(self, code: int | None, body: bytes = b"", etag: str | None = None, refused: bool = False):
        self.code = code
        self.body = body
        self.etag = etag
        self.refused = refused


def _http_client(reactor, tls=None) -> tuple[treq.client.HTTPClient, client.HTTPConnectionPool]:
    """A treq client over a pool that never retries a request by itself
    (a silently repeated PUT would corrupt the history); over TLS with
    ``tls`` (``metastore.chaos.tls``)."""
    pool = non_retrying_pool(reactor)
    return treq.client.HTTPClient(member_agent(reactor, pool, tls)), pool


class ChaosRun:
    """One run; ``await run()`` returns its ``RunReport``."""

    def __init__(self, reactor, config: RunConfig) -> None:
        self.reactor = reactor
        self.config = config
        self.rng = random.Random(config.seed)
        self.clock = _Clock()
        self.history = HistoryRecorder()
        self.faults: list[Fault] = []
        self.stopping = False
        self.set_acknowledged: list[str] = []
        self.set_unknown: list[str] = []
        self.set_failed = 0
        self.set_ok = 0
        self._next_process = 0
        self._key_counter = 0
        self._active_keys: list[list] = []
        os.makedirs(config.workdir, exist_ok=True)
        args = ["--request-timeout", str(config.request_timeout), *config.extra_member_args]
        if config.lease_watch_workloads:
            args += ["--auto-compaction-retention", "0"]
        tls = chaos_tls(config.workdir) if config.tls else None
        if tls is not None:
            args += tls.member_args
        self.cluster = ProxiedCluster(
            reactor, config.size, os.path.join(config.workdir, "data"), extra=args,
            scheme="https" if tls else "http",
            agent=None if tls is None else tls.agent(reactor, client.HTTPConnectionPool(reactor, persistent=False)),
        )  # fmt: skip
        self.http, self._pool = _http_client(reactor, tls)
        self._tls = tls
        self.auth = ChaosAuth(reactor, V3Client(reactor, config.client_timeout, tls=tls)) if config.auth else None

    # -- HTTP -------------------------------------------------------------

    async def _request(self, member_id: int, method: str, key: str, body: bytes | None = None,
                       headers: dict | None = None, timeout: float | None = None) -> _Outcome:
        member_url = self.cluster.members[member_id].url
        url = member_url + "/" + quote(key, safe="")
        token = None
        if self.auth is not None:
            token = await self.auth.token(member_url)
            if token is None:
                return _Outcome(None, refused=True)  # nothing was sent
            headers = {**(headers or {}), "Authorization": f"Bearer {token}"}
        try:
            response = await self.http.request(method, url, data=body, headers=headers,
                                               timeout=timeout or self.config.client_timeout)
            content = await treq.content(response)
        except ConnectionRefusedError:
            return _Outcome(None, refused=True)
        except Exception:
            return _Outcome(None)
        if token is not None:
            self.auth.answered(member_url, token, response.code, None)
        etags = response.headers.getRawHeaders("ETag") or [None]
        return _Outcome(response.code, content, etags[0])

    # -- register workload ------------------------------------------------

    def _new_process(self) -> int:
        self._next_process += 1
        return self._next_process

    def _pick_key(self) -> str:
        """A key from the active set; keys retire after ``ops_per_key`` uses
        so every key's history stays small enough to check exhaustively."""
        while len(self._active_keys) < self.config.active_keys:
            self._key_counter += 1
            self._active_keys.append([f"r{self._key_counter}", 0])
        slot = self.rng.choice(self._active_keys)
        slot[1] += 1
        if slot[1] >= self.config.ops_per_key:
            self._active_keys.remove(slot)
        return slot[0]

    async def _read(self, process: int, member_id: int, key: str):
        """GET; records a read; returns (definite, value, etag)."""
        invoke = self.clock()
        outcome = await self._request(member_id, "GET", key)
        complete = self.clock()
        if outcome.code == 200:
            value = outcome.body.decode()
        elif outcome.code == 404:
            value = None
        else:
            self.history.record(process=process, kind=READ, key=key, invoke=invoke, complete=None, outcome=UNKNOWN)
            return False, None, None
        self.history.record(process=process, kind=READ, key=key, invoke=invoke, complete=complete,
                            outcome=OK, value=value)
        return True, value, outcome.etag

    async def _write(self, process: int, member_id: int, key: str, kind: str, value: str,
                     expected: str | None = None, etag: str | None = None) -> str:
        """PUT (conditional for CAS); records it; returns its outcome."""
        headers = {}
        if kind == CAS:
            headers = {"If-Match": etag} if etag is not None else {"If-None-Match": "*"}
        invoke = self.clock()
        outcome = await self._request(member_id, "PUT", key, value.encode(), headers)
        complete = self.clock()
        if outcome.code == 204:
            result = OK
        elif outcome.code == 412 and kind == CAS:
            result = FAIL
        elif outcome.refused or (outcome.code is not None and 400 <= outcome.code < 500):
            result = FAIL
            if kind == CAS:
                # Nothing was applied; not a precondition failure, so not a read either.
                kind, expected = WRITE, None
        else:
            result = UNKNOWN
        self.history.record(process=process, kind=kind, key=key, invoke=invoke,
                            complete=None if result == UNKNOWN else complete, outcome=result,
                            value=value, expected=expected)
        return result

    async def _register_client(self, index: int) -> None:
        member_id = self.cluster.ids[index % self.config.size]
        process = self._new_process()
        counter = 0
        while not self.stopping:
            key = self._pick_key()
            counter += 1
            value = f"p{process}-{counter}"
            choice = self.rng.random()
            if choice < 0.4:
                definite, _, _ = await self._read(process, member_id, key)
                outcome = OK if definite else UNKNOWN
            elif choice < 0.7:
                outcome = await self._write(process, member_id, key, WRITE, value)
            else:
                definite, current, etag = await self._read(process, member_id, key)
                if definite and not self.stopping:
                    outcome = await self._write(process, member_id, key, CAS, value, expected=current, etag=etag)
                else:
                    outcome = UNKNOWN
            if outcome == UNKNOWN:
                # The unknown operation is still pending: continue as a new process.
                process = self._new_process()
            if outcome != OK:
                member_id = self.rng.choice(self.cluster.ids)
                await task.deferLater(self.reactor, 0.05, lambda: None)

    # -- set workload -----------------------------------------------------

    async def _set_client(self, index: int) -> None:
        member_id = self.cluster.ids[index % self.config.size]
        counter = 0
        while not self.stopping:
            counter += 1
            key = f"s{index}-{counter}"
            outcome = await self._request(member_id, "PUT", key, key.encode())
            if outcome.code == 204:
                self.set_acknowledged.append(key)
                self.set_ok += 1
            elif outcome.refused or (outcome.code is not None and 400 <= outcome.code < 500):
                self.set_failed += 1
            else:
                self.set_unknown.append(key)
            if outcome.code != 204:
                member_id = self.rng.choice(self.cluster.ids)
                await task.deferLater(self.reactor, 0.05, lambda: None)

    # -- nemesis ----------------------------------------------------------

    async def _sleep(self, seconds: float) -> None:
        """Sleep up to ``seconds``, waking early when the run stops."""
        end = self.clock() + seconds
        for _ in range(int(seconds / 0.1) + 2):
            if self.stopping or self.clock() >= end:
                return
            await task.deferLater(self.reactor, min(0.1, max(0.0, end - self.clock())), lambda: None)

    async def _nemesis(self) -> None:
        await self._sleep(self.rng.uniform(*self.config.quiet))
        while not self.stopping:
            name = self.rng.choice(self.config.nemeses)
            fault = await NEMESES[name](self.cluster, self.rng)
            fault.start = self.clock()
            self.faults.append(fault)
            await self._sleep(self.rng.uniform(*self.config.fault_hold))
            await fault.heal()
            fault.end = self.clock()
            await self._sleep(self.rng.uniform(*self.config.quiet))

    async def _heal_everything(self) -> None:
        for fault in self.faults:
            if fault.end is None:
                await fault.heal()
                fault.end = self.clock()
        self.cluster.heal_links()
        for member in self.cluster.members.values():
            member.resume()
            member.start()

    # -- the run ----------------------------------------------------------

    async def _final_reads(self, keys: list[str], member_ids: list[int]) -> None:
        """One more linearizable read per register key, after healing."""
        for n, key in enumerate(keys):
            member_id = member_ids[n % len(member_ids)]
            for _ in range(20):
                definite, _, _ = await self._read(self._new_process(), member_id, key)
                if definite:
                    break
                await task.deferLater(self.reactor, 0.5, lambda: None)

    async def _present_set_keys(self, keys: list[str]) -> set[str]:
        """The set keys a GET finds, asking with limited concurrency."""
        present: set[str] = set()
        semaphore = defer.DeferredSemaphore(8)
        ids = self.cluster.ids

        async def probe(n: int, key: str) -> None:
            for attempt in range(20):
                outcome = await self._request(ids[(n + attempt) % len(ids)], "GET", key)
                if outcome.code == 200:
                    present.add(key)
                    return
                if outcome.code == 404:
                    return
                await task.deferLater(self.reactor, 0.5, lambda: None)
            # Never answered: counted as absent, which can only report loss, never hide it.

        await defer.gatherResults(
            [semaphore.run(lambda n=n, k=k: defer.ensureDeferred(probe(n, k))) for n, k in enumerate(keys)]
        )
        return present

    async def run(self) -> RunReport:
        """Run everything; always stops the members and proxies."""
        config = self.config
        report = RunReport(config={k: (list(v) if isinstance(v, tuple) else v) for k, v in config.__dict__.items()})
        lease_watch = None
        try:
            await self.cluster.start()
            await self.cluster.wait_converged(timeout=config.converge_timeout)
            if self.auth is not None:
                await self.auth.enable([m.url for m in self.cluster.members.values()], config.prefixes)
            self.clock = _Clock()
            if config.lease_watch_workloads:
                urls = {i: m.url for i, m in self.cluster.members.items()}
                lease_watch = LeaseWatchWorkload(self.reactor, urls, config.lease_watch_config(),
                                                 config.lease_watch_workloads, tls=self._tls, auth=self.auth)
                await lease_watch.start()
            clients = []
            if REGISTER in config.workloads:
                clients += [defer.ensureDeferred(self._register_client(i)) for i in range(config.register_clients)]
            if SET in config.workloads:
                clients += [defer.ensureDeferred(self._set_client(i)) for i in range(config.set_clients)]
            nemesis = defer.ensureDeferred(self._nemesis()) if config.nemeses else defer.succeed(None)
            await self._sleep(config.duration)
            self.stopping = True
            if lease_watch is not None:
                clients.append(defer.ensureDeferred(lease_watch.stop_writes()))
            await defer.gatherResults(clients + [nemesis])
            await self._heal_everything()
            report.converged = await self.cluster.wait_converged(timeout=config.converge_timeout)
            if lease_watch is not None:
                verdict = await lease_watch.verify()
                report.lease_watch = verdict.to_json()
                report.lease_watch_lines = verdict.summary_lines()
            keys = sorted({op.key for op in self.history.operations})
            await self._final_reads(keys, self.cluster.ids)
            present = await self._present_set_keys(self.set_acknowledged + self.set_unknown)
        finally:
            if lease_watch is not None:
                await lease_watch.close()
            await self._pool.closeCachedConnections()
            if self.auth is not None:
                await self.auth.close()
            await self.cluster.stop()
        self._fill_report(report, present)
        if self.auth is not None:
            report.tokens_obtained, report.tokens_refused = self.auth.authentications, self.auth.refusals
        return report

    def _fill_report(self, report: RunReport, present: set[str]) -> None:
        config = self.config
        ops = self.history.operations
        report.operations = len(ops) + self.set_ok + self.set_failed + len(self.set_unknown)
        report.ok = sum(1 for o in ops if o.outcome == OK or (o.kind == CAS and o.outcome == FAIL)) + self.set_ok
        report.failed = sum(1 for o in ops if o.outcome == FAIL and o.kind != CAS) + self.set_failed
        report.unknown = sum(1 for o in ops if o.outcome == UNKNOWN) + len(self.set_unknown)
        result = check_history(ops, max_states=config.max_states)
        report.linearizable = result.linearizable
        report.keys_checked = len(result.keys)
        report.register_operations_checked = result.operations_checked
        report.violations = [
            {
                "key": k.key,
                "stuck_on": k.stuck_on.describe() if k.stuck_on else None,
                "candidates": [o.describe() for o in k.candidates],
                "prefix_tail": [o.describe() for o in k.linearized_prefix[-10:]],
            }
            for k in result.violations
        ]
        report.undecided_keys = [k.key for k in result.undecided]
        set_result = check_set(self.set_acknowledged, self.set_unknown, present)
        report.set_acknowledged = set_result.acknowledged
        report.set_unknown = set_result.unknown
        report.set_unknown_present = set_result.unknown_present
        report.lost_writes = list(set_result.lost)
        report.faults = [f.to_json() for f in self.faults]
        report.elapsed = self.clock()
        report.history_file = os.path.abspath(os.path.join(config.workdir, "history.jsonl"))
        with open(report.history_file, "w") as f:
            for op in ops:
                f.write(json.dumps(op.to_json()) + "\n")
        with open(os.path.join(config.workdir, "report.json"), "w") as f:
            json.dump(report.to_json(), f, indent=2)
