"""Tests for the WAL's replay of damaged files and its failure handling."""

from __future__ import annotations

import errno
import os
import shutil
import stat

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from metastore.raft.types import HardState
from metastore.storage.errors import (
    WALCorruptionError,
    WALError,
    WALFailedError,
    WALLockedError,
)
from metastore.storage.records import HEADER_SIZE
from metastore.storage.wal import WAL, WALState

from .helpers import FaultySyscalls, entries, segment_paths
from .test_wal import WALTestMixin


def _flip(path: str, offset: int) -> None:
    """Flip one bit of the byte at ``offset`` in ``path``."""
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x04]))


class TornTailTests(WALTestMixin, SynchronousTestCase):
    """A record cut short at the end of the last segment is dropped, and the log goes on."""

    def test_every_truncation_point(self) -> None:
        """Cut anywhere inside the last record, replay drops it, and appends work after."""
        src = self.mktemp()
        wal, _ = self.open(src)
        wal.save(HardState(1, 1, 2), entries(1, 3))
        wal.sync()
        path = segment_paths(src)[0]
        good = os.path.getsize(path)
        wal.save(None, entries(4, 4, size=20))
        wal.close()
        full = os.path.getsize(path)
        self.assertGreater(full - good, HEADER_SIZE)
        for cut in range(good, full):
            d = self.mktemp()
            shutil.copytree(src, d)
            os.truncate(segment_paths(d)[0], cut)
            wal, state = self.open(d)
            self.assertEqual(state, WALState(b"", HardState(1, 1, 2), None, entries(1, 3)), cut)
            self.assertEqual(os.path.getsize(segment_paths(d)[0]), good)
            wal.save(None, entries(4, 5, term=2))
            _, state = self.reopen(wal, d)
            self.assertEqual(state.entries, entries(1, 3) + entries(4, 5, term=2), cut)

    def test_cut_is_logged(self) -> None:
        """Cutting a torn tail is logged with the file and offset."""
        d = self.mktemp()
        wal, _ = self.open(d)
        wal.save(None, entries(1, 2))
        wal.close()
        path = segment_paths(d)[0]
        size = os.path.getsize(path)
        with open(path, "ab") as f:
            f.write(b"\x01\x02")
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.open(d)
        cuts = [e for e in events if "cutting torn tail" in e.get("log_format", "")]
        self.assertEqual(
            [(e["path"], e["offset"]) for e in cuts], [(os.path.abspath(path), size)]
        )

    def test_zero_filled_tail(self) -> None:
        """Zero bytes after the last record (a file extended but never written) are cut."""
        d = self.mktemp()
        wal, _ = self.open(d)
        wal.save(None, entries(1, 3))
        wal.close()
        path = segment_paths(d)[0]
        size = os.path.getsize(path)
        with open(path, "ab") as f:
            f.write(bytes(8192))
        wal, state = self.open(d)
        self.assertEqual((state.entries, os.path.getsize(path)), (entries(1, 3), size))
        wal.save(None, entries(4, 4))
        _, state = self.reopen(wal, d)
        self.assertEqual(state.entries, entries(1, 4))

    def test_torn_record_then_zeros(self) -> None:
        """A last record whose tail never reached the disk (zeros instead) is cut."""
        d = self.mktemp()
        wal, _ = self.open(d)
        wal.save(None, entries(1, 3))
        wal.close()
        path = segment_paths(d)[0]
        with open(path, "r+b") as f:
            f.seek(-5, os.SEEK_END)
            f.write(bytes(5 + 4096))
        _, state = self.open(d)
        self.assertEqual(state.entries, entries(1, 2))

    def test_torn_head_of_new_segment(self) -> None:
        """A last segment cut inside its head is given a fresh head; nothing is lost."""
        d = self.mktemp()
        wal, _ = self.open(d, metadata=b"meta", segment_bytes=200)
        wal.save(HardState(2, 1, 1), entries(1, 10))
        wal.save(None, entries(11, 12))
        wal.close()
        last = segment_paths(d)[-1]
        self.assertEqual(len(segment_paths(d)), 2)
        os.truncate(last, 5)
        wal, state = self.open(d, segment_bytes=200)
        self.assertEqual(state, WALState(b"meta", HardState(2, 1, 1), None, entries(1, 10)))
        wal.save(None, entries(11, 11))
        _, state = self.reopen(wal, d)
        self.assertEqual(state.entries, entries(1, 11))

    def test_torn_creation(self) -> None:
        """A first segment cut to nothing (crash while creating) opens as a new WAL."""
        d = self.mktemp()
        wal, _ = self.open(d, metadata=b"meta")
        wal.close()
        os.truncate(segment_paths(d)[0], 0)
        _, state = self.open(d, metadata=b"meta")
        self.assertEqual(state, WALState(b"meta", HardState(), None, []))


