"""The lease and watch workloads of a fault run, and their verification.

Everything lives under one key prefix (``lw/`` by default) on the v3 JSON
API of the members:

- **lease keepers** each grant a lease, put ``lw/l/<n>`` with it, and renew
  it every ``renew_every`` seconds, from whichever member answers (a keeper
  whose member stops answering moves to the next one).  **Control** leases
  are granted with a key and never renewed: they must expire.
- **writers** put keys ``lw/w/<k>`` with unique values, delete them, put two
  of them in one txn (two events at one revision), and now and then delete
  the whole ``lw/w/`` range at once; each acknowledged put is remembered
  with the revision its answer named.
- **watchers** (``ResumingWatch``) watch the whole prefix, some from "now"
  and some from revision 1 (a replay that joins the live stream), spread
  over the members; when their member dies they resume on the next one from
  the revision after the last event they saw, as etcd's clients do.

``verify()`` runs after the faults are healed: a last renewal of every kept
lease, the controls' expiry, a sentinel put at revision S, every watcher
given time to reach S, the history up to S read back from *every* member by
a watch from revision 1, ranges at sampled revisions; then the checks of
``lease_checker`` and ``watch_checker``.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Callable

from twisted.internet import defer, task

from metastore.chaos.lease_checker import LeaseRecord, check_leases
from metastore.bench.watch import prefix_end
from metastore.chaos.v3client import DELETE, PUT, ResumingWatch, SeenEvent, V3Client, b64, unb64
from metastore.chaos.watch_checker import (
    compare_histories,
    compare_watcher,
    compare_with_range,
    is_revision_ordered,
    missing_acknowledged,
)

LEASE = "lease"
WATCH = "watch"


@dataclass
class LeaseWatchConfig:
    """Sizes and timings of the two workloads (defaults suit 3 members on 2 cores)."""

    prefix: bytes = b"lw/"
    lease_keepers: int = 4
    lease_ttl: int = 6
    renew_every: float = 1.0
    control_leases: int = 2
    control_ttl: int = 3
    watchers_per_member: int = 2
    writers: int = 2
    write_keys: int = 12
    write_pause: float = 0.02
    client_timeout: float = 3.0
    catch_up_timeout: float = 60.0
    range_samples: int = 30
    seed: int = 0


@dataclass
class LeaseWatchReport:
    """What the verification found; ``problems`` is empty when it passed."""

    workloads: tuple[str, ...]
    sentinel_revision: int = 0
    leases_kept: int = 0
    kept_leases_lost: int = 0
    lease_renewals: int = 0
    lease_renewals_failed: int = 0
    controls: int = 0
    controls_expired: int = 0
    excused_losses: list[str] = field(default_factory=list)
    watchers: int = 0
    watch_events_delivered: int = 0
    watch_resumes: int = 0
    history_events: int = 0
    histories_compared: int = 0
    histories_equal: bool = False
    acknowledged_puts: int = 0
    ranges_compared: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No lease broke its promise, every watcher got exactly the history."""
        return not self.problems

    def summary_lines(self) -> list[str]:
        """The human-readable lines for the run report."""
        lines = []
        if LEASE in self.workloads:
            lines.append(
                f"leases kept alive: {self.leases_kept} ({self.lease_renewals} renewals acknowledged, "
                f"{self.lease_renewals_failed} failed), lost: {self.kept_leases_lost} "
                f"({len(self.excused_losses)} after a whole TTL without a renewal); "
                f"never-renewed controls expired: {self.controls_expired}/{self.controls}")
            lines += [f"  excused: {text}" for text in self.excused_losses[:10]]
        if WATCH in self.workloads:
            lines.append(
                f"watchers: {self.watchers}, events delivered: {self.watch_events_delivered}, "
                f"streams resumed on a member after one was lost: {self.watch_resumes}; history up to revision "
                f"{self.sentinel_revision}: {self.history_events} events, "
                f"{'equal' if self.histories_equal else 'NOT equal'} on the {self.histories_compared} members read; "
                f"{self.acknowledged_puts} acknowledged puts, {self.ranges_compared} ranges compared")
        lines.append(f"lease/watch problems: {len(self.problems)}")
        lines += [f"  {text}" for text in self.problems[:30]]
        return lines

    def to_json(self) -> dict:
        """A JSON-ready dict."""
        data = dict(self.__dict__)
        data["workloads"] = list(self.workloads)
        data["passed"] = self.passed
        return data


