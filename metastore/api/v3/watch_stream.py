"""One client's watch stream: many watches multiplexed on one connection.

etcd's ``Watch`` RPC is a bidirectional stream on which a client creates
and cancels any number of watches and asks for progress; the answers and
events of all of them come back on the same stream, told apart by a
``watch_id`` that is the stream's own (ids count from 0 per stream; a
client may choose one).  ``WatchStream`` is that bookkeeping over the
member's watch hub (``MemberFacade.watch``), independent of the wire: the
gRPC servicer and a JSON stream both feed it requests and hand its
``send`` the responses to write, with ``watch_id`` already the stream's.

Behaviour as etcd 3.4 shows it (checked against ``/usr/bin/etcd``):

- a create answers ``created`` with the new id; a duplicate id, or a range
  whose end is not above its key, answers ``created`` *and* ``canceled``
  with watch id -1 and etcd's reason, and makes no watch;
- a cancel of a watch of this stream answers ``canceled``; of an unknown
  id, nothing;
- a progress request answers one response with watch id -1 and the
  store's revision (clientv3 hands it to every watch of the stream);
- a watch from a compacted revision answers ``created``, then ``canceled``
  with ``compact_revision``.

Flow control is the writer's to drive: ``pause()`` when it cannot take
more, ``resume()`` when it can.  Paused watches keep their responses in
the hub's bounded buffer; one that passes the bound is cancelled with a
reason (the hub's ``watcher too slow``), which still reaches ``send``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from metastore.facade import Watch, WatchFilter, WatchResponse

PROGRESS_WATCH_ID = -1
"""The watch id of an answer that belongs to no one watch (etcd's -1)."""

DUPLICATE_ID = "mvcc: duplicate watch ID provided on the WatchStream"
EMPTY_RANGE = "mvcc: watcher range is empty"

FROM_KEY = b"\0"
"""A ``range_end`` of one zero byte: every key from ``key`` on."""


@dataclass(frozen=True, slots=True)
class WatchCreate:
    """``WatchCreateRequest``'s fields (``watch_id`` 0: the stream picks one)."""

    key: bytes
    range_end: bytes = b""
    start_revision: int = 0
    filters: tuple[WatchFilter, ...] = ()
    prev_kv: bool = False
    progress_notify: bool = False
    watch_id: int = 0
    fragment: bool = False


Send = Callable[[WatchResponse], None]


class WatchStream:
    """The watches of one client stream, over a member facade (module
    docstring).  ``send`` gets every response for the client, in order,
    on the reactor thread; it must not raise."""

    def __init__(self, member, send: Send) -> None:
        self._member = member
        self._send = send
        self._watches: dict[int, Watch] = {}
        self._next_id = 0
        self._paused = False
        self.closed = False
        self.fragment: set[int] = set()
        """The ids of this stream's watches that asked for fragmented responses."""

    def create(self, request: WatchCreate) -> None:
        """Start the watch ``request`` asks for; its ``created`` answer
        (or a refusal) goes to ``send`` at once."""
        if self.closed:
            return
        key = request.key or b"\0"  # etcd: the empty key is the smallest key
        range_end = request.range_end
        if range_end not in (b"", FROM_KEY) and key >= range_end:
            self._refuse(EMPTY_RANGE)
            return
        if request.watch_id and request.watch_id in self._watches:
            self._refuse(DUPLICATE_ID)
            return
        stream_id = request.watch_id or self._free_id()
        if request.fragment:
            self.fragment.add(stream_id)
        # A negative start is below any retained history: the hub cancels
        # it as compacted, as etcd does.
        start = 1 if request.start_revision < 0 else request.start_revision
        watch = self._member.watch(
            key, range_end, start, request.filters, request.prev_kv, request.progress_notify,
            callback=lambda response: self._forward(stream_id, response),
        )  # fmt: skip
        if not watch.canceled:
            self._watches[stream_id] = watch
            if self._paused:
                watch.pause()

    def cancel(self, watch_id: int) -> None:
        """Cancel watch ``watch_id`` of this stream; its ``canceled``
        answer goes to ``send``.  An unknown id is ignored, as etcd does."""
        watch = self._watches.get(watch_id)
        if watch is not None:
            watch.cancel()

    def request_progress(self) -> None:
        """Answer a progress request: watch id -1 at the store's revision."""
        if not self.closed:
            self._send(WatchResponse(PROGRESS_WATCH_ID, self._member.revision))

    def pause(self) -> None:
        """The client cannot take more now: hold every watch's responses."""
        self._paused = True
        for watch in list(self._watches.values()):
            watch.pause()

    def resume(self) -> None:
        """The client reads again: deliver what the watches hold."""
        self._paused = False
        for watch in list(self._watches.values()):
            if self._paused:
                break  # a resumed watch filled the writer up again
            watch.resume()

    def close(self) -> None:
        """The client went away: end every watch, send nothing more."""
        self.closed = True
        watches, self._watches = list(self._watches.values()), {}
        for watch in watches:
            watch.cancel()

    @property
    def watch_ids(self) -> list[int]:
        """The ids of this stream's live watches."""
        return sorted(self._watches)

    def _free_id(self) -> int:
        while self._next_id in self._watches:
            self._next_id += 1
        stream_id = self._next_id
        self._next_id += 1
        return stream_id

    def _refuse(self, reason: str) -> None:
        self._send(WatchResponse(PROGRESS_WATCH_ID, self._member.revision, created=True, canceled=True,
                                 cancel_reason=reason))  # fmt: skip

    def _forward(self, stream_id: int, response: WatchResponse) -> None:
        if response.canceled:
            self._watches.pop(stream_id, None)
            self.fragment.discard(stream_id)
        if not self.closed:
            self._send(dataclasses.replace(response, watch_id=stream_id))
