"""A soak: a steady open-loop request rate on real members, with periodic kills.

``metastore-chaos soak`` (or ``python -m metastore.chaos.soak``):

1. starts a ``ProxiedCluster`` (3 members by default) and waits for it to
   converge;
2. for ``duration`` seconds sends requests at a fixed rate, whether or not
   earlier ones have been answered (open loop): PUTs and linearizable GETs
   over a bounded key space, each to a random member that is up, each with
   a client timeout.  At most ``max_in_flight`` requests are outstanding; a
   request that would exceed the bound is not sent and is counted as
   *client overload* (nothing is ever queued);
3. every ``kill_every`` seconds SIGKILLs one member (the leader with
   probability ``leader_kill_fraction``, else a random follower), restarts
   it ``restart_after`` seconds later, and sends it requests again once it
   reports a leader;
4. every ``rss_interval`` seconds reads each member process's ``VmRSS``
   from ``/proc/<pid>/status`` (a restarted member is a new process, with
   its own samples);
5. at the end restarts whatever is down, waits until every member agrees on
   the leader and the applied index, and reads every key that had an
   acknowledged PUT: the value must be one a correct store may hold.

Outcome classes: ``ok`` (204 on PUT, 200/404 on GET), ``unavailable``
(503, expected during elections), ``timeout`` (the client gave up),
``cut by kill`` (the connection broke because we killed that member while
the request was in flight), and ``other errors`` (anything else; each is
kept with its status and body).  A PUT that was not ``ok`` is *unknown*: it
may have been applied, or may still be.

The soak passes when there is no other error, no acknowledged write is
lost, the cluster converged, and no long-lived member process broke the
RSS growth bound: ``end ≤ baseline × rss_factor + rss_slack_mb``, where
``baseline`` is the process's first sample at least ``rss_warmup`` seconds
after it was started, and ``end`` its last sample.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from urllib.parse import quote

import treq
from twisted.internet import defer, task
from twisted.python import usage
from twisted.web._newclient import ResponseNeverReceived

from metastore.chaos.cluster import ProxiedCluster
from metastore.chaos.runner import _http_client
from metastore.options import VersionOption


def _cancelled_by_timeout(error: Exception) -> bool:
    """Whether ``error`` is the client timeout cancelling a request in
    flight, which Twisted's HTTP client reports as a response never
    received for that reason."""
    return isinstance(error, ResponseNeverReceived) and any(
        reason.check(defer.CancelledError) for reason in error.reasons)


OK = "ok"
UNAVAILABLE = "unavailable"
TIMEOUT = "timeout"
CUT_BY_KILL = "cut by kill"
OTHER_ERROR = "other error"


@dataclass
class SoakConfig:
    """Everything a soak needs; the defaults are the 10-minute soak."""

    size: int = 3
    duration: float = 600.0
    rate: float = 200.0
    put_fraction: float = 0.5
    keys: int = 500
    value_bytes: int = 64
    client_timeout: float = 3.0
    request_timeout: float = 2.0
    max_in_flight: int = 512
    kill_every: float = 60.0
    restart_after: float = 5.0
    leader_kill_fraction: float = 0.5
    rss_interval: float = 5.0
    rss_warmup: float = 60.0
    rss_factor: float = 1.5
    rss_slack_mb: float = 30.0
    election_window: float = 10.0
    converge_timeout: float = 90.0
    workdir: str = "soak-run"
    seed: int = 0


# -- RSS ------------------------------------------------------------------


def read_rss_kb(pid: int) -> int | None:
    """The process's resident set size in kB (``VmRSS``), or None when the
    process is gone or is a zombie (which has no ``VmRSS`` line)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    return None


