"""Snapshot files: a logical, engine-neutral copy of the applied state.

A snapshot holds the retained history (every version of every key back to
the compacted revision, tombstones included), the store's revision and
compaction state, the membership and the raft index and term it reflects.  Any engine can
write one (from ``Engine.snapshot_items()``) and any engine can restore one,
so members with different engines can share a cluster.

File layout: an 8-byte magic, then records, each framed as::

    length u32 | crc u32 | kind u8 | payload (length bytes)      little-endian

``crc`` is CRC-32 over ``kind`` and ``payload``.  The records are, in order:

* HEADER, once: a msgpack map with ``format`` (the version of this layout),
  ``index``, ``term``, ``revision``, ``voters``, ``learners`` and
  ``members``, and from format 2 ``compacted_revision`` and
  ``physically_compacted_revision`` (and, optionally, ``alarms``: the
  raised ``[member_id, alarm type]`` pairs; absent means none; and
  ``grpc_urls``: ``[member_id, url]`` of the members serving gRPC).  Keys a reader does not know are
  ignored, so later versions may add informational fields without a
  format bump.
* LEASES, once, from format 3: a msgpack array of ``[id, ttl,
  remaining_ttl]``, by id (which keys are attached follows from the keys'
  ``lease``).  A format-2 file has none and is read as having no leases.
* ITEMS, zero or more: a msgpack array of events.  Format 2: each event is
  ``[main, sub, deleted, key, value, create_revision, version, lease]``
  (its mod_revision is ``main``), in strictly increasing ``(main, sub)``
  order across the whole file.  Format 1 (the seed's, still read): each is
  a live key ``[key, value, create_revision, mod_revision, version,
  lease]`` in strictly increasing key order; it is read as a history
  compacted at the snapshot's revision, with sub-revisions numbered in file
  order.  One record holds a batch of about ``ITEMS_BATCH_BYTES``, which
  keeps memory bounded on both sides and lets the reader decode a batch in
  one C call.
* FOOTER, once, last: ``[item count, record count, chained crc]`` where the
  chained crc is CRC-32 over the crc fields of every record before it, so a
  dropped, repeated or reordered record is noticed even when each record is
  intact by itself.

Any other record kind is refused with ``UnsupportedSnapshotError``.
Nothing after the footer is allowed.

Files are named ``snapshot_file_name(term, index)`` and become visible
only by an atomic rename after an fsync; ``SnapshotDirectory`` manages the
directory of them.
"""

from __future__ import annotations

import dataclasses
import os
import re
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterable, Iterator

import msgpack
from twisted.logger import Logger

from metastore.storage.engine import ClusterState, Engine, Event, KeyValue, Lease, MemberRecord
from metastore.storage.fileutil import atomic_file, fsync_dir, makedirs_durable

FORMAT_VERSION = 3
"""The version of the layout and encodings this module writes (it reads 1 to 3)."""

READABLE_FORMATS = (1, 2, 3)

MAGIC = b"MSSNAP\r\n"
"""The first eight bytes of every snapshot file."""

ITEMS_BATCH_BYTES = 64 * 1024
"""About how many encoded bytes of keys one ITEMS record holds."""

KIND_HEADER = 1
KIND_ITEMS = 2
KIND_FOOTER = 3
KIND_LEASES = 4

_RECORD_HEAD = struct.Struct("<IIB")
_CRC_FIELD = struct.Struct("<I")
_KIND_CRC = {k: zlib.crc32(bytes([k])) for k in (KIND_HEADER, KIND_ITEMS, KIND_FOOTER, KIND_LEASES)}
_WRITE_BUFFER = 1 << 20
_ITEM_OVERHEAD = 24
_SNAPSHOT_NAME = re.compile(r"\A([0-9a-f]{16})-([0-9a-f]{16})\.snap\Z")
_LEFTOVER_SUFFIXES = (".tmp", ".part")
_log = Logger(namespace="metastore.snapshots.format")

