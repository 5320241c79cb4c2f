"""The RocksDB engine: the applied keyspace on disk, through ``rocksdict``.

Everything the state machine needs after a restart lives in one RocksDB
database, in the default column family, told apart by a one-byte prefix:

- ``b"i" + escaped(key) + main + sub`` -> ``b"p"`` (a put) or ``b"t"`` (a
  tombstone): the key index, one entry per retained version.  ``escaped``
  doubles every zero byte as ``00 ff`` and ends with ``00 01``, so entries
  sort by key, then revision; ``main`` and ``sub`` are big-endian u64;
- ``b"k" + key`` -> the newest version of a live key: a 32-byte header
  (create_revision, mod_revision, version, lease; four big-endian signed
  64-bit integers) followed by the value.  Reads of the newest state scan
  only this;
- ``b"ll" + id`` -> a lease: msgpack ``[ttl, remaining_ttl]``; ``b"lk" + id
  + key`` -> ``b""``: ``key`` is live and attached to lease ``id`` (big-endian
  u64), so a revoke finds its keys without a scan (format 3);
- ``b"m:" + name`` -> engine metadata: ``format`` (layout version),
  ``revision``, ``applied_index``, ``compacted`` and ``physically_compacted``
  and ``compact_cursor`` (big-endian unsigned 64-bit integers; the cursor is
  main + sub) and ``cluster_state`` (msgpack);
- ``b"r" + main + sub`` -> one event of the history: a flag byte (``p`` or
  ``t``), the 32-byte header, a u32 key length, the key and the value.

Nothing about keys is kept in Python memory: a read at a past revision
seeks the key index (``seek_for_prev`` to the newest version at or below
the revision), compaction walks the events above the last finished
compaction in bounded steps, and its progress is stored with each step.
A database of format 1 (the seed's: only ``k`` entries) is upgraded on
open: its keys become the history, compacted at its revision; one of
format 2 (no lease entries) gets the attachment entries of its keys.

Atomicity and durability: each ``commit`` is one ``WriteBatch`` holding the
changed keys together with the revision, the applied index and (when given)
the membership.  The raft WAL is the durable record (fsynced before an
entry is acknowledged), so the engine writes no WAL of its own: a batch
goes to the memtable only, and reaches disk when RocksDB flushes the
memtable (when it is full, at ``sync()`` and at ``close()``).  A memtable
holds whole batches and flushes keep their order, so after any crash the
database is at a batch boundary, some commits older than what was
applied; raft replays the entries after the ``applied_index`` found.  The
node calls ``sync()`` before it deletes raft WAL segments the engine covers.
(A RocksDB WAL cost a ``write`` per commit and its checksums on the reactor
thread; ``docs/performance.md``, "RocksDB puts without the engine's WAL".)

Memory is bounded by the block cache, the memtables and the cache of
newest versions (all set at ``open``): reads iterate RocksDB, never a
Python copy of the keyspace.  The newest-version cache
(``metastore.storage.newest``) answers a key's newest version without a
point lookup, mostly for the put path; the commits keep it right.

``restore`` builds the new database beside the live one and swaps
directories; see ``RocksDBEngine.restore`` for the crash-safe protocol and
``_finish_interrupted_restore`` for how ``open`` completes or undoes it.
"""

from __future__ import annotations

import os
import shutil
import struct
import threading
import weakref
from dataclasses import dataclass, replace
from typing import Iterable, Iterator, Sequence

import msgpack
import rocksdict

from metastore.storage.engine import MAX_SUB, ClusterState, Event, KeyValue, Lease, LeaseChanges, MemberRecord
from metastore.storage.fileutil import fsync_dir, makedirs_durable
from metastore.storage.newest import MISSING, NewestVersions

MiB = 1024 * 1024

INITIAL_REVISION = 1
"""An empty store's revision, as in etcd: the first write gets revision 2."""

FORMAT_VERSION = 3
"""The on-disk layout described in this module's docstring (1: the seed's,
2: without leases; both upgraded on open)."""

INDEX_PREFIX = b"i"
INDEX_END = b"j"
KEY_PREFIX = b"k"
LEASE_PREFIX = b"l"
"""Leases and their attachments; also the exclusive upper bound of the keyspace."""
LEASE_RECORD_PREFIX = b"ll"
LEASE_RECORD_END = b"lm"
LEASE_KEY_PREFIX = b"lk"
META_PREFIX = b"m:"
HISTORY_PREFIX = b"r"
HISTORY_END = b"s"

META_FORMAT = META_PREFIX + b"format"
META_REVISION = META_PREFIX + b"revision"
META_APPLIED_INDEX = META_PREFIX + b"applied_index"
META_CLUSTER_STATE = META_PREFIX + b"cluster_state"
META_COMPACTED = META_PREFIX + b"compacted"
META_PHYSICALLY_COMPACTED = META_PREFIX + b"physically_compacted"
META_COMPACT_CURSOR = META_PREFIX + b"compact_cursor"
META_REQUESTS = META_PREFIX + b"requests/"
"""``META_REQUESTS + index (u64) + request id`` -> b"": the recent request
ids of ``ClusterState.requests``, one key each, so a commit writes only the
new ones and drops each forgotten one with a point delete (``_write_requests``)."""

_HEADER = struct.Struct(">qqqq")
_U64 = struct.Struct(">Q")
_REVISION = struct.Struct(">QQ")
_KEY_LENGTH = struct.Struct(">I")
_PUT_FLAG, _TOMBSTONE_FLAG = b"p", b"t"
_AFTER_REVISIONS = b"\xff" * _REVISION.size

