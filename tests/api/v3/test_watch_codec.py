"""``SharedEncoding``: a fan-out's line is encoded once and reused only
for the very same events and fields."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from metastore.api.v3.header import Headers
from metastore.api.v3.streaming import json_line
from metastore.api.v3.watch_codec import SharedEncoding, watch_response
from metastore.facade import EventType, KeyValue, WatchEvent, WatchResponse


class Member:
    """The two things ``Headers`` asks of a member."""

    member_id = 7
    term = 3


def event(value: bytes) -> WatchEvent:
    return WatchEvent(EventType.PUT, KeyValue(b"k", value, 2, 5, 1))


class SharedEncodingTests(SynchronousTestCase):
    """One encoding per shared events tuple."""

    def setUp(self) -> None:
        self.member = Member()
        self.headers = Headers(self.member, 99)
        self.encoding = SharedEncoding(self.headers)

    def test_same_tuple_reuses_the_line(self):
        """Watchers sent the same tuple get the same bytes, which are the
        plain encoding of the response."""
        events = (event(b"v"),)
        first = self.encoding.line(WatchResponse(0, 5, events))
        self.assertIs(self.encoding.line(WatchResponse(0, 5, events)), first)
        self.assertEqual(first, json_line(watch_response(WatchResponse(0, 5, events), self.headers)))
        self.assertEqual(json.loads(first)["result"]["events"][0]["kv"]["value"], "dg==")

    def test_anything_else_is_encoded_again(self):
        """An equal but distinct tuple, another revision, watch id or term
        is encoded anew (and correctly)."""
        events = (event(b"v"),)
        first = self.encoding.line(WatchResponse(0, 5, events))
        again = self.encoding.line(WatchResponse(0, 5, (event(b"v"),)))
        self.assertIsNot(again, first)
        self.assertEqual(again, first)
        self.assertIn(b'"watch_id":"4"', self.encoding.line(WatchResponse(4, 5, events)))
        self.assertIn(b'"revision":"6"', self.encoding.line(WatchResponse(0, 6, events)))
        self.member.term = 4
        self.assertIn(b'"raft_term":"4"', self.encoding.line(WatchResponse(0, 6, events)))

    def test_responses_without_events(self):
        """Created, progress and cancel responses are encoded as they are."""
        created = self.encoding.line(WatchResponse(0, 5, created=True))
        self.assertEqual(json.loads(created)["result"]["created"], True)
        self.assertEqual(json.loads(self.encoding.line(WatchResponse(0, 5)))["result"]["header"]["revision"], "5")