Fsync = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class SnapshotHeader:
    """What a snapshot covers: the raft position, store revision and membership."""

    index: int
    """The raft index of the last entry whose effects the snapshot holds."""
    term: int
    """The term of the entry at ``index``."""
    revision: int
    """The store's revision at ``index``."""
    cluster_state: ClusterState
    """The membership committed at or before ``index``."""
    compacted_revision: int = 0
    """Reads below this revision are refused (0: never compacted)."""
    physically_compacted_revision: int = 0
    """No version hidden by a compaction at this revision is in the file."""
    format: int = FORMAT_VERSION
    """The layout version of the file (set by the reader)."""
    leases: tuple[Lease, ...] = ()
    """Every lease granted and not revoked at ``index``, by id."""


class SnapshotCorruptionError(Exception):
    """A snapshot file cannot be used: it is damaged, cut short or not a snapshot.

    ``path`` and ``offset`` locate the problem (the first byte of the
    offending record, or where the file ended); ``reason`` says what is wrong.
    """

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"snapshot corrupt: {path} at byte offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class UnsupportedSnapshotError(SnapshotCorruptionError):
    """The file is a snapshot in a format or with a section this version cannot read,
    most likely written by a newer MetaStore."""


def snapshot_file_name(term: int, index: int) -> str:
    """The file name of the snapshot at ``index`` of ``term``; names sort by index, then term."""
    return f"{index:016x}-{term:016x}.snap"


def _parse_name(name: str) -> tuple[int, int] | None:
    """``(index, term)`` from a snapshot file name, or None if it is not one."""
    match = _SNAPSHOT_NAME.match(name)
    if match is None:
        return None
    return int(match.group(1), 16), int(match.group(2), 16)


def _encode_header(header: SnapshotHeader) -> bytes:
    """The HEADER record's payload for ``header``."""
    cs = header.cluster_state
    return msgpack.packb(
        {
            "format": FORMAT_VERSION,
            "index": header.index,
            "term": header.term,
            "revision": header.revision,
            "voters": list(cs.voters),
            "learners": list(cs.learners),
            "members": [
                [m.member_id, m.peer_url, m.client_url, m.is_learner] for m in cs.members
            ],
            "removed": list(cs.removed),
            "requests": [[request_id, index] for request_id, index in cs.requests],
            "compacted_revision": header.compacted_revision,
            "physically_compacted_revision": header.physically_compacted_revision,
            "alarms": [list(a) for a in cs.alarms],
            "grpc_urls": [[m.member_id, m.grpc_url] for m in cs.members if m.grpc_url],
            "auth": cs.auth,
        }
    )


def _decode_header(payload: bytes) -> SnapshotHeader:
    """Decode a HEADER payload.

    Raises ``LookupError``/``TypeError``/``ValueError`` if malformed and
    ``_UnsupportedFormat`` for a format version this module does not know.
    """
    fields = msgpack.unpackb(payload)
    if not isinstance(fields, dict):
        raise TypeError("header is not a map")
    version = fields["format"]
    if version not in READABLE_FORMATS:
        raise _UnsupportedFormat(
            f"snapshot format {version!r} is not supported (this version reads "
            f"formats {READABLE_FORMATS}); was it written by a newer MetaStore?"
        )
    grpc_urls = {int(mid): str(url) for mid, url in fields.get("grpc_urls", ())}
    members = tuple(
        MemberRecord(int(mid), str(peer), str(client), bool(learner), grpc_urls.get(int(mid), ""))
        for mid, peer, client, learner in fields["members"]
    )
    cluster_state = ClusterState(
        tuple(int(v) for v in fields["voters"]),
        tuple(int(v) for v in fields["learners"]),
        members,
        tuple(int(v) for v in fields.get("removed", ())),
        tuple((bytes(request_id), int(index)) for request_id, index in fields.get("requests", ())),
        tuple((int(m), int(a)) for m, a in fields.get("alarms", ())),
        bytes(fields.get("auth", b"")),
    )
    index, term, revision = fields["index"], fields["term"], fields["revision"]
    if version == 1:
        compacted = physically_compacted = revision  # no history before it
    else:
        compacted, physically_compacted = fields["compacted_revision"], fields["physically_compacted_revision"]
    numbers = (
        ("index", index),
        ("term", term),
        ("revision", revision),
        ("compacted_revision", compacted),
        ("physically_compacted_revision", physically_compacted),
    )
    for name, value in numbers:
        if type(value) is not int or value < 0:
            raise ValueError(f"header field {name} is {value!r}")
    return SnapshotHeader(index, term, revision, cluster_state, compacted, physically_compacted, version)


