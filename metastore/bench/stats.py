"""What a benchmark run counts: outcomes, latencies, percentiles, histograms.

Pure data and arithmetic, no I/O and no clock: the load generator feeds a
:class:`RunTally` and freezes it into a :class:`BenchResult`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

PUT = "PUT"
GET = "GET"
GET_SERIALIZABLE = "GET-serializable"
TXN_PUT = "TXN-PUT"
TXN_RANGE = "TXN-RANGE"
LEASE_GRANT = "LEASE-GRANT"
KEEPALIVE = "KEEPALIVE"
WATCH_EVENT = "WATCH-EVENT"
"""The kinds of request (and, for watches, of delivery) a tally separates."""

READS = frozenset({GET, GET_SERIALIZABLE})
"""Kinds for which a 404 is a correct answer (the key is absent)."""

CONNECT_FAILED = "connect-failed"
CONNECTION_LOST = "connection-lost"
TIMEOUT = "timeout"
PROTOCOL_ERROR = "protocol-error"
DELIVERED = "delivered"
"""The outcome of a watch event that reached its watcher."""
ERROR_KINDS = (CONNECT_FAILED, CONNECTION_LOST, TIMEOUT, PROTOCOL_ERROR)
"""Outcomes without an HTTP status; tallied beside the status codes."""


def percentile(sorted_values: Sequence[float], percent: float) -> float:
    """Nearest-rank percentile of ``sorted_values`` (ascending, non-empty).

    Returns the smallest value such that at least ``percent`` % of the
    values are less than or equal to it: p50 of [1, 2, 3, 4] is 2, p100 is
    the maximum, p0 the minimum.
    """
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= percent <= 100:
        raise ValueError(f"percent {percent} outside [0, 100]")
    # Rounded first, so that float error (99.9 / 100 * 1000 is 999.0000000000001)
    # cannot push the rank one place up.
    rank = math.ceil(round(percent * len(sorted_values) / 100, 9))
    return sorted_values[max(rank, 1) - 1]


@dataclass(frozen=True, slots=True)
class HistogramBucket:
    """Latencies ``<= upper`` (and above the previous bucket's bound), in seconds."""

    upper: float
    count: int


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Latency percentiles of a set of responses, in seconds, and a
    histogram (see :func:`histogram`)."""

    p50: float
    p90: float
    p99: float
    p999: float
    max: float
    min: float = 0.0
    mean: float = 0.0
    histogram: tuple[HistogramBucket, ...] = ()

    @classmethod
    def of(cls, latencies: Iterable[float], buckets: int = 10) -> LatencySummary | None:
        """Summarise ``latencies``; None if there are none."""
        ordered = sorted(latencies)
        if not ordered:
            return None
        return cls(
            p50=percentile(ordered, 50),
            p90=percentile(ordered, 90),
            p99=percentile(ordered, 99),
            p999=percentile(ordered, 99.9),
            max=ordered[-1],
            min=ordered[0],
            mean=math.fsum(ordered) / len(ordered),
            histogram=histogram(ordered, buckets),
        )


def histogram(sorted_values: Sequence[float], buckets: int = 10) -> tuple[HistogramBucket, ...]:
    """Count ``sorted_values`` (ascending, non-empty) into ``buckets``
    equal-width buckets spanning [min, max]; every value is in exactly one.

    The first bucket's bound is the minimum itself (it holds every value
    equal to it), so a run whose latencies are all equal has one bucket.
    """
    low, high = sorted_values[0], sorted_values[-1]
    if high == low:
        return (HistogramBucket(low, len(sorted_values)),)
    width = (high - low) / buckets
    bounds = [low + width * i for i in range(buckets)] + [high]
    counts = [0] * len(bounds)
    index = 0
    for value in sorted_values:
        while value > bounds[index]:
            index += 1
        counts[index] += 1
    return tuple(HistogramBucket(b, c) for b, c in zip(bounds, counts))


def is_success(op: str, status: int) -> bool:
    """Whether ``status`` means the server did what ``op`` asked.

    A 404 answers a GET correctly (the key is absent), so it counts.
    """
    return 200 <= status < 300 or (status == 404 and op in READS)


@dataclass(frozen=True, slots=True)
class OpSummary:
    """Outcome of every request of one kind (or of all kinds) in a run.

    ``outcomes`` maps a status code ("204") or an error kind
    ("connect-failed") to how many requests ended that way; ``latency`` is
    measured over successful responses only (see :func:`is_success`).
    """

    requests: int
    succeeded: int
    outcomes: dict[str, int]
    latency: LatencySummary | None


@dataclass(frozen=True, slots=True)
class BenchResult:
    """What a measured run produced; ``elapsed`` is in seconds."""

    elapsed: float
    overall: OpSummary
    by_op: dict[str, OpSummary]

    @property
    def requests_per_second(self) -> float:
        """Completed requests (any outcome) per second."""
        return self.overall.requests / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def succeeded_per_second(self) -> float:
        """Successful requests per second."""
        return self.overall.succeeded / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def all_failed(self) -> bool:
        """True when not a single request succeeded (including none at all)."""
        return self.overall.succeeded == 0

    def errors(self) -> dict[str, int]:
        """Every outcome that is not a success, by kind, over all ops."""
        errors: Counter[str] = Counter()
        for op, summary in self.by_op.items():
            for outcome, n in summary.outcomes.items():
                if not (outcome.isdigit() and is_success(op, int(outcome))) and outcome != DELIVERED:
                    errors[outcome] += n
        return dict(sorted(errors.items()))


class RunTally:
    """Mutable record of outcomes and latencies while a run is going."""

    def __init__(self) -> None:
        self.outcomes: dict[str, Counter[str]] = {}
        self.latencies: dict[str, list[float]] = {}
        self.completed = 0

    def record_response(self, op: str, status: int, latency: float) -> None:
        """Count a response; keep its latency if it was a success."""
        self._outcomes_of(op)[str(status)] += 1
        self.completed += 1
        if is_success(op, status):
            self.latencies.setdefault(op, []).append(latency)

    def record_success(self, op: str, outcome: str, latency: float) -> None:
        """Count a success that is not an HTTP status (a watch delivery)."""
        self._outcomes_of(op)[outcome] += 1
        self.completed += 1
        self.latencies.setdefault(op, []).append(latency)

    def record_error(self, op: str, kind: str) -> None:
        """Count a request that ended without a (successful) response."""
        self._outcomes_of(op)[kind] += 1
        self.completed += 1

    def summarise(self, elapsed: float) -> BenchResult:
        """Freeze the tally into a :class:`BenchResult`."""
        by_op = {op: self._summarise_ops([op]) for op in sorted(self.outcomes)}
        return BenchResult(
            elapsed=elapsed,
            overall=self._summarise_ops(sorted(self.outcomes)),
            by_op=by_op,
        )

    def _summarise_ops(self, ops: list[str]) -> OpSummary:
        outcomes: Counter[str] = Counter()
        latencies: list[float] = []
        for op in ops:
            outcomes.update(self.outcomes[op])
            latencies.extend(self.latencies.get(op, ()))
        return OpSummary(
            requests=sum(outcomes.values()),
            succeeded=len(latencies),
            outcomes=dict(sorted(outcomes.items())),
            latency=LatencySummary.of(latencies),
        )

    def _outcomes_of(self, op: str) -> Counter[str]:
        outcomes = self.outcomes.get(op)
        if outcomes is None:
            outcomes = self.outcomes[op] = Counter()
        return outcomes
