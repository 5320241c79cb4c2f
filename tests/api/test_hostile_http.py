"""Hostile HTTP: random requests on every route, membership included,
never get a 500 or HTML and never harm the cluster; idle, half-sent and
trickled requests (slowloris) are cut off.

The property tests send raw bytes over a socket to real member processes,
so methods, paths and headers that no polite client would send get
through.  Random requests go to a three-member cluster; after every one
the cluster must still commit a write and serve a linearizable read on
every member, ``/health`` must agree, and no member may have logged a
traceback (``tests/guarded_cluster.py``).  The idle-timeout and header
deadline tests use an in-process site and a ``Clock``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import address, task
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from metastore.api.site import HEADER_TIMEOUT_SECONDS, IDLE_TIMEOUT_SECONDS, MetaStoreSite
from metastore.api.validation import MAX_MEMBER_ID, MAX_REVISION
from tests.chaos.helpers import exchange, http_json, http_request, poll, start_single_member
from tests.guarded_cluster import GuardedCluster

MAX_REQUEST_BYTES = 2048

METHODS = st.sampled_from(
    ["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "PROPFIND", "get", "X-Y"]
) | st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_-!#$%&'*+.^`|~", min_size=1, max_size=12)

PATH_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="#"), max_size=40
)
RAW_KEY = st.binary(max_size=40).map(lambda b: quote(b, safe=""))
ROUTES = st.one_of(
    st.sampled_from(["/", "//", "/admin/status", "/admin/members", "/admin/snapshot", "/admin/", "/admin/nope",
                     "/health", "/version", "/metrics", "/v3/kv/range", "/v3/", "/%", "/%zz", "/%00",
                     "/k?serializable=true", "/k?serializable=maybe", "/k?serializable=true&serializable=1"]),
    RAW_KEY.map(lambda k: "/" + k),
    st.integers(0, 10**20).map(lambda n: f"/{n}"),
    PATH_TEXT.map(lambda p: "/" + p),
    st.tuples(RAW_KEY, PATH_TEXT).map(lambda t: f"/{t[0]}?{t[1]}"),
    st.text(alphabet="abc/%.", max_size=3000).map(lambda p: "/" + p),  # long paths and keys over the limit
    st.text(alphabet=st.characters(min_codepoint=0x80, max_codepoint=0xFF), min_size=1, max_size=10).map(
        lambda p: "/" + p),  # raw bytes that are not ASCII, and a request line that does not parse
    st.sampled_from(["/a b", "*", "k", "http://127.0.0.1/k", "/kv/a b"]),
)
HEADER_NAMES = st.sampled_from(
    ["If-Match", "If-None-Match", "Content-Type", "Accept", "Range", "Expect", "Cookie", "Authorization",
     "X-Forwarded-For", "Accept-Encoding", "If-Modified-Since", "Upgrade"]
) | st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=20)
MEMBER_IDS = st.one_of(
    st.integers(1, 7),  # the members' own ids, and the next ones an addition takes
    st.sampled_from([0, MAX_REVISION, MAX_REVISION + 1, MAX_MEMBER_ID, MAX_MEMBER_ID + 1, 10**23]),
    st.integers(0, 2**70),
)
MEMBER_ROUTES = st.one_of(
    MEMBER_IDS.map(lambda n: f"/{n}"),
    MEMBER_IDS.map(lambda n: f"/admin/members/{n}"),
    MEMBER_IDS.map(lambda n: f"/0{n}"),
    st.sampled_from(["/admin/members", "/admin/members/", "/admin/members/x", "/admin/members/-1", "/admin",
                     "/livez", "/readyz", "/kv", "/kv/", "/kv/1", "/kv/admin/status"]),
)
MEMBERSHIP_METHODS = st.sampled_from(["POST", "DELETE"])
MEMBER_METHODS_FIRST = st.one_of(MEMBERSHIP_METHODS, MEMBERSHIP_METHODS, METHODS)
FRESH_PEER_URLS = st.integers(1, 65535).map(lambda port: f"http://127.0.0.1:{port}")
SOME_PEER_URLS = st.one_of(
    FRESH_PEER_URLS,
    FRESH_PEER_URLS,
    st.sampled_from(["http://localhost:2380", "http://LOCALHOST.:2380", "http://[::1]:2380", "http://127.0.0.2:2380",
                     "tcp://127.0.0.1:9", "https://127.0.0.1:2380", "127.0.0.1:2380", "http://127.0.0.1:0",
                     "http://127.0.0.1:65536", "http://127.0.0.1:2380/x", "http://a_b:1", "http://127.0.0.1:2380?x",
                     "http://user@127.0.0.1:2380", "http://127.0.0.1:2380 http://127.0.0.1:2381", "http://[::1:2380"]),
)
HEADER_VALUES = st.sampled_from(['"1"', '"99999999999999999999"', f'"{MAX_REVISION}"', f'"{MAX_REVISION + 1}"', "*", 'W/"2"', '"-1"', '"abc"', "", "*, *",
                                 "100-continue", "bytes=0-1"]) | st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
BODIES = st.binary(max_size=MAX_REQUEST_BYTES + 512)


def raw_request(port: int, data: bytes, timeout: float = 15.0) -> bytes:
    """Send ``data`` and read the whole answer (the request asks to close)."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        for _ in range(10_000):
            chunk = s.recv(65536)
            if not chunk:
                break
            received += chunk
    return received


