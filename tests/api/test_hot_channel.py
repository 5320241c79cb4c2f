"""``MetaStoreChannel`` taking hot requests off the wire itself: in order
with the requests Twisted parses, whatever the packets, with every
protection of the client port kept."""

from __future__ import annotations

import json
import re
import socket

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import address, defer, task
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import http

from metastore.api.fastpath import HotRoutes
from metastore.api.hotwire import parse_hot_request
from metastore.api.site import HELD_BYTES, MetaStoreRequest, MetaStoreSite
from metastore.kv.messages import Put, PutResponse, ResponseHeader
from metastore.storage.engine import KeyValue
from tests.api.test_fastpath import _V3, _Facade, _Fallback

MAX_REQUEST_BYTES = 64


class _Tree(_Fallback):
    """The resource tree: records each request, answers a body over the limit 413 as the REST API does."""

    def render(self, request):
        answer = super().render(request)
        if request.body_too_large:
            request.setResponseCode(413)
            return b"too large"
        return answer


class _CountingRequest(MetaStoreRequest):
    """A site request that counts how many were made."""

    made = 0

    def __init__(self, *args, **kwargs):
        type(self).made += 1
        super().__init__(*args, **kwargs)


def _without_dates(data: bytes) -> bytes:
    """``data`` with the Date headers' values blanked (they follow the clock)."""
    lines = data.split(b"\r\n")
    return b"\r\n".join(b"Date: -" if line.startswith(b"Date: ") else line for line in lines)


class _Connection:
    """A site with hot routes over ``_Facade`` and one connection to it on a Clock."""

    def __init__(self, member=None, **site_options) -> None:
        self.clock = task.Clock()
        self.member = member or _Facade()
        self.tree = _Tree()
        self.site = MetaStoreSite(self.tree, MAX_REQUEST_BYTES, reactor=self.clock,
                                  hot_routes=HotRoutes(self.member, _V3()), **site_options)
        self.site.requestFactory = _CountingRequest
        _CountingRequest.made = 0
        self.observed: list[tuple[bytes, bytes, int]] = []
        self.site.request_observer = lambda r: self.observed.append((r.method, r.path, r.code))
        self.channel = self.site.buildProtocol(address.IPv4Address("TCP", "127.0.0.1", 1))
        self.transport = StringTransport()
        self.channel.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.channel.dataReceived(data)

    def answers(self) -> list[bytes]:
        """The status lines written so far."""
        return re.findall(rb"HTTP/1\.[01] \d\d\d [^\r]*", self.transport.value())


class _AnsweringFacade(_Facade):
    """A facade whose proposals commit at once, each at the next revision."""

    def propose(self, command):
        self.proposals.append((command, None))
        return defer.succeed(PutResponse(ResponseHeader(len(self.proposals))))

    def read(self, consistency):
        return defer.succeed(None)


PUT = b"PUT /k HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
GET = b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n"
TREE_GET = b"GET /k?list HTTP/1.1\r\nHost: x\r\n\r\n"


