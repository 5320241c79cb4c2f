"""Differential test of the v3 KV API: MetaStore must answer what etcd answers.

A real single-member etcd (Debian's ``etcd`` 3.4.23, the reference) and a
3-member system under test receive the same seeded random sequence of
``/v3/kv/range``, ``put``, ``deleterange``, ``txn`` and ``compaction``
requests, one at a time, and must give the same status and the same JSON,
except the header's cluster_id, member_id and raft_term.  Requests to the
system under test go to a random member; a serializable read goes to a
member known to have applied every earlier write (one that took the last
write, or a linearizable read since), so that it has a single right answer.

The system under test is MetaStore, or a second, 3-member etcd with
``METASTORE_V3_TARGET=etcd`` (which proves the generator and the comparison
right: etcd must agree with itself).  ``EtcdSelfCheckTests`` does that on
every run, on a shorter sequence.  ``METASTORE_DIFF_SEEDS=7,8`` and
``METASTORE_DIFF_REQUESTS=5000`` replay or extend a run.  Skipped, with the
reason, where etcd is not installed.

``LeaseWatchDifferentialTests`` does the same with lease sequences (named
lease ids, long TTLs, keys attached, revoked, kept alive) while watches are
open on both systems, on different MetaStore members: every watch message
must be equal, and a watch from revision 2 afterwards must replay the same
events; ``LeaseWatchEtcdSelfCheckTests`` proves it against etcd itself.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter, deque

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from tests.api.v3.streams import post_stream
from tests.api.v3requests import (
    LeaseRequestGenerator,
    RequestGenerator,
    b64,
    comparable,
    lease_comparable,
    outcome,
    readable,
    without_ids,
)
from tests.api.v3targets import Answer, V3Client, V3Target, start_etcd, start_system_under_test
from tests.etcd import skip_without_etcd
from tests.process import wait_until

SEEDS = (1, 2, 3)
REQUESTS_PER_SEED = 1000
# What every full-length run must have gone through at the reference.
EXPECTED_OUTCOMES = (
    "range: 200", "range: 200 at a revision", "put: 200", "deleterange: 200", "compaction: 200",
    "txn: succeeded", "txn: failed",
    "range: 400 etcdserver: mvcc: required revision has been compacted",
    "range: 400 etcdserver: mvcc: required revision is a future revision",
    "txn: 400 etcdserver: duplicate key given in txn request",
    "put: 400 etcdserver: key not found",
    "put: 404 etcdserver: requested lease not found",
)
SELF_CHECK_SEED = 101
SELF_CHECK_REQUESTS = 300


def configured_seeds() -> tuple[int, ...]:
    """``$METASTORE_DIFF_SEEDS`` (comma-separated) or the fixed seeds."""
    text = os.environ.get("METASTORE_DIFF_SEEDS", "")
    return tuple(int(s) for s in text.split(",") if s.strip()) or SEEDS


def configured_requests(default: int) -> int:
    """``$METASTORE_DIFF_REQUESTS`` or ``default``."""
    return int(os.environ.get("METASTORE_DIFF_REQUESTS", default))


class DifferentialRun:
    """One seeded sequence sent to the reference and the system under test,
    stopping at the first answer that differs."""

    def __init__(self, testcase, seed: int, reference: V3Target, sut: V3Target, requests=None,
                 compare=lambda path, *answer: comparable(*answer)) -> None:  # fmt: skip
        self.seed = seed
        self.reference = reference
        self.sut = sut
        self.client = V3Client(testcase)
        self.requests = requests or RequestGenerator(seed, valid_revisions_in_txn=sut.is_etcd and len(sut.urls) > 1)
        self.compare = compare
        self.routing = random.Random(seed * 7919 + 1)
        self.fresh = set(range(len(sut.urls)))  # members that have applied every acknowledged write
        self.recent = deque(maxlen=4)
        self.outcomes: Counter[str] = Counter()

    def _member_for(self, request) -> int:
        if request.local:
            return self.routing.choice(sorted(self.fresh))
        return self.routing.randrange(len(self.sut.urls))

    def _note_served(self, request, member: int, status: int) -> None:
        # Only a success says the member went through Raft: etcd refuses some
        # bad requests (an empty key, too many operations) before that.
        if status != 200 or request.local:
            return
        if request.writes:
            self.fresh = {member}
        else:
            self.fresh.add(member)

    async def _post(self, url: str, request) -> Answer:
        """The answer, or a status-0 answer that names why there was none."""
        try:
            return await self.client.post(url, request.path, request.body)
        except Exception as e:
            return Answer(0, "no answer", repr(e).encode())

    async def preflight(self) -> str | None:
        """Why a member of either system cannot take part (it does not serve
        ``/v3/kv/range``), or None."""
        for target in (self.reference, self.sut):
            for number, url in enumerate(target.urls, 1):
                answer = await self.client.post(url, "/v3/kv/range", {"key": "YQ=="})
                if answer.status != 200 or "header" not in (answer.json() or {}):
                    return f"{target.name}, member {number} ({url}), does not serve /v3/kv/range: {answer.describe()}"
        return None

    async def run(self, count: int) -> str | None:
        """Send ``count`` requests; a description of the first difference, or None."""
        for index in range(count):
            request = self.requests.next()
            member = self._member_for(request)
            expected, actual = await defer.gatherResults([
                defer.ensureDeferred(self._post(self.reference.urls[0], request)),
                defer.ensureDeferred(self._post(self.sut.urls[member], request)),
            ])
            self._note_served(request, member, actual.status)
            if expected.status == 0:
                return self._difference(index, count, request, member, expected, actual, "the reference gave no answer")
            want = self.compare(request.path, expected.status, expected.content_type, expected.body)
            got = self.compare(request.path, actual.status, actual.content_type, actual.body)
            if want != got:
                return self._difference(index, count, request, member, expected, actual, "different answers")
            self.requests.observe(request, expected.status, expected.json())
            self.outcomes[outcome(request, expected.status, expected.json())] += 1
            self.recent.append((request, expected))
        return None

    async def run_or_fail(self, testcase, count: int) -> None:
        """``preflight`` then ``run``; ``testcase`` fails with the first
        difference (and the system under test's logs)."""
        unable = await self.preflight()
        if unable:
            testcase.fail(unable)
        difference = await self.run(count)
        if difference:
            testcase.fail(difference + "\n" + self.sut.logs()[-6000:])

    def _difference(self, index, count, request, member, expected, actual, what: str) -> str:
        before = "\n".join(
            f"    POST {r.path} {json.dumps(r.body)}\n      both answered: {a.describe()}" for r, a in self.recent
        )
        return (
            f"seed {self.seed}: request {index} of {count}: {what}\n"
            f"  request: POST {request.path} {json.dumps(request.body)}\n"
            f"  decoded: {readable(request.body)!r}\n"
            f"  reference ({self.reference.name}): {expected.describe()}\n"
            f"  {self.sut.name}, member {member + 1} ({self.sut.urls[member]}): {actual.describe()}\n"
            f"  decoded reference: {readable(expected.json())!r}\n"
            f"  decoded {self.sut.name}: {readable(actual.json())!r}\n"
            f"  the requests before it, and the answer both gave:\n{before}\n"
            f"  replay: METASTORE_DIFF_SEEDS={self.seed} METASTORE_DIFF_REQUESTS={index + 1}"
        )


class DifferentialTestCase(TestCase):
    """Starts the reference etcd and a system under test, then compares."""

    timeout = 240

    async def start_systems(self) -> tuple[V3Target, V3Target]:
        """Override: the reference and the system under test, both running."""
        raise NotImplementedError

    async def check_seed(self, seed: int, count: int) -> None:
        """The two systems answer the ``count`` requests of ``seed`` alike."""
        skip_without_etcd()
        reference, sut = await self.start_systems()
        run = DifferentialRun(self, seed, reference, sut)
        await run.run_or_fail(self, count)
        if count >= REQUESTS_PER_SEED:
            missing = [o for o in EXPECTED_OUTCOMES if not run.outcomes[o]]
            self.assertEqual(missing, [], f"seed {seed} never produced these outcomes: {dict(run.outcomes)}")


class DifferentialTests(DifferentialTestCase):
    """MetaStore (or a second etcd, with ``METASTORE_V3_TARGET=etcd``) answers
    the v3 KV API exactly as etcd does, over several fixed seeds."""

    async def start_systems(self):
        """A single-member etcd and the 3-member system under test."""
        reference = await start_etcd(self, 1, name="reference")
        return reference, await start_system_under_test(self, 3)


def add_seed_tests(cls, seeds, name: str, check: str, requests: int, doc: str) -> None:
    """Give ``cls`` one ``test_<name>_<seed>`` per seed, calling its
    ``check(seed, count)`` method."""
    for seed in seeds:
        async def test(self, seed=seed):
            await getattr(self, check)(seed, configured_requests(requests))

        test.__name__ = f"test_{name}_{seed}"
        test.__doc__ = doc.format(seed=seed)
        setattr(cls, test.__name__, test)


add_seed_tests(DifferentialTests, configured_seeds(), "seed", "check_seed", REQUESTS_PER_SEED,
               "Seed {seed}: every answer of the system under test equals etcd's.")  # fmt: skip


class EtcdSelfCheckTests(DifferentialTestCase):
    """The generator and the comparison are right: a 3-member etcd, reached
    through random members, answers exactly like a single-member etcd."""

    async def start_systems(self):
        """A single-member etcd and a 3-member etcd."""
        reference = await start_etcd(self, 1, name="reference")
        return reference, await start_etcd(self, 3, name="other")

    async def test_etcd_agrees_with_itself(self):
        """A short seeded sequence finds no difference between two etcd clusters."""
        await self.check_seed(SELF_CHECK_SEED, SELF_CHECK_REQUESTS)


LEASE_SEEDS = (11, 12)
LEASE_REQUESTS_PER_SEED = 300
LEASE_OUTCOMES = (
    "grant: 200", "grant: 412 etcdserver: lease already exists", "grant: 400 etcdserver: too large lease TTL",
    "revoke: 200", "revoke: 404 etcdserver: requested lease not found", "keepalive: 200", "timetolive: 200",
    "leases: 200", "put: 200", "put: 404 etcdserver: requested lease not found", "txn: succeeded",
)
WATCHES = (
    {"key": b64(b"\0"), "range_end": b64(b"\0"), "prev_kv": True},
    {"key": b64(b"a"), "range_end": b64(b"b"), "filters": ["NODELETE"]},
    {"key": b64(b"b"), "filters": ["NOPUT"]},
)
"""Watches open on both systems while a lease sequence runs: every key with
prev_kv, a prefix without deletes, one key's deletes only."""
SENTINELS = (("/v3/kv/put", {"key": b64(b"a/end"), "value": b64(b"e")}),
             ("/v3/kv/put", {"key": b64(b"b"), "value": b64(b"e")}),
             ("/v3/kv/deleterange", {"key": b64(b"b")}))  # fmt: skip
"""Writes after the sequence that every watch of ``WATCHES`` sees, so each
stream's end is known."""
SENTINEL_SEEN = (0, -2, 0)
"""For each watch of ``WATCHES``: its last sentinel event's revision, from
the last sentinel's."""


def last_event_revision(stream) -> int:
    """The mod_revision of the last event a watch stream delivered (0: none)."""
    revisions = [int(e["kv"]["mod_revision"]) for r in stream.results for e in r.get("events", ())]
    return max(revisions, default=0)


class LeaseWatchDifferentialTests(TestCase):
    """Lease sequences (named lease ids, long TTLs) sent to etcd and to
    MetaStore, answers compared as the KV sequences are (remaining TTLs and
    etcd's map orders made comparable); watches open on both all along, on
    different MetaStore members, must deliver the same messages; and a
    watch from revision 2 afterwards must replay the same events."""

    timeout = 240

    async def start_sut(self) -> V3Target:
        """The 3-member system under test."""
        return await start_system_under_test(self, 3)

    async def open_watches(self, target: V3Target, spread: bool) -> list:
        streams = []
        for i, create in enumerate(WATCHES):
            url = target.urls[i % len(target.urls)] if spread else target.urls[0]
            stream = await post_stream(reactor, url, "/v3/watch", {"create_request": create})
            self.addCleanup(stream.close)
            await stream.wait_for(1)
            streams.append(stream)
        return streams

    async def check_lease_seed(self, seed: int, count: int) -> None:
        """The two systems answer the lease sequence of ``seed`` alike, and
        their watches see the same."""
        skip_without_etcd()
        reference = await start_etcd(self, 1, name="reference")
        sut = await self.start_sut()
        expected_streams = await self.open_watches(reference, spread=False)
        actual_streams = await self.open_watches(sut, spread=True)
        run = DifferentialRun(self, seed, reference, sut, LeaseRequestGenerator(seed), lease_comparable)
        await run.run_or_fail(self, count)
        final = 0
        for path, body in SENTINELS:
            answers = [await run.client.post(t.urls[0], path, body) for t in (reference, sut)]
            self.assertEqual([comparable(a.status, a.content_type, a.body) for a in answers][1],
                             comparable(answers[0].status, answers[0].content_type, answers[0].body))  # fmt: skip
            final = int(answers[0].json()["header"]["revision"])
        for create, seen, expected, actual in zip(WATCHES, SENTINEL_SEEN, expected_streams, actual_streams):
            for stream in (expected, actual):
                await wait_until(lambda: last_event_revision(stream) >= final + seen, timeout=20,
                                 what=f"the watch {create} to see the sentinels")  # fmt: skip
            self.assertEqual([without_ids(m) for m in actual.messages], [without_ids(m) for m in expected.messages],
                             f"watch {create}")  # fmt: skip
        replays = []
        for target in (reference, sut):
            stream = await post_stream(reactor, target.urls[-1], "/v3/watch", {"create_request": {
                "key": b64(b"\0"), "range_end": b64(b"\0"), "start_revision": 2, "prev_kv": True}})  # fmt: skip
            self.addCleanup(stream.close)
            await wait_until(lambda: last_event_revision(stream) >= final, timeout=20, what="the replay")
            replays.append([event for r in stream.results for event in r.get("events", ())])
        self.assertEqual(replays[1], replays[0])
        live = [e for m in expected_streams[0].results for e in m.get("events", ())]
        self.assertEqual(replays[0], live)
        if count >= LEASE_REQUESTS_PER_SEED:
            missing = [o for o in LEASE_OUTCOMES if not run.outcomes[o]]
            self.assertEqual(missing, [], f"seed {seed} never produced these outcomes: {dict(run.outcomes)}")


add_seed_tests(LeaseWatchDifferentialTests, LEASE_SEEDS, "lease_seed", "check_lease_seed", LEASE_REQUESTS_PER_SEED,
               "Lease and watch seed {seed}: the system under test answers and notifies as etcd does.")  # fmt: skip


class LeaseWatchEtcdSelfCheckTests(LeaseWatchDifferentialTests):
    """The lease sequences and the watch comparison are right: a 3-member
    etcd answers and notifies like a single-member etcd."""

    async def start_sut(self) -> V3Target:
        """A 3-member etcd."""
        return await start_etcd(self, 3, name="other")