def parse_response(raw: bytes) -> tuple[int, dict, bytes]:
    """Status, headers (lower-case names) and body of one HTTP/1.1 answer."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode()] = value.strip().decode("latin-1")
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    return status, headers, body


def _dechunk(data: bytes) -> bytes:
    """The payload of a chunked body."""
    payload = b""
    for _ in range(len(data) + 1):
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        payload += rest[:size]
        data = rest[size + 2:]
    return payload


def build_request(method: str, path: str, headers, body: bytes) -> bytes:
    """The raw bytes of one HTTP/1.1 request that asks to close afterwards."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers
              if name.lower() not in ("content-length", "transfer-encoding", "connection", "host")]
    lines += [f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def check_answer(testcase, raw: bytes, request: bytes) -> None:
    """Never a 500: a 503 only with Retry-After; every answer but a success
    (and every HEAD) has a JSON body, never HTML."""
    testcase.assertTrue(raw, f"no answer to {request[:300]!r}")
    status, headers, body = parse_response(raw)
    what = f"{status} for {request[:300]!r}: {body[:300]!r}"
    testcase.assertTrue(status < 500 or status == 503, what)
    if status == 503:
        testcase.assertIn("retry-after", headers, what)
    if status >= 300 and not request.startswith(b"HEAD "):
        testcase.assertEqual(headers.get("content-type"), "application/json", what)
        document = json.loads(body)
        testcase.assertTrue(document["error"] and document["message"], what)


class ClusterHostileHTTPTests(SynchronousTestCase):
    """Random requests, membership changes included, against a real
    three-member cluster that must stay whole after every one.
    (``METASTORE_HOSTILE_REPORT=1`` prints how many membership changes the
    run made and undid.)"""

    def setUp(self):
        self.cluster = GuardedCluster(self, ["--max-request-bytes", str(MAX_REQUEST_BYTES)])
        self.cluster.start()
        self.rounds = 0
        if os.environ.get("METASTORE_HOSTILE_REPORT"):
            self.addCleanup(lambda: sys.stderr.write(
                f"\nhostile rounds {self.rounds}, additions undone {self.cluster.additions_undone}, "
                f"removals undone {self.cluster.removals_undone}\n"))

    def peer_url_bodies(self):
        """Peer URLs as bodies: members' own (in several spellings), fresh
        ones, and malformed ones."""
        own = self.cluster.own_urls()
        spelled = st.sampled_from(own).flatmap(lambda u: st.sampled_from([u, u + "/", u.upper(), " " + u + "\n"]))
        return st.one_of(spelled, SOME_PEER_URLS, SOME_PEER_URLS).map(lambda u: u.encode("latin-1"))

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data(), method=MEMBER_METHODS_FIRST, target=st.integers(0, 2),
           headers=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=4))
    def test_random_requests_leave_the_cluster_serving(self, data, method, target, headers):
        """Any method, route (membership routes and ids at and past the
        integer limits included), headers and body (valid peer URLs
        included): no 500, no HTML; afterwards, with any membership change
        undone, every member commits, reads linearizably, is healthy and
        logged no traceback."""
        path = data.draw(st.one_of(MEMBER_ROUTES, MEMBER_ROUTES, ROUTES), label="path")
        body = data.draw(st.one_of(self.peer_url_bodies(), self.peer_url_bodies(), BODIES), label="body")
        request = build_request(method, path, headers, body)
        check_answer(self, raw_request(self.cluster.target(target).http_port, request), request)
        self.cluster.restore()
        self.rounds += 1
        self.cluster.check_serving(self.rounds)


