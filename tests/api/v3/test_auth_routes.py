"""Auth on the v3 JSON API of a real in-process member: the auth routes
with etcd's shapes and errors (checked against etcd 3.4.23's gateway), and
permission denied on every KV, lease, watch and admin route."""

from __future__ import annotations

from twisted.internet import reactor

from metastore.auth import passwords
from tests.api.v3.streams import post_stream
from tests.api.v3.test_lease_watch_routes import V3MemberTestCase, b64
from tests.process import wait_until

DENIED = {"error": "etcdserver: permission denied", "message": "etcdserver: permission denied", "code": 7}


class AuthRouteTestCase(V3MemberTestCase):
    """A member with auth enabled: root (password ``pw``) and ``u`` who may
    read and write ``[a, c)`` and read ``[r, s)``."""

    async def setUp(self):
        await super().setUp()
        self.patch(passwords, "SCRYPT_N", 1 << 4)  # fast hashes in tests: the cost is a parameter
        await self.ok("/v3/auth/user/add", {"name": "root", "password": "pw"})
        await self.ok("/v3/auth/user/grant", {"user": "root", "role": "root"})
        await self.ok("/v3/auth/role/add", {"name": "r"})
        await self.ok("/v3/auth/role/grant", {"name": "r", "perm": {"permType": "READWRITE", "key": b64(b"a"),
                                                                  "range_end": b64(b"c")}})
        await self.ok("/v3/auth/role/grant", {"name": "r", "perm": {"key": b64(b"r"), "range_end": b64(b"s")}})
        await self.ok("/v3/auth/user/add", {"name": "u", "password": "upw"})
        await self.ok("/v3/auth/user/grant", {"user": "u", "role": "r"})
        await self.ok("/v3/auth/enable", {})
        self.root = await self.token("root", "pw")
        self.user = await self.token("u", "upw")

    async def token(self, name: str, password: str) -> str:
        """Authenticate; the token."""
        answer = await self.ok("/v3/auth/authenticate", {"name": name, "password": password})
        return answer["token"]

    async def call(self, path: str, body: dict, token: str | None) -> tuple[int, dict]:
        """POST with ``token`` in the Authorization header."""
        import json

        headers = {"Authorization": [token]} if token else None
        response, content = await self.request("POST", path, json.dumps(body).encode(), headers=headers)
        return response.code, json.loads(content)

    async def assertDenied(self, path: str, body: dict, token: str | None = None) -> None:
        """``path`` answers 403 permission denied for the restricted user."""
        self.assertEqual(await self.call(path, body, token or self.user), (403, DENIED))


class AuthManagementTests(AuthRouteTestCase):
    """Users, roles, tokens and their errors."""

    async def test_no_token_wrong_password_bad_token(self):
        """No token is "user name is empty" (400); a wrong password is
        "authentication failed" (400); an unknown token is 401."""
        status, answer = await self.post("/v3/kv/range", {"key": b64(b"a")})
        self.assertEqual((status, answer["error"]), (400, "etcdserver: user name is empty"))
        status, answer = await self.post("/v3/auth/authenticate", {"name": "u", "password": "no"})
        self.assertEqual((status, answer["error"]), (400, "etcdserver: authentication failed, invalid user ID or password"))
        status, answer = await self.call("/v3/kv/range", {"key": b64(b"a")}, "garbage")
        self.assertEqual((status, answer["code"]), (401, 16))
        self.assertEqual(answer["error"], "etcdserver: invalid auth token")

    async def test_gets_and_lists_answer_etcds_shapes(self):
        """user/get, user/list, role/get and role/list as etcd's gateway writes them."""
        self.assertEqual((await self.call("/v3/auth/user/get", {"name": "u"}, self.root))[1]["roles"], ["r"])
        self.assertEqual((await self.call("/v3/auth/user/list", {}, self.root))[1]["users"], ["root", "u"])
        self.assertEqual((await self.call("/v3/auth/role/list", {}, self.root))[1]["roles"], ["r"])
        perms = (await self.call("/v3/auth/role/get", {"role": "r"}, self.root))[1]["perm"]
        self.assertEqual(perms, [{"permType": "READWRITE", "key": b64(b"a"), "range_end": b64(b"c")},
                                 {"key": b64(b"r"), "range_end": b64(b"s")}])
        status, answer = await self.call("/v3/auth/user/get", {"name": "x"}, self.root)
        self.assertEqual((status, answer["error"]), (412, "etcdserver: user name not found"))
        await self.assertDenied("/v3/auth/user/list", {})
        await self.assertDenied("/v3/auth/disable", {})

    async def test_no_password_in_the_replicated_state(self):
        """The applied state holds a salted hash, never the password."""
        stored = self.member.api.auth_state().users["u"].password_hash
        self.assertNotIn(b"upw", stored)
        self.assertTrue(passwords.verify_password("upw", stored))

    async def test_changed_password_and_deleted_user(self):
        """After changepw the old password fails; a deleted user's token is invalid."""
        await self.call("/v3/auth/user/changepw", {"name": "u", "password": "new"}, self.root)
        status, _ = await self.post("/v3/auth/authenticate", {"name": "u", "password": "upw"})
        self.assertEqual(status, 400)
        await self.token("u", "new")
        await self.call("/v3/auth/user/delete", {"name": "u"}, self.root)
        status, answer = await self.call("/v3/kv/range", {"key": b64(b"a")}, self.user)
        self.assertEqual((status, answer["error"]), (401, "etcdserver: invalid auth token"))

    async def test_disable_opens_everything(self):
        """Once root disables auth, requests need no token."""
        self.assertEqual((await self.call("/v3/auth/disable", {}, self.root))[0], 200)
        await self.ok("/v3/kv/put", {"key": b64(b"z"), "value": b64(b"1")})