RESTORE_TMP_SUFFIX = ".restore-tmp"
"""A restore being built; incomplete by definition, deleted on open."""
RESTORE_READY_SUFFIX = ".restore-ready"
"""A complete, synced restore waiting to replace the live database."""
RESTORE_OLD_SUFFIX = ".restore-old"
"""The replaced database, deleted once the new one is in place."""

_RESTORE_BATCH_BYTES = 4 * MiB
_CURSOR_CHUNK = 256


class EngineOpenError(Exception):
    """RocksDB cannot open the database at ``path`` (locked by another
    process or another engine in this one, corrupt, not ours); ``reason``
    is RocksDB's or our explanation."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot open RocksDB engine at {path}: {reason}")
        self.path = path
        self.reason = reason


class EngineClosedError(Exception):
    """The engine was closed (or is being restored), so this read or sync
    cannot go on; a snapshot stream must be taken again."""


@dataclass(frozen=True, slots=True)
class RocksDBLayout:
    """Where a RocksDB member keeps its files (the seed's layout):
    ``root`` = ``<data-dir>/data/{id}``, the engine's database in ``db``,
    the raft WAL in ``wal`` and snapshot files in ``snap``."""

    root: str
    db: str
    wal: str
    snap: str


def rocksdb_layout(data_dir: str, member_id: int) -> RocksDBLayout:
    """The layout of member ``member_id`` under ``data_dir``, with every
    directory created (durably) when missing."""
    root = os.path.join(data_dir, "data", str(member_id))
    layout = RocksDBLayout(
        root=root,
        db=os.path.join(root, "db"),
        wal=os.path.join(root, "wal"),
        snap=os.path.join(root, "snap"),
    )
    for directory in (layout.db, layout.wal, layout.snap):
        makedirs_durable(directory)
    return layout


def encode_key_value(kv: KeyValue) -> bytes:
    """The stored form of ``kv``'s metadata and value (not its key)."""
    return _HEADER.pack(kv.create_revision, kv.mod_revision, kv.version, kv.lease) + kv.value


def decode_key_value(key: bytes, stored: bytes) -> KeyValue:
    """The ``KeyValue`` for user key ``key`` from its stored form."""
    create_revision, mod_revision, version, lease = _HEADER.unpack_from(stored)
    return KeyValue(key, stored[_HEADER.size:], create_revision, mod_revision, version, lease)


def escape_key(key: bytes) -> bytes:
    """``key`` in the key index's order-preserving, self-delimiting form."""
    return key.replace(b"\0", b"\0\xff") + b"\0\x01"


def unescape_key(escaped: bytes) -> bytes:
    """The key whose ``escape_key`` form is ``escaped``."""
    return escaped[:-2].replace(b"\0\xff", b"\0")


def history_entry(main: int, sub: int) -> bytes:
    """The stored key of the event at ``(main, sub)``."""
    return HISTORY_PREFIX + _REVISION.pack(main, sub)


def decode_event(sub: int, stored: bytes) -> Event:
    """The ``Event`` at sub-revision ``sub`` from its stored form (under
    ``history_entry``): a flag byte, the header, a u32 key length, the key
    and the value, as ``_put_event`` writes it."""
    create_revision, mod_revision, version, lease = _HEADER.unpack_from(stored, 1)
    key = _event_key(stored)
    kv = KeyValue(key, stored[_EVENT_KEY_AT + len(key) :], create_revision, mod_revision, version, lease)
    return Event(kv, sub, stored[:1] == _TOMBSTONE_FLAG)


_EVENT_KEY_AT = 1 + _HEADER.size + _KEY_LENGTH.size


def _event_key(stored: bytes) -> bytes:
    """The key of the event stored as ``stored`` (``decode_event``'s layout)."""
    (length,) = _KEY_LENGTH.unpack_from(stored, 1 + _HEADER.size)
    return stored[_EVENT_KEY_AT : _EVENT_KEY_AT + length]


def _decode_history_item(stored_key: bytes, stored: bytes) -> Event:
    _, sub = _REVISION.unpack_from(stored_key, len(HISTORY_PREFIX))
    return decode_event(sub, stored)


def _put_event(batch: rocksdict.WriteBatch, event: Event) -> None:
    """Write ``event`` into ``batch``: its history entry (``decode_event``
    reads it back), its key-index entry, and the key's newest state
    (``encode_key_value``'s form); the header and revision are packed once,
    as this runs for every put."""
    kv = event.kv
    key = kv.key
    revision = _REVISION.pack(kv.mod_revision, event.sub)
    header = _HEADER.pack(kv.create_revision, kv.mod_revision, kv.version, kv.lease)
    flag = _TOMBSTONE_FLAG if event.deleted else _PUT_FLAG
    batch.put(HISTORY_PREFIX + revision, b"".join((flag, header, _KEY_LENGTH.pack(len(key)), key, kv.value)))
    batch.put(INDEX_PREFIX + escape_key(key) + revision, flag)
    if event.deleted:
        batch.delete(KEY_PREFIX + key)
    else:
        batch.put(KEY_PREFIX + key, header + kv.value)


def lease_record(lease_id: int) -> bytes:
    """The stored key of lease ``lease_id``."""
    return LEASE_RECORD_PREFIX + _U64.pack(lease_id)


def lease_attachment(lease_id: int, key: bytes) -> bytes:
    """The stored key saying ``key`` is attached to ``lease_id``."""
    return LEASE_KEY_PREFIX + _U64.pack(lease_id) + key


def _put_lease_changes(batch: rocksdict.WriteBatch, changes: LeaseChanges) -> None:
    for lease_id, lease in changes.leases:
        if lease is None:
            batch.delete(lease_record(lease_id))
        else:
            batch.put(lease_record(lease_id), msgpack.packb([lease.ttl, lease.remaining_ttl]))
    for lease_id, key, attached in changes.attachments:
        if attached:
            batch.put(lease_attachment(lease_id, key), b"")
        else:
            batch.delete(lease_attachment(lease_id, key))


def encode_cluster_state(state: ClusterState) -> bytes:
    """The stored (msgpack) form of a membership."""
    members = [[m.member_id, m.peer_url, m.client_url, m.is_learner] for m in state.members]
    grpc_urls = [[m.member_id, m.grpc_url] for m in state.members if m.grpc_url]
    return msgpack.packb([
        list(state.voters), list(state.learners), members, list(state.removed), [list(a) for a in state.alarms],
        grpc_urls, state.auth,
    ])  # fmt: skip


_NO_CLUSTER_STATE = ClusterState()


def _membership_fields(state: ClusterState) -> tuple:
    """What ``META_CLUSTER_STATE`` stores of ``state``: every field but the
    recent requests (kept one key each).  A tuple, not a ``replace``d copy:
    this runs on every commit."""
    return (state.voters, state.learners, state.members, state.removed, state.alarms, state.auth)


def _write_requests(batch, old: Sequence[tuple[bytes, int]], new: Sequence[tuple[bytes, int]]) -> None:
    """Turn the stored recent requests ``old`` into ``new`` in ``batch``:
    one delete per forgotten id and one put per new one, no walk over the
    window.

    Never a range deletion: RocksDB fragments every range tombstone of the
    memtable again for the first read after each write that adds one, and
    these nest (all start at ``META_REQUESTS``), so with one per commit the
    reads of a put cost time quadratic in the commits since the last flush
    (tens of milliseconds per put after a few thousand commits)."""
    keep_from = new[0][1] if new else None
    for k in range(len(old)):
        request_id, index = old[k]
        if keep_from is not None and index >= keep_from:
            break
        batch.delete(META_REQUESTS + _U64.pack(index) + request_id)
    newest = old[-1][1] if old else 0
    first_new = len(new)
    while first_new > 0 and new[first_new - 1][1] > newest:  # only the newest few
        first_new -= 1
    for k in range(first_new, len(new)):
        request_id, index = new[k]
        batch.put(META_REQUESTS + _U64.pack(index) + request_id, b"")


def _read_requests(db: rocksdict.Rdict) -> tuple[tuple[bytes, int], ...]:
    found = []
    it = db.iter(rocksdict.ReadOptions())
    it.seek(META_REQUESTS)
    while it.valid() and it.key().startswith(META_REQUESTS):
        key = it.key()[len(META_REQUESTS):]
        found.append((key[_U64.size:], _U64.unpack_from(key)[0]))
        it.next()
    del it
    return tuple(found)


def decode_cluster_state(stored: bytes) -> ClusterState:
    """The membership from its stored form (older records have no removed
    ids, alarms, gRPC URLs or auth state)."""
    voters, learners, members, *rest = msgpack.unpackb(stored)
    grpc_urls = dict(rest[2]) if len(rest) > 2 else {}
    return ClusterState(
        voters=tuple(voters),
        learners=tuple(learners),
        members=tuple(
            MemberRecord(i, peer, client, learner, grpc_urls.get(i, "")) for i, peer, client, learner in members
        ),
        removed=tuple(rest[0]) if rest else (),
        alarms=tuple((int(m), int(a)) for m, a in (rest[1] if len(rest) > 1 else ())),
        auth=bytes(rest[3]) if len(rest) > 3 else b"",
    )


def _get_u64(db: rocksdict.Rdict, name: bytes) -> int:
    stored = db.get(name)
    return 0 if stored is None else _U64.unpack(stored)[0]


def _engine_options(block_cache_bytes: int, write_buffer_bytes: int) -> rocksdict.Options:
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(write_buffer_bytes)
    options.set_max_write_buffer_number(2)
    options.set_max_background_jobs(2)
    options.set_compression_type(rocksdict.DBCompressionType.lz4())
    # Commits write no WAL (see the module docstring); a database written
    # by an older version may hold one, replayed up to its last whole batch.
    options.set_wal_recovery_mode(rocksdict.DBRecoveryMode.point_in_time())
    options.set_keep_log_file_num(4)
    options.set_max_open_files(1024)
    table = rocksdict.BlockBasedOptions()
    table.set_block_cache(rocksdict.Cache(block_cache_bytes))
    # Index and filter blocks grow with the dataset; charging them to the
    # block cache keeps memory bounded by the cache size.
    table.set_cache_index_and_filter_blocks(True)
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    table.set_bloom_filter(10, False)
    options.set_block_based_table_factory(table)
    return options


def _unlogged_writes() -> rocksdict.WriteOptions:
    """Write options for every write of the engine: no RocksDB WAL (the
    module docstring says why that is safe)."""
    write_options = rocksdict.WriteOptions()
    write_options.disable_wal = True
    return write_options


def _open_rdict(path: str, options: rocksdict.Options) -> rocksdict.Rdict:
    try:
        return rocksdict.Rdict(path, options)
    except Exception as error:  # rocksdict raises plain Exception for RocksDB errors
        raise EngineOpenError(path, str(error)) from error


def _fsync_tree(path: str) -> None:
    """Fsync every regular file directly in directory ``path``, then ``path``."""
    for name in os.listdir(path):
        file_path = os.path.join(path, name)
        if os.path.isfile(file_path):
            fd = os.open(file_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fsync_dir(path)


def _remove_tree(path: str) -> None:
    shutil.rmtree(path)
    fsync_dir(os.path.dirname(path))


def _rename(source: str, destination: str) -> None:
    os.rename(source, destination)
    fsync_dir(os.path.dirname(destination))


def _finish_interrupted_restore(path: str) -> None:
    """Bring the directories of the database at ``path`` to a state where
    ``path`` holds either the old or the new database and nothing is left over.

    A restore moves through these states (each arrow is one durable step):
    ``tmp`` being built -> ``ready`` complete -> live moved to ``old`` ->
    ``ready`` moved to ``path`` -> ``old`` removed.  A ``tmp`` is always
    incomplete and is removed (old state).  A ``ready`` is complete, so the
    swap is rolled forward (new state).  An ``old`` beside a live ``path`` is
    garbage; an ``old`` with no ``path`` and no ``ready`` can only mean the
    new database went missing, so the old one is put back.
    """
    tmp, ready, old = (path + s for s in (RESTORE_TMP_SUFFIX, RESTORE_READY_SUFFIX, RESTORE_OLD_SUFFIX))
    if os.path.exists(tmp):
        _remove_tree(tmp)
    if os.path.exists(ready):
        if os.path.exists(path):
            if os.path.exists(old):
                _remove_tree(old)
            _rename(path, old)
        _rename(ready, path)
    if os.path.exists(old):
        if os.path.exists(path):
            _remove_tree(old)
        else:
            _rename(old, path)


class _Cursor:
    """A forward iterator over ``[lower, upper)`` of one RocksDB
    point-in-time view, fixed when the cursor is made.

    RocksDB pins the view at iterator creation, which is cheap; the first
    seek happens on the first ``fetch``, on whichever thread consumes.  Every
    use of the iterator is under the cursor's own lock so that ``release``
    (from ``close``/``restore`` on another thread) can drop it safely:
    rocksdict keeps a database open as long as any iterator on it lives.
    """

    def __init__(self, db: rocksdict.Rdict, lower: bytes, upper: bytes) -> None:
        self._lock = threading.Lock()
        self._lower = lower
        read_options = rocksdict.ReadOptions()
        read_options.set_iterate_upper_bound(upper)
        self._iterator: rocksdict.RdictIter | None = db.iter(read_options)
        self._started = False
        self._released_by_engine = False

    def fetch(self, count: int, with_values: bool = True) -> list[tuple[bytes, bytes | None]]:
        """Up to ``count`` next (stored key, stored value) pairs; fewer means
        the end.  Nothing past the last returned pair is read; without
        values, the value is None and is not copied out of RocksDB."""
        with self._lock:
            iterator = self._iterator
            if iterator is None:
                if self._released_by_engine:
                    raise EngineClosedError("the engine was closed while this read was in progress")
                return []
            out = []
            while len(out) < count:
                if self._started:
                    iterator.next()
                else:
                    iterator.seek(self._lower)
                    self._started = True
                if not iterator.valid():
                    iterator.status()  # raises if the iteration stopped on an error
                    self._iterator = None
                    break
                out.append((iterator.key(), iterator.value() if with_values else None))
            return out

    def release(self, by_engine: bool = False) -> None:
        """Drop the iterator (unpinning its view); later fetches end, or
        raise ``EngineClosedError`` when the engine did it."""
        with self._lock:
            if self._iterator is not None:
                self._iterator = None
                self._released_by_engine = by_engine


class SnapshotItems:
    """The retained history as of the moment this was made, in revision order.

    Iterate it once, on any thread; later commits do not show.  ``close``
    (or finishing the iteration) releases the view early; closing or
    restoring the engine releases it too, and iterating then raises
    ``EngineClosedError``.
    """

    def __init__(self, cursor: _Cursor) -> None:
        self._cursor = cursor
        self._iterated = False

    def __iter__(self) -> Iterator[Event]:
        """The items, read in chunks as they are consumed (once only)."""
        # A second pass would silently yield nothing: refuse it loudly.
        if self._iterated:
            raise RuntimeError("snapshot items can be iterated only once; take a new snapshot")
        self._iterated = True
        return self._items()

    def _items(self) -> Iterator[Event]:
        while True:
            chunk = self._cursor.fetch(_CURSOR_CHUNK)
            for stored_key, stored in chunk:
                yield _decode_history_item(stored_key, stored)
            if len(chunk) < _CURSOR_CHUNK:
                return

    def close(self) -> None:
        """Release the point-in-time view without reading the rest."""
        self._cursor.release()


class RocksDBEngine:
    """An ``Engine`` whose keyspace, revision, applied index and membership
    live in a RocksDB database (see the module docstring for the layout).

    Thread-safety: ``commit``, ``get``, ``range``, ``count``, ``restore``
    and ``close`` belong to one thread (the reactor's); ``sync`` and the
    iteration of ``snapshot_items()`` may run on other threads at the same
    time.  Open with ``RocksDBEngine.open``.
    """

    keeps_applied_state = True
    """The applied state survives a restart by itself (see ``Engine``)."""

    def __init__(self, path: str, db: rocksdict.Rdict, options: rocksdict.Options,
                 newest_cache_bytes: int = 0) -> None:
        """Wrap an open database; use ``open`` rather than this."""
        self.path = path
        self._newest = NewestVersions(newest_cache_bytes)
        self._db: rocksdict.Rdict | None = db
        self._options = options
        self._write_options = _unlogged_writes()
        self._lifecycle_lock = threading.Lock()
        self._cursors: weakref.WeakSet[_Cursor] = weakref.WeakSet()
        self._load_metadata()

    @classmethod
    def open(
        cls,
        path: str,
        *,
        block_cache_bytes: int = 64 * MiB,
        write_buffer_bytes: int = 32 * MiB,
        newest_cache_bytes: int = 16 * MiB,
    ) -> RocksDBEngine:
        """Open (creating when missing, with parent directories) the
        database at ``path``, first finishing or undoing a restore that a
        crash interrupted.  Raises ``EngineOpenError`` naming ``path`` when
        RocksDB cannot open it or it is not a MetaStore database.

        Memory: about ``block_cache_bytes`` plus two memtables of
        ``write_buffer_bytes`` plus ``newest_cache_bytes`` (0: no cache of
        newest versions), whatever the size of the dataset.
        """
        path = os.path.abspath(path)
        try:
            makedirs_durable(os.path.dirname(path))
            _finish_interrupted_restore(path)
        except OSError as error:
            raise EngineOpenError(path, str(error)) from error
        options = _engine_options(block_cache_bytes, write_buffer_bytes)
        db = _open_rdict(path, options)
        try:
            return cls(path, db, options, newest_cache_bytes)
        except BaseException:
            db.close()
            raise

    def _load_metadata(self) -> None:
        db = self._live_db()
        stored_format = db.get(META_FORMAT)
        wrote = stored_format is None or stored_format != _U64.pack(FORMAT_VERSION)
        if stored_format is None:
            if next(iter(db.keys()), None) is not None:
                raise EngineOpenError(self.path, "not a MetaStore database (no format marker)")
            batch = rocksdict.WriteBatch(raw_mode=True)
            batch.put(META_FORMAT, _U64.pack(FORMAT_VERSION))
            batch.put(META_REVISION, _U64.pack(INITIAL_REVISION))
            batch.put(META_APPLIED_INDEX, _U64.pack(0))
            db.write(batch, self._write_options)
            stored_format = _U64.pack(FORMAT_VERSION)
        (found_format,) = _U64.unpack(stored_format)
        if found_format == 1:
            self._upgrade_from_format_1(db)
            found_format = 2
        if found_format == 2:
            self._write_attachments(db, self._write_options)
            found_format = FORMAT_VERSION
        if found_format != FORMAT_VERSION:
            raise EngineOpenError(self.path, f"on-disk format {found_format}, expected {FORMAT_VERSION}")
        if wrote:
            db.flush(True)  # the new marker or upgrade on disk before anything depends on it
        (self._revision,) = _U64.unpack(db.get(META_REVISION))
        (self._applied_index,) = _U64.unpack(db.get(META_APPLIED_INDEX))
        stored_cluster = db.get(META_CLUSTER_STATE)
        self._cluster_state = None if stored_cluster is None else replace(
            decode_cluster_state(stored_cluster), requests=_read_requests(db)
        )
        self._compacted = _get_u64(db, META_COMPACTED)
        self._physically_compacted = _get_u64(db, META_PHYSICALLY_COMPACTED)
        cursor = db.get(META_COMPACT_CURSOR)
        self._compact_cursor = (
            (self._physically_compacted, MAX_SUB) if cursor is None else _REVISION.unpack(cursor)
        )

    def _upgrade_from_format_1(self, db: rocksdict.Rdict) -> None:
        """Give every key of a format-1 database its history entry (one
        version each, at its mod_revision), compacted at the revision; in
        bounded batches, the format marker last, so an interrupted upgrade
        is simply done again."""
        (revision,) = _U64.unpack(db.get(META_REVISION))
        cursor = _Cursor(db, KEY_PREFIX, LEASE_PREFIX)
        batch = rocksdict.WriteBatch(raw_mode=True)
        sub = 0
        while True:
            chunk = cursor.fetch(_CURSOR_CHUNK)
            for stored_key, stored in chunk:
                kv = decode_key_value(stored_key[len(KEY_PREFIX) :], stored)
                # The seed kept no sub-revisions: a running count keeps
                # (mod_revision, sub) unique and the order deterministic.
                _put_event(batch, Event(kv, sub))
                sub += 1
            if batch.size_in_bytes() >= _RESTORE_BATCH_BYTES:
                db.write(batch, self._write_options)
                batch = rocksdict.WriteBatch(raw_mode=True)
            if len(chunk) < _CURSOR_CHUNK:
                break
        batch.put(META_COMPACTED, _U64.pack(revision))
        batch.put(META_PHYSICALLY_COMPACTED, _U64.pack(revision))
        batch.put(META_FORMAT, _U64.pack(2))
        db.write(batch, self._write_options)

    @staticmethod
    def _write_attachments(db: rocksdict.Rdict, write_options) -> None:
        """Write the attachment entry of every live key with a lease, in
        bounded batches, then the format marker (format 2 -> 3; also the
        last step of building a restored database)."""
        cursor = _Cursor(db, KEY_PREFIX, LEASE_PREFIX)
        batch = rocksdict.WriteBatch(raw_mode=True)
        while True:
            chunk = cursor.fetch(_CURSOR_CHUNK)
            for stored_key, stored in chunk:
                (lease,) = _U64.unpack_from(stored, 24)
                if lease:
                    batch.put(lease_attachment(lease, stored_key[len(KEY_PREFIX) :]), b"")
            if batch.size_in_bytes() >= _RESTORE_BATCH_BYTES:
                db.write(batch, write_options)
                batch = rocksdict.WriteBatch(raw_mode=True)
            if len(chunk) < _CURSOR_CHUNK:
                break
        batch.put(META_FORMAT, _U64.pack(FORMAT_VERSION))
        db.write(batch, write_options)

    def _live_db(self) -> rocksdict.Rdict:
        if self._db is None:
            raise EngineClosedError(f"RocksDB engine at {self.path} is closed")
        return self._db

    @property
    def newest_cache_bytes(self) -> int:
        """The budget of the cache of newest versions (0: none)."""
        return self._newest.budget_bytes

    @property
    def revision(self) -> int:
        """The revision of the newest write (1 for an empty store)."""
        return self._revision

    @property
    def applied_index(self) -> int:
        """The raft index of the last entry whose batch this engine holds."""
        return self._applied_index

    @property
    def cluster_state(self) -> ClusterState | None:
        """The membership last committed (or restored), or None."""
        return self._cluster_state

    @property
    def compacted_revision(self) -> int:
        """The newest compaction committed (0 for none)."""
        return self._compacted

    @property
    def physically_compacted_revision(self) -> int:
        """No version hidden at this revision is left (see ``Engine``)."""
        return self._physically_compacted

    def _is_current(self, revision: int) -> bool:
        return revision <= 0 or revision >= self._revision

    def lease(self, lease_id: int) -> Lease | None:
        """The lease ``lease_id``, or None."""
        stored = self._live_db().get(lease_record(lease_id))
        if stored is None:
            return None
        ttl, remaining = msgpack.unpackb(stored)
        return Lease(lease_id, ttl, remaining)

    def _scan(self, lower: bytes, upper: bytes) -> Iterator[tuple[bytes, bytes | None]]:
        cursor = self._cursor(lower, upper)
        try:
            while True:
                chunk = cursor.fetch(_CURSOR_CHUNK)
                yield from chunk
                if len(chunk) < _CURSOR_CHUNK:
                    return
        finally:
            cursor.release()

    def leases(self) -> list[Lease]:
        """Every lease, by id."""
        found = []
        for stored_key, stored in self._scan(LEASE_RECORD_PREFIX, LEASE_RECORD_END):
            (lease_id,) = _U64.unpack_from(stored_key, len(LEASE_RECORD_PREFIX))
            ttl, remaining = msgpack.unpackb(stored)
            found.append(Lease(lease_id, ttl, remaining))
        return found

    def lease_keys(self, lease_id: int) -> list[bytes]:
        """The live keys attached to ``lease_id``, in key order."""
        prefix = LEASE_KEY_PREFIX + _U64.pack(lease_id)
        upper = LEASE_KEY_PREFIX + _U64.pack(lease_id + 1)
        return [stored_key[len(prefix) :] for stored_key, _ in self._scan(prefix, upper)]

    def get(self, key: bytes, revision: int = 0) -> KeyValue | None:
        """The version of ``key`` visible at ``revision`` (0: newest), or
        None: for the newest state the cache of newest versions or one point
        lookup, for a past one a key-index seek and a point lookup."""
        db = self._live_db()
        if self._is_current(revision):
            found = self._newest.lookup(key)
            if found is not MISSING:
                return found
            stored = db.get(KEY_PREFIX + key)
            found = None if stored is None else decode_key_value(key, stored)
            self._newest.remember(key, found)
            return found
        iterator = db.iter(rocksdict.ReadOptions())
        return self._visible(db, iterator, INDEX_PREFIX + escape_key(key), revision)

    @staticmethod
    def _visible(db: rocksdict.Rdict, iterator, prefix: bytes, revision: int) -> KeyValue | None:
        """The version under key-index ``prefix`` visible at ``revision``."""
        iterator.seek_for_prev(prefix + _REVISION.pack(revision, MAX_SUB))
        if not iterator.valid():
            return None
        entry = iterator.key()
        if len(entry) != len(prefix) + _REVISION.size or not entry.startswith(prefix):
            return None
        if iterator.value() != _PUT_FLAG:
            return None
        main, sub = _REVISION.unpack_from(entry, len(prefix))
        return decode_event(sub, db.get(history_entry(main, sub))).kv

    def _key_bounds(self, key: bytes, range_end: bytes) -> tuple[bytes, bytes]:
        upper = LEASE_PREFIX if range_end == b"\0" else KEY_PREFIX + range_end
        return KEY_PREFIX + key, upper

    def _cursor(self, lower: bytes, upper: bytes) -> _Cursor:
        cursor = _Cursor(self._live_db(), lower, upper)
        self._cursors.add(cursor)
        return cursor

    def range(self, key: bytes, range_end: bytes | None, revision: int = 0, limit: int = 0) -> Iterator[KeyValue]:
        """Visible versions in ``[key, range_end)`` at ``revision`` in key
        order (see ``Engine``), read from RocksDB as they are consumed; with
        a ``limit``, nothing after the last yielded key is read."""
        if not range_end:
            found = self.get(key, revision)
            if found is not None:
                yield found
            return
        if not self._is_current(revision):
            yield from self._range_at(key, range_end, revision, limit)
            return
        lower, upper = self._key_bounds(key, range_end)
        if upper <= lower:
            return
        cursor = self._cursor(lower, upper)
        skip = len(KEY_PREFIX)
        remaining = limit
        try:
            while True:
                wanted = min(_CURSOR_CHUNK, remaining) if limit else _CURSOR_CHUNK
                chunk = cursor.fetch(wanted)
                for stored_key, stored in chunk:
                    yield decode_key_value(stored_key[skip:], stored)
                remaining -= len(chunk)
                if len(chunk) < wanted or (limit and remaining <= 0):
                    return
        finally:
            cursor.release()

    def _range_at(self, key: bytes, range_end: bytes, revision: int, limit: int) -> Iterator[KeyValue]:
        """A past range: for each key in the index, seek to its newest
        version at ``revision``, then past its other versions."""
        db = self._live_db()
        lower = INDEX_PREFIX + escape_key(key)
        upper = INDEX_END if range_end == b"\0" else INDEX_PREFIX + escape_key(range_end)
        if upper <= lower:
            return
        read_options = rocksdict.ReadOptions()
        read_options.set_iterate_upper_bound(upper)
        walker = db.iter(read_options)
        finder = db.iter(rocksdict.ReadOptions())
        produced = 0
        walker.seek(lower)
        while walker.valid():
            prefix = walker.key()[: -_REVISION.size]
            kv = self._visible(db, finder, prefix, revision)
            if kv is not None:
                yield kv
                produced += 1
                if produced == limit:
                    return
            walker.seek(prefix + _AFTER_REVISIONS)
        walker.status()

    def count(self, key: bytes, range_end: bytes | None, revision: int = 0) -> int:
        """How many keys are visible in ``[key, range_end)`` at
        ``revision``: a scan of the range (RocksDB keeps no exact counts)."""
        if not range_end:
            return 0 if self.get(key, revision) is None else 1
        if not self._is_current(revision):
            return sum(1 for _ in self._range_at(key, range_end, revision, 0))
        lower, upper = self._key_bounds(key, range_end)
        if upper <= lower:
            return 0
        cursor = self._cursor(lower, upper)
        total = 0
        try:
            while True:
                fetched = len(cursor.fetch(_CURSOR_CHUNK, with_values=False))
                total += fetched
                if fetched < _CURSOR_CHUNK:
                    return total
        finally:
            cursor.release()

    def history(self, start: tuple[int, int] = (0, 0)) -> Iterator[Event]:
        """Retained events from ``start`` on, in revision order, read in
        chunks as they are consumed."""
        cursor = self._cursor(history_entry(*start), HISTORY_END)
        try:
            while True:
                chunk = cursor.fetch(_CURSOR_CHUNK)
                for stored_key, stored in chunk:
                    yield _decode_history_item(stored_key, stored)
                if len(chunk) < _CURSOR_CHUNK:
                    return
        finally:
            cursor.release()

    def commit(
        self,
        events: Sequence[Event],
        revision: int,
        applied_index: int,
        cluster_state: ClusterState | None = None,
        compacted_revision: int | None = None,
        lease_changes: LeaseChanges | None = None,
    ) -> None:
        """Write ``events`` (history, key index and newest state), the
        revision, the applied index and, when given, the membership,
        compacted revision and lease changes as one WriteBatch: after a
        crash all of it is there or none.  Not fsynced (see ``sync``)."""
        db = self._live_db()
        if not isinstance(events, (list, tuple)):
            events = list(events)  # read twice: into the batch, then into the cache
        batch = rocksdict.WriteBatch(raw_mode=True)
        for event in events:
            _put_event(batch, event)
        if lease_changes is not None:
            _put_lease_changes(batch, lease_changes)
        batch.put(META_REVISION, _U64.pack(revision))
        batch.put(META_APPLIED_INDEX, _U64.pack(applied_index))
        if cluster_state is not None:
            old = self._cluster_state or _NO_CLUSTER_STATE
            if _membership_fields(old) != _membership_fields(cluster_state):
                batch.put(META_CLUSTER_STATE, encode_cluster_state(cluster_state))
            _write_requests(batch, old.requests, cluster_state.requests)
        if compacted_revision is not None:
            batch.put(META_COMPACTED, _U64.pack(compacted_revision))
        db.write(batch, self._write_options)
        self._newest.record(events)
        self._revision = revision
        self._applied_index = applied_index
        if cluster_state is not None:
            self._cluster_state = cluster_state
        if compacted_revision is not None:
            self._compacted = compacted_revision

    def compact_step(self, limit: int) -> bool:
        """Remove versions hidden by the compacted revision, going through
        up to ``limit`` events above the last finished compaction: each
        removes the older versions of its key, and a tombstone that is its
        key's newest version at the compacted revision goes too.  The
        removals and the progress are one WriteBatch."""
        target = self._compacted
        if self._physically_compacted >= target:
            return True
        db = self._live_db()
        read_options = rocksdict.ReadOptions()
        read_options.set_iterate_upper_bound(history_entry(target, MAX_SUB))
        events = db.iter(read_options)
        index = db.iter(rocksdict.ReadOptions())
        batch = rocksdict.WriteBatch(raw_mode=True)
        events.seek(history_entry(*self._compact_cursor))
        if events.valid() and events.key() == history_entry(*self._compact_cursor):
            events.next()
        processed = 0
        last = self._compact_cursor
        while events.valid() and processed < limit:
            # Only the key, revision and kind of each event: no KeyValue.
            stored = events.value()
            revision = _REVISION.unpack_from(events.key(), len(HISTORY_PREFIX))
            self._remove_hidden(index, batch, _event_key(stored), revision, stored[:1] == _TOMBSTONE_FLAG, target)
            last = revision
            processed += 1
            events.next()
        finished = not events.valid()
        if finished:
            events.status()
            self._physically_compacted = target
            last = (target, MAX_SUB)
            batch.put(META_PHYSICALLY_COMPACTED, _U64.pack(target))
        batch.put(META_COMPACT_CURSOR, _REVISION.pack(*last))
        db.write(batch, self._write_options)
        self._compact_cursor = last
        return finished

    @staticmethod
    def _remove_hidden(index, batch: rocksdict.WriteBatch, key: bytes, revision: tuple[int, int], deleted: bool,
                       target: int) -> None:
        """Delete (in ``batch``) the versions of ``key`` older than the event
        at ``revision``, and that event itself if it is a tombstone
        (``deleted``) nothing follows by ``target``."""
        prefix = INDEX_PREFIX + escape_key(key)
        mine = prefix + _REVISION.pack(*revision)
        index.seek(prefix)
        while index.valid() and index.key() < mine:
            entry = index.key()
            batch.delete(entry)
            batch.delete(HISTORY_PREFIX + entry[len(prefix) :])
            index.next()
        if not deleted:
            return
        index.seek(mine)
        if index.valid():
            index.next()
        if index.valid() and index.key().startswith(prefix) and len(index.key()) == len(mine):
            (next_main, _) = _REVISION.unpack_from(index.key(), len(prefix))
            if next_main <= target:
                return
        batch.delete(mine)
        batch.delete(history_entry(*revision))

    def sync(self) -> None:
        """Make every commit that has returned so far durable (flush the
        memtables to table files, which RocksDB syncs).  Blocking, but it
        leaves the interpreter to other threads; safe on a worker thread
        while the reactor thread commits.  Raises ``EngineClosedError`` if
        the engine is closed."""
        with self._lifecycle_lock:
            self._live_db().flush(True)

    def snapshot_items(self) -> SnapshotItems:
        """The retained history as of now, in revision order, read lazily
        from a RocksDB point-in-time view; cheap to take (no I/O), safe to
        iterate on another thread while commits and compaction steps go on.
        See ``SnapshotItems``."""
        return SnapshotItems(self._cursor(HISTORY_PREFIX, HISTORY_END))

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
        """Replace the whole database with the history ``items`` (in
        revision order, or at most one event per key) and the given
        revision, applied index, membership, compaction state and leases
        (attachments follow from the keys); a crash at any point
        leaves the old database or the new one (``open`` finishes the job).

        The new database is built at ``<path>.restore-tmp`` in bounded
        WriteBatches, flushed, synced and closed, then renamed to
        ``<path>.restore-ready`` (the commit point).  Then the live database
        is closed (open snapshot streams are cut off), renamed to
        ``<path>.restore-old``, the ready one renamed to ``<path>``, the old
        one removed and the new one opened; every rename is followed by a
        directory fsync.  If ``items`` fails, the tmp database is removed
        and the live one stays in use.  If a step of the swap fails, the
        swap is finished (or undone) as ``open`` would, the database is
        reopened and the error re-raised.  Blocking; on the engine's thread.
        """
        self._live_db()
        tmp = self.path + RESTORE_TMP_SUFFIX
        ready = self.path + RESTORE_READY_SUFFIX
        old = self.path + RESTORE_OLD_SUFFIX
        for leftover in (tmp, ready, old):
            if os.path.exists(leftover):
                _remove_tree(leftover)
        try:
            self._build_database(
                tmp,
                items,
                revision,
                applied_index,
                cluster_state,
                compacted_revision,
                min(physically_compacted_revision, compacted_revision),
                leases,
            )
        except Exception:
            if os.path.exists(tmp):
                _remove_tree(tmp)
            raise
        self._after_restore_step("built")
        _rename(tmp, ready)
        self._after_restore_step("ready")
        self._close_database()
        try:
            self._after_restore_step("live-closed")
            _rename(self.path, old)
            self._after_restore_step("old-moved-aside")
            _rename(ready, self.path)
            self._after_restore_step("new-in-place")
            _remove_tree(old)
            self._after_restore_step("old-removed")
        except Exception:
            # Do what open would do after a crash here, so that the engine
            # stays usable (at the old or the new state) if it can.
            _finish_interrupted_restore(self.path)
            self._reopen()
            raise
        self._reopen()

    def _reopen(self) -> None:
        self._db = _open_rdict(self.path, self._options)
        try:
            self._load_metadata()
        except BaseException:
            self._close_database()
            raise

    def _build_database(
        self,
        path: str,
        items: Iterable[Event],
        revision: int,
        applied_index: int,
        cluster_state: ClusterState,
        compacted_revision: int,
        physically_compacted_revision: int,
        leases: Iterable[Lease],
    ) -> None:
        db = _open_rdict(path, self._options)
        try:
            batch = rocksdict.WriteBatch(raw_mode=True)
            for event in items:
                _put_event(batch, event)
                if batch.size_in_bytes() >= _RESTORE_BATCH_BYTES:
                    db.write(batch, self._write_options)
                    batch = rocksdict.WriteBatch(raw_mode=True)
            _put_lease_changes(batch, LeaseChanges(tuple((lease.id, lease) for lease in leases)))
            batch.put(META_REVISION, _U64.pack(revision))
            batch.put(META_APPLIED_INDEX, _U64.pack(applied_index))
            batch.put(META_CLUSTER_STATE, encode_cluster_state(cluster_state))
            _write_requests(batch, (), cluster_state.requests)
            batch.put(META_COMPACTED, _U64.pack(compacted_revision))
            batch.put(META_PHYSICALLY_COMPACTED, _U64.pack(physically_compacted_revision))
            db.write(batch, self._write_options)
            self._write_attachments(db, self._write_options)
            db.flush(True)
        finally:
            db.close()
        _fsync_tree(path)

    def _after_restore_step(self, step: str) -> None:
        """Called after each durable step of ``restore``; tests override it
        to simulate a crash there."""

    def _close_database(self) -> None:
        self._newest.clear()  # a restore or reopen brings another database
        with self._lifecycle_lock:
            for cursor in list(self._cursors):
                cursor.release(by_engine=True)
            self._cursors = weakref.WeakSet()
            if self._db is not None:
                self._db.close()
                self._db = None

    def close(self) -> None:
        """Make every commit durable and close the database (idempotent).
        Unfinished snapshot streams and ranges are cut off: iterating them
        raises ``EngineClosedError``."""
        try:
            with self._lifecycle_lock:
                if self._db is not None:
                    self._db.flush(True)
        finally:
            self._close_database()
