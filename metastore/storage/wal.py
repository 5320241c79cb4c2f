"""The write-ahead log: raft entries, hard state and snapshot markers on disk.

The log is a directory of segment files named ``{seq:016x}-{index:016x}.wal``
(``seq`` counts segments from 0, ``index`` is the first raft index the
segment was created for), plus a lock file.  Every segment opens with a
SEGMENT record, the node's METADATA, and the latest hard state and snapshot
marker, so the segments before it can be deleted once a snapshot covers
their entries.  Records are framed by ``records.py``.

Writes go straight to the file descriptor (no user-space buffer) and are not
fsynced; ``sync()`` makes everything written so far durable.  Any failed
write or fsync poisons the WAL: nothing more is accepted until it is
reopened, so a partial record can never end up in the middle of the log.
"""

from __future__ import annotations

import bisect
import errno
import fcntl
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

from twisted.logger import Logger

from metastore.raft.types import Entry, HardState, SnapshotMetadata
from metastore.storage import records
from metastore.storage.errors import (
    WALCorruptionError,
    WALError,
    WALFailedError,
    WALLockedError,
)
from metastore.storage.fileutil import makedirs_durable
from metastore.storage.records import HEADER_SIZE, RecordDamage, RecordType

LOCK_NAME = "wal.lock"
"""The file in the WAL directory that ``flock`` guards."""

_SEGMENT_NAME = re.compile(r"\A([0-9a-f]{16})-([0-9a-f]{16})\.wal\Z")
_log = Logger(namespace="metastore.storage.wal")

_ENTRY = RecordType.ENTRY.value
_HARD_STATE = RecordType.HARD_STATE.value
_SNAPSHOT = RecordType.SNAPSHOT.value
_SEGMENT = RecordType.SEGMENT.value
_METADATA = RecordType.METADATA.value


def segment_name(seq: int, first_index: int) -> str:
    """The file name of segment number ``seq`` created for raft index ``first_index``."""
    return f"{seq:016x}-{first_index:016x}.wal"


@dataclass(frozen=True, slots=True)
class WALState:
    """What replay recovered from the log."""

    metadata: bytes
    """The node's metadata; ``b""`` when none was stored."""
    hard_state: HardState
    """The latest hard state; ``HardState()`` when none was stored."""
    snapshot: SnapshotMetadata | None
    """The newest snapshot marker, or None."""
    entries: list[Entry]
    """The entries after the snapshot marker's index, contiguous, conflicts resolved."""
    covered_entries: list[Entry] = field(default_factory=list, compare=False)
    """Entries at or below the snapshot marker that the retained segments
    still hold, contiguous and ending at the marker's index (or empty): what
    a restart needs to fall back to an older snapshot file."""


@dataclass(slots=True)
class _Segment:
    """What the WAL knows about one segment file."""

    seq: int
    first_index: int
    path: str
    max_index: int = 0
    """The highest entry index written to this file (0: no entries)."""
    synced: bool = True
    """Whether the file's head and directory entry are known to be durable."""


