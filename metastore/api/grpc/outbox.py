"""The messages waiting to be written to one server stream, with a bound.

A ``grpc.aio`` write completes only when gRPC has room for the message,
which HTTP/2 flow control takes away from a client that stops reading.
Producers on the reactor (the watch hub) must never wait for that, so
they ``put`` into an ``Outbox`` and one writer task (``run``) writes in
order.  Past ``high_bytes`` unwritten the outbox calls ``on_full`` (the
producer pauses) and ``room()`` blocks (the reader of the client's
requests waits); once written down to ``low_bytes`` it calls ``on_room``.
What a paused producer holds is its own bound's business.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Callable

HIGH_WATER_BYTES = 4 * 1024 * 1024
"""Unwritten bytes above which a stream's producers pause."""

LOW_WATER_BYTES = 1024 * 1024
"""Unwritten bytes below which they resume."""


class Outbox:
    """An ordered, byte-counted queue of protobuf messages for one stream."""

    def __init__(
        self,
        write: Callable,
        *,
        high_bytes: int = HIGH_WATER_BYTES,
        low_bytes: int = LOW_WATER_BYTES,
        on_full: Callable[[], None] = lambda: None,
        on_room: Callable[[], None] = lambda: None,
    ) -> None:
        self._write = write
        self._high, self._low = high_bytes, low_bytes
        self.on_full, self.on_room = on_full, on_room
        self._queue: deque = deque()
        self.pending_bytes = 0
        """Bytes put and not yet written."""
        self.full = False
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    def put(self, message) -> None:
        """Queue ``message`` for writing; never waits."""
        size = message.ByteSize()
        self._queue.append((message, size))
        self.pending_bytes += size
        self._ready.set()
        if not self.full and self.pending_bytes > self._high:
            self.full = True
            self._room.clear()
            self.on_full()

    async def room(self) -> None:
        """Return once the outbox is not full."""
        await self._room.wait()

    async def run(self) -> None:
        """Write queued messages in order, forever (cancel to stop); a failed
        write (the client went away) ends it with that error."""
        while True:
            while not self._queue:
                self._ready.clear()
                await self._ready.wait()
            message, size = self._queue.popleft()
            await self._write(message)
            self.pending_bytes -= size
            if self.full and self.pending_bytes <= self._low:
                self.full = False
                self._room.set()
                self.on_room()
