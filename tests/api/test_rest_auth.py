"""Auth on the seed's REST API of a real in-process member: Bearer tokens,
HTTP Basic, permission per key, admin for members; and fuzzed
``Authorization`` headers on every API of a member process with auth
enabled never get a 5xx and leave it serving."""

from __future__ import annotations

import base64
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.api.test_hostile_http import build_request, check_answer, raw_request
from tests.api.v3.test_auth_routes import AuthRouteTestCase
from tests.chaos.helpers import http_json, start_single_member


def basic(user: str, password: str) -> str:
    """An HTTP Basic Authorization value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class RestAuthTests(AuthRouteTestCase):
    """The REST API with auth enabled (``u`` may read and write ``[a, c)``)."""

    async def rest(self, method: str, path: str, authorization: str | None, body: bytes | None = None):
        """A REST call with ``authorization``; (status, body)."""
        headers = {"Authorization": [authorization]} if authorization is not None else None
        response, content = await self.request(method, path, body, headers=headers)
        return response.code, content

    async def test_bearer_and_basic(self):
        """A Bearer token or Basic credentials of ``u`` put and get inside
        its range; outside it 403; no credentials 400; a bad token 401."""
        self.assertEqual((await self.rest("PUT", "/a", f"Bearer {self.user}", b"1"))[0], 204)
        self.assertEqual(await self.rest("GET", "/a", basic("u", "upw")), (200, b"1"))
        status, content = await self.rest("PUT", "/z", f"Bearer {self.user}", b"1")
        self.assertEqual((status, json.loads(content)["message"]), (403, "etcdserver: permission denied"))
        self.assertEqual((await self.rest("GET", "/z", basic("u", "upw")))[0], 403)
        self.assertEqual((await self.rest("DELETE", "/kv/z", f"Bearer {self.user}"))[0], 403)
        self.assertEqual((await self.rest("GET", "/?list", f"Bearer {self.user}"))[0], 403)
        self.assertEqual((await self.rest("GET", "/a?list", f"Bearer {self.user}"))[0], 200)
        self.assertEqual((await self.rest("GET", "/a", None))[0], 400)
        self.assertEqual((await self.rest("GET", "/a", "Bearer nonsense"))[0], 401)
        self.assertEqual((await self.rest("GET", "/a", basic("u", "wrong")))[0], 400)

    async def test_members_and_admin_routes_need_root(self):
        """Adding or removing a member, a snapshot and the keyspace hash are
        refused to ``u``; the member listing needs a user; health does not."""
        self.assertEqual((await self.rest("DELETE", "/9", f"Bearer {self.user}"))[0], 403)
        self.assertEqual((await self.rest("POST", "/9", f"Bearer {self.user}", b"http://127.0.0.1:1"))[0], 403)
        self.assertEqual((await self.rest("DELETE", "/admin/members/9", f"Bearer {self.user}"))[0], 403)
        self.assertEqual((await self.rest("POST", "/admin/snapshot", f"Bearer {self.user}"))[0], 403)
        self.assertEqual((await self.rest("GET", "/admin/hashkv", f"Bearer {self.user}"))[0], 403)
        self.assertEqual((await self.rest("GET", "/admin/hashkv", basic("root", "pw")))[0], 200)
        self.assertEqual((await self.rest("GET", "/admin/members", None))[0], 400)
        self.assertEqual((await self.rest("GET", "/admin/members", f"Bearer {self.user}"))[0], 200)
        self.assertEqual((await self.rest("GET", "/health", None))[0], 200)


AUTHORIZATION_VALUES = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=200),
    st.binary(max_size=80).map(lambda b: "Basic " + base64.b64encode(b).decode()),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80).map(lambda t: "Basic " + t),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80).map(lambda t: "Bearer " + t),
    st.sampled_from(["Bearer", "Basic", "Bearer  ", "basic Og==", "Basic cm9vdDo=", "x.y.z", "a" * 9000]),
)
PATHS = st.sampled_from(["/k", "/kv/k", "/k?list", "/7", "/v3/kv/range", "/v3/kv/put", "/v3/watch",
                         "/v3/auth/user/list", "/v3/auth/authenticate", "/v3/maintenance/status", "/v3/lease/keepalive"])


def post_json(url: str, body: dict, token: str | None = None) -> tuple[int, dict]:
    """POST JSON with an optional token; (status, answer)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json",
                                                                      **({"Authorization": token} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class FuzzedAuthorizationTests(SynchronousTestCase):
    """Random ``Authorization`` headers against a member process with auth enabled."""

    def setUp(self):
        self.member = start_single_member(self)
        url = self.member.url
        for path, body in (("/v3/auth/user/add", {"name": "root", "password": "pw"}),
                           ("/v3/auth/user/grant", {"user": "root", "role": "root"}),
                           ("/v3/auth/enable", {})):  # fmt: skip
            self.assertEqual(post_json(url + path, body)[0], 200, path)
        status, answer = post_json(url + "/v3/auth/authenticate", {"name": "root", "password": "pw"})
        self.assertEqual(status, 200, answer)
        self.root = answer["token"]

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    @given(value=AUTHORIZATION_VALUES, path=PATHS, method=st.sampled_from(["GET", "PUT", "POST", "DELETE"]))
    def test_fuzzed_authorization_never_5xx(self, value, path, method):
        """No 500 and a JSON error body whatever the header holds; the
        member then still serves root's writes."""
        body = b'{"key": "aw=="}' if path.startswith("/v3/") else b"v"
        request = build_request(method, path, [("Authorization", value)], body)
        check_answer(self, raw_request(self.member.http_port, request), request)
        status, _ = post_json(self.member.url + "/v3/kv/put", {"key": "aw==", "value": "dg=="}, self.root)
        self.assertEqual(status, 200)
        self.assertEqual(http_json(self.member.url + "/health")[0], 200)
        self.assertNotIn("Traceback", self.member.log_text())