class HotChannelTests(SynchronousTestCase):
    """What the channel does with the requests it takes itself."""

    def test_hot_request_makes_no_site_request(self):
        """A whole hot request is answered with no ``twisted.web`` request
        made, and reported to the site's observer."""
        c = _Connection(_AnsweringFacade())
        c.send(PUT)
        self.assertEqual(c.member.proposals[0][0], Put(b"k", b"abc"))
        self.assertEqual(c.answers(), [b"HTTP/1.1 204 No Content"])
        self.assertEqual(_CountingRequest.made, 0)
        self.assertEqual(c.observed, [(b"PUT", b"/k", 204)])

    def test_split_at_every_offset_answers_the_same(self):
        """Two pipelined hot requests split into two packets at every byte
        offset get the same answers, in the same order, as in one packet
        (each offset on a fresh connection)."""
        data = PUT + GET
        whole = _Connection(_AnsweringFacade())
        whole.member.keys[b"k"] = KeyValue(b"k", b"abc", 1, 1, 1, 0)
        whole.send(data)
        expected = _without_dates(whole.transport.value())
        self.assertEqual(whole.answers(), [b"HTTP/1.1 204 No Content", b"HTTP/1.1 200 OK"])
        for offset in range(1, len(data)):
            c = _Connection(_AnsweringFacade())
            c.member.keys[b"k"] = KeyValue(b"k", b"abc", 1, 1, 1, 0)
            c.send(data[:offset])
            c.send(data[offset:])
            self.assertEqual(_without_dates(c.transport.value()), expected, offset)
            self.assertEqual([command for command, _ in c.member.proposals], [Put(b"k", b"abc")], offset)
            self.assertEqual(c.observed, [(b"PUT", b"/k", 204), (b"GET", b"/k", 200)], offset)
            self.assertFalse(c.transport.disconnecting, offset)

    def test_pipelined_hot_and_tree_requests_answered_in_order(self):
        """Hot, tree, hot and tree requests sent together while the first
        answer is pending: nothing else is answered before it, then all in order."""
        c = _Connection()
        c.member.keys[b"k"] = KeyValue(b"k", b"v", 1, 1, 1, 0)
        c.send(GET + TREE_GET + PUT + TREE_GET)
        self.assertEqual((c.answers(), c.tree.seen, len(c.member.reads)), ([], [], 1))
        c.member.reads[0].callback(None)
        self.assertEqual(c.tree.seen, [b"GET /k?list"])
        self.assertEqual(len(c.member.proposals), 1)  # the PUT waits for its commit, the last GET for it
        c.member.proposals[0][1].callback(PutResponse(ResponseHeader(9)))
        self.assertEqual(c.tree.seen, [b"GET /k?list", b"GET /k?list"])
        self.assertEqual(c.answers(), [b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK", b"HTTP/1.1 204 No Content",
                                       b"HTTP/1.1 200 OK"])
        body = c.transport.value()
        self.assertLess(body.index(b"\r\n\r\nv"), body.index(b"tree"))

    def test_hot_request_then_body_over_the_limit(self):
        """A hot PUT, then a PUT whose body is over the limit, in one packet:
        the first is taken, the second goes to the tree marked too large (413)."""
        c = _Connection(_AnsweringFacade())
        big = b"x" * (MAX_REQUEST_BYTES + 1)
        c.send(PUT + b"PUT /k HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(big), big) + PUT)
        self.assertEqual(c.answers(), [b"HTTP/1.1 204 No Content", b"HTTP/1.1 413 Request Entity Too Large",
                                       b"HTTP/1.1 204 No Content"])
        self.assertEqual([command for command, _ in c.member.proposals], [Put(b"k", b"abc")] * 2)
        self.assertEqual(c.tree.seen, [b"PUT /k"])

    def test_malformed_and_oversized_heads_after_a_hot_request(self):
        """After a hot request, a malformed head is a JSON 400 and an
        oversized one a JSON 431, the hot answer first."""
        for bad, status in ((b"GET /a b c HTTP/1.1\r\n\r\n", 400),
                            (b"GET /k HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 1000) for i in range(20))
                             + b"\r\n", 431)):
            c = _Connection(_AnsweringFacade())
            c.send(PUT + bad + PUT)
            answers = c.answers()
            self.assertEqual(len(answers), 2, answers)
            self.assertEqual(answers[0], b"HTTP/1.1 204 No Content")
            self.assertTrue(answers[1].startswith(b"HTTP/1.1 %d " % status), answers)
            self.assertIn(b'{"error": ', c.transport.value())
            self.assertEqual(len(c.member.proposals), 1)

    def test_head_deadline_after_a_hot_request(self):
        """A hot request, then the start of another head that never ends:
        408 once the header timeout has passed since that head's first byte."""
        c = _Connection(_AnsweringFacade())
        c.send(PUT + b"GET /k HT")
        c.clock.advance(9.9)
        self.assertEqual(c.answers(), [b"HTTP/1.1 204 No Content"])
        c.clock.advance(0.2)
        self.assertEqual(c.answers()[1], b"HTTP/1.1 408 Request Timeout")
        self.assertTrue(c.transport.disconnecting)

    def test_idle_timeout_waits_for_a_pending_answer(self):
        """The idle timeout does not close a connection whose answer is
        pending, and counts again from the answer."""
        c = _Connection(idle_timeout=5)
        c.send(PUT)
        c.clock.advance(12)
        self.assertFalse(c.transport.disconnecting)
        c.member.proposals[0][1].callback(PutResponse(ResponseHeader(2)))
        c.clock.advance(4.9)
        self.assertFalse(c.transport.disconnecting)
        c.clock.advance(0.2)
        self.assertTrue(c.transport.disconnecting)

    def test_idle_timeout_after_hot_answers(self):
        """A kept-alive connection that goes quiet after hot answers is closed."""
        c = _Connection(_AnsweringFacade(), idle_timeout=5)
        c.clock.advance(4)
        c.send(PUT)
        c.clock.advance(4.9)
        self.assertFalse(c.transport.disconnecting)
        c.clock.advance(0.2)
        self.assertTrue(c.transport.disconnecting)

    def test_connection_close_and_http_1_0_are_twisteds(self):
        """``Connection: close`` and HTTP/1.0 go through Twisted's parser
        (a site request; the hot routes answer the first, the tree the
        second), and the connection closes after the answer."""
        for request in (b"GET /k HTTP/1.1\r\nConnection: close\r\n\r\n", b"GET /k HTTP/1.0\r\n\r\n"):
            c = _Connection(_AnsweringFacade())
            c.send(request + GET)
            self.assertEqual(_CountingRequest.made, 1)
            self.assertEqual(len(c.answers()), 1)
            self.assertTrue(c.transport.disconnecting)

    def test_blank_line_before_a_request_is_eaten_once(self):
        """A blank line before a request (an old client's habit, which Twisted
        eats once per request) then the request in the next packet: answered,
        and the next request may again start with a blank line."""
        c = _Connection(_AnsweringFacade())
        c.send(b"\r\n")
        c.send(PUT)
        self.assertEqual(_CountingRequest.made, 1)  # Twisted's parser had started on it
        c.send(b"\r\n" + PUT)
        self.assertEqual(c.answers(), [b"HTTP/1.1 204 No Content"] * 2)
        c.send(PUT)
        self.assertEqual(c.answers(), [b"HTTP/1.1 204 No Content"] * 3)
        self.assertEqual(_CountingRequest.made, 2)  # the last one taken off the wire

    def test_bytes_held_past_the_bound_pause_reading(self):
        """Past ``HELD_BYTES`` sent behind a pending answer, the channel stops
        reading; it reads again once the answer is written."""
        c = _Connection()
        c.send(PUT)
        c.send(GET * (HELD_BYTES // len(GET)))
        self.assertEqual(c.transport.producerState, "producing")
        c.send(GET)
        self.assertEqual(c.transport.producerState, "paused")
        c.member.proposals[0][1].callback(PutResponse(ResponseHeader(2)))
        self.assertEqual(c.transport.producerState, "producing")
        self.assertEqual(len(c.member.reads), 1)  # the GETs are taken one by one as each is answered

    def test_answer_after_the_connection_is_lost(self):
        """An answer ready after the client left is dropped, and not reported."""
        c = _Connection()
        c.send(PUT + GET)
        c.channel.connectionLost(None)
        c.member.proposals[0][1].callback(PutResponse(ResponseHeader(2)))
        self.assertEqual((c.transport.value(), c.observed, c.member.reads), (b"", [], []))

    def test_rate_limited_site_has_no_hot_front(self):
        """Without hot routes (a client rate limit), every request is Twisted's and the tree's."""
        c = _Connection(_AnsweringFacade())
        c.site.hot_routes = None
        c.channel = c.site.buildProtocol(address.IPv4Address("TCP", "127.0.0.1", 1))
        c.channel.makeConnection(StringTransport())
        c.channel.dataReceived(PUT)
        self.assertEqual((c.tree.seen, c.member.proposals), ([b"PUT /k"], []))

    def test_auth_enabled_sends_everything_to_the_tree(self):
        """With auth on, the hot requests are the tree's (where the auth check is)."""
        c = _Connection(_AnsweringFacade())
        c.member.auth_enabled = True
        c.send(PUT + GET)
        self.assertEqual((c.tree.seen, c.member.proposals), ([b"PUT /k", b"GET /k"], []))

    def test_v3_error_answer_is_json(self):
        """A v3 body that is no JSON object is etcd's 400, with the JSON body."""
        c = _Connection()
        c.send(b"POST /v3/kv/put HTTP/1.1\r\nContent-Length: 2\r\n\r\n[]")
        head, _, body = c.transport.value().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 400 Bad Request\r\n"), head)
        self.assertIn(b"\r\nContent-Type: application/json\r\n", head + b"\r\n")
        self.assertEqual(json.loads(body)["code"], 3)
        self.assertEqual(c.observed, [(b"POST", b"/v3/kv/put", 400)])


class _Recorder(http.Request):
    """A plain Twisted request that records what Twisted parsed."""

    parsed: list = []

    def process(self):
        self.parsed.append((self.method, self.uri, self.content.read()))
        self.setResponseCode(204)
        self.finish()


_TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!#$%&'*+^`|~",
                 min_size=1, max_size=12)
_VALUE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from("\t\xff\x00"),
                 max_size=20)


class SameAsTwistedTests(SynchronousTestCase):
    """Every request ``parse_hot_request`` takes, Twisted's parser reads the same."""

    @settings(max_examples=300, deadline=None)
    @given(
        method=st.sampled_from(["GET", "PUT", "DELETE", "POST", "HEAD"]),
        target=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20),
        headers=st.lists(st.tuples(_TOKEN | st.sampled_from(["Content-Length", "Connection", "Host"]),
                                   _VALUE | st.sampled_from(["3", " 3 ", "keep-alive", "close", "03"])),
                         max_size=5),
        body=st.binary(max_size=8),
    )
    def test_same_method_target_and_body(self, method, target, headers, body):
        """Method, target and body as Twisted's parser reads them."""
        data = (f"{method} /{target} HTTP/1.1\r\n" + "".join(f"{n}:{v}\r\n" for n, v in headers) + "\r\n").encode(
            "latin-1") + body
        taken = parse_hot_request(data, 0, 1000)
        if taken is None:
            return
        _Recorder.parsed = []
        channel = http.HTTPChannel()
        channel.requestFactory = _Recorder
        channel.makeConnection(StringTransport())
        channel.dataReceived(data[:taken[3]])
        self.assertEqual(_Recorder.parsed, [taken[:3]])


