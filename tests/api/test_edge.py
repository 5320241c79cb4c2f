"""The API edge: every field that enters a command is validated before it
is proposed, every key and member has an unambiguous route, and every
answer has a JSON body.

``SingleMemberEdgeTests`` run a real member in this process (real WAL,
real HTTP over loopback TCP); ``ClusterEdgeTests`` run three real
``twistd`` members and check that refused requests leave them unharmed.
"""

from __future__ import annotations

import json

import treq
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from metastore.api.admin import ROUTE_METHODS
from metastore.api.validation import MAX_MEMBER_ID, MAX_REVISION
from tests.process import Cluster, free_port, wait_until
from tests.api.test_rest import SingleMemberTestCase

BAD_PEER_URLS = [
    b"", b"   ", b"127.0.0.1:2380", b"https://127.0.0.1:2380", b"ftp://127.0.0.1:2380", b"tcp://127.0.0.1:2380",
    b"http://127.0.0.1", b"http://127.0.0.1:0", b"http://127.0.0.1:65536", b"http://127.0.0.1:99999999999999999999",
    b"http://127.0.0.1:2380/path", b"http://127.0.0.1:2380?q=1", b"http://user@127.0.0.1:2380",
    b"http://127.0.0.1:2380#frag", b"http://a_b:2380", b"http://-a:2380", b"http://:2380", b"http://[::1:2380",
    b"http://h\xc3\xa9:2380", b"http://\x00:2380", b"http://x" + b"y" * 600 + b":1", b"\xff\xfe",
]


