"""The WAL's record codec: checksummed framing and each record type's payload.

A record is a 13-byte little-endian header followed by the payload::

    length u32 | crc u32 | head_crc u32 | type u8 | payload (length bytes)

``crc`` is CRC-32 over type and payload; ``head_crc`` is CRC-32 over the
first eight bytes (length and crc), so a damaged length is recognised as
damage instead of being mistaken for a record cut off by a crash.  Payloads
are msgpack (an explicit format, never Python object serialization), except METADATA which is the caller's opaque
bytes.  The segment header carries the format version for the whole file.
"""

from __future__ import annotations

import enum
import struct
import zlib
from typing import Iterator, Sequence

import msgpack

from metastore.raft.types import ConfState, Entry, EntryType, HardState, SnapshotMetadata

FORMAT_VERSION = 1
"""Version of the segment layout and payload encodings; replay refuses others."""


class RecordType(enum.IntEnum):
    """What a record's payload holds."""

    SEGMENT = 1
    """First record of every segment: [format version, segment seq, first raft index]."""
    METADATA = 2
    """The node's opaque metadata; second record of every segment."""
    ENTRY = 3
    """One raft entry: [index, term, entry type, data]."""
    HARD_STATE = 4
    """[term, vote, commit]; the latest one wins."""
    SNAPSHOT = 5
    """A snapshot was saved: [index, term, voters, learners]."""


HEADER = struct.Struct("<IIIB")
HEADER_SIZE = HEADER.size
_LENGTH_CRC = struct.Struct("<II")
_HEAD_REST = struct.Struct("<IB")
_TYPE_CRC = {t: zlib.crc32(bytes([t])) for t in RecordType}
_ENTRY_TYPES = {t.value: t for t in EntryType}
_ENTRY = RecordType.ENTRY.value
_ENTRY_CRC = _TYPE_CRC[RecordType.ENTRY]
_packb = msgpack.packb
_unpackb = msgpack.unpackb
_crc32 = zlib.crc32


class RecordDamage(Exception):
    """A record could not be read.

    ``offset`` is where the damaged record starts.  ``torn`` is true when the
    damage looks like a write cut short by a crash (the record runs past the
    end of the data, or it fails its checksum and only zero bytes follow it);
    whether that is acceptable depends on where the record sits, which only
    the caller knows.
    """

    def __init__(self, offset: int, reason: str, torn: bool) -> None:
        super().__init__(f"offset {offset}: {reason}")
        self.offset = offset
        self.reason = reason
        self.torn = torn


def encode_record(rtype: RecordType, payload: bytes) -> bytes:
    """Frame ``payload`` as one record of type ``rtype``."""
    head = _LENGTH_CRC.pack(len(payload), _crc32(payload, _TYPE_CRC[rtype]))
    return head + _HEAD_REST.pack(_crc32(head), rtype) + payload


def encode_entries(entries: Sequence[Entry]) -> bytes:
    """Frame ``entries`` as consecutive ENTRY records, ready for one write."""
    parts = []
    append = parts.append
    pack_lc = _LENGTH_CRC.pack
    pack_rest = _HEAD_REST.pack
    # One packer for the whole batch: ``msgpack.packb`` builds (and
    # allocates a buffer for) a new one per call, which cost more than
    # packing an entry.
    pack = msgpack.Packer().pack
    for e in entries:
        payload = pack((e.index, e.term, int(e.type), e.data))
        head = pack_lc(len(payload), _crc32(payload, _ENTRY_CRC))
        append(head)
        append(pack_rest(_crc32(head), _ENTRY))
        append(payload)
    return b"".join(parts)


def encode_hard_state(hs: HardState) -> bytes:
    """Frame ``hs`` as a HARD_STATE record."""
    return encode_record(RecordType.HARD_STATE, _packb((hs.term, hs.vote, hs.commit)))


def encode_snapshot(meta: SnapshotMetadata) -> bytes:
    """Frame ``meta`` as a SNAPSHOT marker record."""
    cs = meta.conf_state
    payload = _packb((meta.index, meta.term, list(cs.voters), list(cs.learners)))
    return encode_record(RecordType.SNAPSHOT, payload)


def encode_segment_header(seq: int, first_index: int) -> bytes:
    """Frame the SEGMENT record that opens segment ``seq``."""
    return encode_record(RecordType.SEGMENT, _packb((FORMAT_VERSION, seq, first_index)))


def encode_metadata(metadata: bytes) -> bytes:
    """Frame the node's opaque ``metadata`` as a METADATA record."""
    return encode_record(RecordType.METADATA, bytes(metadata))


def decode_entry(payload: memoryview) -> Entry:
    """Decode an ENTRY payload; raises ``ValueError``/``TypeError``/``KeyError`` if malformed."""
    index, term, etype, data = _unpackb(payload)
    return Entry(term, index, _ENTRY_TYPES[etype], data)


def decode_hard_state(payload: memoryview) -> HardState:
    """Decode a HARD_STATE payload; raises ``ValueError``/``TypeError`` if malformed."""
    term, vote, commit = _unpackb(payload)
    return HardState(term, vote, commit)


def decode_snapshot(payload: memoryview) -> SnapshotMetadata:
    """Decode a SNAPSHOT payload; raises ``ValueError``/``TypeError`` if malformed."""
    index, term, voters, learners = _unpackb(payload)
    return SnapshotMetadata(index, term, ConfState(tuple(voters), tuple(learners)))


def decode_segment_header(payload: memoryview) -> tuple[int, int, int]:
    """Decode a SEGMENT payload into (format version, seq, first index)."""
    version, seq, first_index = _unpackb(payload)
    return version, seq, first_index


def _zeros_from(buf: bytes, start: int) -> bool:
    """True when ``buf[start:]`` is empty or all zero bytes."""
    return start >= len(buf) or buf.count(0, start) == len(buf) - start


def scan(buf: bytes) -> Iterator[tuple[int, int, memoryview]]:
    """Yield ``(offset, type, payload)`` for each intact record in ``buf``.

    Stops at the end of ``buf``; raises ``RecordDamage`` at the first record
    that cannot be read.  The record type is not checked here.
    """
    view = memoryview(buf)
    end = len(buf)
    offset = 0
    unpack = HEADER.unpack_from
    while offset < end:
        if end - offset < HEADER_SIZE:
            reason = f"short header ({end - offset} bytes before end of file)"
            raise RecordDamage(offset, reason, True)
        length, crc, head_crc, rtype = unpack(buf, offset)
        if _crc32(view[offset : offset + 8]) != head_crc:
            raise RecordDamage(
                offset, "header checksum mismatch", _zeros_from(buf, offset + HEADER_SIZE)
            )
        stop = offset + HEADER_SIZE + length
        if stop > end:
            raise RecordDamage(
                offset, f"short payload ({end - offset - HEADER_SIZE} of {length} bytes)", True
            )
        if _crc32(view[offset + HEADER_SIZE - 1 : stop]) != crc:
            raise RecordDamage(offset, "payload checksum mismatch", _zeros_from(buf, stop))
        yield offset, rtype, view[offset + HEADER_SIZE : stop]
        offset = stop
