"""The v3 Cluster and Maintenance routes on a real in-process member."""

from __future__ import annotations

import base64
import json

import os

from metastore.snapshots import stream
from metastore.snapshots.format import read_snapshot
from tests.api.test_rest import SingleMemberTestCase
from tests.api.v3.test_kv_routes import b64
from tests.process import free_port, wait_until


class RouteTestCase(SingleMemberTestCase):
    """A member and a JSON poster."""

    async def setUp(self):
        await self.start_member()
        await wait_until(lambda: self.member.node.membership.members[1].client_url, timeout=10,
                         what="the client URL published")

    async def post(self, path: str, body) -> tuple[int, dict]:
        """POST JSON ``body``; the status and the JSON answer."""
        response, content = await self.request("POST", path, json.dumps(body).encode())
        self.assertEqual(self.header(response, "Content-Type"), "application/json", content)
        return response.code, json.loads(content)


class ClusterRouteTests(RouteTestCase):
    """``/v3/cluster/member/*``."""

    async def test_list(self):
        """The member with its id as a string, its URLs, no revision in the header."""
        status, answer = await self.post("/v3/cluster/member/list", {})
        self.assertEqual(status, 200)
        self.assertNotIn("revision", answer["header"])
        self.assertEqual(answer["members"], [{
            "ID": "1", "name": "member-1", "peerURLs": [self.member.node.membership.members[1].peer_url],
            "clientURLs": [self.url]}])  # fmt: skip

    async def test_learner_add_promote_refused_update_remove(self):
        """A learner gets the next unused id; it cannot be promoted before it
        caught up (it never runs here); its peer URL can change; it can be removed."""
        url = f"http://127.0.0.1:{free_port()}"
        status, added = await self.post("/v3/cluster/member/add", {"peerURLs": [url], "isLearner": True})
        self.assertEqual(status, 200, added)
        self.assertEqual(added["member"], {"ID": "2", "name": "member-2", "peerURLs": [url], "isLearner": True})
        self.assertEqual([m["ID"] for m in added["members"]], ["1", "2"])
        status, refused = await self.post("/v3/cluster/member/promote", {"ID": "2"})
        self.assertEqual((status, refused["error"], refused["code"]),
                         (412, "etcdserver: can only promote a learner member which is in sync with leader", 9))
        status, refused = await self.post("/v3/cluster/member/promote", {"ID": 1})
        self.assertEqual((status, refused["error"]), (412, "etcdserver: can only promote a learner member"))
        moved = f"http://127.0.0.1:{free_port()}"
        status, updated = await self.post("/v3/cluster/member/update", {"ID": 2, "peerURLs": [moved]})
        self.assertEqual(status, 200, updated)
        self.assertEqual(updated["members"][1]["peerURLs"], [moved])
        status, removed = await self.post("/v3/cluster/member/remove", {"ID": "2"})
        self.assertEqual((status, [m["ID"] for m in removed["members"]]), (200, ["1"]))
        status, added = await self.post("/v3/cluster/member/add", {"peerURLs": [url]})
        self.assertEqual(added["member"]["ID"], "3", "a removed id is never reused")
        await self.post("/v3/cluster/member/remove", {"ID": "3"})

    async def test_refusals(self):
        """Unknown members, bad or several peer URLs get etcd's errors."""
        self.assertEqual(await self.post("/v3/cluster/member/remove", {"ID": 9}), (404, {
            "error": "etcdserver: member not found", "code": 5, "message": "etcdserver: member not found"}))
        status, answer = await self.post("/v3/cluster/member/add", {"peerURLs": ["nope"]})
        self.assertEqual((status, answer["code"]), (400, 3))
        status, answer = await self.post("/v3/cluster/member/add", {"peerURLs": []})
        self.assertEqual((status, answer["code"]), (400, 3))


