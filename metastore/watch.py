"""The watch hub: every applied change, delivered to the watchers it matches.

``WatchHub`` listens to the key-value store (``KeyValueStore.listeners``),
so it sees each apply's events once committed, in revision order, on every
member alike: a watch on a follower sees what one on the leader sees.

A watch starts at ``start_revision``.  If that is at or below the store's
revision, the watch is *unsynced*: it replays the retained history from the
engine, a bounded chunk per reactor turn (never splitting a revision), and
ignores live events meanwhile; once it has replayed up to the store's
revision (read in the same turn), it is *synced* and gets live events from
the next revision on.  Replay and live delivery are on the reactor thread
between applies, so there is no gap and no duplicate.  This is etcd's
unsynced/synced split.

Every ``Watch`` has a bounded buffer: while its reader is paused
(``pause``, e.g. a TCP transport that asked its producer to pause),
responses queue there; past ``max_buffered_events`` the watch is
cancelled with a reason, never silently dropped from.  A paused unsynced
watch simply stops replaying until resumed.

A watch from a compacted revision gets its ``created`` response and then
a cancel with etcd's ``compact_revision``.  When the store jumps (a member
installs a snapshot), synced watches go back to replaying from where they
were; one that cannot (compacted meanwhile) is cancelled likewise.
"""

from __future__ import annotations

import enum
import itertools
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable

from twisted.application import service
from twisted.internet import task
from twisted.logger import Logger

from metastore.kv.errors import CompactedError
from metastore.kv.store import AppliedChanges, KeyValueStore
from metastore.periodic import start_periodic, stop_periodic
from metastore.storage.engine import Event, KeyValue

log = Logger()

DEFAULT_MAX_BUFFERED_EVENTS = 10_000
"""How many undelivered events a paused watcher may hold before it is cancelled."""

MEMBER_STOPPING = "the member is shutting down"
"""The cancel reason every watch gets when the member stops (an API may
end its streams with its own "server stopped" instead, so that clients
reconnect elsewhere)."""

REPLAY_CHUNK_EVENTS = 1000
"""About how many history events one replay step reads for one watcher."""


class EventType(enum.IntEnum):
    """``mvccpb.Event.EventType``."""

    PUT = 0
    DELETE = 1


class WatchFilter(enum.IntEnum):
    """``WatchCreateRequest.FilterType``: which events a watch does not want."""

    NOPUT = 0
    NODELETE = 1


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """``mvccpb.Event``: a put (``kv`` the new version) or a delete (``kv``
    holds the key and the deleting revision); ``prev_kv`` when asked for."""

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class WatchResponse:
    """``WatchResponse``: ``revision`` is the header revision (for events,
    the revision of the last one; for a progress notification, every event
    up to it was sent).  Events of one revision always come in one response."""

    watch_id: int
    revision: int
    events: tuple[WatchEvent, ...] = ()
    created: bool = False
    canceled: bool = False
    cancel_reason: str = ""
    compact_revision: int = 0
    fragment: bool = False
    """More responses of this revision follow (etcd's ``fragment``: an
    API splits a response too large for one message when asked to)."""

    @property
    def is_progress_notify(self) -> bool:
        """An empty response that only says how far the watch got."""
        return not (self.events or self.created or self.canceled)


Callback = Callable[[WatchResponse], None]