class LeaseWatchWorkload:
    """Runs the lease and/or watch workloads against ``members`` (id -> base
    URL) until ``stop_writes()``, then ``verify()`` (see the module docstring)."""

    def __init__(self, reactor, members: dict[int, str], config: LeaseWatchConfig,
                 workloads: tuple[str, ...] = (LEASE, WATCH), now: Callable[[], float] = time.monotonic,
                 tls=None, auth=None) -> None:
        self.reactor = reactor
        self.members = dict(members)
        self.config = config
        self.workloads = workloads
        self.now = now
        self.rng = random.Random(config.seed)
        self.client = V3Client(reactor, timeout=config.client_timeout, tls=tls, auth=auth)
        self._access = {"tls": tls, "auth": auth}
        """How watches reach the members: the run's TLS and auth, if on."""
        self.leases: list[LeaseRecord] = []
        self.watches: list[ResumingWatch] = []
        self.acknowledged_puts: list[SeenEvent] = []
        self._lease_by_key: dict[bytes, LeaseRecord] = {}
        self._writers: list[defer.Deferred] = []
        self._keepers: list[defer.Deferred] = []
        self._watch_runs: list[defer.Deferred] = []
        self._writing = False
        self._keeping = False
        self._renewals = 0

    @property
    def _ids(self) -> list[int]:
        return sorted(self.members)

    def _url(self, position: int) -> str:
        ids = self._ids
        return self.members[ids[position % len(ids)]]

    # -- start and stop -------------------------------------------------------

    async def start(self) -> None:
        """Open the watchers (and wait for their first stream to be created),
        grant the leases, start writing and renewing."""
        config = self.config
        if WATCH in self.workloads:
            for n in range(config.watchers_per_member * len(self._ids)):
                watch = ResumingWatch(
                    name=f"watcher {n}", members=self.members, key=config.prefix,
                    range_end=prefix_end(config.prefix), start_revision=1 if n % 2 else 0,
                    first_member=self._ids[n % len(self._ids)], now=self.now, create_timeout=config.client_timeout,
                    on_event=self._watched, **self._access,
                )  # fmt: skip
                self.watches.append(watch)
                self._watch_runs.append(watch.run(self.reactor))
            await _poll(self.reactor, lambda: all(w.sessions and w.sessions[-1].created for w in self.watches),
                        30.0)
        if LEASE in self.workloads:
            self._keeping = True
            for n in range(config.lease_keepers + config.control_leases):
                kept = n < config.lease_keepers
                record = await self._grant(n, kept)
                if record is not None and kept:
                    self._keepers.append(defer.ensureDeferred(self._keep(record, n)))
        if WATCH in self.workloads:
            self._writing = True
            self._writers = [defer.ensureDeferred(self._write(n)) for n in range(config.writers)]

    async def stop_writes(self) -> None:
        """Stop the writers (the keepers go on renewing until ``verify``)."""
        self._writing = False
        await defer.gatherResults(self._writers)

    async def close(self) -> None:
        """Stop everything still running and close the connections."""
        self._writing = self._keeping = False
        for watch in self.watches:
            watch.stop()
        await defer.DeferredList(self._writers + self._keepers + self._watch_runs)
        await self.client.close()

    # -- leases -----------------------------------------------------------------

    async def _grant(self, n: int, kept: bool) -> LeaseRecord | None:
        """Grant lease ``n`` and put its key, retrying on other members
        (bounded); None if the cluster never granted it."""
        ttl = self.config.lease_ttl if kept else self.config.control_ttl
        key = self.config.prefix + (b"l/%d" % n if kept else b"c/%d" % n)
        for attempt in range(50):
            sent = self.now()
            reply = await self.client.grant(self._url(n + attempt), ttl)
            if reply.ok and "ID" in reply.body:
                record = LeaseRecord(f"{'lease' if kept else 'control lease'} {n}", int(reply.body["ID"]),
                                     int(reply.body.get("TTL", ttl)), kept, key, [sent])
                self.leases.append(record)
                self._lease_by_key[key] = record
                for again in range(50):
                    put = await self.client.put(self._url(n + attempt + again), key, b"%d" % record.lease_id,
                                                record.lease_id)
                    if put.ok:
                        return record
                    if put.code == 404:  # the lease is already gone
                        record.lost(self.now(), "put with it answered lease not found")
                        return record
                    await task.deferLater(self.reactor, 0.2, lambda: None)
                return record
            await task.deferLater(self.reactor, 0.2, lambda: None)
        return None

    async def _keep(self, record: LeaseRecord, position: int) -> None:
        while self._keeping and record.lost_at is None:
            if not await self._renew(record, position):
                position += 1
            await task.deferLater(self.reactor, self.config.renew_every, lambda: None)

    async def _renew(self, record: LeaseRecord, position: int) -> bool:
        """One keepalive; True when acknowledged with a TTL."""
        sent = self.now()
        reply = await self.client.keepalive(self._url(position), record.lease_id)
        if reply.ok and int(reply.body.get("TTL", 0)) > 0:
            record.acknowledged.append(sent)
            self._renewals += 1
            return True
        if reply.ok:
            record.lost(self.now(), f"keepalive to {self._url(position)} answered no TTL")
        else:
            record.renewals_failed += 1
        return False

    def _watched(self, watch: ResumingWatch, event: SeenEvent, arrived: float) -> None:
        """A lease key's delete reaching any watcher means the lease is gone."""
        record = self._lease_by_key.get(event.key)
        if record is not None and event.type == DELETE:
            record.lost(arrived, f"{watch.name} saw the delete of its key at revision {event.revision}")

    # -- writes --------------------------------------------------------------------

    async def _write(self, writer: int) -> None:
        config = self.config
        counter = 0
        position = writer
        while self._writing:
            counter += 1
            value = b"%d-%d" % (writer, counter)
            key = config.prefix + b"w/%d" % self.rng.randrange(config.write_keys)
            url = self._url(position)
            choice = self.rng.random()
            if choice < 0.6:
                reply = await self.client.put(url, key, value)
                puts = [(key, value)]
            elif choice < 0.75:
                reply = await self.client.call(url, "/v3/kv/deleterange", {"key": b64(key)})
                puts = []
            elif choice < 0.97:
                other = config.prefix + b"w/%d" % self.rng.randrange(config.write_keys)
                if other == key:
                    other = config.prefix + b"w/x"
                puts = [(key, value), (other, value + b"b")]
                reply = await self.client.txn(url, [{"request_put": {"key": b64(k), "value": b64(v)}}
                                                    for k, v in puts])
            else:
                sub = config.prefix + b"w/"
                reply = await self.client.call(url, "/v3/kv/deleterange",
                                               {"key": b64(sub), "range_end": b64(prefix_end(sub))})
                puts = []
            if reply.ok:
                self.acknowledged_puts.extend(SeenEvent(reply.revision, PUT, k, v) for k, v in puts)
            else:
                position += 1
                await task.deferLater(self.reactor, 0.1, lambda: None)
            await task.deferLater(self.reactor, config.write_pause, lambda: None)

    # -- verification -----------------------------------------------------------------

    async def verify(self) -> LeaseWatchReport:
        """Check everything (the cluster should be healed and converged)."""
        report = LeaseWatchReport(self.workloads)
        if LEASE in self.workloads:
            await self._final_lease_checks(report)
        if WATCH in self.workloads:
            await self._final_watch_checks(report)
        if LEASE in self.workloads:
            result = check_leases(self.leases)
            report.leases_kept = result.kept
            report.kept_leases_lost = result.kept_lost
            report.controls = self.config.control_leases
            report.controls_expired = result.controls_expired
            report.excused_losses = result.excused
            report.lease_renewals = self._renewals
            report.lease_renewals_failed = sum(r.renewals_failed for r in self.leases)
            report.problems += result.violations
            granted = sum(1 for r in self.leases if r.kept)
            if granted < self.config.lease_keepers:
                report.problems.append(f"only {granted} of {self.config.lease_keepers} leases could be granted")
        return report

    async def _final_lease_checks(self, report: LeaseWatchReport) -> None:
        """One more acknowledged renewal of every kept lease (bounded
        retries), then stop renewing; wait for every control to expire."""
        for n, record in enumerate(r for r in self.leases if r.kept):
            for attempt in range(40):
                if record.lost_at is not None or await self._renew(record, n + attempt):
                    break
                await task.deferLater(self.reactor, 0.25, lambda: None)
            else:
                report.problems.append(f"{record.name}: no renewal acknowledged after the faults were healed")
        self._keeping = False
        await defer.DeferredList(self._keepers)
        controls = [r for r in self.leases if not r.kept]
        deadline = self.now() + self.config.control_ttl + self.config.catch_up_timeout
        for n in range(int((self.config.control_ttl + self.config.catch_up_timeout) / 0.25) + 1):
            for record in controls:
                if record.lost_at is None:
                    reply = await self.client.time_to_live(self._url(n), record.lease_id)
                    if reply.ok and int(reply.body.get("TTL", 0)) == -1:
                        record.lost(self.now(), "time-to-live answered -1")
            if all(r.lost_at is not None for r in controls) or self.now() > deadline:
                break
            await task.deferLater(self.reactor, 0.25, lambda: None)

    async def _final_watch_checks(self, report: LeaseWatchReport) -> None:
        config = self.config
        sentinel = await self._sentinel()
        report.sentinel_revision = sentinel
        if not sentinel:
            report.problems.append("the sentinel put was never acknowledged")
            return
        reached = await _poll(self.reactor, lambda: all(w.next_revision > sentinel for w in self.watches),
                              config.catch_up_timeout)
        for watch in self.watches:
            watch.stop()
        await defer.DeferredList(self._watch_runs)
        if not reached:
            behind = [f"{w.name} at {w.next_revision - 1}" for w in self.watches if w.next_revision <= sentinel]
            report.problems.append(f"watchers that never reached the sentinel revision {sentinel}: {behind}")
        histories = {}
        for member in self._ids:
            history = await self._read_history(member, sentinel)
            if history is None:
                report.problems.append(f"member {member}: the history up to {sentinel} could not be read")
            else:
                histories[member] = history
        if not histories:
            return
        reference = histories[min(histories)]
        report.history_events = len(reference)
        if not is_revision_ordered(reference):
            report.problems.append("the history read back is not in revision order")
        differences = compare_histories(histories, sentinel)
        report.problems += [v.describe() for v in differences]
        report.histories_compared = len(histories)
        report.histories_equal = not differences and len(histories) == len(self._ids)
        report.watchers = len(self.watches)
        for watch in self.watches:
            report.watch_events_delivered += len(watch.events)
            report.watch_resumes += sum(1 for session in watch.sessions[1:] if session.created)
            report.problems += watch.problems
            verdict = compare_watcher(watch.name, watch.events, reference, watch.first_revision, sentinel)
            if not verdict.ok:
                report.problems.append(verdict.describe())
        report.acknowledged_puts = len(self.acknowledged_puts)
        for event in missing_acknowledged(reference, self.acknowledged_puts)[:10]:
            report.problems.append(f"acknowledged put {event.describe()} is not in the history")
        revisions = sorted({e.revision for e in reference} | {sentinel})
        step = max(1, len(revisions) // max(1, config.range_samples))
        for revision in revisions[::step][: config.range_samples] + [sentinel]:
            ranged = await self._range_at(revision)
            if ranged is None:
                report.problems.append(f"a range at revision {revision} never answered")
                continue
            report.ranges_compared += 1
            difference = compare_with_range(reference, revision, ranged)
            if difference:
                report.problems.append(difference)

    async def _sentinel(self) -> int:
        """Put ``<prefix>end`` until acknowledged; its revision (0: never)."""
        for attempt in range(40):
            reply = await self.client.put(self._url(attempt), self.config.prefix + b"end", b"%d" % attempt)
            if reply.ok:
                return reply.revision
            await task.deferLater(self.reactor, 0.5, lambda: None)
        return 0

    async def _read_history(self, member: int, until: int) -> list[SeenEvent] | None:
        """Every event of the prefix from revision 1 through ``until``, by a
        watch on ``member`` alone (bounded in time)."""
        watch = ResumingWatch(name=f"history reader on member {member}", members={member: self.members[member]},
                              key=self.config.prefix, range_end=prefix_end(self.config.prefix), start_revision=1,
                              now=self.now, create_timeout=self.config.client_timeout, **self._access)
        done = watch.run(self.reactor)
        reached = await _poll(self.reactor, lambda: watch.next_revision > until, self.config.catch_up_timeout)
        watch.stop()
        await done
        if not reached or watch.problems:
            return None
        return [e for e in watch.events if e.revision <= until]

    async def _range_at(self, revision: int) -> dict[bytes, tuple[bytes, int]] | None:
        """The prefix as a range at ``revision`` reads it: key -> (value, mod_revision)."""
        for attempt in range(20):
            reply = await self.client.range(self._url(attempt), self.config.prefix, prefix_end(self.config.prefix),
                                            revision=revision)
            if reply.ok:
                return {unb64(kv["key"]): (unb64(kv.get("value")), int(kv["mod_revision"]))
                        for kv in reply.body.get("kvs", ())}
            await task.deferLater(self.reactor, 0.25, lambda: None)
        return None


async def _poll(reactor, condition, timeout: float, interval: float = 0.1) -> bool:
    """Whether ``condition()`` became true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 2):
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        await task.deferLater(reactor, interval, lambda: None)
    return condition()