class MaintenanceRouteTests(RouteTestCase):
    """``/v3/maintenance/*``."""

    config_overrides = {"quota_backend_bytes": 2**40}

    async def test_status(self):
        """Version, leader, raft indexes and term as strings, dbSize > 0."""
        status, answer = await self.post("/v3/maintenance/status", {})
        self.assertEqual(status, 200)
        self.assertEqual(answer["version"], "3.4.23")
        self.assertEqual(answer["leader"], "1")
        self.assertEqual(answer["header"]["member_id"], "1")
        self.assertGreaterEqual(int(answer["raftIndex"]), int(answer["raftAppliedIndex"]))
        self.assertGreaterEqual(int(answer["raftTerm"]), 1)
        self.assertGreater(int(answer["dbSize"]), 0)
        self.assertNotIn("isLearner", answer)
        self.assertNotIn("errors", answer)

    async def test_hashes_follow_writes(self):
        """hashkv at a past revision stays put; a write changes the current hash."""
        _, put = await self.post("/v3/kv/put", {"key": b64(b"k"), "value": b64(b"1")})
        revision = put["header"]["revision"]
        _, before = await self.post("/v3/maintenance/hashkv", {"revision": revision})
        _, whole = await self.post("/v3/maintenance/hash", {})
        await self.post("/v3/kv/put", {"key": b64(b"k"), "value": b64(b"2")})
        _, again = await self.post("/v3/maintenance/hashkv", {"revision": revision})
        _, whole_after = await self.post("/v3/maintenance/hash", {})
        self.assertEqual(before["hash"], again["hash"])
        self.assertNotEqual(whole["hash"], whole_after["hash"])
        status, answer = await self.post("/v3/maintenance/hashkv", {"revision": 10**6})
        self.assertEqual((status, answer["code"]), (400, 11))

    async def test_defragment_and_transfer_to_itself(self):
        """Defragment is accepted; MoveLeader to the leader itself answers at
        once; to a non-member it is etcd's "bad leader transferee"."""
        self.assertEqual((await self.post("/v3/maintenance/defragment", {}))[0], 200)
        self.assertEqual((await self.post("/v3/maintenance/transfer-leadership", {"targetID": 1}))[0], 200)
        status, answer = await self.post("/v3/maintenance/transfer-leadership", {"targetID": 7})
        self.assertEqual((status, answer["error"]), (412, "etcdserver: bad leader transferee"))

    async def test_alarm_refuses_writes_until_disarmed(self):
        """A raised NOSPACE alarm is listed and in status; puts (also in a
        txn) are refused with etcd's error, deletes go on; disarming it
        lets writes through again."""
        status, answer = await self.post("/v3/maintenance/alarm", {"action": "ACTIVATE", "memberID": 1, "alarm": "NOSPACE"})
        self.assertEqual((status, answer["alarms"]), (200, [{"memberID": "1", "alarm": "NOSPACE"}]))
        self.assertEqual((await self.post("/v3/maintenance/alarm", {}))[1]["alarms"], answer["alarms"])
        self.assertEqual((await self.post("/v3/maintenance/status", {}))[1]["errors"], ["memberID:1 alarm:NOSPACE "])
        full = {"error": "etcdserver: mvcc: database space exceeded", "code": 8,
                "message": "etcdserver: mvcc: database space exceeded"}
        self.assertEqual(await self.post("/v3/kv/put", {"key": b64(b"k")}), (429, full))
        self.assertEqual(await self.post("/v3/kv/txn", {"failure": [{"request_put": {"key": b64(b"k")}}]}), (429, full))
        self.assertEqual((await self.post("/v3/kv/deleterange", {"key": b64(b"k")}))[0], 200)
        status, answer = await self.post("/v3/maintenance/alarm", {"action": 2, "memberID": "1", "alarm": 1})
        self.assertEqual((status, answer["alarms"]), (200, [{"memberID": "1", "alarm": "NOSPACE"}]))
        status, answer = await self.post("/v3/maintenance/alarm", {"action": 2, "memberID": "1", "alarm": 1})
        self.assertEqual((status, "alarms" in answer), (200, False))
        _, answer = await self.post("/v3/maintenance/alarm", {})
        self.assertNotIn("alarms", answer)
        self.assertEqual((await self.post("/v3/kv/put", {"key": b64(b"k")}))[0], 200)

    async def test_snapshot_stream_is_a_snapshot_file(self):
        """The stream's blobs, joined, are a saved stream (aligned as
        etcdctl wants it) around a valid snapshot holding the keys."""
        await self.post("/v3/kv/put", {"key": b64(b"k"), "value": b64(b"v")})
        response, content = await self.request("POST", "/v3/maintenance/snapshot", b"{}")
        self.assertEqual(response.code, 200)
        messages = [json.loads(line)["result"] for line in content.splitlines()]
        self.assertEqual(messages[-1].get("remaining_bytes", "0"), "0")
        path = self.mktemp()
        with open(path, "wb") as out:
            for message in messages:
                out.write(base64.b64decode(message.get("blob", "")))
        self.assertEqual((os.path.getsize(path) - 32) % 512, 0)
        inner = self.mktemp()
        self.assertTrue(stream.unwrap(path, inner))
        header, events = read_snapshot(inner)
        self.assertIn(b"k", [event.kv.key for event in events])


