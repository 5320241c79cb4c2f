"""Writing a server-streaming RPC's messages as the gateway does: one JSON
object per line, pulled by the transport so a large stream (a snapshot)
is never held in memory whole."""

from __future__ import annotations

import json
from typing import Iterator

from twisted.internet import defer
from zope.interface import implementer
from twisted.internet.interfaces import IPullProducer


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
        self._request.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

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
