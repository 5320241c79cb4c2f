"""Tests for snapshot files and their directory, metastore.snapshots.format."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import zlib

import msgpack
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from metastore.snapshots import format as snapshot_module
from metastore.storage.engine import ClusterState, Event, KeyValue, MemberRecord
from metastore.snapshots.format import (
    MAGIC,
    SnapshotCorruptionError,
    SnapshotDirectory,
    SnapshotHeader,
    UnsupportedSnapshotError,
    read_snapshot,
    snapshot_file_name,
    verify_snapshot,
    write_snapshot,
)

from tests.auth.test_state import AUTH_STATE

MEMBERSHIP = ClusterState(
    voters=(1, 2, 3),
    learners=(4,),
    members=(
        MemberRecord(1, "http://a:2380", "http://a:2379", grpc_url="http://a:2378"),
        MemberRecord(2, "http://b:2380"),
        MemberRecord(3, "http://c:2380", "http://c:2379"),
        MemberRecord(4, "http://d:2380", is_learner=True),
    ),
    removed=(5,),
    requests=((b"r" * 16, 8), (b"s" * 16, 9)),
    alarms=((2, 1),),
    auth=AUTH_STATE,
)


def header(index: int = 10, term: int = 2, revision: int = 7) -> SnapshotHeader:
    """A header at ``index``/``term`` with a four-member cluster."""
    return SnapshotHeader(index, term, revision, MEMBERSHIP)


def keys(count: int, value_size: int = 20) -> list[Event]:
    """``count`` events in revision order with distinct metadata, every
    seventh a tombstone."""
    return [
        Event(KeyValue(b"k%06d" % i, bytes([i % 256]) * value_size, i + 1, i + 2, i % 5 + 1, i % 3), i % 2, i % 7 == 0)
        for i in range(count)
    ]


def read_all(path: str) -> tuple[SnapshotHeader, list[Event]]:
    """The header and every event of the snapshot at ``path``."""
    head, items = read_snapshot(path)
    return head, list(items)


class RoundTripTests(SynchronousTestCase):
    """What write_snapshot writes, read_snapshot gives back unchanged."""

    def setUp(self) -> None:
        """A fresh directory for each test."""
        self.directory = self.mktemp()

    def test_keys_and_membership(self) -> None:
        """Many keys (several ITEMS records) and the membership come back equal, in order."""
        written = keys(5000, value_size=100)
        path = write_snapshot(self.directory, header(), iter(written))
        self.assertEqual(os.path.basename(path), snapshot_file_name(2, 10))
        self.assertEqual(read_all(path), (header(), written))
        self.assertEqual(verify_snapshot(path), header())

    def test_binary_keys(self) -> None:
        """Keys and values with every byte value, including empty values, survive."""
        written = [Event(KeyValue(bytes([i, 255 - i, 0]), bytes(range(i)), 1, 1, 1), i) for i in range(256)]
        path = write_snapshot(self.directory, header(), written)
        self.assertEqual(read_all(path)[1], written)

    def test_empty_keyspace(self) -> None:
        """A snapshot without keys still carries its header."""
        empty = SnapshotHeader(1, 1, 1, ClusterState())
        path = write_snapshot(self.directory, empty, [])
        self.assertEqual(read_all(path), (empty, []))

    def test_large_value(self) -> None:
        """A value bigger than a batch gets a record of its own."""
        written = [Event(KeyValue(b"a", b"x" * 300_000, 1, 1, 1), 0), Event(KeyValue(b"b", b"y", 2, 2, 1), 0)]
        path = write_snapshot(self.directory, header(), written)
        self.assertEqual(read_all(path)[1], written)

    def test_out_of_order_items_refused(self) -> None:
        """Items not in strictly increasing revision order are a ValueError and leave no file."""
        written = [Event(KeyValue(b"b", b"", 1, 1, 1), 0), Event(KeyValue(b"a", b"", 1, 1, 1), 0)]
        self.assertRaises(ValueError, write_snapshot, self.directory, header(), written)
        self.assertEqual(os.listdir(self.directory), [])

    def test_fsyncs_file_and_directory(self) -> None:
        """The file is fsynced before the rename and the directory after it."""
        os.mkdir(self.directory)
        synced = []

        def fsync(fd: int) -> None:
            synced.append(sorted(os.listdir(self.directory)) if _is_dir(fd) else "file")

        write_snapshot(self.directory, header(), keys(3), fsync=fsync)
        name = snapshot_file_name(2, 10)
        self.assertEqual(synced, ["file", [name]])

    def test_failure_removes_temporary(self) -> None:
        """A failing fsync leaves neither the temporary file nor the final name."""
        def fsync(fd: int) -> None:
            raise OSError("injected")

        os.mkdir(self.directory)
        self.assertRaises(OSError, write_snapshot, self.directory, header(), keys(3), fsync)
        self.assertEqual(os.listdir(self.directory), [])


def _is_dir(fd: int) -> bool:
    """True when ``fd`` refers to a directory."""
    return stat.S_ISDIR(os.fstat(fd).st_mode)


class CorruptionTests(SynchronousTestCase):
    """Any damage to a snapshot file is found and reported with its path."""

    def setUp(self) -> None:
        """One valid snapshot file of several records, kept as bytes."""
        self.path = write_snapshot(self.mktemp(), header(), keys(3000, value_size=60))
        with open(self.path, "rb") as f:
            self.original = f.read()

    def damaged(self, data: bytes) -> str:
        """A copy of the snapshot with contents ``data``; returns its path."""
        path = self.path + ".damaged"
        with open(path, "wb") as f:
            f.write(data)
        return path

    def assertCorrupt(self, path: str) -> SnapshotCorruptionError:
        """Both reading and verifying ``path`` raise an error that names it."""
        def read() -> None:
            head, items = read_snapshot(path)
            for _ in items:
                pass

        error = self.assertRaises(SnapshotCorruptionError, read)
        self.assertIn(path, str(error))
        self.assertEqual(error.path, path)
        self.assertRaises(SnapshotCorruptionError, verify_snapshot, path)
        return error

    def test_truncation_anywhere(self) -> None:
        """Cutting the file at any of many points is corruption, never a shorter snapshot."""
        size = len(self.original)
        cuts = sorted(set(range(0, 64)) | set(range(0, size, max(1, size // 200))) | {size - 1})
        for cut in cuts:
            error = self.assertCorrupt(self.damaged(self.original[:cut]))
            self.assertLessEqual(error.offset, cut)

    def test_bit_flips(self) -> None:
        """A single flipped bit anywhere is found."""
        size = len(self.original)
        for position in list(range(0, 48)) + list(range(48, size, max(1, size // 150))):
            data = bytearray(self.original)
            data[position] ^= 1 << (position % 8)
            self.assertCorrupt(self.damaged(bytes(data)))

    def test_trailing_bytes(self) -> None:
        """Bytes after the footer are corruption, located at the footer's end."""
        error = self.assertCorrupt(self.damaged(self.original + b"\0"))
        self.assertEqual(error.offset, len(self.original))

    def test_dropped_record(self) -> None:
        """Removing a whole intact ITEMS record is caught by the footer."""
        records = _split_records(self.original)
        self.assertGreater(len(records), 4)
        del records[2]
        error = self.assertCorrupt(self.damaged(MAGIC + b"".join(records)))
        self.assertIn("footer", error.reason)

    def test_swapped_records(self) -> None:
        """Two intact ITEMS records in the wrong order are caught."""
        records = _split_records(self.original)
        records[1], records[2] = records[2], records[1]
        self.assertCorrupt(self.damaged(MAGIC + b"".join(records)))

    def test_not_a_snapshot(self) -> None:
        """A file with another magic number is refused at once by read_snapshot."""
        path = self.damaged(b"PK\x03\x04" + self.original[4:])
        error = self.assertRaises(SnapshotCorruptionError, read_snapshot, path)
        self.assertIn("magic", error.reason)

    def test_unknown_record_kind(self) -> None:
        """A well-formed record of an unknown kind is refused as unsupported, naming the kind."""
        records = _split_records(self.original)
        records.insert(1, _record(9, b"leases"))
        error = self.assertCorrupt(self.damaged(MAGIC + b"".join(records)))
        self.assertIsInstance(error, UnsupportedSnapshotError)
        self.assertIn("kind 9", error.reason)

    def test_format_2_without_leases_is_read(self) -> None:
        """A file of format 2 (no LEASES record) still reads, as having no leases."""
        records = _split_records(self.original)
        fields = msgpack.unpackb(records[0][9:])
        fields["format"] = 2
        records[0] = _record(1, msgpack.packb(fields))
        del records[1]  # the LEASES record format 3 writes after the header
        path = self.damaged(_with_new_footer(records))
        read = verify_snapshot(path)
        self.assertEqual((read.format, read.leases, read.revision), (2, (), header().revision))

    def test_newer_format(self) -> None:
        """A header of a newer format version is refused as unsupported; extra header
        fields of the same version are ignored."""
        records = _split_records(self.original)
        fields = msgpack.unpackb(records[0][9:])
        fields["future"] = "ignored"
        records[0] = _record(1, msgpack.packb(fields))
        path = self.damaged(_with_new_footer(records))
        self.assertEqual(verify_snapshot(path), header())
        fields["format"] = 4
        records[0] = _record(1, msgpack.packb(fields))
        path = self.damaged(_with_new_footer(records))
        error = self.assertRaises(UnsupportedSnapshotError, read_snapshot, path)
        self.assertIn("format 4", error.reason)


