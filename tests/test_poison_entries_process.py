"""Poison entries on a real 3-member cluster: bytes no API would propose,
put straight into the Raft log through the test-only raw proposal route
(``METASTORE_DEBUG_PROPOSE_RAW=1``, see ``metastore.faults``).

After each, every member applies to its commit index, the cluster still
commits a write, /health is 200 everywhere, and the proposer got a 409.
"""

from __future__ import annotations

import json
import os

from twisted.trial.unittest import TestCase

from metastore.faults import RAW_PROPOSALS_VARIABLE
from metastore.raft.confchange import encode_conf_change
from metastore.raft.types import ConfChange, ConfChangeType
from tests.process import Cluster, wait_until


class PoisonEntryProcessTests(TestCase):
    """The apply loop of real members cannot be stalled by any entry."""

    timeout = 240

    async def setUp(self):
        os.environ[RAW_PROPOSALS_VARIABLE] = "1"
        self.addCleanup(os.environ.pop, RAW_PROPOSALS_VARIABLE, None)
        self.cluster = Cluster(self, 3, extra=["--request-timeout", "3"])
        self.cluster.start()
        self.leader_id = await self.cluster.leader()

    async def propose_raw(self, member_id: int, kind: str, data: bytes) -> tuple[int, dict]:
        code, body, _ = await self.cluster.request(member_id, "POST", f"/admin/debug/propose-raw?type={kind}", data)
        return code, json.loads(body) if body else {}

    async def assert_cluster_fine(self, n: int) -> None:
        """A write commits; every member's applied index reaches its commit
        index; /health is 200 on every member."""
        await self.cluster.put_until_ok(1 + n % 3, f"after-{n}", b"ok", timeout=30)

        async def caught_up():
            for member_id in (1, 2, 3):
                status = await self.cluster.status(member_id)
                if status is None or status["applied_index"] != status["commit_index"]:
                    return False
            return True

        await wait_until(caught_up, timeout=30, interval=0.2, what="every member to apply to its commit index")
        for member_id in (1, 2, 3):
            code, body, _ = await self.cluster.request(member_id, "GET", "/health")
            self.assertEqual(code, 200, f"member {member_id}: {body!r}")
        self.assertNotIn("Traceback", self.cluster.logs())

    async def test_poison_entries_are_applied_as_no_ops(self):
        """Garbage bytes, a malformed conf change, removing a non-member,
        re-adding a member and a duplicate peer URL: each is refused with a
        409 on whichever member took it, and the cluster carries on."""
        own_url = self.cluster.peer_urls[0].encode()
        cases = [
            ("normal", b"\xc1\xff garbage", "no valid command"),
            ("conf-change", b"\x93\x01\x02", "malformed"),
            ("conf-change", b"\xff\x00not msgpack", "malformed"),
            ("conf-change", encode_conf_change(ConfChange(ConfChangeType.ConfChangeRemoveNode, 9)), "not a member"),
            ("conf-change", encode_conf_change(ConfChange(ConfChangeType.ConfChangeAddNode, 2)), "already a voter"),
            ("conf-change", encode_conf_change(ConfChange(ConfChangeType.ConfChangeAddNode, 7, own_url)),
             "already uses peer URL"),
        ]
        for n, (kind, data, reason) in enumerate(cases):
            member_id = 1 + n % 3  # followers forward, the leader appends
            code, body = await self.propose_raw(member_id, kind, data)
            self.assertEqual(code, 409, (n, body))
            self.assertEqual(body["error"], "entry_rejected")
            self.assertIn(reason, body["message"])
            await self.assert_cluster_fine(n)
        code, body, _ = await self.cluster.request(1, "GET", "/admin/members")
        self.assertEqual([m["id"] for m in json.loads(body)["members"]], [1, 2, 3])
