"""The local link between a front process and its member's core: framed,
batched msgpack over a Unix socket.

A frame is a 4-byte big-endian length and a ``codec``-packed list of
messages; each message is a tuple whose first item names its kind.  A
message sent is packed and queued, and the queue goes out as one frame
(a msgpack array header and the packed messages) when the reactor next
turns, so a busy link carries many requests (or answers) per write and
per system call, and a message for several links is packed once.  Messages arrive in the order they were sent:
the core relies on it (an answer follows the applied entries it depends on).

Bytes that do not decode, or a frame over ``MAX_LENGTH``, drop the link.
"""

from __future__ import annotations

import struct

from twisted.internet import protocol
from twisted.logger import Logger
from twisted.protocols.basic import Int32StringReceiver

from metastore.workers import codec

MAX_LENGTH = 512 * 2**20
"""The largest frame accepted.  One message is at most a request or answer
of ``--max-request-bytes`` (and its keys) or a chunk of the store's dump
(``DUMP_CHUNK_BYTES``); a batch of many is far below this."""

log = Logger()


class BatchedLink(Int32StringReceiver):
    """One end of a link.  Subclasses implement ``message_received`` and
    may override ``link_made`` / ``link_lost``; ``send`` queues a message."""

    MAX_LENGTH = MAX_LENGTH

    _clock = None
    _flush_call = None
    _lost = False

    def __init__(self, clock) -> None:
        self._clock = clock
        self._queue: list = []
        self.frames_sent = 0
        """Frames written so far (each one batch of messages)."""
        self.messages_sent = 0
        """Messages written so far."""

    def connectionMade(self) -> None:
        """The link is up."""
        self.link_made()

    def send(self, message: tuple) -> None:
        """Queue ``message``; it goes out with the others of this reactor turn.
        A message the codec cannot carry is a bug: it drops the link, so
        the other end fails what it waits for at once."""
        if self._lost:
            return
        try:
            packed = codec.pack(message)
        except Exception:
            log.failure("dropping the worker link: a message cannot be encoded")
            self.transport.loseConnection()
            return
        self.send_packed(packed)

    def send_packed(self, packed: bytes) -> None:
        """Queue a message already packed by ``codec.pack`` (one packing of
        a message that goes to several links)."""
        if self._lost:
            return
        self._queue.append(packed)
        if self._flush_call is None:
            self._flush_call = self._clock.callLater(0, self.flush)

    def flush(self) -> None:
        """Write every queued message as one frame now."""
        self._flush_call = None
        if not self._queue or self._lost:
            return
        queue, self._queue = self._queue, []
        self.frames_sent += 1
        self.messages_sent += len(queue)
        header = codec.array_header(len(queue))
        self.transport.writeSequence([struct.pack("!I", len(header) + sum(map(len, queue))), header, *queue])

    def stringReceived(self, data: bytes) -> None:
        """Decode a frame and hand over its messages in order; a frame that
        does not decode drops the link."""
        try:
            messages = codec.unpack(data)
        except Exception as e:
            log.error("dropping the worker link: a frame does not decode: {e}", e=e)
            self.transport.loseConnection()
            return
        for message in messages:
            if self._lost:
                return
            self.message_received(message)

    def lengthLimitExceeded(self, length: int) -> None:
        """A frame over ``MAX_LENGTH``: drop the link."""
        log.error("dropping the worker link: a frame of {n} bytes", n=length)
        self.transport.loseConnection()

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        """Forget what was queued and tell the subclass."""
        self._lost = True
        self._queue = []
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        self.link_lost(reason)

    def message_received(self, message: tuple) -> None:
        """One decoded message."""
        raise NotImplementedError

    def link_made(self) -> None:
        """Called once connected."""

    def link_lost(self, reason) -> None:
        """Called once the link is gone."""