class _UnsupportedFormat(Exception):
    """Internal: the header names a format version this module cannot read."""


def _frame(kind: int, payload: bytes) -> tuple[bytes, int]:
    """The record head for ``payload`` of ``kind``, and the record's crc."""
    crc = zlib.crc32(payload, _KIND_CRC[kind])
    return _RECORD_HEAD.pack(len(payload), crc, kind), crc


def write_snapshot(
    directory: str,
    header: SnapshotHeader,
    items: Iterable[Event],
    fsync: Fsync = os.fsync,
) -> str:
    """Write a snapshot of ``header`` and the history ``items`` into
    ``directory`` in the current format; return its path.

    Blocking (run it in a worker thread).  ``items`` must come in strictly
    increasing revision order (``ValueError`` otherwise) and are consumed as a
    stream: memory stays bounded by one batch plus the write buffer.  The
    file is written as ``<name>.tmp``, fsynced, renamed to
    ``snapshot_file_name(header.term, header.index)`` and the directory is
    fsynced, so the final name exists only with complete, durable contents.
    On any failure the temporary file is removed and the error propagates.
    """
    makedirs_durable(directory, fsync)
    path = os.path.join(directory, snapshot_file_name(header.term, header.index))
    with atomic_file(path, fsync, buffering=_WRITE_BUFFER) as out:
        _write_records(out, header, items)
    return path


def _write_records(out: BinaryIO, header: SnapshotHeader, items: Iterable[Event]) -> None:
    """Write the magic and every record of a snapshot to ``out``."""
    out.write(MAGIC)
    chain = 0
    records = 0

    def emit(kind: int, payload: bytes) -> None:
        nonlocal chain, records
        head, crc = _frame(kind, payload)
        out.write(head)
        out.write(payload)
        chain = zlib.crc32(_CRC_FIELD.pack(crc), chain)
        records += 1

    emit(KIND_HEADER, _encode_header(header))
    emit(KIND_LEASES, msgpack.packb([[lease.id, lease.ttl, lease.remaining_ttl] for lease in header.leases]))
    pack = msgpack.Packer().pack
    batch: list[tuple] = []
    append = batch.append
    batch_bytes = 0
    item_count = 0
    previous = (-1, -1)
    for event in items:
        kv = event.kv
        at = (kv.mod_revision, event.sub)
        if at <= previous:
            raise ValueError(f"snapshot items out of revision order: {at} after {previous}")
        previous = at
        key, value = kv.key, kv.value
        append((at[0], at[1], event.deleted, key, value, kv.create_revision, kv.version, kv.lease))
        # An estimate is enough: it only bounds the batch, msgpack adds a few bytes per field.
        batch_bytes += len(key) + len(value) + _ITEM_OVERHEAD
        if batch_bytes >= ITEMS_BATCH_BYTES:
            emit(KIND_ITEMS, pack(batch))
            item_count += len(batch)
            batch.clear()
            batch_bytes = 0
    if batch:
        emit(KIND_ITEMS, pack(batch))
        item_count += len(batch)
    emit(KIND_FOOTER, msgpack.packb((item_count, records, chain)))