class CorruptionTests(WALTestMixin, SynchronousTestCase):
    """Damage that is not a torn tail stops replay with the file and offset."""

    def _three_records(self) -> tuple[str, list[int]]:
        """A closed WAL whose only segment ends with entries 1..3; their offsets."""
        d = self.mktemp()
        wal, _ = self.open(d)
        offsets = []
        path = None
        for i in range(1, 4):
            path = segment_paths(d)[0]
            offsets.append(os.path.getsize(path))
            wal.save(None, entries(i, i))
        wal.close()
        return d, offsets

    def test_bit_flip_mid_segment(self) -> None:
        """A flipped bit in any byte of a record followed by valid records is refused."""
        src, offsets = self._three_records()
        for pos in range(offsets[1], offsets[2]):
            d = self.mktemp()
            shutil.copytree(src, d)
            path = segment_paths(d)[0]
            _flip(path, pos)
            e = self.assertRaises(WALCorruptionError, WAL.open, d)
            self.assertEqual((e.path, e.offset), (os.path.abspath(path), offsets[1]), pos)
            self.assertIn(f"{os.path.abspath(path)} at byte offset {offsets[1]}", str(e))

    def test_damage_in_earlier_segment(self) -> None:
        """Truncating or flipping a bit in a segment that is not the last is refused."""
        src = self.mktemp()
        wal, _ = self.open(src, segment_bytes=200)
        for i in range(1, 30):
            wal.save(None, entries(i, i))
        wal.close()
        self.assertGreater(len(segment_paths(src)), 2)
        for damage in ("truncate", "flip", "zeros"):
            d = self.mktemp()
            shutil.copytree(src, d)
            path = segment_paths(d)[0]
            size = os.path.getsize(path)
            if damage == "truncate":
                os.truncate(path, size - 3)
            elif damage == "flip":
                _flip(path, size - 3)
            else:
                with open(path, "ab") as f:
                    f.write(bytes(64))
            e = self.assertRaises(WALCorruptionError, WAL.open, d)
            self.assertEqual(e.path, os.path.abspath(path), damage)
            self.assertIn("not in the last segment", e.reason, damage)

    def test_garbage_after_zeros(self) -> None:
        """Zeros followed by non-zero bytes at the tail are damage, not a torn write."""
        d = self.mktemp()
        wal, _ = self.open(d)
        wal.save(None, entries(1, 2))
        wal.close()
        path = segment_paths(d)[0]
        size = os.path.getsize(path)
        with open(path, "ab") as f:
            f.write(bytes(100) + b"\x01")
        e = self.assertRaises(WALCorruptionError, WAL.open, d)
        self.assertEqual(e.offset, size)

    def test_refusal_does_not_modify(self) -> None:
        """A refused WAL is left byte for byte as it was, and unlocked."""
        src, offsets = self._three_records()
        path = segment_paths(src)[0]
        _flip(path, offsets[1] + 2)
        with open(path, "rb") as f:
            before = f.read()
        self.assertRaises(WALCorruptionError, WAL.open, src)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), before)
        self.assertRaises(WALCorruptionError, WAL.open, src)

    def test_foreign_segment_name(self) -> None:
        """A .wal file whose name is not a segment name is refused, not skipped."""
        d = self.mktemp()
        wal, _ = self.open(d)
        wal.close()
        with open(os.path.join(d, "stray.wal"), "wb"):
            pass
        e = self.assertRaises(WALCorruptionError, WAL.open, d)
        self.assertTrue(e.path.endswith("stray.wal"))

    def test_renamed_segment(self) -> None:
        """A segment whose header disagrees with its file name is refused."""
        d = self.mktemp()
        wal, _ = self.open(d)
        wal.close()
        path = segment_paths(d)[0]
        os.rename(path, os.path.join(d, "0000000000000000-0000000000000005.wal"))
        e = self.assertRaises(WALCorruptionError, WAL.open, d)
        self.assertIn("not the file's name", e.reason)


