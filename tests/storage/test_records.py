"""Tests for the WAL record codec, metastore.storage.records."""

from __future__ import annotations

import struct
import zlib

from twisted.trial.unittest import SynchronousTestCase

from metastore.raft.types import ConfState, Entry, EntryType, HardState, SnapshotMetadata
from metastore.storage import records
from metastore.storage.records import HEADER_SIZE, RecordDamage, RecordType


def _scan_all(buf: bytes) -> list[tuple[int, int, bytes]]:
    """Every record ``scan`` yields from ``buf``, payloads as bytes."""
    return [(off, t, bytes(p)) for off, t, p in records.scan(buf)]


class FramingTests(SynchronousTestCase):
    """The record frame: length, checksums, type, payload."""

    def test_layout(self) -> None:
        """A record is length, CRC of type+payload, CRC of the first 8 bytes, type, payload."""
        rec = records.encode_record(RecordType.METADATA, b"abc")
        length, crc, head_crc, rtype = struct.unpack_from("<IIIB", rec)
        self.assertEqual(
            (length, crc, head_crc, rtype, rec[HEADER_SIZE:]),
            (3, zlib.crc32(bytes([2]) + b"abc"), zlib.crc32(rec[:8]), 2, b"abc"),
        )

    def test_scan_round_trip(self) -> None:
        """scan() yields each record's offset, type and payload, in order."""
        a = records.encode_record(RecordType.METADATA, b"one")
        b = records.encode_record(RecordType.METADATA, b"")
        self.assertEqual(
            _scan_all(a + b), [(0, 2, b"one"), (len(a), 2, b"")]
        )

    def test_entries_batch(self) -> None:
        """encode_entries frames each entry so decode_entry gives it back."""
        ents = [Entry(3, 7, EntryType.EntryConfChange, b"cc"), Entry(4, 8, data=b"")]
        framed = records.encode_entries(ents)
        decoded = [records.decode_entry(p) for _, _, p in records.scan(framed)]
        self.assertEqual(decoded, ents)

    def test_state_payloads(self) -> None:
        """Hard state, snapshot marker and segment header decode to what was encoded."""
        hs = HardState(5, 2, 9)
        snap = SnapshotMetadata(10, 4, ConfState((1, 2, 3), (4,)))
        buf = (
            records.encode_hard_state(hs)
            + records.encode_snapshot(snap)
            + records.encode_segment_header(7, 99)
        )
        (_, _, p1), (_, _, p2), (_, _, p3) = records.scan(buf)
        self.assertEqual(records.decode_hard_state(p1), hs)
        self.assertEqual(records.decode_snapshot(p2), snap)
        self.assertEqual(records.decode_segment_header(p3), (records.FORMAT_VERSION, 7, 99))


class DamageTests(SynchronousTestCase):
    """How scan() classifies a record it cannot read."""

    def setUp(self) -> None:
        """Two valid records, ``self.first`` and ``self.second``."""
        self.first = records.encode_record(RecordType.METADATA, b"first record")
        self.second = records.encode_record(RecordType.METADATA, b"second record")

    def _damage(self, buf: bytes) -> RecordDamage:
        """The RecordDamage scanning ``buf`` raises."""
        return self.assertRaises(RecordDamage, _scan_all, buf)

    def test_every_truncation_is_torn(self) -> None:
        """Cutting the last record anywhere is reported at its start as torn."""
        for cut in range(1, len(self.second)):
            damage = self._damage(self.first + self.second[:cut])
            self.assertEqual((damage.offset, damage.torn), (len(self.first), True), cut)

    def test_bad_checksum_then_zeros_is_torn(self) -> None:
        """A payload that fails its CRC with only zeros after it is torn."""
        bad = bytearray(self.second)
        bad[-1] ^= 1
        damage = self._damage(self.first + bytes(bad) + bytes(100))
        self.assertEqual((damage.offset, damage.torn), (len(self.first), True))

    def test_zero_fill_is_torn(self) -> None:
        """A run of zero bytes where a record should start is torn."""
        damage = self._damage(self.first + bytes(4096))
        self.assertEqual((damage.offset, damage.torn), (len(self.first), True))

    def test_bit_flips_before_valid_data_are_not_torn(self) -> None:
        """A flipped bit anywhere in a record that is followed by data is not torn."""
        for pos in range(len(self.first)):
            bad = bytearray(self.first)
            bad[pos] ^= 0x10
            damage = self._damage(bytes(bad) + self.second)
            self.assertEqual((damage.offset, damage.torn), (0, False), pos)
