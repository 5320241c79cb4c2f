"""etcd's strict reconfiguration check on a real 3-member cluster."""

from __future__ import annotations

import json

from twisted.trial.unittest import TestCase

from tests.process import Cluster, free_port, wait_until


class StrictReconfigurationProcessTests(TestCase):
    """With a member down, changes that could cost the quorum are refused
    with 412 and a reason; removing the down member is allowed."""

    timeout = 180

    async def test_changes_refused_while_a_member_is_down(self):
        cluster = Cluster(self, 3, extra=["--request-timeout", "10"])
        cluster.start()
        await cluster.leader()
        await cluster.put_until_ok(1, "before", b"x")
        cluster.members[3].kill()

        async def member_3_disconnected():
            status = await cluster.status(1)
            return status is not None and 3 not in status["connected_peers"] and 2 in status["connected_peers"]

        await wait_until(member_3_disconnected, timeout=30, interval=0.1, what="member 1 to see member 3 gone")
        code, body, _ = await cluster.request(1, "POST", "/admin/members/4", f"http://127.0.0.1:{free_port()}".encode())
        self.assertEqual(code, 412, body)
        self.assertEqual(json.loads(body)["error"], "unhealthy_cluster")
        self.assertIn("started members", json.loads(body)["message"])
        code, body, _ = await cluster.request(1, "DELETE", "/admin/members/2")
        self.assertEqual(code, 412, body)
        self.assertIn("would leave 1 started", json.loads(body)["message"])
        # The removal itself needs a leader: if member 3 led, wait for the
        # survivors' election (a change proposed to the dead leader is lost
        # and answered 503 "timed out; it may still apply").
        await cluster.leader(among=[1, 2])
        code, body, _ = await cluster.request(1, "DELETE", "/admin/members/3")
        self.assertEqual(code, 204, body)
        await cluster.put_until_ok(2, "after", b"y")
