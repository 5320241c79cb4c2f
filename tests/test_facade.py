"""Tests for metastore.facade on a real one-member cluster in this process."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from metastore.config import Config
from metastore.facade import Consistency, MembershipError, MemberStatus
from metastore.kv.commands import Put
from metastore.kv.messages import RangeRequest
from metastore.service import open_member
from tests.process import wait_until


class FacadeTests(TestCase):
    """What the APIs may ask of a member, answered through the facade."""

    timeout = 60

    async def start(self):
        config = Config(cluster=("http://127.0.0.1:0",), port=0, data_dir=self.mktemp()).validate()
        member = open_member(config, reactor)
        member.startService()
        self.addCleanup(member.stopService)
        await wait_until(lambda: member.node.is_leader, timeout=10, what="leadership")
        return member.api

    async def test_propose_then_read_both_ways(self) -> None:
        """A proposal's result is visible to a linearizable and a serializable read."""
        api = await self.start()
        result = await api.propose(Put(b"k", b"v"))
        await api.read(Consistency.LINEARIZABLE)
        self.assertEqual(api.get(b"k").mod_revision, result.revision)
        await api.read(Consistency.SERIALIZABLE)
        found = api.range_request(RangeRequest(b"", b"\0"))
        self.assertEqual(([kv.key for kv in found.kvs], found.count), ([b"k"], 1))
        self.assertEqual(api.revision, result.revision)

    async def test_status_is_a_dataclass_of_this_members_view(self) -> None:
        api = await self.start()
        await api.propose(Put(b"k", b"v"))
        status = api.status()
        self.assertIsInstance(status, MemberStatus)
        self.assertEqual((status.member_id, status.leader, status.role), (1, 1, "leader"))
        self.assertTrue(status.healthy)
        self.assertIsNone(status.storage_failure)
        self.assertGreaterEqual(status.commit_index, status.applied_index)
        self.assertEqual(api.health(), "")

    async def test_member_operations_refuse_bad_requests_before_proposing(self) -> None:
        api = await self.start()
        self.assertEqual([m.member_id for m in api.members()], [1])
        for call, code in [
            (lambda: api.add_member(2, "nope"), "bad_peer_url"),
            (lambda: api.add_member(1, "http://127.0.0.1:1"), "member_exists"),
            (lambda: api.remove_member(5), "no_such_member"),
            (lambda: api.update_member(5, "http://127.0.0.1:1"), "no_such_member"),
            (lambda: api.update_member(1, "nope"), "bad_peer_url"),
            (lambda: api.promote_member(1), "not_learner"),
            (lambda: api.transfer_leadership(9), "bad_transferee"),
        ]:
            with self.assertRaises(MembershipError) as caught:
                call()
            self.assertEqual(caught.exception.code, code)

    async def test_snapshot_trigger(self) -> None:
        api = await self.start()
        await api.propose(Put(b"k", b"v"))
        index = await api.take_snapshot()
        self.assertEqual(index, api.status().applied_index)
        self.assertEqual(api.status().snapshot_index, index)
