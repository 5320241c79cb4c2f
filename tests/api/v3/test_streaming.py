"""``PushedLines``: one JSON line per write, the transport's flow control
passed to the source, and an end on ``end()`` or when the client leaves."""

from __future__ import annotations

import json

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from metastore.api.v3.streaming import PushedLines


class RecordingRequest:
    """The parts of ``twisted.web`` ``Request`` a producer uses."""

    def __init__(self) -> None:
        self.producer = None
        self.streaming = None
        self.written: list[bytes] = []
        self.finished: defer.Deferred = defer.Deferred()

    def registerProducer(self, producer, streaming) -> None:
        self.producer, self.streaming = producer, streaming

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def notifyFinish(self) -> defer.Deferred:
        return self.finished


class PushedLinesTests(SynchronousTestCase):
    """Messages pushed as they happen."""

    def setUp(self):
        self.request = RecordingRequest()
        self.calls = []
        self.lines = PushedLines(self.request, lambda: self.calls.append("pause"), lambda: self.calls.append("resume"))
        self.done = self.lines.start()

    def test_one_line_per_message_then_end(self):
        """Each message is one write of compact JSON and a newline; ``end``
        unregisters and fires ``done``; later writes are dropped."""
        self.assertEqual((self.request.producer, self.request.streaming), (self.lines, True))
        self.lines.write({"result": {"a": 1}})
        self.lines.write({"result": {}})
        self.assertEqual(self.request.written, [b'{"result":{"a":1}}\n', b'{"result":{}}\n'])
        self.assertEqual([json.loads(w) for w in self.request.written], [{"result": {"a": 1}}, {"result": {}}])
        self.assertNoResult(self.done)
        self.lines.end()
        self.successResultOf(self.done)
        self.assertIsNone(self.request.producer)
        self.lines.write({"late": True})
        self.assertEqual(len(self.request.written), 2)

    def test_flow_control_reaches_the_source(self):
        """The transport's pause and resume reach the source."""
        self.lines.pauseProducing()
        self.lines.resumeProducing()
        self.assertEqual(self.calls, ["pause", "resume"])

    def test_client_gone(self):
        """The connection lost (stopProducing, or the request failing) ends
        the stream; nothing more is written."""
        self.request.finished.errback(ConnectionError("gone"))
        self.successResultOf(self.done)
        self.assertIsNone(self.request.producer)
        self.lines.write({"x": 1})
        self.assertEqual(self.request.written, [])
        self.lines.stopProducing()