@dataclass
class ProcessRss:
    """The RSS samples of one member process, ``(seconds, kB)`` in time order."""

    member_id: int
    pid: int
    started: float
    samples: list[tuple[float, int]] = field(default_factory=list)

    def baseline(self, warmup: float) -> tuple[float, int] | None:
        """The first sample taken at least ``warmup`` s after the start."""
        for sample in self.samples:
            if sample[0] - self.started >= warmup:
                return sample
        return None

    def bound_check(self, warmup: float, factor: float, slack_mb: float) -> dict:
        """Whether the last sample is within ``baseline × factor + slack``.

        ``checked`` is False when no sample after the baseline exists (the
        process did not live past the warm-up); then ``within`` is True.
        """
        base = self.baseline(warmup)
        if base is None or not self.samples or self.samples[-1][0] <= base[0]:
            return {"checked": False, "within": True, "baseline_kb": None, "limit_kb": None}
        limit = int(base[1] * factor + slack_mb * 1024)
        return {"checked": True, "within": self.samples[-1][1] <= limit, "baseline_kb": base[1], "limit_kb": limit}

    def to_json(self, warmup: float, factor: float, slack_mb: float) -> dict:
        """Start, peak and end (kB), every sample, and the bound check, for the report."""
        kbs = [kb for _, kb in self.samples]
        return {
            "pid": self.pid,
            "started": round(self.started, 1),
            "samples": len(self.samples),
            "first_kb": kbs[0] if kbs else None,
            "peak_kb": max(kbs) if kbs else None,
            "last_kb": kbs[-1] if kbs else None,
            "last_sample_at": round(self.samples[-1][0], 1) if self.samples else None,
            "samples_kb": [[round(t, 1), kb] for t, kb in self.samples],
            **self.bound_check(warmup, factor, slack_mb),
        }


# -- writes and their final values ------------------------------------------


@dataclass(frozen=True, slots=True)
class AckedWrite:
    """A PUT answered 204: it took effect between ``invoke`` and ``complete``."""

    invoke: float
    complete: float
    value: str


@dataclass
class KeyWrites:
    """Every PUT sent to one key: acknowledged, and unknown (not answered
    204, so applied at some time after ``invoke``, or never)."""

    acked: list[AckedWrite] = field(default_factory=list)
    unknown: list[tuple[float, str]] = field(default_factory=list)

    def latest_acked(self) -> list[AckedWrite]:
        """Acknowledged writes that no other acknowledged write follows in
        real time (none started after it completed): each may be last."""
        return [w for w in self.acked if not any(o.invoke > w.complete for o in self.acked)]

    def unambiguous(self) -> bool:
        """One acknowledged write is last, and no unknown write was sent
        after it started (so it alone should be the final value)."""
        latest = self.latest_acked()
        return len(latest) == 1 and not any(invoke >= latest[0].invoke for invoke, _ in self.unknown)

    def verdict(self, final: str | None) -> str:
        """How the value read after the soak (None: absent) relates to the writes.

        ``latest``: one of the acknowledged writes that may be last;
        ``unknown write``: a write that was not acknowledged but took effect
        (it may do so at any time after it was sent, even after later
        acknowledged writes); ``lost``: anything else (absent, an overwritten
        value, a value never written): an acknowledged write is missing.
        """
        if final is not None and final in {w.value for w in self.latest_acked()}:
            return "latest"
        if final is not None and final in {value for _, value in self.unknown}:
            return "unknown write"
        return "lost"


def classify_unavailable(times: list[float], kills: list[float], window: float) -> dict:
    """Where 503s fall relative to kills: counts by seconds since the latest
    kill (``0-2s``, ``2-5s``, ``5-10s``, ``10s+``, ``before any kill``), and
    the times of those more than ``window`` s after every kill."""
    buckets = {"0-2s": 0, "2-5s": 0, "5-10s": 0, "10s+": 0, "before any kill": 0}
    outside = []
    ordered = sorted(kills)
    for t in times:
        earlier = [k for k in ordered if k <= t]
        if not earlier:
            buckets["before any kill"] += 1
            outside.append(t)
            continue
        since = t - earlier[-1]
        key = "0-2s" if since < 2 else "2-5s" if since < 5 else "5-10s" if since < 10 else "10s+"
        buckets[key] += 1
        if since > window:
            outside.append(t)
    return {"by_seconds_after_kill": buckets, "outside_window": len(outside),
            "outside_window_times": [round(t, 2) for t in outside[:50]]}


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# -- the report -------------------------------------------------------------


