"""Writing a streaming RPC's messages as the gateway does: one JSON object
per line and per HTTP chunk.  ``LineProducer`` pulls them from an iterator
(a large stream, a snapshot, is never held in memory whole);
``PushedLines`` writes them as they happen (a watch) and passes the
transport's flow control back to their source."""

from __future__ import annotations

import json
from typing import Callable, Iterator

from twisted.internet import defer
from zope.interface import implementer
from twisted.internet.interfaces import IPullProducer, IPushProducer


@implementer(IPullProducer)
class LineProducer:
    """Writes one message of ``messages`` per ``resumeProducing`` to
    ``request``; ``done`` fires after the last (the caller then ends the
    response) or when the client goes away."""

    def __init__(self, request, messages: Iterator[dict]) -> None:
        self._request = request
        self._messages = messages
        self.done: defer.Deferred = defer.Deferred()
        request.notifyFinish().addErrback(self._finished)

    def start(self) -> defer.Deferred:
        """Register with the request; fires once the stream ended."""
        self._request.registerProducer(self, False)
        return self.done

    def resumeProducing(self) -> None:
        """Write the next message, or end the response after the last."""
        if self.done.called:
            return
        message = next(self._messages, None)
        if message is None:
            self._request.unregisterProducer()
            self._finished(None)
            return
        self._request.write(json_line(message))

    def stopProducing(self) -> None:
        """The connection is gone: stop reading."""
        self._close()

    def _finished(self, _) -> None:
        self._close()
        if not self.done.called:
            self.done.callback(None)

    def _close(self) -> None:
        close = getattr(self._messages, "close", None)
        if close is not None:
            close()


def json_line(message: dict) -> bytes:
    """``message`` as one line of compact JSON."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


@implementer(IPushProducer)
class PushedLines:
    """Writes each message given to ``write`` to ``request`` at once, one
    HTTP chunk each; calls ``pause``/``resume`` when the transport asks
    (its buffer is full / drained).  ``done`` fires when ``end`` is called
    or the client goes away, whichever comes first."""

    def __init__(self, request, pause: Callable[[], None], resume: Callable[[], None]) -> None:
        self._request = request
        self._pause, self._resume = pause, resume
        self.done: defer.Deferred = defer.Deferred()
        request.notifyFinish().addBoth(self._gone)

    def start(self) -> defer.Deferred:
        """Register with the request; fires once the stream ended."""
        self._request.registerProducer(self, True)
        return self.done

    def write(self, message: dict) -> None:
        """Send one message now (nothing once the stream ended)."""
        self.write_line(json_line(message))

    def write_line(self, line: bytes) -> None:
        """Send one message already encoded by ``json_line``."""
        if not self.done.called:
            self._request.write(line)

    def end(self) -> None:
        """No more messages: the response may finish."""
        self._gone(None)

    def pauseProducing(self) -> None:
        """The transport's buffer is full."""
        self._pause()

    def resumeProducing(self) -> None:
        """The transport's buffer drained."""
        self._resume()

    def stopProducing(self) -> None:
        """The connection is gone."""
        self._gone(None)

    def _gone(self, _) -> None:
        if not self.done.called:
            if self._request.producer is self:
                self._request.unregisterProducer()
            self.done.callback(None)