class _Replay:
    """Rebuilds the logical log from its records, in the order they were written.

    The rules (mirrored by ``WAL`` when it writes):

    - an entry at index ``i`` drops every entry at index >= ``i`` before it
      is appended (raft's conflict overwrite);
    - a snapshot marker at ``(S, T)`` drops the entries up to ``S``; if the
      log holds an entry at ``S`` whose term is not ``T``, or ends before
      ``S``, the entries after ``S`` are dropped as well (the log did not
      lead up to this snapshot, so what follows it is stale);
    - when replay ends, the entries must start right after the snapshot
      index: a hole means a segment is missing or was released too early.
    """

    def __init__(self) -> None:
        """Start from the empty log."""
        self.metadata: bytes | None = None
        self.hard_state = HardState()
        self.snapshot: SnapshotMetadata | None = None
        self.snap_index = 0
        self.entries: list[Entry] = []
        self.covered: list[Entry] = []
        self.run_start = ("", 0)

    def entry(self, e: Entry, path: str, offset: int) -> None:
        """Apply an ENTRY record read at ``path``/``offset``."""
        i = e.index
        if i <= self.snap_index:
            raise WALCorruptionError(
                path, offset, f"entry {i} is at or below the snapshot index {self.snap_index}"
            )
        ents = self.entries
        if ents:
            n = i - ents[0].index
            if n == len(ents):
                ents.append(e)
                return
            if 0 <= n < len(ents):
                del ents[n:]
                ents.append(e)
                return
        # Starts a new run; any hole before it is reported by finish() unless
        # a later snapshot marker covers it.
        self.entries = [e]
        self.run_start = (path, offset)

    def marker(self, meta: SnapshotMetadata, path: str, offset: int) -> None:
        """Apply a SNAPSHOT record read at ``path``/``offset``."""
        s = meta.index
        if self.snapshot is not None:
            if s < self.snap_index:
                raise WALCorruptionError(
                    path, offset, f"snapshot marker {s} is older than marker {self.snap_index}"
                )
            if s == self.snap_index:
                if meta.term != self.snapshot.term:
                    raise WALCorruptionError(
                        path,
                        offset,
                        f"snapshot marker {s} changes term {self.snapshot.term} to {meta.term}",
                    )
                self.snapshot = meta
                return
        ents = self.entries
        if not ents:
            # No entry leads from the covered run up to this marker (a
            # snapshot installed beyond the log): nothing is covered now.
            self.covered = []
        else:
            first, last = ents[0].index, ents[-1].index
            if first <= s <= last:
                k = s - first
                if ents[k].term == meta.term:
                    self._cover(ents[: k + 1])
                    del ents[: k + 1]
                else:
                    self.entries = []
                    self.covered = []
            elif s > last:
                self.entries = []
                self.covered = []
        self.snapshot = meta
        self.snap_index = s

    def _cover(self, run: list[Entry]) -> None:
        if self.covered and self.covered[-1].index + 1 == run[0].index:
            self.covered.extend(run)
        else:
            self.covered = list(run)

    def finish(self) -> WALState:
        """Check the log has no hole and return the recovered state."""
        if self.entries and self.entries[0].index != self.snap_index + 1:
            path, offset = self.run_start
            raise WALCorruptionError(
                path,
                offset,
                f"entries {self.snap_index + 1}..{self.entries[0].index - 1} are missing "
                f"(snapshot index {self.snap_index}, next entry {self.entries[0].index})",
            )
        return WALState(
            metadata=self.metadata or b"",
            hard_state=self.hard_state,
            snapshot=self.snapshot,
            entries=self.entries,
            covered_entries=self.covered,
        )


def _list_segments(directory: str) -> list[_Segment]:
    """The segment files in ``directory``, in log order; refuses gaps and odd names."""
    found = []
    for name in os.listdir(directory):
        if not name.endswith(".wal"):
            continue
        path = os.path.join(directory, name)
        match = _SEGMENT_NAME.match(name)
        if match is None:
            raise WALCorruptionError(path, 0, "not a valid segment file name")
        found.append(_Segment(int(match.group(1), 16), int(match.group(2), 16), path))
    found.sort(key=lambda seg: seg.seq)
    for prev, seg in zip(found, found[1:]):
        if seg.seq != prev.seq + 1:
            raise WALCorruptionError(
                seg.path, 0, f"segment {prev.seq + 1:016x} is missing before this one"
            )
    return found


