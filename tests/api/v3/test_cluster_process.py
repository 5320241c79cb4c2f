"""The v3 cluster and leadership RPCs on three real ``twistd`` members:
a learner joins, is promoted once it caught up, and leadership moves."""

from __future__ import annotations

import json
import os

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


class RestoreProcessTests(TestCase):
    """Three new ``twistd`` members started from one saved snapshot form a cluster."""

    timeout = 120

    async def test_three_members_restored_from_one_snapshot(self):
        """Every member of a new 3-member cluster given the same file with
        --restore-from serves the old keys, elects a leader and takes writes;
        a restart without the flag keeps the data."""
        import base64

        from tests.api.test_rest import SingleMemberTestCase

        source = SingleMemberTestCase("run")
        source.mktemp = self.mktemp
        await source.start_member()
        self.addCleanup(source.member.stopService)
        body = json.dumps({"key": base64.b64encode(b"k").decode(), "value": base64.b64encode(b"v").decode()}).encode()
        response = await treq.post(source.url + "/v3/kv/put", data=body, persistent=False)
        self.assertEqual(response.code, 200)
        await treq.content(response)
        response = await treq.post(source.url + "/v3/maintenance/snapshot", data=b"{}", persistent=False)
        path = os.path.abspath(self.mktemp())  # the members run in another directory
        with open(path, "wb") as out:
            for line in (await treq.content(response)).splitlines():
                out.write(base64.b64decode(json.loads(line)["result"].get("blob", "")))

        cluster = Cluster(self, 3, extra=["--restore-from", path])
        cluster.start()
        for member in cluster.members.values():
            await wait_healthy(member, 40)
        key = {"key": base64.b64encode(b"k").decode()}
        for member in cluster.members.values():
            status, found = await LearnerAndLeadershipTests.post(self, member.url, "/v3/kv/range", key)
            self.assertEqual((status, base64.b64decode(found["kvs"][0]["value"])), (200, b"v"))
        status, _ = await LearnerAndLeadershipTests.post(self, cluster.members[2].url, "/v3/kv/put", {**key, "value": "dw=="})
        self.assertEqual(status, 200)

        member = cluster.members[3]
        member.stop()
        member.extra = [flag for flag in member.extra if flag not in ("--restore-from", path)]
        member.start()
        await wait_healthy(member, 40)
        status, found = await LearnerAndLeadershipTests.post(self, member.url, "/v3/kv/range", key)
        self.assertEqual((status, found["kvs"][0]["value"]), (200, "dw=="))


class GracefulStopTests(TestCase):
    """A leader stopped gracefully (SIGTERM) hands leadership over first."""

    timeout = 120

    async def test_stopping_leader_hands_over(self):
        """The stopping leader's log names the member it handed leadership
        to, and that member leads the other two."""
        cluster = Cluster(self, 3)
        cluster.start()
        for member in cluster.members.values():
            await wait_healthy(member, 40)
        leader = await cluster.leader()
        cluster.members[leader].stop()
        rest = [i for i in cluster.members if i != leader]
        new_leader = await cluster.leader(among=rest)
        self.assertIn(f"handed leadership to member {new_leader} before stopping", cluster.members[leader].log_text())