class Watch:
    """One watcher's handle: what it watches, where it is, its buffer."""

    __slots__ = (
        "id", "key", "range_end", "next_revision", "filters", "prev_kv", "progress_notify",
        "_hub", "_callback", "_max_buffered", "_buffer", "_buffered_events", "paused", "canceled",
    )  # fmt: skip

    def __init__(
        self,
        hub: "WatchHub",
        watch_id: int,
        key: bytes,
        range_end: bytes,
        next_revision: int,
        filters: frozenset[WatchFilter],
        prev_kv: bool,
        progress_notify: bool,
        callback: Callback,
        max_buffered_events: int,
    ) -> None:
        self.id = watch_id
        self.key, self.range_end = key, range_end
        self.next_revision = next_revision
        """The first revision whose events this watch still has to get."""
        self.filters, self.prev_kv, self.progress_notify = filters, prev_kv, progress_notify
        self._hub, self._callback = hub, callback
        self._max_buffered = max_buffered_events
        self._buffer: deque[WatchResponse] | None = None  # made when first needed
        self._buffered_events = 0
        self.paused = False
        self.canceled = False

    def matches(self, key: bytes) -> bool:
        """Whether ``key`` is in this watch's key or range."""
        if not self.range_end:
            return key == self.key
        return key >= self.key and (self.range_end == b"\0" or key < self.range_end)

    def wants(self, event: Event) -> bool:
        """Whether this watch reports ``event`` (key matches, not filtered)."""
        if event.deleted:
            return WatchFilter.NODELETE not in self.filters and self.matches(event.kv.key)
        return WatchFilter.NOPUT not in self.filters and self.matches(event.kv.key)

    def cancel(self, reason: str = "") -> None:
        """End the watch; its reader gets a last ``canceled`` response
        (after what is buffered, at once if it is paused)."""
        if self.canceled:
            return
        self._hub._remove(self)
        self.canceled = True
        response = WatchResponse(self.id, self._hub.revision, canceled=True, cancel_reason=reason)
        self._buffer = None
        self._buffered_events = 0
        self._deliver(response)

    def pause(self) -> None:
        """Hold responses in the buffer (the reader cannot take more now)."""
        self.paused = True

    def resume(self) -> None:
        """Deliver what is buffered, and go on delivering (and replaying)."""
        self.paused = False
        while self._buffer and not self.paused and not self.canceled:
            response = self._buffer.popleft()
            self._buffered_events -= len(response.events)
            self._deliver(response)
        if not self.canceled:
            self._hub._resumed(self)

    def request_progress(self) -> None:
        """Send a progress notification now: every event up to its
        revision has been sent (etcd's ``WatchProgressRequest``)."""
        if not self.canceled:
            self._push(WatchResponse(self.id, self._hub.progress_revision(self)))

    def _deliver(self, response: WatchResponse) -> None:
        """Hand ``response`` to the reader; a reader that raises loses its
        watch (the error is logged), never the member's apply loop."""
        try:
            self._callback(response)
        except Exception:
            log.failure("watch {id} reader failed; the watch is cancelled", id=self.id)
            if not self.canceled:
                self._hub._remove(self)
                self.canceled = True

    def _push(self, response: WatchResponse) -> None:
        if self.canceled:
            return
        if not self.paused and not self._buffer:
            self._deliver(response)
            return
        if self._buffer is None:
            self._buffer = deque()
        self._buffer.append(response)
        self._buffered_events += len(response.events)
        if self._buffered_events > self._max_buffered:
            self.cancel(f"watcher too slow: more than {self._max_buffered} events waiting to be read")


