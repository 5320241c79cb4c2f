"""The memory engine: the keyspace and its history in ``sortedcontainers``.

Three structures, changed only on the reactor thread:

- ``_history``: dict of revision -> version, every retained version, with
  ``_order``, the revisions in ascending order.  Commits only ever add
  revisions above every other, so ``_order`` is appended to and stays
  sorted (bisect finds a revision); compaction deletes from the dict only,
  and ``_order`` drops the deleted revisions once they are half of it;
- ``_index``: ``SortedDict`` of key -> ascending list of its retained
  revisions (tombstones included), the key index;
- ``_live``: ``SortedDict`` of key -> its newest ``KeyValue``, for keys not
  deleted: reads of the newest state never touch the history;
- ``_leases``: lease id -> ``Lease``, and ``_lease_keys``: lease id -> the
  set of live keys attached to it.

What a put leaves here is kept to one object the garbage collector tracks,
its ``KeyValue``: every tracked object a put leaves alive is walked by the
collector's next young pass (and, until it dies, by the older passes), and
at thousands of puts a second those passes are the longest stalls of the
reactor thread.  So a revision ``(main, sub)`` is kept as one ``int``
(``_packed``), which the collector does not track, and the history holds a
put's ``KeyValue`` itself; only a tombstone is kept as its ``Event``.
``Event`` objects are made again when the history is read (a watch
replaying, a snapshot), which is rare next to puts.

Durability comes from the WAL, not from this engine: on start the node
rebuilds it from a snapshot and the log.
"""

from __future__ import annotations

import bisect
from itertools import islice
from typing import Iterable, Iterator, Sequence

from sortedcontainers import SortedDict

from metastore.storage.engine import MAX_SUB, ClusterState, Event, KeyValue, Lease, LeaseChanges

INITIAL_REVISION = 1
"""An empty store's revision, as in etcd: the first write gets revision 2."""


_SUB_BITS = 64
"""A packed revision is ``main << _SUB_BITS | sub``; ``MAX_SUB`` < 2**64."""
_SUB_MASK = (1 << _SUB_BITS) - 1


def _packed(main: int, sub: int) -> int:
    """Revision ``(main, sub)`` as one int, in the same order as the pairs."""
    return main << _SUB_BITS | sub


def _event(at: int, stored: KeyValue | Event) -> Event:
    """The history's event at packed revision ``at`` from what ``_history`` keeps there."""
    return stored if type(stored) is Event else Event(stored, at & _SUB_MASK)


def _key_bounds(key: bytes, range_end: bytes | None) -> tuple[bytes, bytes | None]:
    """``irange`` bounds (inclusive min, exclusive max or None for no end)."""
    return key, None if range_end == b"\0" else range_end


class SnapshotView:
    """The history as of the view's creation, readable on another thread
    while the reactor thread goes on committing.

    Creating it copies the list of revisions (pointers only).  Commits only
    add revisions after the copied ones, and compaction steps wait while
    the view is open (``MemoryEngine.compact_step``), so every copied
    revision is still there when the view reads it.
    """

    def __init__(self, engine: "MemoryEngine") -> None:
        self._engine = engine
        self._source = engine._history
        self._revisions = engine._order[:]

    def __iter__(self) -> Iterator[Event]:
        source = self._source
        try:
            for at in self._revisions:
                stored = source.get(at)
                if stored is not None:  # else removed before the view was taken
                    yield _event(at, stored)
        finally:
            self._engine._end_view(self)

    def __len__(self) -> int:
        return len(self._revisions)