def _split_records(data: bytes) -> list[bytes]:
    """The framed records of snapshot bytes ``data``, after the magic."""
    records = []
    offset = len(MAGIC)
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "little")
        records.append(data[offset : offset + 9 + length])
        offset += 9 + length
    return records


def _with_new_footer(records: list[bytes]) -> bytes:
    """Snapshot bytes from ``records`` with the footer recomputed to match the others."""
    body = records[:-1]
    item_count = msgpack.unpackb(records[-1][9:])[0]
    chain = 0
    for record in body:
        chain = zlib.crc32(record[4:8], chain)
    footer = _record(3, msgpack.packb((item_count, len(body), chain)))
    return MAGIC + b"".join(body) + footer


def _record(kind: int, payload: bytes) -> bytes:
    """One correctly framed record of ``kind``."""
    crc = zlib.crc32(payload, zlib.crc32(bytes([kind])))
    return len(payload).to_bytes(4, "little") + crc.to_bytes(4, "little") + bytes([kind]) + payload


class DirectoryTests(SynchronousTestCase):
    """SnapshotDirectory lists, chooses, prunes and accepts snapshot files."""

    def setUp(self) -> None:
        """An empty snapshot directory; warnings logged are collected."""
        self.path = os.path.join(self.mktemp(), "metaStore-1-snap")
        self.directory = SnapshotDirectory(self.path, max_snapshots=3)
        self.logged: list[dict] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def write(self, index: int, term: int = 1) -> str:
        """A valid snapshot at ``index``; returns its path."""
        return write_snapshot(self.path, header(index, term), keys(50))

    def test_created(self) -> None:
        """The directory and its missing parents are created."""
        self.assertTrue(os.path.isdir(self.path))
        self.assertEqual(self.directory.snapshots(), [])
        self.assertEqual(self.directory.newest_valid(), [])

    def test_listing_sorted_by_index(self) -> None:
        """Snapshots are listed oldest first by index, then term; other files are ignored."""
        for index, term in ((300, 2), (20, 1), (0x1000, 3)):
            self.write(index, term)
        with open(os.path.join(self.path, "notes.txt"), "w") as f:
            f.write("not a snapshot")
        self.assertEqual(
            [(i, t) for i, t, _ in self.directory.snapshots()], [(20, 1), (300, 2), (0x1000, 3)]
        )
        self.assertEqual(self.directory.path_for(3, 0x1000), self.directory.snapshots()[-1][2])

    def test_crash_mid_write_leaves_only_temporary(self) -> None:
        """A process killed while writing leaves a *.tmp that is never listed and is
        removed when the directory is opened again."""
        self.write(5)
        script = textwrap.dedent(
            """
            import os, signal, sys
            from metastore.storage.engine import ClusterState, Event, KeyValue
            from metastore.snapshots.format import SnapshotHeader, write_snapshot

            def items():
                for i in range(100000):
                    if i == 50000:
                        os.kill(os.getpid(), signal.SIGKILL)
                    yield Event(KeyValue(b"%08d" % i, b"v" * 100, 1, 1, 1), i)

            write_snapshot(sys.argv[1], SnapshotHeader(9, 1, 1, ClusterState()), items())
            """
        )
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        process = subprocess.run(
            [sys.executable, "-c", script, self.path], env=env, timeout=60, capture_output=True
        )
        self.assertEqual(process.returncode, -signal.SIGKILL, process.stderr)
        self.assertIn(snapshot_file_name(1, 9) + ".tmp", os.listdir(self.path))
        self.assertEqual([i for i, _, _ in self.directory.snapshots()], [5])
        self.assertEqual([h.index for h, _ in self.directory.newest_valid()], [5])
        reopened = SnapshotDirectory(self.path)
        self.assertEqual(sorted(os.listdir(self.path)), [snapshot_file_name(1, 5)])
        self.assertEqual([h.index for h, _ in reopened.newest_valid()], [5])

    def test_leftover_part_removed(self) -> None:
        """An unfinished received snapshot is removed when the directory is opened."""
        with open(self.directory.incoming_path(1, 7), "wb") as f:
            f.write(b"partial")
        SnapshotDirectory(self.path)
        self.assertEqual(os.listdir(self.path), [])

    def test_newest_valid_falls_back(self) -> None:
        """A damaged newest snapshot is skipped, with a logged reason; older ones follow."""
        self.write(10)
        self.write(20)
        newest = self.write(30)
        with open(newest, "r+b") as f:
            f.truncate(os.path.getsize(newest) - 3)
        found = self.directory.newest_valid()
        self.assertEqual([(h.index, p) for h, p in found], [(20, self.directory.path_for(1, 20)),
                                                            (10, self.directory.path_for(1, 10))])
        warnings = [e for e in self.logged if e.get("log_level") == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["path"], newest)
        self.assertIn("end of the file", warnings[0]["reason"])

    def test_header_must_match_name(self) -> None:
        """A valid file under another snapshot's name is not used."""
        os.rename(self.write(10), self.directory.path_for(1, 11))
        self.assertEqual(self.directory.newest_valid(), [])

    def test_prune_keeps_newest(self) -> None:
        """prune removes all but the newest max_snapshots files."""
        paths = [self.write(index) for index in (1, 2, 3, 4, 5)]
        self.assertEqual(self.directory.prune(), paths[:2])
        self.assertEqual([p for _, _, p in self.directory.snapshots()], paths[2:])
        self.assertEqual(self.directory.prune(), [])

    def test_prune_zero_keeps_all(self) -> None:
        """max_snapshots 0 keeps every file."""
        for index in (1, 2, 3):
            self.write(index)
        self.assertEqual(SnapshotDirectory(self.path, max_snapshots=0).prune(), [])
        self.assertEqual(len(self.directory.snapshots()), 3)

    def test_accept_incoming(self) -> None:
        """A complete received part becomes a listed snapshot under its final name."""
        source = write_snapshot(self.mktemp(), header(40, 3), keys(100))
        part = self.directory.incoming_path(3, 40)
        self.assertTrue(part.endswith(".part"))
        with open(source, "rb") as f, open(part, "wb") as out:
            out.write(f.read())
        self.assertEqual(self.directory.snapshots(), [])
        final = self.directory.accept_incoming(part)
        self.assertEqual(final, self.directory.path_for(3, 40))
        self.assertFalse(os.path.exists(part))
        self.assertEqual(read_all(final), (header(40, 3), keys(100)))

    def test_accept_incoming_rejects_damage(self) -> None:
        """A damaged part raises, is deleted and never becomes a snapshot."""
        source = write_snapshot(self.mktemp(), header(40, 3), keys(100))
        part = self.directory.incoming_path(3, 40)
        with open(source, "rb") as f, open(part, "wb") as out:
            out.write(f.read()[:-1])
        self.assertRaises(SnapshotCorruptionError, self.directory.accept_incoming, part)
        self.assertEqual(os.listdir(self.path), [])

    def test_accept_incoming_rejects_wrong_header(self) -> None:
        """A part whose header is for another index than its name is rejected."""
        source = write_snapshot(self.mktemp(), header(41, 3), keys(10))
        part = self.directory.incoming_path(3, 40)
        os.rename(source, part)
        self.assertRaises(SnapshotCorruptionError, self.directory.accept_incoming, part)
        self.assertEqual(os.listdir(self.path), [])

    def test_accept_incoming_foreign_path(self) -> None:
        """A path that is not one of this directory's incoming paths is a ValueError."""
        self.assertRaises(ValueError, self.directory.accept_incoming, "/elsewhere/x.part")
        self.assertRaises(
            ValueError, self.directory.accept_incoming, os.path.join(self.path, "x.part")
        )

    def test_negative_limit(self) -> None:
        """A negative max_snapshots is a ValueError."""
        self.assertRaises(ValueError, SnapshotDirectory, self.path, -1)