class WatchHub(service.Service):
    """Delivers the store's applied events to watchers (module docstring)."""

    def __init__(
        self,
        store: KeyValueStore,
        clock,
        *,
        max_buffered_events: int = DEFAULT_MAX_BUFFERED_EVENTS,
        progress_interval: float = 600.0,
        replay_chunk: int = REPLAY_CHUNK_EVENTS,
    ) -> None:
        self._store = store
        self._clock = clock
        self._max_buffered = max_buffered_events
        self._progress_interval = progress_interval
        self._replay_chunk = replay_chunk
        self._ids = itertools.count(1)
        self._by_key: dict[bytes, set[Watch]] = {}
        self._ranges: set[Watch] = set()
        self._unsynced: set[Watch] = set()
        self._replay_scheduled = False
        self._progress: task.LoopingCall | None = None
        self.revision = store.revision
        """The revision of the last apply this hub has seen."""
        store.listeners.append(self.applied)

    # -- service ------------------------------------------------------------------

    def startService(self) -> None:
        """Send progress notifications every ``progress_interval`` seconds."""
        super().startService()
        self._progress = start_periodic(self.notify_progress, self._progress_interval, self._clock)

    def stopService(self):
        """Stop notifying; cancel every watch (the member is going away)."""
        super().stopService()
        stop_periodic(self._progress)
        for watch in list(self.watches()):
            watch.cancel(MEMBER_STOPPING)

    # -- watches ---------------------------------------------------------------

    def watch(
        self,
        key: bytes,
        range_end: bytes = b"",
        start_revision: int = 0,
        filters: Iterable[WatchFilter] = (),
        prev_kv: bool = False,
        progress_notify: bool = False,
        *,
        callback: Callback,
    ) -> Watch:
        """Start a watch on ``key`` or ``[key, range_end)`` from
        ``start_revision`` (0: the next revision); ``callback`` gets its
        ``created`` response at once, then its events."""
        store = self._store
        watch = Watch(
            self, next(self._ids), key, range_end, start_revision or store.revision + 1,
            frozenset(WatchFilter(f) for f in filters), prev_kv, progress_notify, callback, self._max_buffered,
        )  # fmt: skip
        watch._deliver(WatchResponse(watch.id, store.revision, created=True))
        if watch.canceled:
            return watch
        if 0 < start_revision < store.compacted_revision:
            self._cancel_compacted(watch)
            return watch
        if watch.next_revision <= store.revision:
            self._unsynced.add(watch)
            self._schedule_replay()
        else:
            self._add_synced(watch)
        return watch

    def watches(self) -> list[Watch]:
        """Every live watch."""
        synced = set(self._ranges).union(*self._by_key.values()) if self._by_key else set(self._ranges)
        return sorted(synced | self._unsynced, key=lambda w: w.id)

    def notify_progress(self) -> None:
        """Tell every synced watch that asked for it how far it is."""
        for watch in self.watches():
            if watch.progress_notify and watch not in self._unsynced:
                watch._push(WatchResponse(watch.id, self.progress_revision(watch)))

    def progress_revision(self, watch: Watch) -> int:
        """The revision up to which ``watch`` has been sent every event."""
        if watch in self._unsynced:
            return watch.next_revision - 1
        return self.revision

    # -- live events ------------------------------------------------------------

    def applied(self, changes: AppliedChanges) -> None:
        """A store listener: deliver ``changes``' events to synced watches."""
        if changes.previous_revision != self.revision:
            self._resync(self.revision)  # a snapshot was installed in between
        self.revision = changes.revision
        if not changes.events:
            return
        found: dict[Watch, list[WatchEvent]] = {}
        for event, prev in zip(changes.events, changes.prev_kvs):
            at = event.kv.mod_revision
            # One WatchEvent per event (two with prev_kv asked), however many watchers.
            shared: list[WatchEvent | None] = [None, None]
            for watch in itertools.chain(self._by_key.get(event.kv.key, ()), self._ranges):
                if at >= watch.next_revision and watch.wants(event):
                    made = shared[watch.prev_kv]
                    if made is None:
                        made = shared[watch.prev_kv] = _watch_event(event, prev if watch.prev_kv else None)
                    found.setdefault(watch, []).append(made)
        # Watchers that get the same events get the same tuple, so an API can
        # encode it once for all of them (a fan-out to many watchers of a prefix).
        tuples: dict[tuple[int, ...], tuple[WatchEvent, ...]] = {}
        for watch, events in found.items():
            same = tuples.setdefault(tuple(map(id, events)), tuple(events))
            watch._push(WatchResponse(watch.id, changes.revision, same))

    # -- replay -----------------------------------------------------------------

    def _schedule_replay(self) -> None:
        if not self._replay_scheduled:
            self._replay_scheduled = True
            self._clock.callLater(0, self._replay_step)

    def _replay_step(self) -> None:
        """One bounded slice of history for each unsynced, unpaused watch;
        a watch that reaches the store's revision joins the live stream."""
        self._replay_scheduled = False
        store = self._store
        for watch in sorted(self._unsynced, key=lambda w: w.id):
            if watch.paused or watch.canceled:
                continue
            if watch.next_revision < store.compacted_revision:
                self._unsynced.discard(watch)
                self._cancel_compacted(watch)
                continue
            self._replay(watch, store.revision)
            if watch.next_revision > store.revision and not watch.canceled:
                self._unsynced.discard(watch)
                self._add_synced(watch)
        if any(not w.paused for w in self._unsynced):
            self._schedule_replay()

    def _replay(self, watch: Watch, until: int) -> None:
        """Send ``watch``, in one response, the events it wants of about one
        chunk of whole revisions from its ``next_revision`` up to ``until``."""
        events: list[WatchEvent] = []
        current, read, through = 0, 0, until
        for event in self._store.history(watch.next_revision):
            at = event.kv.mod_revision
            if at > until:
                break
            if at != current:
                if read >= self._replay_chunk:
                    through = current
                    break
                current = at
            read += 1
            if watch.wants(event):
                events.append(_watch_event(event, self._prev(event) if watch.prev_kv else None))
        if events:
            watch._push(WatchResponse(watch.id, through, tuple(events)))
        watch.next_revision = through + 1

    def _prev(self, event: Event) -> KeyValue | None:
        """The version of ``event``'s key just before it, when still retained."""
        try:
            return self._store.get(event.kv.key, event.kv.mod_revision - 1)
        except CompactedError:
            return None

    def _resumed(self, watch: Watch) -> None:
        if watch in self._unsynced:
            self._schedule_replay()

    def _resync(self, reached: int) -> None:
        """Every synced watch goes back to replaying from after ``reached``
        (or from its start, for one that starts later)."""
        for watch in list(itertools.chain(*self._by_key.values(), self._ranges)):
            self._remove(watch)
            watch.next_revision = max(watch.next_revision, reached + 1)
            self._unsynced.add(watch)
        self._schedule_replay()

    def _cancel_compacted(self, watch: Watch) -> None:
        compacted = self._store.compacted_revision
        self._remove(watch)
        watch.canceled = True
        watch._deliver(
            WatchResponse(watch.id, self._store.revision, canceled=True, compact_revision=compacted,
                          cancel_reason="etcdserver: mvcc: required revision has been compacted")
        )  # fmt: skip

    def _add_synced(self, watch: Watch) -> None:
        if watch.range_end:
            self._ranges.add(watch)
        else:
            self._by_key.setdefault(watch.key, set()).add(watch)

    def _remove(self, watch: Watch) -> None:
        self._unsynced.discard(watch)
        self._ranges.discard(watch)
        watchers = self._by_key.get(watch.key)
        if watchers is not None:
            watchers.discard(watch)
            if not watchers:
                del self._by_key[watch.key]


def _watch_event(event: Event, prev: KeyValue | None) -> WatchEvent:
    return WatchEvent(EventType.DELETE if event.deleted else EventType.PUT, event.kv, prev)