class PermissionDeniedTests(AuthRouteTestCase):
    """A user without permission is refused on every route."""

    async def test_allowed_requests_pass(self):
        """Inside its ranges the user reads and writes."""
        self.assertEqual((await self.call("/v3/kv/put", {"key": b64(b"a"), "value": b64(b"1")}, self.user))[0], 200)
        status, answer = await self.call("/v3/kv/range", {"key": b64(b"a"), "range_end": b64(b"c")}, self.user)
        self.assertEqual((status, answer["kvs"][0]["value"]), (200, b64(b"1")))

    async def test_kv_routes(self):
        """put, range, delete, prev_kv without read, compaction (admin)."""
        await self.assertDenied("/v3/kv/put", {"key": b64(b"z"), "value": b64(b"1")})
        await self.assertDenied("/v3/kv/put", {"key": b64(b"r"), "value": b64(b"1")})  # read-only range
        await self.assertDenied("/v3/kv/range", {"key": b64(b"a"), "range_end": b64(b"d")})
        await self.assertDenied("/v3/kv/range", {"key": b64(b"a"), "range_end": b64(b"\0")})
        await self.assertDenied("/v3/kv/deleterange", {"key": b64(b"z")})
        await self.assertDenied("/v3/kv/compaction", {"revision": 1})
        self.assertEqual((await self.call("/v3/kv/compaction", {"revision": 1}, self.root))[0], 200)

    async def test_txn_compares_and_both_branches(self):
        """A txn is refused for a compare or an operation of either branch out of range."""
        ok_op = {"request_put": {"key": b64(b"a"), "value": b64(b"1")}}
        bad_op = {"request_range": {"key": b64(b"z")}}
        compare = {"key": b64(b"a"), "target": "VERSION", "result": "EQUAL", "version": 0}
        bad_compare = dict(compare, key=b64(b"z"))
        await self.assertDenied("/v3/kv/txn", {"compare": [bad_compare], "success": [ok_op]})
        await self.assertDenied("/v3/kv/txn", {"compare": [compare], "success": [bad_op]})
        await self.assertDenied("/v3/kv/txn", {"compare": [compare], "success": [ok_op], "failure": [bad_op]})
        nested = {"request_txn": {"success": [bad_op]}}
        await self.assertDenied("/v3/kv/txn", {"compare": [compare], "failure": [nested]})
        self.assertEqual((await self.call("/v3/kv/txn", {"compare": [compare], "success": [ok_op]}, self.user))[0], 200)

    async def test_leases(self):
        """Attaching a lease to a key out of range is a refused put; revoking
        a lease with a key the user may not write is refused."""
        grant = await self.call("/v3/lease/grant", {"TTL": 60, "ID": 9}, self.user)
        self.assertEqual(grant[0], 200)
        await self.assertDenied("/v3/kv/put", {"key": b64(b"z"), "value": b64(b"1"), "lease": 9})
        await self.call("/v3/kv/put", {"key": b64(b"z"), "value": b64(b"1"), "lease": 9}, self.root)
        await self.assertDenied("/v3/lease/revoke", {"ID": 9})
        await self.assertDenied("/v3/kv/lease/revoke", {"ID": 9})
        self.assertEqual((await self.call("/v3/lease/revoke", {"ID": 9}, self.root))[0], 200)

    async def test_member_and_maintenance_routes_are_admin_only(self):
        """Changes to members and maintenance need root; member list and status any user."""
        await self.assertDenied("/v3/cluster/member/add", {"peerURLs": ["http://127.0.0.1:1"]})
        await self.assertDenied("/v3/cluster/member/remove", {"ID": 5})
        await self.assertDenied("/v3/maintenance/hashkv", {})
        await self.assertDenied("/v3/maintenance/defragment", {})
        await self.assertDenied("/v3/maintenance/alarm", {})
        self.assertEqual((await self.call("/v3/cluster/member/list", {}, self.user))[0], 200)
        self.assertEqual((await self.call("/v3/maintenance/status", {}, self.user))[0], 200)

    async def test_watch_create_refused_and_revoked_watch_cancelled(self):
        """A watch out of range is refused at creation; a permitted watch
        is cancelled once the permission is revoked."""
        headers = {"Authorization": self.user}
        refused = await post_stream(reactor, self.url, "/v3/watch", {"create_request": {"key": b64(b"z")}}, headers)
        self.addCleanup(lambda: refused.transport and refused.transport.abortConnection())
        await wait_until(lambda: refused.messages, timeout=10, what="the refusal")
        result = refused.messages[0]["result"]
        self.assertEqual((result.get("created"), result.get("canceled"), result.get("cancel_reason")),
                         (True, True, "etcdserver: permission denied"))
        stream = await post_stream(reactor, self.url, "/v3/watch", {"create_request": {"key": b64(b"b")}}, headers)
        self.addCleanup(lambda: stream.transport and stream.transport.abortConnection())
        await wait_until(lambda: stream.messages, timeout=10, what="the created answer")
        await self.call("/v3/auth/role/revoke", {"role": "r", "key": b64(b"a"), "range_end": b64(b"c")}, self.root)
        await wait_until(lambda: any(m["result"].get("canceled") for m in stream.messages), timeout=10,
                         what="the cancel")
        self.assertEqual(stream.messages[-1]["result"].get("cancel_reason"), "etcdserver: permission denied")