class BatchingTests(SynchronousTestCase):
    """Memory stays bounded: keys are written in bounded batches."""

    def test_records_bounded(self) -> None:
        """No ITEMS record is much larger than the batch size when values are small."""
        path = write_snapshot(self.mktemp(), header(), keys(20000, value_size=100))
        with open(path, "rb") as f:
            records = _split_records(f.read())
        self.assertGreater(len(records), 20)
        self.assertLess(
            max(len(r) for r in records), snapshot_module.ITEMS_BATCH_BYTES + 2048
        )


def write_format_1(path: str, index: int, term: int, revision: int, items: list[KeyValue]) -> None:
    """Write a snapshot file exactly as the seed (format 1) did: live keys
    in key order, ``[key, value, create, mod, version, lease]`` each."""
    seed_header = {
        "format": 1, "index": index, "term": term, "revision": revision,
        "voters": [1], "learners": [], "members": [[1, "http://a:2380", "", False]],
    }  # fmt: skip
    records = [_record(1, msgpack.packb(seed_header))]
    records.append(_record(2, msgpack.packb([[kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease] for kv in items])))
    records.append(_record(3, msgpack.packb((len(items), 0, 0))))
    with open(path, "wb") as out:
        out.write(_with_new_footer(records))


class FormatOneTests(SynchronousTestCase):
    """A snapshot written by the seed (format 1) still loads."""

    def test_seed_snapshot_reads_as_compacted_history(self) -> None:
        """Its keys come back as one event each (sub-revisions in file
        order), and the history counts as compacted at its revision."""
        directory = self.mktemp()
        os.mkdir(directory)
        path = os.path.join(directory, snapshot_file_name(3, 20))
        seed_keys = [KeyValue(b"a", b"1", 2, 5, 2), KeyValue(b"b", b"2", 5, 5, 1, 9)]
        write_format_1(path, 20, 3, 6, seed_keys)
        head, events = read_all(path)
        self.assertEqual((head.index, head.term, head.revision, head.format), (20, 3, 6, 1))
        self.assertEqual((head.compacted_revision, head.physically_compacted_revision), (6, 6))
        self.assertEqual(events, [Event(seed_keys[0], 0), Event(seed_keys[1], 1)])
        self.assertEqual(verify_snapshot(path), head)
        self.assertEqual([(h.index, p) for h, p in SnapshotDirectory(directory).iter_valid()], [(20, path)])