class _RecordReader:
    """Reads and checks the framing of one snapshot file, record by record."""

    def __init__(self, path: str, source: BinaryIO) -> None:
        """Read from ``source`` (positioned at the start), reporting damage against ``path``."""
        self.path = path
        self.source = source
        self.size = os.fstat(source.fileno()).st_size
        self.offset = 0
        self.chain = 0
        self.records = 0

    def damage(self, offset: int, reason: str) -> SnapshotCorruptionError:
        """The error for ``reason`` at ``offset`` of this file."""
        return SnapshotCorruptionError(self.path, offset, reason)

    def read_magic(self) -> None:
        """Check the file starts with ``MAGIC``."""
        magic = self.source.read(len(MAGIC))
        if magic != MAGIC:
            if len(magic) < len(MAGIC) and MAGIC.startswith(magic):
                raise self.damage(len(magic), "file ends inside the magic number")
            raise self.damage(0, "not a snapshot file (bad magic number)")
        self.offset = len(MAGIC)

    def next_record(self) -> tuple[int, int, bytes]:
        """``(offset, kind, payload)`` of the next record; raises at the end of the file."""
        start = self.offset
        head = self.source.read(_RECORD_HEAD.size)
        if len(head) < _RECORD_HEAD.size:
            if not head:
                raise self.damage(start, "file ends before the footer")
            raise self.damage(start, f"file ends inside a record header ({len(head)} bytes)")
        length, crc, kind = _RECORD_HEAD.unpack(head)
        remaining = self.size - start - _RECORD_HEAD.size
        if length > remaining:
            raise self.damage(
                start, f"record of {length} bytes runs past the end of the file ({remaining} left)"
            )
        payload = self.source.read(length)
        if len(payload) != length:
            raise self.damage(start, f"short record ({len(payload)} of {length} bytes)")
        if zlib.crc32(payload, zlib.crc32(bytes([kind]))) != crc:
            raise self.damage(start, "record checksum mismatch")
        if kind not in _KIND_CRC:
            raise UnsupportedSnapshotError(
                self.path,
                start,
                f"unknown record kind {kind} (written by a newer MetaStore?)",
            )
        self.offset = start + _RECORD_HEAD.size + length
        if kind != KIND_FOOTER:
            self.chain = zlib.crc32(_CRC_FIELD.pack(crc), self.chain)
            self.records += 1
        return start, kind, payload


def _open_checked(path: str) -> tuple[SnapshotHeader, _RecordReader, BinaryIO]:
    """Open ``path``, check its magic and header; the file is closed on error."""
    source = open(path, "rb", buffering=_WRITE_BUFFER)
    try:
        reader = _RecordReader(path, source)
        reader.read_magic()
        offset, kind, payload = reader.next_record()
        if kind != KIND_HEADER:
            raise reader.damage(offset, f"first record is of kind {kind}, not a header")
        try:
            header = _decode_header(payload)
        except _UnsupportedFormat as e:
            raise UnsupportedSnapshotError(path, offset, str(e)) from None
        except (LookupError, TypeError, ValueError, msgpack.UnpackException) as e:
            raise reader.damage(offset, f"malformed header: {e!r}") from None
        if header.format >= 3:
            header = _read_leases(reader, header)
        return header, reader, source
    except BaseException:
        source.close()
        raise


def _read_leases(reader: _RecordReader, header: SnapshotHeader) -> SnapshotHeader:
    """``header`` with the leases of the LEASES record that must follow it."""
    offset, kind, payload = reader.next_record()
    if kind != KIND_LEASES:
        raise reader.damage(offset, f"record of kind {kind} where the leases belong")
    try:
        leases = tuple(Lease(*fields) for fields in msgpack.unpackb(payload))
        if any(type(n) is not int for lease in leases for n in (lease.id, lease.ttl, lease.remaining_ttl)):
            raise ValueError("lease fields must be integers")
    except (TypeError, ValueError, msgpack.UnpackException) as e:
        raise reader.damage(offset, f"malformed leases record: {e!r}") from None
    return dataclasses.replace(header, leases=leases)


def _batches(reader: _RecordReader) -> Iterator[tuple[int, tuple]]:
    """Yield ``(offset, items)`` for each ITEMS record, checking the footer at the end.

    ``items`` is the decoded tuple of positional item tuples; key order and
    item shape are left to the caller.
    """
    item_count = 0
    while True:
        offset, kind, payload = reader.next_record()
        if kind == KIND_ITEMS:
            try:
                batch = msgpack.unpackb(payload, use_list=False)
            except (ValueError, TypeError, msgpack.UnpackException) as e:
                raise reader.damage(offset, f"malformed items record: {e!r}") from None
            if type(batch) is not tuple:
                raise reader.damage(offset, "items record is not an array")
            item_count += len(batch)
            yield offset, batch
        elif kind == KIND_FOOTER:
            _check_footer(reader, offset, payload, item_count)
            return
        else:
            raise reader.damage(offset, f"unexpected record of kind {kind} after the header")


