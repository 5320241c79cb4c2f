"""``HotRoutes``: which requests bypass the resource tree, and how their
answers are written.  The answers' contents are checked against a real
member by the REST and v3 tests (``open_member`` mounts the hot routes)."""

from __future__ import annotations

from twisted.internet import address, defer, task
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from metastore.auth.state import AuthState
from metastore.api.fastpath import HotRoutes
from metastore.api.site import MetaStoreSite
from metastore.kv.messages import (
    DeleteRange,
    DeleteRangeResponse,
    Put,
    PutResponse,
    RangeResponse,
    ResponseHeader,
    TxnResponse,
)
from metastore.storage.engine import KeyValue


class _Fallback(Resource):
    """The resource tree: records each request it gets."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[bytes] = []

    def render(self, request):
        self.seen.append(request.method + b" " + request.uri)
        return b"tree"


class _Facade:
    """Just enough of ``MemberFacade`` for the seed routes; proposals wait
    in ``proposals`` until the test fires them."""

    revision = 7
    auth_enabled = False

    def __init__(self) -> None:
        self.keys: dict[bytes, KeyValue] = {}
        self.proposals: list[tuple[object, defer.Deferred]] = []
        self.reads: list[defer.Deferred] = []

    def read(self, consistency) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.reads.append(d)
        return d

    def get(self, key: bytes, revision: int = 0):
        return self.keys.get(key)

    def auth_state(self) -> AuthState:
        return AuthState(enabled=self.auth_enabled)

    def propose(self, command) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.proposals.append((command, d))
        return d


class _KV:
    """A v3 KV service that records each call and answers at revision 5."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def _answer(self, name, response):
        def call(request):
            self.calls.append((name, request))
            return defer.succeed(response)

        return call

    def __getattr__(self, name):
        responses = {"range": RangeResponse(ResponseHeader(5), count=0), "put": PutResponse(ResponseHeader(5)),
                     "delete_range": DeleteRangeResponse(ResponseHeader(5)),
                     "txn": TxnResponse(ResponseHeader(5), succeeded=True)}
        return self._answer(name, responses[name])


class _V3:
    """What ``HotRoutes`` takes of ``V3API``: its KV service and headers."""

    def __init__(self) -> None:
        self.kv = _KV()
        self.headers = self

    @staticmethod
    def at(revision):
        return {"revision": str(revision)}

    @staticmethod
    def json_at(revision):
        return b'{"revision":"%d"}' % revision


class _CountingTransport(StringTransport):
    """Counts the writes."""

    writes = 0

    def write(self, data):
        self.writes += 1
        super().write(data)

    def writeSequence(self, seq):
        self.writes += 1
        super().writeSequence(seq)


