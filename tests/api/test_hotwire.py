"""``parse_hot_request``: which requests the channel takes off the wire
itself, and that it reads them as Twisted's parser does."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from metastore.api.hotwire import MAX_HEAD_BYTES, MAX_HEADER_LINES, answer_bytes, parse_hot_request, prepared_answer_bytes

PUT = b"PUT /k HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
GET = b"GET /k?serializable=true HTTP/1.1\r\nHost: x\r\n\r\n"


class ParseHotRequestTests(SynchronousTestCase):
    """Complete, plainly framed requests are taken; everything else is None."""

    def test_request_with_a_body(self):
        """Method, target, the body framed by Content-Length, and the end offset."""
        self.assertEqual(parse_hot_request(PUT, 0, 64), (b"PUT", b"/k", b"abc", len(PUT)))

    def test_request_without_a_body(self):
        """No Content-Length: an empty body."""
        self.assertEqual(parse_hot_request(GET, 0, 64), (b"GET", b"/k?serializable=true", b"", len(GET)))

    def test_pipelined_requests_one_after_another(self):
        """The end of one request is where the next is parsed from."""
        data = PUT + GET + PUT
        first = parse_hot_request(data, 0, 64)
        second = parse_hot_request(data, first[3], 64)
        third = parse_hot_request(data, second[3], 64)
        self.assertEqual([first[0], second[0], third[0]], [b"PUT", b"GET", b"PUT"])
        self.assertEqual(third[3], len(data))

    def test_incomplete_request_at_every_length(self):
        """Any prefix of a request is not taken (Twisted gets the bytes)."""
        for end in range(len(PUT)):
            self.assertIsNone(parse_hot_request(PUT[:end], 0, 64), end)
        data = GET + PUT
        for end in range(len(GET), len(data)):
            self.assertIsNone(parse_hot_request(data[:end], len(GET), 64), end)

    def test_header_names_any_case_values_trimmed(self):
        """Header names in any case, values with spaces and tabs around them."""
        data = b"PUT /k HTTP/1.1\r\ncontent-LENGTH:\t 2 \r\nCONNECTION:  Keep-Alive\r\nX-Empty:\r\n\r\nab"
        self.assertEqual(parse_hot_request(data, 0, 64), (b"PUT", b"/k", b"ab", len(data)))

    def test_body_at_the_limit_taken_over_it_not(self):
        """A body of exactly the limit is taken; one byte more is Twisted's (413)."""
        self.assertIsNotNone(parse_hot_request(PUT, 0, 3))
        self.assertIsNone(parse_hot_request(PUT, 0, 2))

    def test_framing_left_to_twisted(self):
        """Anything but the plainest framing is None: Twisted's parser and
        the resource tree answer it (or refuse it) as before."""
        refused = [
            b"PUT /k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            b"PUT /k HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
            b"GET /k HTTP/1.1\r\nConnection: close\r\n\r\n",
            b"GET /k HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\n\r\n",
            b"PUT /k HTTP/1.1\r\nIf-Match: \"3\"\r\nContent-Length: 3\r\n\r\nabc",
            b"DELETE /k HTTP/1.1\r\nif-none-match: *\r\n\r\n",
            b"PUT /k HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
            b"PUT /k HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc",
            b"PUT /k HTTP/1.1\r\nContent-Length: 3 3\r\n\r\nabc",
            b"PUT /k HTTP/1.1\r\nContent-Length: 0000000000003\r\n\r\nabc",
            b"GET /k HTTP/1.0\r\n\r\n",
            b"GET /k HTTP/1.1 \r\n\r\n",
            b"GET  /k HTTP/1.1\r\n\r\n",
            b"HEAD /k HTTP/1.1\r\n\r\n",
            b"get /k HTTP/1.1\r\n\r\n",
            b"GET * HTTP/1.1\r\n\r\n",
            b"GET http://x/k HTTP/1.1\r\n\r\n",
            b"\r\nGET /k HTTP/1.1\r\n\r\n",
            b"GET /k HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
            b"GET /k HTTP/1.1\r\nHost : x\r\n\r\n",
            b"GET /k HTTP/1.1\r\nHost: \xff\r\n\r\n",
            b"GET /k HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
            b"GET /k HTTP/1.1\r\nHost: x\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
            b"GET /k HTTP/1.1\r\n" + b"X: y\r\n" * (MAX_HEADER_LINES + 1) + b"\r\n",
            b"GET /k HTTP/1.1\r\nX: " + b"y" * MAX_HEAD_BYTES + b"\r\n\r\n",
        ]
        for data in refused:
            self.assertIsNone(parse_hot_request(data, 0, 64), data)


class AnswerBytesTests(SynchronousTestCase):
    """Answers are framed by Content-Length (none for 204) and say whether the connection closes."""

    def test_answer_with_and_without_a_body(self):
        """A body gets its exact length; None gets no Content-Length; close adds the header."""
        head, _, body = answer_bytes(200, b"X-A: 1\r\n", b"value").partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\nServer: "), head)
        self.assertTrue(head.endswith(b"\r\nX-A: 1\r\nContent-Length: 5"), head)
        self.assertEqual(body, b"value")
        answer = answer_bytes(204, b"", None, close=True)
        self.assertTrue(answer.endswith(b"\r\nConnection: close\r\n\r\n"), answer)
        self.assertNotIn(b"Content-Length", answer)

    def test_prepared_answer(self):
        """Any status, its message, the header pairs, the body framed by its length."""
        answer = prepared_answer_bytes(503, b"Service Unavailable", [(b"Retry-After", b"1")], b"{}")
        self.assertTrue(answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer)
        self.assertTrue(answer.endswith(b"\r\nRetry-After: 1\r\nContent-Length: 2\r\n\r\n{}"), answer)