def _check_footer(reader: _RecordReader, offset: int, payload: bytes, item_count: int) -> None:
    """Check the footer's counts and chained crc, and that nothing follows it."""
    try:
        counted_items, counted_records, chain = msgpack.unpackb(payload)
    except (ValueError, TypeError, msgpack.UnpackException) as e:
        raise reader.damage(offset, f"malformed footer: {e!r}") from None
    if counted_items != item_count:
        raise reader.damage(offset, f"footer counts {counted_items!r} keys, file holds {item_count}")
    if counted_records != reader.records:
        raise reader.damage(
            offset, f"footer counts {counted_records!r} records, file holds {reader.records}"
        )
    if chain != reader.chain:
        raise reader.damage(offset, "chained checksum mismatch (records missing or reordered)")
    if reader.offset != reader.size:
        raise reader.damage(reader.offset, f"{reader.size - reader.offset} bytes after the footer")


def _events(reader: _RecordReader, version: int) -> Iterator[Event]:
    """Every event of the file, checking each item's shape and order (and,
    through ``_batches``, every record and the footer) as it goes."""
    previous: tuple = (-1, -1) if version >= 2 else (b"",)
    first = True
    sub = 0
    for offset, batch in _batches(reader):
        try:
            for fields in batch:
                if version >= 2:
                    main, sub, deleted, key, value, create_revision, version_, lease = fields
                    order: tuple = (main, sub)
                    event = Event(KeyValue(key, value, create_revision, main, version_, lease), sub, bool(deleted))
                else:
                    key, value, create_revision, mod_revision, version_, lease = fields
                    order = (key,)
                    event = Event(KeyValue(key, value, create_revision, mod_revision, version_, lease), sub)
                    sub += 1
                if type(key) is not bytes or type(value) is not bytes:
                    raise reader.damage(offset, f"malformed entry {fields!r:.80}")
                if not first and not order > previous:
                    raise reader.damage(offset, f"entry {order!r:.80} is not after {previous!r:.80}")
                first, previous = False, order
                yield event
        except (ValueError, TypeError) as e:
            raise reader.damage(offset, f"malformed entry in items record: {e!r}") from None


def _items(reader: _RecordReader, source: BinaryIO, version: int) -> Iterator[Event]:
    """Every event of the file, verified; closes ``source`` when done."""
    try:
        yield from _events(reader, version)
    finally:
        source.close()


def read_snapshot(path: str) -> tuple[SnapshotHeader, Iterator[Event]]:
    """Open the snapshot at ``path``: its header, checked now, and its history.

    The iterator yields the events in revision order (a format-1 file: its
    keys, one event each, in key order) and checks every record, the order
    and the footer as it goes, raising ``SnapshotCorruptionError`` at the
    first problem; a consumer must not treat what it read as a snapshot
    until the iterator is exhausted.  The file stays open until the
    iterator is exhausted or closed.  Raises ``SnapshotCorruptionError`` at
    once if the magic or header is bad, ``OSError`` if the file cannot be
    opened.
    """
    header, reader, source = _open_checked(path)
    return header, _items(reader, source, header.format)


def restore_from_snapshot(engine: Engine, path: str, index: int) -> SnapshotHeader:
    """Replace ``engine``'s whole state with the snapshot at ``path`` (as of
    raft ``index``) and return its header.  Blocking; raises
    ``SnapshotCorruptionError`` or ``OSError``, and then the engine keeps
    its old state (``Engine.restore`` is atomic)."""
    header, items = read_snapshot(path)
    engine.restore(
        items,
        header.revision,
        index,
        header.cluster_state,
        header.compacted_revision,
        header.physically_compacted_revision,
        header.leases,
    )
    return header


def verify_snapshot(path: str) -> SnapshotHeader:
    """Check the whole snapshot at ``path`` in one pass and return its header.

    Raises ``SnapshotCorruptionError`` (naming the path, offset and reason)
    for any damage, ``OSError`` if the file cannot be read.
    """
    header, reader, source = _open_checked(path)
    with source:
        for _ in _events(reader, header.format):
            pass
    return header