class WAL:
    """An open write-ahead log; it holds the directory's lock until ``close()``.

    Not thread-safe: ``sync()`` may run on a worker thread only while no
    other method runs (the ``failed`` property excepted).
    """

    def __init__(
        self,
        directory: str,
        segment_bytes: int,
        fsync: Callable[[int], None],
        write: Callable[[int, memoryview], int],
        lock_fd: int,
    ) -> None:
        """Internal: use ``WAL.open``."""
        self._dir = directory
        self._segment_bytes = segment_bytes
        self._fsync = fsync
        self._write = write
        self._lock_fd: int | None = lock_fd
        self._dir_fd: int | None = None
        self._fd: int | None = None
        self._segments: list[_Segment] = []
        self._size = 0
        self._head_size = 0
        self._dirty = False
        self._dir_dirty = False
        self._retired: list[int] = []
        self._failure: BaseException | None = None
        self._closed = False
        self._metadata = b""
        self._hard_state = HardState()
        self._snapshot: SnapshotMetadata | None = None
        self._snap_index = 0
        self._synced_snap_index = 0
        self._last = 0
        self._runs: list[tuple[int, int]] = []

    # -- opening ---------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: str,
        metadata: bytes = b"",
        segment_bytes: int = 64 * 2**20,
        fsync: Callable[[int], None] = os.fsync,
        write: Callable[[int, memoryview], int] = os.write,
    ) -> tuple["WAL", WALState]:
        """Open (creating if missing) the WAL in ``directory`` and replay it.

        A new WAL stores ``metadata``; an existing one returns what it stored
        and ignores the argument.  A torn tail of the last segment is cut
        off; other damage raises ``WALCorruptionError``.  Everything replayed
        is fsynced before this returns.  Raises ``WALLockedError`` when
        another open WAL holds the directory, and ``WALError`` (chained to
        the ``OSError``) when the directory cannot be created or written.
        """
        if segment_bytes <= 0:
            raise ValueError(f"segment_bytes must be positive, not {segment_bytes}")
        directory = os.path.abspath(directory)
        try:
            makedirs_durable(directory, fsync)
            lock_fd = os.open(
                os.path.join(directory, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644
            )
        except OSError as exc:
            raise WALError(f"cannot use WAL directory {directory!r}: {exc}") from exc
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise WALLockedError(
                f"WAL directory {directory!r} is in use by another open WAL"
            ) from None
        except BaseException:
            os.close(lock_fd)
            raise
        wal = cls(directory, segment_bytes, fsync, write, lock_fd)
        try:
            state = wal._recover(bytes(metadata))
        except BaseException:
            wal._release_fds()
            raise
        return wal, state

    def _recover(self, metadata: bytes) -> WALState:
        """Replay every segment, repair the tail, and get ready to append."""
        try:
            self._dir_fd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            segments = _list_segments(self._dir)
        except OSError as exc:
            raise WALError(f"cannot read WAL directory {self._dir!r}: {exc}") from exc
        replay = _Replay()
        head_end = 0
        for n, seg in enumerate(segments):
            head_end = self._replay_segment(seg, replay, n == len(segments) - 1)
        state = replay.finish()
        self._metadata = replay.metadata if replay.metadata is not None else metadata
        self._hard_state = state.hard_state
        self._snapshot = state.snapshot
        self._snap_index = self._synced_snap_index = replay.snap_index
        self._last = state.entries[-1].index if state.entries else replay.snap_index
        for e in state.entries:
            if not self._runs or self._runs[-1][1] != e.term:
                self._runs.append((e.index, e.term))
        self._segments = segments
        if not segments:
            seg, self._fd = self._create_segment(0, self._last + 1)
            self._segments.append(seg)
            self._write_head(seg)
        else:
            seg = segments[-1]
            if head_end:
                self._fd = os.open(seg.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
                self._size = os.fstat(self._fd).st_size
                self._head_size = head_end
            else:
                _log.warn("WAL segment {path} has no complete head; rewriting it", path=seg.path)
                self._fd = os.open(seg.path, os.O_WRONLY | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC)
                self._write_head(seg)
        self._fsync(self._fd)
        self._fsync(self._dir_fd)
        self._dirty = False
        return WALState(self._metadata, state.hard_state, state.snapshot, state.entries, state.covered_entries)

    def _replay_segment(self, seg: _Segment, replay: _Replay, is_last: bool) -> int:
        """Feed one segment's records to ``replay``; return where its head ends (0: incomplete).

        Cuts a torn tail off the last segment; raises ``WALCorruptionError``
        for any other damage.
        """
        path = seg.path
        with open(path, "rb") as f:
            buf = f.read()
        count = 0
        offset = 0
        rtype = 0
        max_index = 0
        head_end = 0
        entry = replay.entry
        decode_entry = records.decode_entry
        try:
            for offset, rtype, payload in records.scan(buf):
                if rtype == _ENTRY and count >= 2:
                    e = decode_entry(payload)
                    entry(e, path, offset)
                    if e.index > max_index:
                        max_index = e.index
                elif rtype == _HARD_STATE and count >= 2:
                    replay.hard_state = records.decode_hard_state(payload)
                elif rtype == _SNAPSHOT and count >= 2:
                    replay.marker(records.decode_snapshot(payload), path, offset)
                elif rtype == _SEGMENT and count == 0:
                    self._check_segment_header(seg, payload, offset)
                elif rtype == _METADATA and count == 1:
                    stored = bytes(payload)
                    if replay.metadata is None:
                        replay.metadata = stored
                    elif stored != replay.metadata:
                        raise WALCorruptionError(
                            path, offset, "metadata differs from the earlier segments'"
                        )
                    head_end = offset + HEADER_SIZE + len(payload)
                else:
                    raise WALCorruptionError(path, offset, self._misplaced(rtype, count))
                count += 1
        except RecordDamage as damage:
            if not (is_last and damage.torn):
                where = "" if is_last else " (not in the last segment)"
                raise WALCorruptionError(path, damage.offset, damage.reason + where) from None
            self._cut_tail(path, damage)
        except (ValueError, TypeError, KeyError) as exc:
            raise WALCorruptionError(
                path, offset, f"undecodable record of type {rtype}: {exc!r}"
            ) from None
        if count < 2 and not is_last:
            raise WALCorruptionError(path, len(buf), "segment ends before its head is complete")
        seg.max_index = max_index
        with open(path, "rb") as f:
            self._fsync(f.fileno())
        return head_end

    @staticmethod
    def _misplaced(rtype: int, count: int) -> str:
        """Explain why a record of type ``rtype`` cannot be record number ``count``."""
        try:
            name = RecordType(rtype).name
        except ValueError:
            return f"unknown record type {rtype}"
        if count == 0:
            return f"segment starts with a {name} record instead of SEGMENT"
        if count == 1:
            return f"second record is {name} instead of METADATA"
        return f"unexpected {name} record after the segment head"

    @staticmethod
    def _check_segment_header(seg: _Segment, payload: memoryview, offset: int) -> None:
        """Refuse a segment whose header disagrees with its file name or format."""
        version, seq, first_index = records.decode_segment_header(payload)
        if version != records.FORMAT_VERSION:
            raise WALCorruptionError(seg.path, offset, f"unsupported WAL format version {version}")
        if (seq, first_index) != (seg.seq, seg.first_index):
            raise WALCorruptionError(
                seg.path,
                offset,
                f"header names segment {segment_name(seq, first_index)}, not the file's name",
            )

    def _cut_tail(self, path: str, damage: RecordDamage) -> None:
        """Truncate the last segment at a torn record, durably, and say so."""
        _log.warn(
            "WAL segment {path}: cutting torn tail at byte offset {offset} ({reason})",
            path=path,
            offset=damage.offset,
            reason=damage.reason,
        )
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, damage.offset)
            self._fsync(fd)
        finally:
            os.close(fd)

    def _head(self, seg: _Segment) -> bytes:
        """The records that open ``seg``: header, metadata, latest hard state and marker."""
        parts = [
            records.encode_segment_header(seg.seq, seg.first_index),
            records.encode_metadata(self._metadata),
        ]
        if not self._hard_state.is_empty():
            parts.append(records.encode_hard_state(self._hard_state))
        if self._snapshot is not None:
            parts.append(records.encode_snapshot(self._snapshot))
        return b"".join(parts)

    def _create_segment(self, seq: int, first_index: int) -> tuple[_Segment, int]:
        """Create the (new, empty) file for segment ``seq``; return it and its descriptor."""
        seg = _Segment(seq, first_index, os.path.join(self._dir, segment_name(seq, first_index)))
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        return seg, os.open(seg.path, flags, 0o644)

    def _write_head(self, seg: _Segment) -> None:
        """Write the head of the (empty) current segment ``seg``."""
        self._size = 0
        self._append(self._head(seg))
        self._head_size = self._size

    # -- writing ---------------------------------------------------------

    @property
    def failed(self) -> bool:
        """True once a write or fsync has failed; the WAL then accepts nothing more."""
        return self._failure is not None

    def _check_usable(self) -> None:
        """Raise unless the WAL is open and has not failed."""
        if self._failure is not None:
            raise WALFailedError(
                f"WAL in {self._dir!r} failed earlier: {self._failure}"
            ) from self._failure
        if self._closed:
            raise WALError(f"WAL in {self._dir!r} is closed")

    def _fail(self, exc: OSError, what: str) -> WALFailedError:
        """Poison the WAL with ``exc`` and return the error to raise."""
        self._failure = exc
        _log.error("WAL in {dir} failed while {what}: {exc}", dir=self._dir, what=what, exc=exc)
        return WALFailedError(f"WAL in {self._dir!r} failed while {what}: {exc}")

    def _append(self, data: bytes) -> None:
        """Write all of ``data`` at the end of the current segment."""
        fd = self._fd
        view = memoryview(data)
        start = self._size
        try:
            while view:
                written = self._write(fd, view)
                if not written or written < 0:
                    raise OSError(errno.EIO, "write made no progress")
                view = view[written:]
                self._size += written
        except OSError:
            # Best effort only: the WAL is poisoned anyway, and replay would
            # cut this torn tail; but a clean end helps whoever reads it.
            try:
                os.ftruncate(fd, start)
                self._size = start
            except OSError:
                pass
            raise
        finally:
            self._dirty = True

    def _append_records(self, data: bytes, next_index: int, what: str) -> None:
        """Append ``data``, first rolling to a new segment if it would pass the bound."""
        try:
            if self._size > self._head_size and self._size + len(data) > self._segment_bytes:
                self._roll(next_index)
            self._append(data)
        except OSError as exc:
            raise self._fail(exc, what) from exc

    def _roll(self, first_index: int) -> None:
        """Start a new segment; the old one is fsynced and closed by the next ``sync()``."""
        old = self._segments[-1]
        seg, fd = self._create_segment(old.seq + 1, first_index)
        seg.synced = False
        self._dir_dirty = True
        if self._dirty:
            self._retired.append(self._fd)
        else:
            os.close(self._fd)
        self._fd = fd
        self._segments.append(seg)
        self._dirty = False
        self._write_head(seg)

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        """Append ``entries`` and then ``hard_state`` (if given and changed); no fsync.

        ``entries`` must be contiguous, start after the snapshot index and at
        most one past the last index (``ValueError`` otherwise, with nothing
        written).  An entry at an index already in the log overwrites it and
        everything after it.  Raises ``WALFailedError`` if the write fails or
        failed before.
        """
        self._check_usable()
        data = b""
        if entries:
            first = entries[0].index
            if not self._snap_index < first <= self._last + 1:
                raise ValueError(
                    f"entries start at {first}: must be after the snapshot index "
                    f"{self._snap_index} "
                    f"and at most {self._last + 1}"
                )
            prev = first - 1
            for e in entries:
                if e.index != prev + 1:
                    raise ValueError(f"entries are not contiguous: {e.index} follows {prev}")
                prev = e.index
            data = records.encode_entries(entries)
        new_hs = hard_state is not None and hard_state != self._hard_state
        if new_hs:
            data += records.encode_hard_state(hard_state)
        if not data:
            return
        next_index = entries[0].index if entries else self._last + 1
        self._append_records(data, next_index, "saving entries")
        if entries:
            self._note_entries(entries)
        if new_hs:
            self._hard_state = hard_state

    def _note_entries(self, entries: Sequence[Entry]) -> None:
        """Track the written ``entries``: last index, per-term runs, segment's max index."""
        runs = self._runs
        del runs[bisect.bisect_left(runs, (entries[0].index,)) :]
        for e in entries:
            if not runs or runs[-1][1] != e.term:
                runs.append((e.index, e.term))
        self._last = entries[-1].index
        seg = self._segments[-1]
        if self._last > seg.max_index:
            seg.max_index = self._last

    def _term_at(self, index: int) -> int:
        """The term of the entry at ``index`` (snapshot index < index <= last index)."""
        return self._runs[bisect.bisect_right(self._runs, (index, float("inf"))) - 1][1]

    def save_snapshot(self, metadata: SnapshotMetadata) -> None:
        """Append a marker: a snapshot at ``metadata.index`` has been saved; no fsync.

        Replay then returns only the entries after that index, and drops
        those too unless the log's entry at the index has the snapshot's term
        (see ``_Replay``).  Markers must not go backwards (``ValueError``).
        """
        self._check_usable()
        s = metadata.index
        if s < 1:
            raise ValueError(f"snapshot index must be at least 1, not {s}")
        if self._snapshot is not None:
            if s < self._snap_index:
                raise ValueError(f"snapshot index {s} is older than the saved {self._snap_index}")
            if s == self._snap_index and metadata.term != self._snapshot.term:
                raise ValueError(f"snapshot {s} already saved with term {self._snapshot.term}")
        self._append_records(
            records.encode_snapshot(metadata), self._last + 1, "saving a snapshot marker"
        )
        if s != self._snap_index:
            if s == self._last and self._term_at(s) == metadata.term:
                self._runs = []
            elif s < self._last and self._term_at(s) == metadata.term:
                k = bisect.bisect_right(self._runs, (s + 1, float("inf"))) - 1
                self._runs = [(s + 1, self._runs[k][1])] + self._runs[k + 1 :]
            else:
                self._runs = []
                self._last = s
        self._snapshot = metadata
        self._snap_index = s

    def sync(self) -> None:
        """Block until everything written so far is durable.

        Fsyncs each segment written since the last sync (closing the retired
        ones), then the directory if a segment was created.  Raises
        ``WALFailedError`` if an fsync fails or failed before.
        """
        self._check_usable()
        snap_index = self._snap_index
        retired = self._retired
        try:
            while retired:
                self._fsync(retired[0])
                os.close(retired.pop(0))
            if self._dirty:
                self._fsync(self._fd)
                self._dirty = False
            if self._dir_dirty:
                self._fsync(self._dir_fd)
                self._dir_dirty = False
        except OSError as exc:
            raise self._fail(exc, "syncing") from exc
        for seg in self._segments:
            seg.synced = True
        self._synced_snap_index = snap_index

    # -- compaction and shutdown ----------------------------------------

    def release_to(self, index: int) -> None:
        """Delete the oldest segments whose entries all lie below ``index``.

        Never deletes the current segment, nor one whose successor is not yet
        durable.  ``index`` may be at most one past the latest *synced*
        snapshot marker (``ValueError`` otherwise), so what is deleted is
        always covered by a durable snapshot.  Blocks on one directory fsync
        when something was deleted.
        """
        self._check_usable()
        if index > self._synced_snap_index + 1:
            raise ValueError(
                f"cannot release entries below {index}: the latest synced snapshot is at "
                f"{self._synced_snap_index}"
            )
        segs = self._segments
        removed = 0
        try:
            while len(segs) > 1 and segs[0].max_index < index and segs[1].synced:
                os.unlink(segs[0].path)
                segs.pop(0)
                removed += 1
            if removed:
                self._fsync(self._dir_fd)
        except OSError as exc:
            raise self._fail(exc, "releasing old segments") from exc

    def close(self) -> None:
        """Close the files and release the lock.  Does not sync: call ``sync()`` first."""
        if self._closed:
            return
        self._closed = True
        self._release_fds()

    def _release_fds(self) -> None:
        """Close every descriptor this WAL holds, the lock's last."""
        for fd in [*self._retired, self._fd, self._dir_fd, self._lock_fd]:
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._retired = []
        self._fd = self._dir_fd = self._lock_fd = None