class FailureTests(WALTestMixin, SynchronousTestCase):
    """A failed write or fsync poisons the WAL."""

    def test_fsync_failure_poisons(self) -> None:
        """An fsync error fails sync() and every later save and sync."""
        d = self.mktemp()
        faults = FaultySyscalls()
        wal, _ = self.open(d, fsync=faults.fsync)
        wal.save(HardState(1, 1, 0), entries(1, 2))
        faults.fail_fsync = True
        e = self.assertRaises(WALFailedError, wal.sync)
        self.assertIsInstance(e.__cause__, OSError)
        self.assertTrue(wal.failed)
        faults.fail_fsync = False
        self.assertRaises(WALFailedError, wal.save, None, entries(3, 3))
        self.assertRaises(WALFailedError, wal.sync)
        self.assertRaises(WALFailedError, wal.save_snapshot, None)

    def test_sync_after_rollover(self) -> None:
        """After a rollover, sync() fsyncs the retired segment, the new one and the directory."""
        d = self.mktemp()
        faults = FaultySyscalls()
        wal, _ = self.open(d, segment_bytes=200, fsync=faults.fsync)
        wal.save(None, entries(1, 10))
        wal.save(None, entries(11, 12))
        self.assertEqual(len(segment_paths(d)), 2)
        calls = faults.fsyncs
        wal.sync()
        self.assertEqual(faults.fsyncs - calls, 3)
        calls = faults.fsyncs
        wal.sync()
        self.assertEqual(faults.fsyncs, calls)

    def test_directory_fsync_failure_poisons(self) -> None:
        """Failing to fsync the directory after a rollover fails the sync and the WAL."""
        d = self.mktemp()

        def fsync(fd: int) -> None:
            """Fsync files; refuse directories once the WAL is open."""
            if armed and stat.S_ISDIR(os.fstat(fd).st_mode):
                raise OSError(errno.EIO, "injected")
            os.fsync(fd)

        armed = False
        wal, _ = self.open(d, segment_bytes=200, fsync=fsync)
        armed = True
        wal.save(None, entries(1, 10))
        wal.sync()
        wal.save(None, entries(11, 12))
        self.assertRaises(WALFailedError, wal.sync)
        self.assertTrue(wal.failed)

    def test_write_failure_poisons(self) -> None:
        """A failed write raises WALFailedError and nothing is accepted after it."""
        d = self.mktemp()
        faults = FaultySyscalls()
        wal, _ = self.open(d, write=faults.write)
        wal.save(None, entries(1, 2))
        faults.fail_write = True
        e = self.assertRaises(WALFailedError, wal.save, None, entries(3, 3))
        self.assertIsInstance(e.__cause__, OSError)
        faults.fail_write = False
        self.assertRaises(WALFailedError, wal.save, None, entries(3, 3))
        self.assertRaises(WALFailedError, wal.sync)
        _, state = self.reopen(wal, d)
        self.assertEqual(state.entries, entries(1, 2))

    def test_short_write_poisons(self) -> None:
        """A write that stores part of a batch then fails leaves no partial record behind."""
        d = self.mktemp()
        faults = FaultySyscalls()
        wal, _ = self.open(d, write=faults.write)
        wal.save(None, entries(1, 2))
        faults.short_write = HEADER_SIZE + 3
        self.assertRaises(WALFailedError, wal.save, None, entries(3, 5))
        self.assertTrue(wal.failed)
        faults.fail_write = False
        self.assertRaises(WALFailedError, wal.save, HardState(1, 1, 1), [])
        _, state = self.reopen(wal, d)
        self.assertEqual(state.entries, entries(1, 2))

    def test_closed_wal_refuses(self) -> None:
        """save() after close() raises WALError; close() twice is harmless."""
        wal, _ = self.open()
        wal.close()
        wal.close()
        self.assertRaises(WALError, wal.save, None, entries(1, 1))


class DirectoryTests(WALTestMixin, SynchronousTestCase):
    """The directory: creation, locking, and unusable paths."""

    def test_created_with_parents(self) -> None:
        """A missing directory and its missing parents are created."""
        d = os.path.join(self.mktemp(), "a", "b", "wal")
        self.open(d)
        self.assertEqual(len(segment_paths(d)), 1)

    def test_second_open_locked(self) -> None:
        """A second open of the same directory raises WALLockedError until the first closes."""
        d = self.mktemp()
        wal, _ = self.open(d)
        self.assertRaises(WALLockedError, WAL.open, d)
        wal.close()
        self.open(d)

    def test_path_under_a_file(self) -> None:
        """A directory path below a regular file gives a WALError naming the path."""
        parent = self.mktemp()
        with open(parent, "wb"):
            pass
        d = os.path.join(parent, "wal")
        e = self.assertRaises(WALError, WAL.open, d)
        self.assertIn(os.path.abspath(d), str(e))
        self.assertIsInstance(e.__cause__, OSError)

    def test_read_only_directory(self) -> None:
        """An existing directory without write permission gives a WALError."""
        if os.geteuid() == 0:
            raise self.skipTest("root ignores directory permissions")
        d = self.mktemp()
        os.mkdir(d)
        os.chmod(d, 0o500)
        self.addCleanup(os.chmod, d, 0o700)
        self.assertRaises(WALError, WAL.open, d)