class SnapshotDirectory:
    """The directory of a member's snapshot files.

    Only complete, fsynced files carry a final ``.snap`` name; ``*.tmp``
    (a snapshot being written) and ``*.part`` (a snapshot being received)
    are never listed and are removed when the directory is opened, since
    they can only be left over from a crash.
    """

    def __init__(self, directory: str, max_snapshots: int = 5, fsync: Fsync = os.fsync) -> None:
        """Open ``directory``, creating it durably, and remove leftovers of a crash.

        ``max_snapshots`` is how many files ``prune`` keeps (0: keep all).
        """
        if max_snapshots < 0:
            raise ValueError(f"max_snapshots must be >= 0, not {max_snapshots}")
        self.directory = directory
        self.max_snapshots = max_snapshots
        self._fsync = fsync
        makedirs_durable(directory, fsync)
        removed = False
        for name in os.listdir(directory):
            if name.endswith(_LEFTOVER_SUFFIXES):
                _log.info("Removing leftover snapshot file {path}", path=os.path.join(directory, name))
                os.unlink(os.path.join(directory, name))
                removed = True
        if removed:
            fsync_dir(directory, fsync)

    def snapshots(self) -> list[tuple[int, int, str]]:
        """``(index, term, path)`` of every snapshot file, oldest first, by file name only."""
        found = []
        for name in os.listdir(self.directory):
            parsed = _parse_name(name)
            if parsed is not None:
                found.append((parsed[0], parsed[1], os.path.join(self.directory, name)))
        found.sort()
        return found

    def iter_valid(self) -> Iterator[tuple[SnapshotHeader, str]]:
        """Like ``newest_valid`` but lazy: each file is verified only when reached."""
        for index, term, path in reversed(self.snapshots()):
            try:
                header = verify_snapshot(path)
                _check_matches_name(path, header, index, term)
            except (SnapshotCorruptionError, OSError) as e:
                _log.warn("Skipping unusable snapshot {path}: {reason}", path=path, reason=str(e))
                continue
            yield header, path

    def newest_valid(self) -> list[tuple[SnapshotHeader, str]]:
        """Every snapshot that verifies, newest first, with its header.

        Damaged or unreadable files are skipped and logged with the reason
        (never deleted: a human may want to look at them).  Reads every
        file in full; ``iter_valid`` stops as early as the caller wants.
        """
        return list(self.iter_valid())

    def path_for(self, term: int, index: int) -> str:
        """The path the snapshot at ``index`` of ``term`` has in this directory."""
        return os.path.join(self.directory, snapshot_file_name(term, index))

    def prune(self) -> list[str]:
        """Delete all but the newest ``max_snapshots`` files; return the removed paths."""
        if self.max_snapshots == 0:
            return []
        doomed = [path for _, _, path in self.snapshots()[: -self.max_snapshots]]
        for path in doomed:
            os.unlink(path)
        if doomed:
            fsync_dir(self.directory, self._fsync)
        return doomed

    def incoming_path(self, term: int, index: int) -> str:
        """Where a snapshot being received for ``index`` of ``term`` is written
        until ``accept_incoming`` makes it final."""
        return self.path_for(term, index) + ".part"

    def accept_incoming(self, part_path: str) -> str:
        """Make the received file ``part_path`` a snapshot of this directory; return its path.

        Blocking (it reads the whole file).  Fsyncs the file, verifies it
        and that its header matches its name, renames it to the final name
        and fsyncs the directory.  If it does not verify, the part file is
        deleted and ``SnapshotCorruptionError`` is raised.
        """
        name = os.path.basename(part_path)
        parsed = _parse_name(name[: -len(".part")]) if name.endswith(".part") else None
        if parsed is None or os.path.dirname(os.path.abspath(part_path)) != os.path.abspath(
            self.directory
        ):
            raise ValueError(f"{part_path!r} is not an incoming path of {self.directory!r}")
        index, term = parsed
        final = self.path_for(term, index)
        try:
            fd = os.open(part_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                self._fsync(fd)
            finally:
                os.close(fd)
            header = verify_snapshot(part_path)
            _check_matches_name(part_path, header, index, term)
        except SnapshotCorruptionError:
            _discard(part_path)
            fsync_dir(self.directory, self._fsync)
            raise
        os.replace(part_path, final)
        fsync_dir(self.directory, self._fsync)
        return final


def _check_matches_name(path: str, header: SnapshotHeader, index: int, term: int) -> None:
    """Raise if the header's index and term are not the ones the file name says."""
    if (header.index, header.term) != (index, term):
        raise SnapshotCorruptionError(
            path,
            len(MAGIC),
            f"header is for index {header.index} term {header.term}, "
            f"the file name says index {index} term {term}",
        )


def _discard(path: str) -> None:
    """Remove ``path`` if it exists."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
