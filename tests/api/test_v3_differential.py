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
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter, deque

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from tests.api.v3requests import RequestGenerator, comparable, outcome, readable
from tests.api.v3targets import Answer, V3Client, V3Target, start_etcd, start_system_under_test
from tests.etcd import skip_without_etcd

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

    def __init__(self, testcase, seed: int, reference: V3Target, sut: V3Target) -> None:
        self.seed = seed
        self.reference = reference
        self.sut = sut
        self.client = V3Client(testcase)
        self.requests = RequestGenerator(seed, valid_revisions_in_txn=sut.is_etcd and len(sut.urls) > 1)
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
            want = comparable(expected.status, expected.content_type, expected.body)
            got = comparable(actual.status, actual.content_type, actual.body)
            if want != got:
                return self._difference(index, count, request, member, expected, actual, "different answers")
            self.requests.observe(request, expected.status, expected.json())
            self.outcomes[outcome(request, expected.status, expected.json())] += 1
            self.recent.append((request, expected))
        return None

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
        unable = await run.preflight()
        if unable:
            self.fail(unable)
        difference = await run.run(count)
        if difference:
            self.fail(difference + "\n" + sut.logs()[-6000:])
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


def _seed_test(seed: int):
    async def test(self):
        await self.check_seed(seed, configured_requests(REQUESTS_PER_SEED))

    test.__name__ = f"test_seed_{seed}"
    test.__doc__ = f"Seed {seed}: every answer of the system under test equals etcd's."
    return test


for _seed in configured_seeds():
    setattr(DifferentialTests, f"test_seed_{_seed}", _seed_test(_seed))


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