class HostileHTTPTests(SynchronousTestCase):
    """Hostile bytes against one real member."""

    def setUp(self):
        self.member = start_single_member(self, "--max-request-bytes", str(MAX_REQUEST_BYTES))

    def assert_member_unharmed(self):
        """Healthy, still writes and reads, and never logged a traceback."""
        self.assertEqual(http_json(self.member.url + "/health")[0], 200)
        self.assertEqual(http_request(self.member.url + "/after-hostile", "PUT", b"v"), 204)
        self.assertEqual(http_request(self.member.url + "/after-hostile", "GET"), 200)
        self.assertNotIn("Traceback", self.member.log_text())


    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(garbage=st.binary(min_size=1, max_size=300))
    def test_garbage_request_bytes(self, garbage):
        """Bytes that are not HTTP at all: an answer under 500 or a closed connection."""
        request = garbage + b"\r\n\r\n"
        _, raw = exchange(self.member.http_port, request, wait_for_close=3)
        if raw:
            status, _, _ = parse_response(raw) if raw.startswith(b"HTTP/1.") else (400, None, None)
            self.assertLess(status, 500, repr(garbage))
        self.assertNotIn("Traceback", self.member.log_text(), repr(garbage))

    def test_member_unharmed_after_hostile_requests(self):
        """After a burst of malformed requests the member still works."""
        for request in (b"GET / HTTP/1.1\r\n\r\n", b"\x00\xff\r\n\r\n", b"PUT /k HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                        b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                        b"PUT /k HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\nx",
                        b"PUT /k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):
            exchange(self.member.http_port, request, wait_for_close=2)
        self.assert_member_unharmed()

    def test_raw_bytes_over_0x7f_in_the_path(self):
        """A request target with raw (unescaped) bytes over 0x7F: Twisted
        lets 0x80-0xB0 through, and they name the key of those bytes;
        higher bytes are a malformed request line.  Every answer is JSON or
        the value, and nothing is logged as a traceback."""
        port = self.member.http_port
        put = raw_request(port, build_request("PUT", "/\x80\xa9", [], b"raw"))
        self.assertEqual(parse_response(put)[0], 204, put)
        status, _, body = parse_response(raw_request(port, build_request("GET", "/kv/%80%A9", [], b"")))
        self.assertEqual((status, body), (200, b"raw"))
        for method, path, expected in (("GET", "/kv/\xa0(", 404), ("DELETE", "/\x81\x82", 404),
                                       ("POST", "/admin/\x90", 404), ("GET", "/\xff", 400)):
            status, headers, body = parse_response(raw_request(port, build_request(method, path, [], b"")))
            self.assertEqual((status, headers["content-type"]), (expected, "application/json"), path)
            json.loads(body)
        self.assert_member_unharmed()

    def test_idle_connections_do_not_block_others(self):
        """Many half-sent requests held open do not stop other clients."""
        idle = []
        self.addCleanup(lambda: [s.close() for s in idle])
        for _ in range(50):
            s = socket.create_connection(("127.0.0.1", self.member.http_port), timeout=5)
            s.sendall(b"PUT /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            idle.append(s)
        poll(lambda: http_request(self.member.url + "/other", "PUT", b"v") == 204, timeout=10, what="a PUT")
        self.assert_member_unharmed()


class _Hello(Resource):
    isLeaf = True

    def render(self, request):
        return b"hello"


def connect_on_clock(**site_options):
    """A ``MetaStoreSite`` (with ``site_options``) on a Clock and one
    connection to it: (clock, channel, transport)."""
    clock = task.Clock()
    site = MetaStoreSite(_Hello(), 1024, reactor=clock, **site_options)
    channel = site.buildProtocol(address.IPv4Address("TCP", "127.0.0.1", 1))
    transport = StringTransport()
    channel.makeConnection(transport)
    return clock, channel, transport


class IdleTimeoutTests(SynchronousTestCase):
    """The site closes connections that go quiet, whatever state they are in."""

    def connect(self, idle_timeout=5):
        """A site on a Clock and one connection to it: (clock, channel, transport)."""
        return connect_on_clock(idle_timeout=idle_timeout)

    def test_default_is_sixty_seconds(self):
        """Without ``idle_timeout`` the site uses IDLE_TIMEOUT_SECONDS, 60."""
        self.assertEqual(IDLE_TIMEOUT_SECONDS, 60)
        self.assertEqual(MetaStoreSite(_Hello(), 1024, reactor=task.Clock()).timeOut, 60)

    def test_silent_connection_closed(self):
        """A connection that never sends a byte is closed after the timeout."""
        clock, _, transport = self.connect()
        clock.advance(4.9)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.2)
        self.assertTrue(transport.disconnecting)

    def test_half_sent_headers_closed(self):
        """Slowloris: headers that stop mid-way; the timer restarts on each byte."""
        clock, channel, transport = self.connect()
        channel.dataReceived(b"GET /k HTTP/1.1\r\n")
        clock.advance(4)
        channel.dataReceived(b"Host: x\r\n")
        clock.advance(4)
        self.assertFalse(transport.disconnecting)
        clock.advance(1.1)
        self.assertTrue(transport.disconnecting)

    def test_half_sent_body_closed(self):
        """A body shorter than its Content-Length, then silence."""
        clock, channel, transport = self.connect()
        channel.dataReceived(b"PUT /k HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        clock.advance(5.1)
        self.assertTrue(transport.disconnecting)

    def test_complete_request_answered(self):
        """A whole request before the timeout is answered normally."""
        clock, channel, transport = self.connect()
        channel.dataReceived(b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"hello", transport.value())


class HeaderDeadlineTests(SynchronousTestCase):
    """A request's line and headers must all arrive within the header
    timeout, however often the client sends a byte."""

    def connect(self, header_timeout=10):
        """A site on a Clock and one connection to it: (clock, channel, transport)."""
        return connect_on_clock(header_timeout=header_timeout)

    def test_default_is_ten_seconds(self):
        """Without ``header_timeout`` the site allows HEADER_TIMEOUT_SECONDS, 10."""
        self.assertEqual(HEADER_TIMEOUT_SECONDS, 10)
        self.assertEqual(MetaStoreSite(_Hello(), 1024, reactor=task.Clock()).header_timeout, 10)

    def test_trickled_headers_cut_off_at_the_deadline(self):
        """Slowloris: one header byte every 3 s keeps the idle timer fresh,
        but the head is cut off with a JSON 408 once 10 s have passed."""
        clock, channel, transport = self.connect()
        head = b"GET /k HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 20
        for byte in head[:3]:
            channel.dataReceived(bytes([byte]))
            clock.advance(3)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(transport.value(), b"")
        channel.dataReceived(head[3:4])
        clock.advance(1.1)  # 10.1 s since the first byte
        answer = transport.value()
        self.assertTrue(answer.startswith(b"HTTP/1.1 408 "), answer)
        self.assertIn(b"Content-Type: application/json", answer)
        self.assertEqual(json.loads(answer.partition(b"\r\n\r\n")[2])["error"], "request_head_timeout")
        self.assertTrue(transport.disconnecting)
        channel.dataReceived(b"more\r\n\r\n")  # ignored once refused
        self.assertEqual(transport.value(), answer)

    def test_deadline_is_a_flag(self):
        """``header_timeout`` sets the deadline."""
        clock, channel, transport = self.connect(header_timeout=2)
        channel.dataReceived(b"GET /k HTTP/1.1\r\n")
        clock.advance(1.9)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.2)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 "))

    def test_head_in_time_is_answered_and_the_deadline_forgotten(self):
        """A head that completes in time is answered; its deadline does not
        fire later on the kept-alive connection."""
        clock, channel, transport = self.connect()
        channel.dataReceived(b"GET /k HTTP/1.1\r\n")
        clock.advance(9)
        channel.dataReceived(b"Host: x\r\n\r\n")
        self.assertIn(b"hello", transport.value())
        clock.advance(30)
        self.assertFalse(transport.disconnecting)
        self.assertNotIn(b"408", transport.value())

    def test_each_request_on_a_connection_has_its_own_deadline(self):
        """The next request's deadline starts with its first byte, not at
        the connection's start."""
        clock, channel, transport = self.connect()
        channel.dataReceived(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        clock.advance(30)
        channel.dataReceived(b"GET /b HTTP/1.1\r\n")
        clock.advance(9)
        channel.dataReceived(b"Host: x\r\n\r\n")
        self.assertEqual(transport.value().count(b"hello"), 2)
        channel.dataReceived(b"GET /c HTTP/1.1\r\n")
        clock.advance(10.1)
        self.assertIn(b"HTTP/1.1 408 ", transport.value())

    def test_slow_body_is_not_the_header_deadline(self):
        """The deadline covers the head only: a body may take longer (the
        idle timeout bounds its silences)."""
        clock, channel, transport = self.connect()
        channel.dataReceived(b"PUT /k HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n")
        for byte in b"abc":
            clock.advance(8)
            channel.dataReceived(bytes([byte]))
        self.assertIn(b"hello", transport.value())
        self.assertNotIn(b"408", transport.value())

    def test_connection_lost_cancels_the_deadline(self):
        """A client that leaves mid-head leaves no timer behind."""
        clock, channel, transport = self.connect()
        channel.dataReceived(b"GET /k HT")
        channel.connectionLost(None)
        self.assertEqual(clock.getDelayedCalls(), [])


class RefusedHeadTests(SynchronousTestCase):
    """Heads the channel refuses by itself get a JSON answer, and the rest
    of the packet is dropped unparsed."""

    def answer(self, data: bytes) -> tuple[int, dict]:
        """Feed ``data`` in one packet; the status and JSON body answered."""
        _, channel, transport = connect_on_clock()
        channel.dataReceived(data)
        status, headers, body = parse_response(transport.value())
        self.assertEqual(headers["content-type"], "application/json")
        return status, json.loads(body)

    def test_malformed_request_line_then_headers(self):
        """A request line that does not parse (raw non-ASCII, extra spaces),
        followed by headers in the same packet: 400 JSON, nothing logged
        (the headers were once parsed anyway and raised AttributeError)."""
        for line in (b"GET /\xff\xfe HTTP/1.1", b"GET /a b c HTTP/1.1", b"GET"):
            status, body = self.answer(line + b"\r\nHost: x\r\nContent-Length: 2\r\n\r\nab")
            self.assertEqual((status, body["error"]), (400, "bad_request"), line)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_head_over_the_total_size(self):
        """Many headers, each short, together over Twisted's total: 431."""
        headers = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 1000) for i in range(20))
        status, body = self.answer(b"GET /k HTTP/1.1\r\n" + headers + b"\r\n")
        self.assertEqual((status, body["error"]), (431, "request_head_too_large"))

    def test_star_target(self):
        """``GET *`` is a JSON 405 that allows OPTIONS."""
        _, channel, transport = connect_on_clock()
        channel.dataReceived(b"GET * HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = parse_response(transport.value())
        self.assertEqual((status, headers["allow"], json.loads(body)["error"]), (405, "OPTIONS", "method_not_allowed"))
