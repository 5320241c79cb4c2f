"""Reading the JSON-lines streams (watch, snapshot) and resuming a watch
without a gap or a duplicate (sans-IO)."""

from __future__ import annotations

import json

from metastore.client.wire import ClientError, Event, WatchMessage, parse_watch_message


class LineBuffer:
    """Bytes in, one decoded JSON message per complete line out; a message
    may be split across chunks or share one with others."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[dict]:
        """The messages completed by ``data``."""
        lines = (self._pending + data).split(b"\n")
        self._pending = lines.pop()
        return [json.loads(line) for line in lines if line.strip()]

    def finish(self) -> list[dict]:
        """The last message, if the stream ended without a newline."""
        rest, self._pending = self._pending, b""
        return [json.loads(rest)] if rest.strip() else []


class WatchCompacted(ClientError):
    """The watch's next revision was compacted away; ``compact_revision``
    is the oldest revision still available."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(400, 11, f"watch start revision has been compacted (compacted at {compact_revision})")
        self.compact_revision = compact_revision


class WatchCanceled(ClientError):
    """The member cancelled the watch for a reason other than compaction
    (the reason is the message).  Resuming elsewhere is safe."""

    def __init__(self, reason: str) -> None:
        super().__init__(503, 14, reason or "watch canceled by the member")


class WatchCursor:
    """Where a watch stands: ``next_revision`` is the first revision not
    yet delivered, so a new stream started there misses nothing and
    repeats nothing.  0 means "from now" until the first stream is created."""

    def __init__(self, start_revision: int = 0) -> None:
        self.next_revision = start_revision

    def accept(self, message: WatchMessage) -> list[Event]:
        """The events of ``message`` to deliver (those below
        ``next_revision`` were delivered by an earlier stream); raises
        ``WatchCompacted`` or ``WatchCanceled`` when the stream was cancelled."""
        if message.canceled:
            if message.compact_revision:
                raise WatchCompacted(message.compact_revision)
            raise WatchCanceled(message.cancel_reason)
        if message.created:
            if not self.next_revision:
                self.next_revision = message.header.revision + 1
            return []
        fresh = [e for e in message.events if e.kv.mod_revision >= self.next_revision]
        if fresh:
            self.next_revision = fresh[-1].kv.mod_revision + 1
        return fresh

    def message(self, body: dict) -> list[Event]:
        """``accept`` for a stream message's JSON."""
        return self.accept(parse_watch_message(body))
