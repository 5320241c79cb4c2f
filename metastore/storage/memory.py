"""The memory engine: the applied keyspace in a ``SortedDict``.

Durability comes from the WAL, not from this engine: on start the node
rebuilds the keyspace by applying the log (and, later, a snapshot).  The
dictionary is changed only on the reactor thread.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Mapping

from sortedcontainers import SortedDict

from metastore.storage.engine import ClusterState, KeyValue

INITIAL_REVISION = 1
"""An empty store's revision, as in etcd: the first write gets revision 2."""

_UNCHANGED = object()


class SnapshotView:
    """The keyspace as of the view's creation, readable on another thread
    while the reactor thread goes on committing (copy-on-write).

    Creating it copies only the sorted list of keys.  Until the view is
    exhausted, ``MemoryEngine.commit`` records the value a key had before
    its first change, and the view prefers that recorded value to the live
    one.  The live value is read first and the record checked second:
    commit records before it changes the key, so either read order sees the
    value from before the view.
    """

    def __init__(self, engine: "MemoryEngine") -> None:
        self._engine = engine
        self._source = engine._keys
        self._names = engine._keys.keys()[:]
        self.previous: dict[bytes, KeyValue | None] = {}

    def __iter__(self) -> Iterator[KeyValue]:
        source, previous = self._source, self.previous
        try:
            for name in self._names:
                kv = source.get(name)
                before = previous.get(name, _UNCHANGED)
                if before is not _UNCHANGED:
                    kv = before
                if kv is not None:
                    yield kv
        finally:
            self._engine._end_view(self)

    def __len__(self) -> int:
        return len(self._names)


class MemoryEngine:
    """An in-memory ``Engine`` over a sorted dictionary of live keys."""

    keeps_applied_state = False
    """Rebuilt from snapshot + WAL on start (see ``Engine``)."""

    def __init__(self) -> None:
        self._keys: SortedDict = SortedDict()
        self._revision = INITIAL_REVISION
        self._applied_index = 0
        self._cluster_state: ClusterState | None = None
        self._view: SnapshotView | None = None

    @property
    def revision(self) -> int:
        """The revision of the newest write (1 for an empty store)."""
        return self._revision

    @property
    def applied_index(self) -> int:
        """The raft index of the last applied entry."""
        return self._applied_index

    def get(self, key: bytes) -> KeyValue | None:
        """The live key ``key``, or None."""
        return self._keys.get(key)

    def range(self, key: bytes, range_end: bytes | None, limit: int = 0) -> Iterator[KeyValue]:
        """Live keys in ``[key, range_end)`` in key order (see ``Engine``)."""
        if range_end is None:
            found = self._keys.get(key)
            if found is not None:
                yield found
            return
        maximum = None if range_end == b"\0" else range_end
        names = self._keys.irange(key, maximum, inclusive=(True, False))
        for produced, name in enumerate(names):
            if limit and produced >= limit:
                return
            yield self._keys[name]

    def count(self, key: bytes, range_end: bytes | None) -> int:
        """How many live keys lie in ``[key, range_end)``."""
        if range_end is None:
            return 1 if key in self._keys else 0
        start = self._keys.bisect_left(key)
        end = len(self._keys) if range_end == b"\0" else self._keys.bisect_left(range_end)
        return max(0, end - start)

    @property
    def cluster_state(self) -> ClusterState | None:
        """The membership last committed, or None."""
        return self._cluster_state

    def commit(
        self,
        changes: Mapping[bytes, KeyValue | None],
        revision: int,
        applied_index: int,
        cluster_state: ClusterState | None = None,
    ) -> None:
        """Apply ``changes`` with the new revision, applied index and membership."""
        if cluster_state is not None:
            self._cluster_state = cluster_state
        keys = self._keys
        view = self._view
        if view is not None:
            previous = view.previous
            for name in changes:
                if name not in previous:
                    previous[name] = keys.get(name)
        for name, kv in changes.items():
            if kv is None:
                keys.pop(name, None)
            else:
                keys[name] = kv
        self._revision = revision
        self._applied_index = applied_index

    def sync(self) -> None:
        """Nothing to do: the memory engine is rebuilt from snapshot + WAL."""

    def snapshot_items(self) -> Iterable[KeyValue]:
        """The live keys as of now, in key order.  One view at a time is
        copy-on-write (cheap: it copies the list of keys); while it is open
        a second request copies every value instead."""
        if self._view is not None:
            return list(self._keys.values())
        self._view = SnapshotView(self)
        return self._view

    def _end_view(self, view: SnapshotView) -> None:
        if self._view is view:
            self._view = None

    def restore(
        self,
        items: Iterable[KeyValue],
        revision: int,
        applied_index: int,
        cluster_state: ClusterState,
    ) -> None:
        """Replace everything with ``items`` (in key order)."""
        self._keys = SortedDict((kv.key, kv) for kv in items)
        self._view = None  # an open view keeps reading the old, now frozen, dictionary
        self._revision = revision
        self._applied_index = applied_index
        self._cluster_state = cluster_state

    def __len__(self) -> int:
        return len(self._keys)

    def close(self) -> None:
        """Nothing to release: the keyspace lives in this process."""