class QuotaRouteTests(RouteTestCase):
    """``--quota-backend-bytes``: passing it raises NOSPACE through raft."""

    config_overrides = {"quota_backend_bytes": 1}

    async def test_write_past_the_quota_raises_nospace(self):
        """The first put finds the store over its quota: refused, and the alarm is raised."""
        status, answer = await self.post("/v3/kv/put", {"key": b64(b"k")})
        self.assertEqual((status, answer["code"]), (429, 8))
        _, alarms = await self.post("/v3/maintenance/alarm", {})
        self.assertEqual(alarms["alarms"], [{"memberID": "1", "alarm": "NOSPACE"}])


class RestoreTests(SingleMemberTestCase):
    """``--restore-from``: a new member starts from a snapshot saved through the v3 API."""

    async def save_snapshot(self) -> str:
        """The stream of ``/v3/maintenance/snapshot``, saved as a file; its path."""
        response, content = await self.request("POST", "/v3/maintenance/snapshot", b"")
        self.assertEqual(response.code, 200)
        path = self.mktemp()
        with open(path, "wb") as out:
            for line in content.splitlines():
                out.write(base64.b64decode(json.loads(line)["result"].get("blob", "")))
        return path

    async def test_restored_member_has_the_history(self):
        """Keys, versions, revisions and past revisions come back in the new
        cluster, whose only member is the new one; a used data directory is refused."""
        await self.start_member()
        for value in (b"1", b"2"):
            response, _ = await self.request("POST", "/v3/kv/put", json.dumps({"key": b64(b"k"), "value": b64(value)}).encode())
            self.assertEqual(response.code, 200)
        _, before = await self.request("POST", "/v3/kv/range", json.dumps({"key": b64(b"k")}).encode())
        path = await self.save_snapshot()
        await self.member.stopService()

        await self.start_member(restore_from=path)
        _, after = await self.request("POST", "/v3/kv/range", json.dumps({"key": b64(b"k")}).encode())
        self.assertEqual(json.loads(after)["kvs"], json.loads(before)["kvs"])
        revision = int(json.loads(before)["kvs"][0]["mod_revision"])
        _, past = await self.request("POST", "/v3/kv/range", json.dumps({"key": b64(b"k"), "revision": revision - 1}).encode())
        self.assertEqual(base64.b64decode(json.loads(past)["kvs"][0]["value"]), b"1")
        _, members = await self.request("POST", "/v3/cluster/member/list", b"{}")
        self.assertEqual([m["ID"] for m in json.loads(members)["members"]], ["1"])
        response, _ = await self.request("POST", "/v3/kv/put", json.dumps({"key": b64(b"k"), "value": b64(b"3")}).encode())
        self.assertEqual(response.code, 200)

    async def test_a_used_data_directory_is_refused(self):
        """--restore-from into a directory that holds a member's data is a start-up error."""
        from metastore.config import Config
        from metastore.errors import StartupError
        from metastore.service import open_member
        from twisted.internet import reactor

        await self.start_member()
        path = await self.save_snapshot()
        data_dir = self.member.config.data_dir
        await self.member.stopService()
        config = Config(cluster=("http://127.0.0.1:0",), port=0, data_dir=data_dir, restore_from=path).validate()
        with self.assertRaises(StartupError) as caught:
            open_member(config, reactor)
        self.assertIn("--restore-from needs a new data directory", str(caught.exception))