@dataclass
class SoakReport:
    """The outcome of a soak (``to_json`` is ``soak-report.json``)."""

    config: dict
    elapsed: float = 0.0
    scheduled: int = 0
    sent: int = 0
    client_overload: int = 0
    no_member_up: int = 0
    achieved_rate: float = 0.0
    max_in_flight_seen: int = 0
    outcomes: dict = field(default_factory=dict)
    puts: int = 0
    gets: int = 0
    latency_ok_ms: dict = field(default_factory=dict)
    other_errors: int = 0
    other_error_samples: list[dict] = field(default_factory=list)
    kills: list[dict] = field(default_factory=list)
    unavailable_timing: dict = field(default_factory=dict)
    rss: dict = field(default_factory=dict)
    rss_bound_broken: list[str] = field(default_factory=list)
    converged: bool = False
    keys_checked: int = 0
    keys_unambiguous: int = 0
    final_verdicts: dict = field(default_factory=dict)
    lost_writes: list[dict] = field(default_factory=list)
    unreadable_keys: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No other error, nothing lost or unreadable, converged, RSS within bound."""
        return (self.other_errors == 0 and not self.lost_writes and not self.unreadable_keys
                and self.converged and not self.rss_bound_broken)

    def to_json(self) -> dict:
        """A JSON-ready dict."""
        data = dict(self.__dict__)
        data["passed"] = self.passed
        return data

    def summary(self) -> str:
        """The human-readable report."""
        c = self.config
        o = self.outcomes
        lat = self.latency_ok_ms
        lines = [
            f"soak: {c['size']} members, {c['duration']}s at {c['rate']}/s, kill every {c['kill_every']}s, "
            f"seed {c['seed']}, elapsed {self.elapsed:.1f}s",
            f"requests: scheduled {self.scheduled}, sent {self.sent} ({self.achieved_rate:.1f}/s; "
            f"{self.puts} PUT, {self.gets} GET), client overload {self.client_overload}, "
            f"no member up {self.no_member_up}, most in flight {self.max_in_flight_seen}",
            f"outcomes: ok {o.get(OK, 0)}, 503 {o.get(UNAVAILABLE, 0)}, timeouts {o.get(TIMEOUT, 0)}, "
            f"cut by kill {o.get(CUT_BY_KILL, 0)}, other errors {self.other_errors}",
            f"ok latency ms: p50 {lat.get('p50')}, p99 {lat.get('p99')}, max {lat.get('max')}",
        ]
        for sample in self.other_error_samples[:20]:
            lines.append(f"  error at {sample['at']}s: {sample['method']} member {sample['member']} "
                         f"-> {sample['status']} {sample['body'][:200]}")
        lines.append(f"kills: {len(self.kills)}")
        for kill in self.kills:
            lines.append(f"  {kill['at']:7.1f}  member {kill['member']}{' (leader)' if kill['was_leader'] else ''}"
                         f" pid {kill['pid']}; restarted {kill['restarted_at']}, serving again {kill['ready_at']}")
        timing = self.unavailable_timing
        lines.append(f"503s by seconds after the latest kill: {timing.get('by_seconds_after_kill')}; "
                     f"more than {c['election_window']}s after every kill: {timing.get('outside_window')}")
        lines.append(f"RSS (MB; bound: end <= baseline {c['rss_warmup']}s after start x {c['rss_factor']} "
                     f"+ {c['rss_slack_mb']} MB):")
        for member_id, processes in sorted(self.rss.items()):
            for p in processes:
                check = ("within bound" if p["within"] else "BOUND BROKEN") if p["checked"] else "too short to check"
                lines.append(
                    f"  member {member_id} pid {p['pid']} (started {p['started']}s, {p['samples']} samples): "
                    f"start {_mb(p['first_kb'])}, peak {_mb(p['peak_kb'])}, end {_mb(p['last_kb'])}"
                    + (f", baseline {_mb(p['baseline_kb'])}, limit {_mb(p['limit_kb'])}" if p["checked"] else "")
                    + f": {check}"
                )
        lines.append(f"cluster converged after the soak: {'yes' if self.converged else 'NO'}")
        lines.append(f"keys checked: {self.keys_checked} ({self.keys_unambiguous} unambiguous); "
                     f"final values: {self.final_verdicts}")
        if self.unreadable_keys:
            lines.append(f"keys never readable after the soak: {self.unreadable_keys[:20]}")
        lines.append(f"acknowledged writes lost: {len(self.lost_writes)} {self.lost_writes[:10] or ''}".rstrip())
        lines.append("PASS" if self.passed else "FAIL")
        return "\n".join(lines)


def _mb(kb: int | None) -> str:
    return "-" if kb is None else f"{kb / 1024:.1f}"


# -- the soak ---------------------------------------------------------------


class SoakRun:
    """One soak; ``await run()`` returns its ``SoakReport``."""

    def __init__(self, reactor, config: SoakConfig) -> None:
        self.reactor = reactor
        self.config = config
        self.rng = random.Random(config.seed)
        self.origin = time.monotonic()
        os.makedirs(config.workdir, exist_ok=True)
        args = ["--request-timeout", str(config.request_timeout)]
        self.cluster = ProxiedCluster(reactor, config.size, os.path.join(config.workdir, "data"), extra=args)
        self.http, self._pool = _http_client(reactor)
        self.up: set[int] = set()
        self.incarnation = {i: 0 for i in self.cluster.ids}
        self.processes: dict[tuple[int, int], ProcessRss] = {}
        self.writes: dict[str, KeyWrites] = {}
        self.outcomes: dict[str, int] = {}
        self.ok_latencies: list[float] = []
        self.unavailable_times: list[float] = []
        self.other_errors: list[dict] = []
        self.kills: list[dict] = []
        self.scheduled = 0
        self.sent = 0
        self.puts = 0
        self.gets = 0
        self.client_overload = 0
        self.no_member_up = 0
        self.in_flight = 0
        self.max_in_flight_seen = 0
        self.stopping = False

    def now(self) -> float:
        """Seconds since the workload started (negative before)."""
        return time.monotonic() - self.origin

    async def _sleep_until(self, at: float) -> None:
        """Sleep until ``now() >= at``, waking early when the soak stops."""
        for _ in range(int(max(0.0, at - self.now()) / 0.1) + 2):
            if self.stopping or self.now() >= at:
                return
            await task.deferLater(self.reactor, min(0.1, max(0.0, at - self.now())), lambda: None)

    def _track_process(self, member_id: int) -> None:
        process = self.cluster.members[member_id].process
        if process is not None:
            self.processes[(member_id, process.pid)] = ProcessRss(member_id, process.pid, self.now())

    # -- requests ---------------------------------------------------------

    async def _exchange(self, member_id: int, method: str, key: str, body: bytes | None):
        url = self.cluster.members[member_id].url + "/" + quote(key, safe="")
        response = await self.http.request(method, url, data=body)
        return response.code, await treq.content(response)

    async def request(self, member_id: int, method: str, key: str, body: bytes | None = None):
        """One request with the client timeout: ``(class, status, body)``,
        where class is OK, UNAVAILABLE, TIMEOUT, CUT_BY_KILL or OTHER_ERROR."""
        incarnation = self.incarnation[member_id]
        d = defer.ensureDeferred(self._exchange(member_id, method, key, body))
        d.addTimeout(self.config.client_timeout, self.reactor)
        try:
            status, content = await d
        except defer.TimeoutError:
            return TIMEOUT, None, b""
        except Exception as e:
            if _cancelled_by_timeout(e):
                return TIMEOUT, None, b""
            if self.incarnation[member_id] != incarnation or member_id not in self.up:
                return CUT_BY_KILL, None, repr(e).encode()
            return OTHER_ERROR, None, repr(e).encode()
        if status == 503:
            return UNAVAILABLE, status, content
        if (method == "PUT" and status == 204) or (method == "GET" and status in (200, 404)):
            return OK, status, content
        return OTHER_ERROR, status, content

    async def _one(self, member_id: int, method: str, key: str, value: str | None) -> None:
        invoke = self.now()
        outcome, status, content = await self.request(
            member_id, method, key, value.encode() if value is not None else None)
        complete = self.now()
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if outcome == OK:
            self.ok_latencies.append(complete - invoke)
        elif outcome == UNAVAILABLE:
            self.unavailable_times.append(complete)
        elif outcome == OTHER_ERROR:
            self.other_errors.append({"at": round(complete, 3), "member": member_id, "method": method, "key": key,
                                      "status": status, "body": content.decode("utf-8", "replace")})
        if method == "PUT":
            writes = self.writes.setdefault(key, KeyWrites())
            if outcome == OK:
                writes.acked.append(AckedWrite(invoke, complete, value))
            else:
                writes.unknown.append((invoke, value))

    def _launch(self) -> None:
        """Send one request now, unless the in-flight bound is reached."""
        if self.in_flight >= self.config.max_in_flight:
            self.client_overload += 1
            return
        if not self.up:
            self.no_member_up += 1
            return
        member_id = self.rng.choice(sorted(self.up))
        key = f"soak-{self.rng.randrange(self.config.keys)}"
        self.sent += 1
        if self.rng.random() < self.config.put_fraction:
            self.puts += 1
            prefix = f"v{self.sent}-"
            value, method = prefix + "x" * max(0, self.config.value_bytes - len(prefix)), "PUT"
        else:
            self.gets += 1
            value, method = None, "GET"
        self.in_flight += 1
        self.max_in_flight_seen = max(self.max_in_flight_seen, self.in_flight)
        d = defer.ensureDeferred(self._one(member_id, method, key, value))

        def done(result):
            self.in_flight -= 1
            return result

        d.addBoth(done)
        d.addErrback(lambda f: self.other_errors.append(
            {"at": round(self.now(), 3), "member": member_id, "method": method, "key": key, "status": None,
             "body": f"soak bug: {f.getErrorMessage()}"}))

    def _tick(self) -> None:
        """Send every request due by now: the schedule never waits for answers."""
        due = int(min(self.now(), self.config.duration) * self.config.rate)
        while self.scheduled < due:
            self.scheduled += 1
            self._launch()

    # -- kills and RSS ----------------------------------------------------

    async def _wait_serving(self, member_id: int, timeout: float = 60) -> bool:
        """Poll until the member reports a leader and health (bounded)."""
        deadline = self.now() + timeout
        for _ in range(int(timeout / 0.2) + 1):
            status = await self.cluster.status(member_id, timeout=1)
            if status and status.get("leader") and status.get("healthy", True):
                return True
            if self.now() > deadline:
                return False
            await task.deferLater(self.reactor, 0.2, lambda: None)
        return False

    async def _killer(self) -> None:
        config = self.config
        for n in range(1, int(config.duration / config.kill_every) + 1):
            at = n * config.kill_every
            if at + config.restart_after + config.election_window > config.duration:
                return
            await self._sleep_until(at)
            if self.stopping:
                return
            leader = await self.cluster.leader()
            followers = [i for i in self.cluster.ids if i != leader]
            if leader in self.cluster.members and self.rng.random() < config.leader_kill_fraction:
                victim = leader
            else:
                victim = self.rng.choice(followers)
            member = self.cluster.members[victim]
            self.up.discard(victim)
            self.incarnation[victim] += 1
            pid = member.process.pid if member.process else None
            kill = {"at": round(self.now(), 2), "member": victim, "was_leader": victim == leader, "pid": pid,
                    "restarted_at": None, "ready_at": None}
            self.kills.append(kill)
            member.kill()
            # The restart happens even when the soak is stopping: nothing is left down.
            for _ in range(int(config.restart_after / 0.1) + 2):
                if self.now() >= at + config.restart_after:
                    break
                await task.deferLater(self.reactor, 0.1, lambda: None)
            member.start()
            self._track_process(victim)
            kill["restarted_at"] = round(self.now(), 2)
            if await self._wait_serving(victim):
                kill["ready_at"] = round(self.now(), 2)
                self.up.add(victim)

    def _sample_rss(self) -> None:
        """One VmRSS sample of every running member process."""
        at = self.now()
        for member_id, member in self.cluster.members.items():
            process = member.process
            if process is None or not member.running():
                continue
            kb = read_rss_kb(process.pid)
            if kb is not None:
                self.processes.setdefault((member_id, process.pid),
                                          ProcessRss(member_id, process.pid, at)).samples.append((at, kb))

    # -- the end ----------------------------------------------------------

    async def _final_read(self, index: int, key: str) -> tuple[bool, str | None]:
        """A linearizable GET retried on 503 or timeout (bounded): (read, value)."""
        ids = self.cluster.ids
        for attempt in range(20):
            outcome, status, content = await self.request(ids[(index + attempt) % len(ids)], "GET", key)
            if outcome == OK:
                return True, content.decode() if status == 200 else None
            await task.deferLater(self.reactor, 0.5, lambda: None)
        return False, None

    async def _verify(self, report: SoakReport) -> None:
        keys = sorted(k for k, w in self.writes.items() if w.acked)
        finals: dict[str, tuple[bool, str | None]] = {}
        semaphore = defer.DeferredSemaphore(16)

        async def read(index: int, key: str) -> None:
            finals[key] = await self._final_read(index, key)

        await defer.gatherResults(
            [semaphore.run(lambda n=n, k=k: defer.ensureDeferred(read(n, k))) for n, k in enumerate(keys)])
        report.keys_checked = len(keys)
        verdicts: dict[str, int] = {}
        for key in keys:
            writes = self.writes[key]
            report.keys_unambiguous += writes.unambiguous()
            was_read, value = finals[key]
            if not was_read:
                report.unreadable_keys.append(key)
                continue
            verdict = writes.verdict(value)
            verdicts[verdict] = verdicts.get(verdict, 0) + 1
            if verdict == "lost":
                report.lost_writes.append({"key": key, "read": value,
                                           "latest_acked": [w.value for w in writes.latest_acked()]})
        report.final_verdicts = verdicts

    async def run(self) -> SoakReport:
        """Run the soak; always stops the members and proxies."""
        config = self.config
        report = SoakReport(config=asdict(config))
        sampler = task.LoopingCall(self._sample_rss)
        sampler.clock = self.reactor
        generator = task.LoopingCall(self._tick)
        generator.clock = self.reactor
        try:
            await self.cluster.start()
            for member_id in self.cluster.ids:
                self._track_process(member_id)
            if not await self.cluster.wait_converged(timeout=config.converge_timeout):
                raise RuntimeError("the cluster did not converge before the soak")
            self.up = set(self.cluster.ids)
            # Process start times were recorded on the old origin; keep them relative to the new one.
            shift = time.monotonic() - self.origin
            self.origin += shift
            for process in self.processes.values():
                process.started -= shift
            sampler.start(config.rss_interval, now=True)
            generator.start(0.01, now=True)
            killer = defer.ensureDeferred(self._killer())
            await self._sleep_until(config.duration)
            generator.stop()
            self.stopping = True
            await killer
            for _ in range(int((config.client_timeout + 5) / 0.1)):
                if self.in_flight == 0:
                    break
                await task.deferLater(self.reactor, 0.1, lambda: None)
            for member_id, member in self.cluster.members.items():
                if not member.running():
                    member.start()
                    self._track_process(member_id)
            report.converged = await self.cluster.wait_converged(timeout=config.converge_timeout)
            await self._verify(report)
            self._sample_rss()
        finally:
            if sampler.running:
                sampler.stop()
            if generator.running:
                generator.stop()
            await self._pool.closeCachedConnections()
            await self.cluster.stop()
        self._fill_report(report)
        return report

    def _fill_report(self, report: SoakReport) -> None:
        config = self.config
        report.elapsed = round(self.now(), 2)
        report.scheduled = self.scheduled
        report.sent = self.sent
        report.puts, report.gets = self.puts, self.gets
        report.client_overload = self.client_overload
        report.no_member_up = self.no_member_up
        report.achieved_rate = round(self.sent / config.duration, 2) if config.duration else 0.0
        report.max_in_flight_seen = self.max_in_flight_seen
        report.outcomes = dict(self.outcomes)
        report.latency_ok_ms = {name: None if v is None else round(v * 1000, 1) for name, v in (
            ("p50", _percentile(self.ok_latencies, 0.5)), ("p99", _percentile(self.ok_latencies, 0.99)),
            ("max", max(self.ok_latencies) if self.ok_latencies else None))}
        report.other_errors = len(self.other_errors)
        report.other_error_samples = self.other_errors[:200]
        report.kills = self.kills
        report.unavailable_timing = classify_unavailable(
            self.unavailable_times, [k["at"] for k in self.kills], config.election_window)
        rss: dict[int, list[dict]] = {}
        for (member_id, _), process in sorted(self.processes.items(), key=lambda item: item[1].started):
            entry = process.to_json(config.rss_warmup, config.rss_factor, config.rss_slack_mb)
            rss.setdefault(member_id, []).append(entry)
            if not entry["within"]:
                report.rss_bound_broken.append(f"member {member_id} pid {process.pid}")
        report.rss = rss
        with open(os.path.join(config.workdir, "soak-report.json"), "w") as f:
            json.dump(report.to_json(), f, indent=2)


# -- command line -----------------------------------------------------------


class SoakOptions(VersionOption, usage.Options):
    """The command line of ``metastore-chaos soak``."""

    synopsis = "Usage: metastore-chaos soak [options]"
    optParameters = [
        ["members", "n", 3, "number of members", int],
        ["duration", "d", 600.0, "seconds of workload", float],
        ["rate", "r", 200.0, "requests per second, sent whether or not earlier ones were answered", float],
        ["put-fraction", None, 0.5, "share of requests that are PUTs (the rest are linearizable GETs)", float],
        ["keys", None, 500, "size of the key space", int],
        ["max-in-flight", None, 512, "outstanding requests at most (beyond: counted as client overload)", int],
        ["kill-every", None, 60.0, "seconds between two member kills", float],
        ["restart-after", None, 5.0, "seconds a killed member stays down", float],
        ["leader-kill-fraction", None, 0.5, "probability that a kill hits the leader", float],
        ["rss-warmup", None, 60.0, "seconds after a process starts before its RSS baseline", float],
        ["rss-factor", None, 1.5, "RSS bound: end <= baseline x factor + slack", float],
        ["rss-slack-mb", None, 30.0, "RSS bound: the slack in MB", float],
        ["client-timeout", None, 3.0, "seconds before the client gives up on a request", float],
        ["request-timeout", None, 2.0, "the members' --request-timeout", float],
        ["workdir", "w", "soak-run", "where data, logs and soak-report.json go"],
        ["seed", None, 0, "random seed", int],
    ]

    def postOptions(self) -> None:
        """Reject sizes and rates that cannot make a soak."""
        if self["members"] < 1:
            raise usage.UsageError("--members must be at least 1")
        if self["rate"] <= 0 or self["duration"] <= 0 or self["kill-every"] <= 0:
            raise usage.UsageError("--rate, --duration and --kill-every must be positive")
        if self["keys"] < 1 or self["max-in-flight"] < 1:
            raise usage.UsageError("--keys and --max-in-flight must be at least 1")

    def config(self) -> SoakConfig:
        """The soak configuration these options describe."""
        return SoakConfig(
            size=self["members"], duration=self["duration"], rate=self["rate"], put_fraction=self["put-fraction"],
            keys=self["keys"], max_in_flight=self["max-in-flight"], kill_every=self["kill-every"],
            restart_after=self["restart-after"], leader_kill_fraction=self["leader-kill-fraction"],
            rss_warmup=self["rss-warmup"], rss_factor=self["rss-factor"], rss_slack_mb=self["rss-slack-mb"],
            client_timeout=self["client-timeout"], request_timeout=self["request-timeout"],
            workdir=self["workdir"], seed=self["seed"],
        )


def main(argv: list[str] | None = None) -> None:
    """Run a soak from the command line: print the report, write
    ``soak-report.json``, exit 1 unless the soak passed."""
    options = SoakOptions()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        raise SystemExit(f"{options}\nmetastore-chaos soak: {e}")

    async def body(reactor):
        report = await SoakRun(reactor, options.config()).run()
        print(report.summary(), flush=True)
        print(f"report: {os.path.abspath(os.path.join(options['workdir'], 'soak-report.json'))}", flush=True)
        if not report.passed:
            raise SystemExit(1)

    task.react(lambda reactor: defer.ensureDeferred(body(reactor)))


if __name__ == "__main__":
    main()