class MemoryEngine:
    """An in-memory ``Engine`` (see ``metastore.storage.engine``)."""

    keeps_applied_state = False
    """Rebuilt from snapshot + WAL on start (see ``Engine``)."""

    def __init__(self) -> None:
        self._history: dict[int, KeyValue | Event] = {}
        """Packed revision -> a put's ``KeyValue`` or a tombstone's ``Event``."""
        self._order: list[int] = []
        self._index: SortedDict = SortedDict()
        self._live: SortedDict = SortedDict()
        self._revision = INITIAL_REVISION
        self._applied_index = 0
        self._compacted = 0
        self._physically_compacted = 0
        self._compact_cursor = _packed(0, MAX_SUB)
        self._stale = 0
        self._cluster_state: ClusterState | None = None
        self._view: SnapshotView | None = None
        self._leases: dict[int, Lease] = {}
        self._lease_keys: dict[int, set[bytes]] = {}

    @property
    def revision(self) -> int:
        """The revision of the newest write (1 for an empty store)."""
        return self._revision

    @property
    def applied_index(self) -> int:
        """The raft index of the last applied entry."""
        return self._applied_index

    @property
    def compacted_revision(self) -> int:
        """The newest compaction committed (0 for none)."""
        return self._compacted

    @property
    def physically_compacted_revision(self) -> int:
        """No version hidden at this revision is left (see ``Engine``)."""
        return self._physically_compacted

    @property
    def cluster_state(self) -> ClusterState | None:
        """The membership last committed, or None."""
        return self._cluster_state

    def lease(self, lease_id: int) -> Lease | None:
        """The lease ``lease_id``, or None."""
        return self._leases.get(lease_id)

    def leases(self) -> list[Lease]:
        """Every lease, by id."""
        return [self._leases[i] for i in sorted(self._leases)]

    def lease_keys(self, lease_id: int) -> list[bytes]:
        """The live keys attached to ``lease_id``, in key order."""
        return sorted(self._lease_keys.get(lease_id, ()))

    def _change_leases(self, changes: LeaseChanges) -> None:
        for lease_id, lease in changes.leases:
            if lease is None:
                self._leases.pop(lease_id, None)
            else:
                self._leases[lease_id] = lease
        for lease_id, key, attached in changes.attachments:
            keys = self._lease_keys.setdefault(lease_id, set())
            if attached:
                keys.add(key)
            else:
                keys.discard(key)
                if not keys:
                    del self._lease_keys[lease_id]

    def _visible(self, key: bytes, revision: int) -> KeyValue | None:
        revisions = self._index.get(key)
        if not revisions:
            return None
        position = bisect.bisect_right(revisions, _packed(revision, MAX_SUB))
        if position == 0:
            return None
        stored = self._history[revisions[position - 1]]
        return None if type(stored) is Event else stored

    def _is_current(self, revision: int) -> bool:
        return revision <= 0 or revision >= self._revision

    def get(self, key: bytes, revision: int = 0) -> KeyValue | None:
        """The version of ``key`` visible at ``revision`` (0: newest), or None."""
        if self._is_current(revision):
            return self._live.get(key)
        return self._visible(key, revision)

    def range(self, key: bytes, range_end: bytes | None, revision: int = 0, limit: int = 0) -> Iterator[KeyValue]:
        """Visible versions in ``[key, range_end)`` in key order (see ``Engine``)."""
        if not range_end:
            found = self.get(key, revision)
            if found is not None:
                yield found
            return
        low, high = _key_bounds(key, range_end)
        if high is not None and high <= low:
            return
        current = self._is_current(revision)
        source = self._live if current else self._index
        produced = 0
        for name in source.irange(low, high, inclusive=(True, False)):
            kv = self._live[name] if current else self._visible(name, revision)
            if kv is None:
                continue
            yield kv
            produced += 1
            if produced == limit:
                return

    def count(self, key: bytes, range_end: bytes | None, revision: int = 0) -> int:
        """How many keys are visible in ``[key, range_end)`` at ``revision``."""
        if not self._is_current(revision) or not range_end:
            return sum(1 for _ in self.range(key, range_end, revision))
        low, high = _key_bounds(key, range_end)
        start = self._live.bisect_left(low)
        end = len(self._live) if high is None else self._live.bisect_left(high)
        return max(0, end - start)

    def history(self, start: tuple[int, int] = (0, 0)) -> Iterator[Event]:
        """Retained events from ``start`` on, in revision order."""
        order, history = self._order, self._history
        first = _packed(*start)
        position = bisect.bisect_left(order, first)
        at = None  # the last one read
        while position < len(self._order):
            if self._order is not order:  # rebuilt by compaction: find our place again
                order = self._order
                position = bisect.bisect_left(order, first) if at is None else bisect.bisect_right(order, at)
                continue
            at = order[position]
            position += 1
            stored = history.get(at)
            if stored is not None:
                yield _event(at, stored)

    def commit(
        self,
        events: Sequence[Event],
        revision: int,
        applied_index: int,
        cluster_state: ClusterState | None = None,
        compacted_revision: int | None = None,
        lease_changes: LeaseChanges | None = None,
    ) -> None:
        """Add ``events`` with the new revision, applied index, membership,
        compacted revision and lease changes (see ``Engine``)."""
        history, order, index, live = self._history, self._order, self._index, self._live
        for event in events:
            kv = event.kv
            at = kv.mod_revision << _SUB_BITS | event.sub
            history[at] = event if event.deleted else kv
            order.append(at)
            revisions = index.get(kv.key)
            if revisions is None:
                index[kv.key] = [at]
            else:
                revisions.append(at)
            if event.deleted:
                live.pop(kv.key, None)
            else:
                live[kv.key] = kv
        if cluster_state is not None:
            self._cluster_state = cluster_state
        if compacted_revision is not None:
            self._compacted = compacted_revision
        if lease_changes is not None:
            self._change_leases(lease_changes)
        self._revision = revision
        self._applied_index = applied_index

    def compact_step(self, limit: int) -> bool:
        """Remove the versions hidden by the compacted revision, going
        through the events above the last finished compaction ``limit`` at a
        time: each removes the older versions of its key, and a tombstone
        that is its key's newest version at the compacted revision goes too.
        Does nothing while a snapshot view is open."""
        target = self._compacted
        if self._physically_compacted >= target:
            return True
        if self._view is not None:
            return False
        history, index, order = self._history, self._index, self._order
        start = bisect.bisect_right(order, self._compact_cursor)
        end = bisect.bisect_right(order, _packed(target, MAX_SUB))
        batch = list(islice((at for at in islice(order, start, end) if at in history), limit))
        removed = 0
        for at in batch:
            stored = history.get(at)
            if stored is None:
                continue
            deleted = type(stored) is Event
            key = stored.kv.key if deleted else stored.key
            revisions = index[key]
            older = bisect.bisect_left(revisions, at)
            for hidden in revisions[:older]:
                del history[hidden]
            removed += older
            del revisions[:older]
            if deleted and (len(revisions) == 1 or revisions[1] >> _SUB_BITS > target):
                del history[at]
                del revisions[0]
                removed += 1
            if not revisions:
                del index[key]
        self._forget_removed(removed)
        if len(batch) < limit:
            self._physically_compacted = target
            self._compact_cursor = _packed(target, MAX_SUB)
            return True
        self._compact_cursor = batch[-1]
        return False

    def _forget_removed(self, removed: int) -> None:
        """Drop removed revisions from ``_order`` once they are half of it
        (a new list: an open ``history`` iterator notices and re-seeks)."""
        self._stale += removed
        if self._stale * 2 > len(self._order):
            history = self._history
            self._order = [at for at in self._order if at in history]
            self._stale = 0

    def sync(self) -> None:
        """Nothing to do: the memory engine is rebuilt from snapshot + WAL."""

    def snapshot_items(self) -> Iterable[Event]:
        """The retained history as of now, in revision order.  One view at a
        time copies only the list of revisions; while it is open a second
        request copies the events themselves."""
        if self._view is not None:
            return [_event(at, self._history[at]) for at in self._order if at in self._history]
        self._view = SnapshotView(self)
        return self._view

    def _end_view(self, view: SnapshotView) -> None:
        if self._view is view:
            self._view = None

    def restore(
        self,
        items: Iterable[Event],
        revision: int,
        applied_index: int,
        cluster_state: ClusterState,
        compacted_revision: int = 0,
        physically_compacted_revision: int = 0,
        leases: Iterable[Lease] = (),
    ) -> None:
        """Replace everything with ``items`` and ``leases`` (see ``Engine``)."""
        history: dict[int, KeyValue | Event] = {}
        index: SortedDict = SortedDict()
        for event in items:
            at = _packed(event.kv.mod_revision, event.sub)
            history[at] = event if event.deleted else event.kv
            revisions = index.get(event.kv.key)
            if revisions is None:
                index[event.kv.key] = [at]
            elif revisions[-1] < at:
                revisions.append(at)
            else:
                bisect.insort(revisions, at)
        live: SortedDict = SortedDict()
        lease_keys: dict[int, set[bytes]] = {}
        for key, revisions in index.items():
            newest = history[revisions[-1]]
            if type(newest) is not Event:
                live[key] = newest
                if newest.lease:
                    lease_keys.setdefault(newest.lease, set()).add(key)
        self._leases = {lease.id: lease for lease in leases}
        self._lease_keys = lease_keys
        self._history, self._index, self._live = history, index, live
        self._order, self._stale = sorted(history), 0
        self._view = None  # an open view keeps reading the old, now frozen, history
        self._revision = revision
        self._applied_index = applied_index
        self._cluster_state = cluster_state
        self._compacted = compacted_revision
        self._physically_compacted = min(physically_compacted_revision, compacted_revision)
        self._compact_cursor = _packed(self._physically_compacted, MAX_SUB)

    def __len__(self) -> int:
        return len(self._live)

    def close(self) -> None:
        """Nothing to release: the keyspace lives in this process."""
