"""The v3 cluster and leadership RPCs on three real ``twistd`` members:
a learner joins, is promoted once it caught up, and leadership moves."""

from __future__ import annotations

import json

import treq
from twisted.trial.unittest import TestCase

from tests.process import Cluster, wait_healthy, wait_until


class LearnerAndLeadershipTests(TestCase):
    """Membership with learners and MoveLeader across processes."""

    timeout = 120

    async def post(self, url: str, path: str, body: dict) -> tuple[int, dict]:
        """POST JSON; the status and the JSON answer (0 and {} when there was no answer)."""
        try:
            response = await treq.post(url + path, data=json.dumps(body).encode(), persistent=False)
            return response.code, json.loads(await treq.content(response))
        except Exception:
            return 0, {}

    async def test_learner_joins_is_promoted_and_leadership_moves(self):
        """A learner added through /v3/cluster/member/add catches up and is
        promoted; /v3/maintenance/transfer-leadership hands the lead to it."""
        cluster = Cluster(self, 3)
        cluster.start()
        for member in cluster.members.values():
            await wait_healthy(member, 40)
        leader = await cluster.leader()
        leader_url = cluster.members[leader].url
        learner = cluster.add_member()
        status, added = await self.post(leader_url, "/v3/cluster/member/add",
                                        {"peerURLs": [learner.cluster[-1]], "isLearner": True})
        self.assertEqual(status, 200, added)
        self.assertEqual(added["member"]["ID"], str(learner.member_id))
        learner.start()

        async def promoted():
            status, answer = await self.post(leader_url, "/v3/cluster/member/promote", {"ID": learner.member_id})
            return status == 200 or answer.get("error") == "etcdserver: can only promote a learner member"

        await wait_until(promoted, timeout=40, interval=0.5, what="the learner to catch up and be promoted")
        _, listing = await self.post(learner.url, "/v3/cluster/member/list", {})
        self.assertEqual([(m["ID"], m.get("isLearner", False)) for m in listing["members"]],
                         [("1", False), ("2", False), ("3", False), ("4", False)])

        status, moved = await self.post(leader_url, "/v3/maintenance/transfer-leadership", {"targetID": learner.member_id})
        self.assertEqual(status, 200, moved)
        self.assertEqual(await cluster.leader(), learner.member_id)
        status, refused = await self.post(leader_url, "/v3/maintenance/transfer-leadership", {"targetID": 1})
        self.assertEqual((status, refused.get("error")), (412, "etcdserver: not leader"))