class _BufferedTransport:
    """What ``write_answer`` reads of a TCP transport, and its writes."""

    connected = True
    disconnecting = False

    def __init__(self, queued: bytes = b"") -> None:
        self.dataBuffer = queued
        self._tempDataBuffer: list[bytes] = []
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


class WriteAnswerTests(SynchronousTestCase):
    """Answers go straight to the socket when nothing is queued before them."""

    def setUp(self):
        self.ours, self.peer = socket.socketpair()
        self.ours.setblocking(False)
        self.addCleanup(self.ours.close)
        self.addCleanup(self.peer.close)
        self.channel = _Connection().channel

    def write(self, transport, answer: bytes) -> None:
        self.channel.transport = transport
        self.channel._socket = self.ours
        self.channel.write_answer(answer)

    def test_nothing_queued_goes_to_the_socket(self):
        """An empty transport buffer: the socket takes the answer, the transport nothing."""
        transport = _BufferedTransport()
        self.write(transport, b"answer")
        self.assertEqual((self.peer.recv(100), transport.written), (b"answer", []))

    def test_queued_bytes_keep_their_place(self):
        """Bytes queued in the transport: the answer is queued behind them."""
        transport = _BufferedTransport(b"earlier")
        self.write(transport, b"answer")
        self.assertEqual(transport.written, [b"answer"])
        self.peer.setblocking(False)
        self.assertRaises(BlockingIOError, self.peer.recv, 100)

    def test_what_the_socket_does_not_take_is_queued(self):
        """An answer over the socket's buffer: the rest goes to the transport, in order."""
        self.ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        answer = bytes(range(256)) * 4096
        transport = _BufferedTransport()
        self.write(transport, answer)
        [rest] = transport.written
        self.peer.setblocking(False)
        received = b""
        for _ in range(10_000):  # bounded: the socket holds less than the answer
            try:
                chunk = self.peer.recv(1 << 20)
            except BlockingIOError:
                break
            received += chunk
        self.assertGreater(len(received), 0)
        self.assertEqual(received + rest, answer)
