"""The v3 Watch service: one client stream of watches, as etcd's server
keeps them, on etcd-shaped dataclasses.

A ``WatchStream`` is what a client's ``Watch`` RPC gets: watches created on
it have ids of their own (from 0, or the one the client chose), its
responses go to one ``send`` function in order, a response too large for
one message is split in fragments when the watch asked for it (at the
sizes etcd splits at: protobuf's), and the
stream's reader can pause it (its watches buffer, boundedly: past the
bound a watch is cancelled with a reason) and resume it.  Closing the
stream (the client went away) cancels every watch and frees it.

Nothing here knows JSON or protobuf: the JSON API (``watch_codec`` and the
``/v3/watch`` route) and the gRPC servicer share it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from metastore.kv.errors import KVError
from metastore.facade import MEMBER_STOPPING, MemberFacade, Watch, WatchEvent, WatchFilter, WatchResponse

GRPC_OVERHEAD_BYTES = 512 * 1024
"""etcd lets a watch message exceed ``--max-request-bytes`` by this much
before it fragments it."""

INVALID_WATCH_ID = -1
"""etcd's watch id of a response that belongs to no watch (a progress
answer, a refused create)."""

DUPLICATE_WATCH_ID = "mvcc: duplicate watch ID provided on the WatchStream"

EMPTY_RANGE = "mvcc: watcher range is empty"
TOO_MANY_WATCHERS = "etcdserver: too many watchers on this stream"
"""The cancel reason of a create beyond ``--max-watchers-per-stream`` (MetaStore's own limit)."""

FROM_KEY = b"\0"
"""A ``range_end`` of one zero byte: every key from ``key`` on."""


@dataclass(frozen=True, slots=True)
class WatchCreateRequest:
    """``WatchCreateRequest``: watch ``key``, ``[key, range_end)``, or every
    key from ``key`` (``range_end`` ``b"\\0"``) from ``start_revision`` (0:
    the next one); ``watch_id`` 0 lets the stream pick the id."""

    key: bytes
    range_end: bytes = b""
    start_revision: int = 0
    filters: tuple[WatchFilter, ...] = ()
    prev_kv: bool = False
    progress_notify: bool = False
    watch_id: int = 0
    fragment: bool = False


RESPONSE_ENVELOPE_BYTES = 48
"""About what a ``WatchResponse`` takes on the wire besides its events
(header, watch id, fragment flag)."""


def _varint_size(value: int) -> int:
    if value < 0:
        return 10
    size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


def _field_size(payload: int) -> int:
    """A length-delimited field of ``payload`` bytes, tag and length included."""
    return 1 + _varint_size(payload) + payload


def key_value_wire_size(kv) -> int:
    """An ``mvccpb.KeyValue``'s bytes as protobuf encodes it."""
    size = sum(_field_size(len(b)) for b in (kv.key, kv.value) if b)
    return size + sum(1 + _varint_size(n) for n in (kv.create_revision, kv.mod_revision, kv.version, kv.lease) if n)


def event_wire_size(event: WatchEvent) -> int:
    """An ``mvccpb.Event``'s bytes inside a ``WatchResponse`` (its field tag
    and length included), as protobuf encodes it: what etcd measures when
    it fragments."""
    size = (2 if event.type else 0) + _field_size(key_value_wire_size(event.kv))
    if event.prev_kv is not None:
        size += _field_size(key_value_wire_size(event.prev_kv))
    return _field_size(size)


def fragments(
    response: WatchResponse,
    limit: int,
    size: Callable[[WatchEvent], int] = event_wire_size,
    envelope: int = RESPONSE_ENVELOPE_BYTES,
) -> list[WatchResponse]:
    """``response`` split as etcd splits it: whole when it (``envelope``
    and its events' ``size``) stays under ``limit`` or it has one event;
    otherwise in parts each under ``limit`` (but at least one event), every
    part but the last marked ``fragment``."""
    events = response.events
    sizes = [size(event) for event in events]
    if len(events) < 2 or envelope + sum(sizes) < limit:
        return [response]
    parts: list[tuple[WatchEvent, ...]] = []
    start, total = 0, envelope
    for i, event_size in enumerate(sizes):
        if i > start and total + event_size >= limit:
            parts.append(events[start:i])
            start, total = i, envelope
        total += event_size
    parts.append(events[start:])
    return [dataclasses.replace(response, events=part, fragment=i < len(parts) - 1) for i, part in enumerate(parts)]


class WatchStream:
    """One client's stream of watches (see the module docstring)."""

    def __init__(
        self,
        member: MemberFacade,
        send: Callable[[WatchResponse], None],
        *,
        fragment_limit: int,
        on_stopping: Callable[[], None] | None = None,
        max_watchers: int = 0,
        token: str | None = None,
    ) -> None:
        self._member = member
        self._max_watchers = max_watchers
        self._token = token
        self._on_stopping = on_stopping
        self._send = send
        self._fragment_limit = fragment_limit
        self._watches: dict[int, Watch] = {}
        self._next_id = 0
        self._paused = False
        self.closed = False

    @property
    def watch_ids(self) -> list[int]:
        """The ids of the live watches on this stream."""
        return sorted(self._watches)

    def create(self, request: WatchCreateRequest) -> int:
        """Start a watch; its ``created`` response is sent at once (then,
        for a compacted start revision, its cancel with
        ``compact_revision``).  Returns its id, or ``INVALID_WATCH_ID`` when
        the id asked for is taken or the range is empty (that answer is
        sent too).  The empty key is the smallest key, ``b"\\0"``, and a
        negative start revision is below any history (so compacted), as in
        etcd.  Beyond ``max_watchers`` live watches (when not 0) a create
        is refused the same way, with ``TOO_MANY_WATCHERS``."""
        if self._max_watchers and len(self._watches) >= self._max_watchers:
            return self._refuse(f"{TOO_MANY_WATCHERS} (limit {self._max_watchers})")
        key = request.key or b"\0"
        if request.range_end not in (b"", FROM_KEY) and key >= request.range_end:
            return self._refuse(EMPTY_RANGE)
        try:
            user = self._member.authorize_read(self._token, key, request.range_end)
        except KVError as e:  # etcd refuses the create with the auth error as the reason
            return self._refuse(e.message)
        if request.watch_id:
            if request.watch_id in self._watches:
                return self._refuse(DUPLICATE_WATCH_ID)
            watch_id = request.watch_id
        else:
            while self._next_id in self._watches:
                self._next_id += 1
            watch_id = self._next_id
            self._next_id += 1
        watch = self._member.watch(
            key, request.range_end, request.start_revision if request.start_revision >= 0 else 1,
            request.filters, request.prev_kv, request.progress_notify,
            callback=lambda response: self._forward(watch_id, request.fragment, response),
        )  # fmt: skip
        if not watch.canceled:
            self._member.track_watch(user, key, request.range_end, watch)
            self._watches[watch_id] = watch
            if self._paused:
                watch.pause()
        return watch_id

    def cancel(self, watch_id: int) -> None:
        """End watch ``watch_id``; its ``canceled`` response is sent (no
        answer for an id that is not live, as etcd)."""
        watch = self._watches.get(watch_id)
        if watch is not None:
            watch.cancel()

    def request_progress(self) -> None:
        """etcd 3.4's answer to a progress request: a response of no watch
        at the store's revision."""
        self._deliver(WatchResponse(INVALID_WATCH_ID, self._member.revision))

    def pause(self) -> None:
        """The reader cannot take more now: every watch buffers."""
        self._paused = True
        for watch in list(self._watches.values()):
            watch.pause()

    def resume(self) -> None:
        """The reader can take more: buffered responses go out."""
        self._paused = False
        for watch in list(self._watches.values()):
            if self._paused:
                break  # a resumed watch filled the reader up again
            watch.resume()

    def close(self) -> None:
        """The client went away: cancel every watch, send nothing more."""
        self.closed = True
        watches, self._watches = list(self._watches.values()), {}
        for watch in watches:
            watch.cancel()

    def _refuse(self, reason: str) -> int:
        self._deliver(WatchResponse(INVALID_WATCH_ID, self._member.revision, created=True, canceled=True,
                                    cancel_reason=reason))  # fmt: skip
        return INVALID_WATCH_ID

    def _forward(self, watch_id: int, fragment: bool, response: WatchResponse) -> None:
        if response.canceled:
            self._watches.pop(watch_id, None)
            if self._on_stopping is not None and response.cancel_reason == MEMBER_STOPPING:
                self.closed = True
                self._on_stopping()
                return
        response = dataclasses.replace(response, watch_id=watch_id)
        if fragment and response.events:
            for part in fragments(response, self._fragment_limit):
                self._deliver(part)
        else:
            self._deliver(response)

    def _deliver(self, response: WatchResponse) -> None:
        if not self.closed:
            self._send(response)


class WatchService:
    """etcd's ``Watch`` service over a member's facade: opens streams."""

    def __init__(self, member: MemberFacade, max_request_bytes: int, max_watchers_per_stream: int = 0) -> None:
        self._member = member
        self.max_watchers_per_stream = max_watchers_per_stream
        """Live watches one stream may hold (0: no limit)."""
        self.fragment_limit = max_request_bytes + GRPC_OVERHEAD_BYTES

    def open(
        self, send: Callable[[WatchResponse], None], on_stopping: Callable[[], None] | None = None,
        token: str | None = None,
    ) -> WatchStream:
        """A new stream whose responses go to ``send``.  With ``on_stopping``,
        the member stopping calls it once and sends nothing more (instead
        of a ``canceled`` per watch), for an API whose clients must see
        the stream fail, not end, so that they resume elsewhere.  Every
        watch created on it is checked against the user of ``token`` (and
        cancelled when that user may no longer read its range)."""
        return WatchStream(self._member, send, fragment_limit=self.fragment_limit, on_stopping=on_stopping,
                           max_watchers=self.max_watchers_per_stream, token=token)