class HotRoutesTests(SynchronousTestCase):
    """The hot requests are answered directly, in one write; the rest go to the tree."""

    def setUp(self):
        self.member = _Facade()
        self.v3 = _V3()
        self.tree = _Fallback()
        site = MetaStoreSite(self.tree, 64, reactor=task.Clock(), hot_routes=HotRoutes(self.member, self.v3))
        self.channel = site.buildProtocol(address.IPv4Address("TCP", "127.0.0.1", 1))
        self.transport = _CountingTransport()
        self.channel.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.channel.dataReceived(data)

    def answered(self) -> bytes:
        value = self.transport.value()
        self.transport.clear()
        return value

    def test_put_is_proposed_and_answered_in_one_write(self):
        """``PUT /{key}`` proposes the body as the value and answers 204
        with the revision, in a single write."""
        self.send(b"PUT /a/b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        [(command, d)] = self.member.proposals
        self.assertEqual(command, Put(b"a/b", b"abc"))
        self.assertEqual(self.transport.value(), b"")
        d.callback(PutResponse(ResponseHeader(12)))
        answer = self.answered()
        self.assertTrue(answer.startswith(b"HTTP/1.1 204 No Content\r\n"), answer)
        self.assertIn(b'\r\nETag: "12"\r\nX-Metastore-Revision: 12\r\n', answer)
        self.assertNotIn(b"Content-Length", answer)
        self.assertEqual(self.transport.writes, 1)
        self.assertEqual(self.tree.seen, [])

    def test_percent_encoded_key_is_decoded(self):
        """The key is the path percent-decoded, as the seed API decodes it."""
        self.send(b"PUT /bench%2F7%00 HTTP/1.1\r\nContent-Length: 1\r\n\r\nv")
        self.send(b"DELETE /kv/%37 HTTP/1.1\r\n\r\n")
        self.assertEqual(self.member.proposals[0][0], Put(b"bench/7\x00", b"v"))
        self.member.proposals[0][1].callback(PutResponse(ResponseHeader(3)))
        self.assertEqual(self.member.proposals[1][0], DeleteRange(b"7"))

    def test_get_answers_value_with_exact_length(self):
        """``GET /kv/{key}`` after the read barrier: the value, its
        metadata and an exact Content-Length."""
        self.member.keys[b"k"] = KeyValue(b"k", b"value", 3, 5, 2, 0)
        self.send(b"GET /kv/k HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(self.transport.value(), b"")
        self.member.reads[0].callback(None)
        head, _, body = self.answered().partition(b"\r\n\r\n")
        self.assertEqual(body, b"value")
        self.assertIn(b"\r\nContent-Length: 5", head)
        self.assertIn(b'\r\nETag: "5"\r\nX-Metastore-Create-Revision: 3\r\nX-Metastore-Mod-Revision: 5\r\n'
                      b"X-Metastore-Version: 2\r\n", head)
        self.assertIn(b"\r\nX-Metastore-Revision: 7\r\n", head)

    def test_absent_key_and_failed_delete_are_json_404(self):
        """A GET of an absent key and a DELETE that deleted nothing answer
        404 with the JSON reason."""
        self.send(b"GET /nope?serializable=true HTTP/1.1\r\nHost: x\r\n\r\n")
        self.member.reads[0].callback(None)
        answer = self.answered()
        self.assertTrue(answer.startswith(b"HTTP/1.1 404 Not Found\r\n"), answer)
        self.assertTrue(answer.endswith(b'\r\n\r\n{"error": "not_found", "message": "no such key"}\n'), answer)
        self.send(b"DELETE /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        [(command, d)] = self.member.proposals
        self.assertEqual(command, DeleteRange(b"nope"))
        d.callback(DeleteRangeResponse(ResponseHeader(8), deleted=0))
        self.assertTrue(self.answered().startswith(b"HTTP/1.1 404 Not Found\r\n"))

    def test_failure_is_answered_as_the_api_answers_it(self):
        """A proposal that fails with no leader: 503 with Retry-After and a
        JSON body, framed by Content-Length."""
        from metastore.errors import NoLeader

        self.send(b"PUT /k HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nv")
        self.member.proposals[0][1].errback(NoLeader("no leader"))
        head, _, body = self.answered().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), head)
        self.assertIn(b"\r\nRetry-After: 1", head)
        self.assertIn(b"\r\nContent-Length: %d" % len(body), head)
        self.assertIn(b'"error": "no_leader"', body)

    def test_bug_is_a_500_with_an_error_id(self):
        """An exception raised at once by the facade: a JSON 500 naming the
        error id its logged traceback carries; the connection goes on."""
        def broken(command):
            raise RuntimeError("bug")

        self.member.propose = broken
        self.send(b"DELETE /k HTTP/1.1\r\n\r\n")
        head, _, body = self.answered().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), head)
        self.assertIn(b'"error_id"', body)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertFalse(self.transport.disconnecting)

    def test_v3_rpcs_under_every_prefix(self):
        """``POST /v3*/kv/{range,put,deleterange,txn}`` go to the KV service
        with the decoded body; its answer is compact JSON with the header."""
        body = b'{"key": "YQ=="}'
        for path in (b"/v3/kv/range", b"/v3beta/kv/put", b"/v3alpha/kv/deleterange", b"/v3/kv/txn"):
            self.send(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (path, len(body), body))
            answer = self.answered().partition(b"\r\n\r\n")[2]
            self.assertTrue(answer.startswith(b'{"header":{"revision":"5"}'), answer)
        self.assertEqual([name for name, _ in self.v3.kv.calls], ["range", "put", "delete_range", "txn"])
        self.assertEqual(self.v3.kv.calls[1][1].key, b"a")
        self.assertEqual(self.tree.seen, [])

    def test_v3_bad_body_is_etcds_400(self):
        """A body that is no JSON object: etcd's InvalidArgument answer."""
        self.send(b"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n[]")
        head, _, body = self.answered().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 400 Bad Request\r\n"), head)
        self.assertIn(b'"code": 3', body)

    def test_everything_else_goes_to_the_tree(self):
        """Queries, conditions, other methods, reserved or encoded paths,
        membership deletes, oversized bodies and HTTP/1.0 are the tree's."""
        requests = [
            b"GET /k?list HTTP/1.1\r\n\r\n", b"GET /k?serializable=true&x=1 HTTP/1.1\r\n\r\n",
            b"HEAD /k HTTP/1.1\r\n\r\n", b"PUT /k?ttl=5 HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            b"PUT /k HTTP/1.1\r\nIf-Match: *\r\nContent-Length: 0\r\n\r\n",
            b"DELETE /k HTTP/1.1\r\nIf-None-Match: *\r\n\r\n", b"DELETE /7 HTTP/1.1\r\n\r\n",
            b"GET /admin/status HTTP/1.1\r\n\r\n", b"GET /health HTTP/1.1\r\n\r\n", b"GET /v3/kv HTTP/1.1\r\n\r\n",
            b"GET /a%2 HTTP/1.1\r\n\r\n", b"DELETE /%37 HTTP/1.1\r\n\r\n", b"GET /a//b HTTP/1.1\r\n\r\n", b"GET /a/../b HTTP/1.1\r\n\r\n",
            b"GET /kv/ HTTP/1.1\r\n\r\n", b"POST /v3/kv/compaction HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            b"POST /v3/kv/put?x HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b"POST /k HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            b"PUT /k HTTP/1.1\r\nContent-Length: 65\r\n\r\n" + b"x" * 65, b"GET /k HTTP/1.0\r\n\r\n",
            b"GET /" + b"k" * 1537 + b" HTTP/1.1\r\n\r\n",
        ]
        for request in requests:
            self.setUp()
            self.send(request)
            self.assertEqual(len(self.tree.seen), 1, request)
            self.assertEqual((self.member.proposals, self.member.reads), ([], []), request)

    def test_with_auth_enabled_every_request_goes_to_the_tree(self):
        """While auth is on, the hot requests too are the tree's (where the auth check is)."""
        for request in (b"GET /k HTTP/1.1\r\n\r\n", b"PUT /k HTTP/1.1\r\nContent-Length: 1\r\n\r\nv",
                        b"POST /v3/kv/range HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"):
            self.setUp()
            self.member.auth_enabled = True
            self.send(request)
            self.assertEqual(len(self.tree.seen), 1, request)
            self.assertEqual((self.member.proposals, self.member.reads), ([], []), request)

    def test_pipelined_answers_keep_their_order(self):
        """Requests sent together are answered in order, hot or not, and
        ``Connection: close`` is honoured."""
        self.member.keys[b"k"] = KeyValue(b"k", b"v", 1, 1, 1, 0)
        self.send(b"GET /k HTTP/1.1\r\n\r\nGET /k?list HTTP/1.1\r\n\r\nGET /k HTTP/1.1\r\nConnection: close\r\n\r\n")
        self.assertEqual((len(self.member.reads), self.tree.seen), (1, []))  # the rest wait for the first answer
        self.member.reads[0].callback(None)
        self.assertEqual((len(self.member.reads), self.tree.seen), (2, [b"GET /k?list"]))
        self.member.reads[1].callback(None)
        answers = self.answered()
        self.assertEqual(answers.count(b"HTTP/1.1 200 OK"), 3)
        self.assertTrue(answers.endswith(b"Connection: close\r\nContent-Length: 1\r\n\r\nv"), answers)
        self.assertTrue(self.transport.disconnecting)

    def test_no_answer_to_a_lost_connection(self):
        """An answer ready after the client left is dropped quietly."""
        self.send(b"PUT /k HTTP/1.1\r\nContent-Length: 1\r\n\r\nv")
        self.channel.connectionLost(None)
        self.member.proposals[0][1].callback(PutResponse(ResponseHeader(3)))
        self.assertEqual(self.transport.value(), b"")