class SingleMemberEdgeTests(SingleMemberTestCase):
    """Validation, routes and JSON answers on one real in-process member."""

    async def setUp(self):
        member = await self.start_member()
        # The member publishes its client URL through raft once; after that
        # only requests propose, so the log's last index counts proposals.
        await wait_until(lambda: member.node.membership.members[1].client_url, timeout=10, what="the client URL published")

    async def request(self, method: str, path: str, body: bytes | None = None, headers=None):
        """``(response, body bytes)``; redirects are not followed."""
        response = await treq.request(method, self.url + path, data=body, headers=headers, persistent=False,
                                      allow_redirects=False)
        return response, await treq.content(response)

    def last_index(self) -> int:
        """The member's last raft log index: it grows by one per proposal."""
        return self.member.node.raft_storage.last_index()

    async def assert_error(self, method: str, path: str, status: int, error: str, body: bytes | None = None,
                           headers=None) -> dict:
        """The request gets ``status`` with a JSON body naming ``error``."""
        response, content = await self.request(method, path, body, headers)
        self.assertEqual(response.code, status, f"{method} {path}: {content!r}")
        self.assertEqual(self.header(response, "Content-Type"), "application/json", f"{method} {path}")
        document = json.loads(content)
        self.assertEqual(document["error"], error, f"{method} {path}: {document}")
        self.assertTrue(document["message"])
        return document

    async def test_member_id_zero_and_beyond_uint64_refused(self):
        """Member id 0 and ids over 2**64-1 are 400 on every membership
        route, and nothing is proposed."""
        before = self.last_index()
        fresh = f"http://127.0.0.1:{free_port()}".encode()
        for member_id in (0, MAX_MEMBER_ID + 1, 10**23):
            for method, path in (("POST", f"/{member_id}"), ("DELETE", f"/{member_id}"),
                                 ("POST", f"/admin/members/{member_id}"), ("DELETE", f"/admin/members/{member_id}")):
                await self.assert_error(method, path, 400, "bad_member_id", fresh)
        await self.assert_error("POST", "/admin/members/-1", 400, "bad_member_id", fresh)
        await self.assert_error("DELETE", "/admin/members/1x", 400, "bad_member_id")
        self.assertEqual(self.last_index(), before)

    async def test_largest_member_id_passes_the_id_check(self):
        """2**64-1 is a valid id: with a bad URL the answer is about the URL."""
        await self.assert_error("POST", f"/{MAX_MEMBER_ID}", 400, "bad_peer_url", b"not a url")
        await self.assert_error("DELETE", f"/admin/members/{MAX_MEMBER_ID}", 404, "no_such_member")

    async def test_malformed_peer_urls_refused(self):
        """Every malformed peer URL is 400 bad_peer_url and nothing is proposed."""
        before = self.last_index()
        for body in BAD_PEER_URLS:
            await self.assert_error("POST", "/5", 400, "bad_peer_url", body)
            await self.assert_error("POST", "/admin/members/5", 400, "bad_peer_url", body)
        self.assertEqual(self.last_index(), before)

    async def test_if_match_revision_within_int64(self):
        """If-Match revisions over 2**63-1 are 400 on PUT and DELETE on both
        key routes; the largest int64 is a valid (failing) condition."""
        await self.request("PUT", "/k", b"v")
        before = self.last_index()
        for path in ("/k", "/kv/k"):
            for method in ("PUT", "DELETE"):
                for tag in (f'"{MAX_REVISION + 1}"', '"99999999999999999999999"', f"W/\"{10**30}\"", '"-1"'):
                    await self.assert_error(method, path, 400, "bad_precondition", b"x", {"If-Match": tag})
        self.assertEqual(self.last_index(), before)
        await self.assert_error("PUT", "/k", 412, "precondition_failed", b"x", {"If-Match": f'"{MAX_REVISION}"'})
        response, body = await self.request("GET", "/k")
        self.assertEqual(body, b"v")

    async def test_removing_the_last_voter_refused(self):
        """The cluster's only voter cannot be removed (raft would ignore it): 409."""
        before = self.last_index()
        await self.assert_error("DELETE", "/1", 409, "last_member")
        await self.assert_error("DELETE", "/admin/members/1", 409, "last_member")
        self.assertEqual(self.last_index(), before)
        self.assertTrue(self.member.node.running)

    async def test_kv_route_reaches_every_key(self):
        """``/kv/{key}`` serves any key, all-digit and reserved-looking ones
        included, as the same keyspace as the root routes."""
        for key in ("7", "1", "admin/status", "health", "kv/x", "v3/kv/range"):
            response, _ = await self.request("PUT", f"/kv/{key}", key.encode())
            self.assertEqual(response.code, 204, key)
            response, body = await self.request("GET", f"/kv/{key}")
            self.assertEqual((response.code, body), (200, key.encode()), key)
        response, body = await self.request("GET", "/7")
        self.assertEqual((response.code, body), (200, b"7"))
        await self.request("PUT", "/plain", b"p")
        response, body = await self.request("GET", "/kv/plain?serializable=true")
        self.assertEqual((response.code, body), (200, b"p"))
        response, _ = await self.request("DELETE", "/kv/1")
        self.assertEqual(response.code, 204)
        await self.assert_error("GET", "/kv/1", 404, "not_found")
        await self.assert_error("DELETE", "/kv/1", 404, "not_found")
        await self.assert_error("PUT", "/kv/", 400, "empty_key", b"x")
        document = await self.assert_error("PATCH", "/kv/x", 405, "method_not_allowed")
        response, _ = await self.request("PATCH", "/kv/x")
        self.assertEqual(self.header(response, "Allow"), "GET, HEAD, PUT, DELETE")
        self.assertIn("PATCH", document["message"])

    async def test_seed_delete_of_all_digit_path_is_membership(self):
        """``DELETE /7`` removes member 7 and never the key 7: when 7 is no
        member the 404 names ``DELETE /kv/7``, and the key stays."""
        await self.request("PUT", "/7", b"seven")
        document = await self.assert_error("DELETE", "/7", 404, "no_such_member")
        self.assertIn("/kv/7", document["message"])
        response, body = await self.request("GET", "/7")
        self.assertEqual((response.code, body), (200, b"seven"))
        response, _ = await self.request("DELETE", "/kv/7")
        self.assertEqual(response.code, 204)
        document = await self.assert_error("DELETE", "/7", 404, "no_such_member")
        self.assertNotIn("/kv/7", document["message"])

    async def test_wrong_method_on_every_fixed_route_is_405_with_allow(self):
        """Each fixed endpoint asked with a method it does not serve: 405,
        ``Allow`` listing its methods, a JSON body."""
        for path, methods in ROUTE_METHODS.items():
            for method in ("PUT", "DELETE", "POST", "PATCH"):
                if method in methods:
                    continue
                await self.assert_error(method, path, 405, "method_not_allowed")
                response, _ = await self.request(method, path)
                self.assertEqual(self.header(response, "Allow"), ", ".join(methods), f"{method} {path}")
        await self.assert_error("GET", "/admin/members/1", 405, "method_not_allowed")

    async def test_redirect_and_unknown_paths_are_json(self):
        """Klein's redirect (``/admin`` to ``/admin/``) and unknown admin paths answer JSON."""
        document = await self.assert_error("GET", "/admin", 308, "redirect")
        response, _ = await self.request("GET", "/admin")
        self.assertTrue(self.header(response, "Location").endswith("/admin/"))
        self.assertEqual(document["location"], self.header(response, "Location"))
        await self.assert_error("GET", "/admin/nope", 404, "not_found")
        await self.assert_error("GET", "/health/x", 404, "reserved")

    def capture_log(self) -> list[dict]:
        """Every log event emitted until the end of the test."""
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        return events

    async def test_unexpected_exception_is_json_500_logged_once_with_its_id(self):
        """A bug in a handler: 500 with a JSON body carrying an error id; the
        traceback is logged exactly once under that id (key and admin routes)."""
        events = self.capture_log()

        def broken(*args, **kwargs):
            raise ZeroDivisionError("a bug")

        self.patch(self.member.node.store, "get", broken)
        self.patch(self.member.node.store, "keyspace_hash", broken)
        self.flushLoggedErrors(ZeroDivisionError)
        for path in ("/k?serializable=true", "/kv/k?serializable=true", "/admin/hashkv"):
            document = await self.assert_error("GET", path, 500, "internal")
            logged = [e for e in events if e.get("error_id") == document["error_id"]]
            self.assertEqual(len(logged), 1, path)
            self.assertIn("ZeroDivisionError", logged[0]["log_failure"].getTraceback())
            self.assertIn(document["error_id"], document["message"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 3)

    async def test_health_livez_readyz(self):
        """A member that leads and has applied everything: all three 200, JSON."""
        for path, expected in (("/health", {"health": "true", "reason": ""}), ("/livez", {"live": True}),
                               ("/readyz", {"ready": True, "reasons": []})):
            response, body = await self.request("GET", path)
            self.assertEqual((response.code, json.loads(body)), (200, expected), path)
            self.assertIsNone(self.header(response, "Retry-After"))
            response, body = await self.request("HEAD", path)
            self.assertEqual((response.code, body), (200, b""))


REQUEST_TIMEOUT = ["--request-timeout", "2"]


class ClusterEdgeTests(TestCase):
    """Refused membership requests on a real three-member cluster leave it
    whole; a valid change through ``/admin/members/{id}`` still works."""

    timeout = 180

    async def setUp(self):
        self.cluster = Cluster(self, 3, extra=REQUEST_TIMEOUT)
        self.cluster.start()
        await self.cluster.leader()

    async def members(self, member_id: int = 1) -> list[int]:
        """The member ids that ``member_id`` lists."""
        code, body, _ = await self.cluster.request(member_id, "GET", "/admin/members")
        self.assertEqual(code, 200, body)
        return [m["id"] for m in json.loads(body)["members"]]

    async def assert_unharmed(self) -> None:
        """Every member commits a write, reads it linearizably, is healthy,
        has applied what it knows committed, and logged no traceback."""
        for member_id in self.cluster.members:
            if not self.cluster.members[member_id].running():
                continue
            code, body, _ = await self.cluster.request(member_id, "PUT", f"/kv/after-{member_id}", b"ok")
            self.assertEqual(code, 204, body)
            code, body, _ = await self.cluster.request(member_id, "GET", f"/kv/after-{member_id}")
            self.assertEqual((code, body), (200, b"ok"))

            async def caught_up(member_id=member_id):
                status = await self.cluster.status(member_id)
                return status and status["applied_index"] == status["commit_index"]

            await wait_until(caught_up, timeout=10, what=f"member {member_id} to apply to its commit index")
            code, body, _ = await self.cluster.request(member_id, "GET", "/health")
            self.assertEqual(code, 200, body)
            self.assertNotIn("Traceback", self.cluster.members[member_id].log_text())

    async def test_refused_membership_requests_leave_the_cluster_whole(self):
        """Id 0 (issue 10's cluster-killer), ids past uint64, a member's own
        peer URL (in other spellings too) and https: refused, membership
        unchanged, the cluster unharmed."""
        fresh = f"http://127.0.0.1:{free_port()}".encode()
        own = self.cluster.peer_urls[0].encode()
        cases = [
            ("/0", fresh, 400, "bad_member_id"),
            ("/99999999999999999999999", fresh, 400, "bad_member_id"),
            (f"/{2**64}", fresh, 400, "bad_member_id"),
            ("/5", own, 409, "peer_url_exists"),
            ("/5", own + b"/", 409, "peer_url_exists"),
            ("/5", own.upper().replace(b"HTTP", b"http"), 409, "peer_url_exists"),
            ("/admin/members/5", self.cluster.peer_urls[2].encode(), 409, "peer_url_exists"),
            ("/5", fresh.replace(b"http", b"https"), 400, "bad_peer_url"),
            ("/2", fresh, 409, "member_exists"),
        ]
        for target in (1, 2, 3):
            for path, body, status, error in cases:
                code, answer, _ = await self.cluster.request(target, "POST", path, body)
                self.assertEqual((code, json.loads(answer)["error"]), (status, error), f"POST {path} {body!r}")
        for path, tag in (("/k", '"99999999999999999999999"'), ("/kv/k", f'"{2**63}"')):
            for method in ("PUT", "DELETE"):
                code, answer, _ = await self.cluster.request(1, method, path, b"x", headers={"If-Match": tag})
                self.assertEqual((code, json.loads(answer)["error"]), (400, "bad_precondition"))
        self.assertEqual(await self.members(), [1, 2, 3])
        await self.assert_unharmed()

    async def test_add_and_remove_through_admin_members(self):
        """``POST /admin/members/4`` adds a member (listed, its URL and id
        then taken), ``DELETE`` removes it, and a removed id is never reused."""
        url = f"http://127.0.0.1:{free_port()}".encode()
        code, body, _ = await self.cluster.request(2, "POST", "/admin/members/4", url)
        self.assertEqual(code, 204, body)
        self.assertEqual(await self.members(2), [1, 2, 3, 4])
        for path, body, error in (("/admin/members/4", f"http://127.0.0.1:{free_port()}".encode(), "member_exists"),
                                  ("/admin/members/5", url, "peer_url_exists"), ("/5", url, "peer_url_exists")):
            code, answer, _ = await self.cluster.request(1, "POST", path, body)
            self.assertEqual((code, json.loads(answer)["error"]), (409, error))
        code, body, _ = await self.cluster.request(3, "DELETE", "/admin/members/4")
        self.assertEqual(code, 204, body)
        await wait_until(lambda: self._listed_on([1, 2, 3], [1, 2, 3]), timeout=10, what="member 4 gone everywhere")
        code, answer, _ = await self.cluster.request(1, "POST", "/admin/members/4", url)
        self.assertEqual((code, json.loads(answer)["error"]), (409, "member_removed"))
        await self.assert_unharmed()

    async def test_member_asked_to_remove_itself_answers_before_it_exits(self):
        """``DELETE /{own id}`` sent to a follower itself: 204 (whether it
        applies its removal or first hears of it from a peer), then the
        process exits by itself and the other two carry on."""
        leader = await self.cluster.leader()
        follower = next(i for i in (1, 2, 3) if i != leader)
        code, body, _ = await self.cluster.request(follower, "DELETE", f"/{follower}")
        self.assertEqual(code, 204, body)
        member = self.cluster.members[follower]
        await wait_until(lambda: not member.running(), timeout=15, what=f"member {follower} to exit")
        self.assertEqual(member.process.returncode, 0)
        others = [i for i in (1, 2, 3) if i != follower]
        await wait_until(lambda: self._listed_on(others, others), timeout=10, what="the removal everywhere")
        await self.assert_unharmed()

    async def _listed_on(self, asked: list[int], expected: list[int]) -> bool:
        """Whether every member in ``asked`` lists exactly ``expected``."""
        return all([await self.members(m) == expected for m in asked])


class StartingMemberTests(TestCase):
    """A member that knows no leader yet says so: 503 with Retry-After."""

    timeout = 120

    async def test_503_with_retry_after_until_a_leader_is_known(self):
        """Member 1 of three, alone: /health, /readyz and writes are 503
        with Retry-After and a reason, /livez is 200; once the others start
        and a leader is elected, /health and /readyz are 200."""
        cluster = Cluster(self, 3, extra=["--request-timeout", "1"])
        cluster.start(1)

        async def answering():
            code, _, _ = await cluster.request(1, "GET", "/livez")
            return code == 200

        await wait_until(answering, timeout=30, what="member 1 to answer")
        for method, path, body, reason in (("GET", "/health", None, "no leader"), ("GET", "/readyz", None, "no leader"),
                                           ("PUT", "/kv/k", b"v", None), ("GET", "/k", None, None)):
            code, answer, response = await cluster.request(1, method, path, body)
            self.assertEqual(code, 503, f"{method} {path}: {answer!r}")
            self.assertEqual(response.headers.getRawHeaders("Retry-After"), ["1"], path)
            self.assertEqual(response.headers.getRawHeaders("Content-Type"), ["application/json"], path)
            if reason:
                self.assertIn(reason, answer.decode())
        cluster.start(2, 3)
        await cluster.leader()
        for path in ("/health", "/readyz"):
            async def ok(path=path):
                code, _, _ = await cluster.request(1, "GET", path)
                return code == 200

            await wait_until(ok, timeout=20, what=f"{path} to be 200")
