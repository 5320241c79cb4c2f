"""Raft messages to msgpack bytes and back: the body of the peer frames.

No Python object serialization: a peer's bytes are data, never code.  Everything a peer sends
is decoded into plain ``metastore.raft.types`` values and checked field by
field; anything else raises :class:`MalformedFrame`, and the caller drops
that one connection.

Layout, version 1 (all msgpack; lists, never maps, because positional
lists are smaller and decode faster than maps with field names)::

    batch     = [CODEC_VERSION, [message, ...]]
    message   = [type, to, from, term, log_term, index, entries, commit,
                 snapshot, reject, reject_hint, context]
    entries   = [term, index, type, data, term, index, type, data, ...]
    snapshot  = nil | [index, term, [voter, ...], [learner, ...], data]
    handshake = [PROTOCOL_VERSION, cluster_id, from_id, to_id]
    chunk     = [term, index, offset, data, is_last]

A ``chunk`` is one piece of a snapshot file being streamed (see
``metastore.transport.snapshots``): ``term`` and ``index`` name the
snapshot, ``offset`` is where ``data`` (bin) starts in the file, and
``is_last`` (bool) marks the piece that ends the file.

Entries are flattened into one list of four-field groups: one list object per
message instead of one per entry is measurably faster to pack and unpack.
Integers are unsigned 64-bit; ``data`` and ``context`` are msgpack ``bin``.

Each message is encoded on its own (:func:`encode_message`) so a sender can
queue encoded messages, count their bytes, and later group them into frames
without encoding anything twice (:func:`batch_body`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import msgpack

from metastore.raft.types import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)

CODEC_VERSION = 1
"""Version of the message layout above; a batch with another is rejected."""

PROTOCOL_VERSION = 1
"""Version of the peer protocol, carried by the handshake."""

_MAX_UINT64 = 2**64 - 1
_MESSAGE_FIELDS = 12
_ENTRY_FIELDS = 4
_SNAPSHOT_FIELDS = 5
_HANDSHAKE_FIELDS = 4

# Indexable by wire value; both enums are dense from 0, checked at import.
_MESSAGE_TYPES: tuple[MessageType, ...] = tuple(MessageType)
_ENTRY_TYPES: tuple[EntryType, ...] = tuple(EntryType)
assert [t.value for t in _MESSAGE_TYPES] == list(range(len(_MESSAGE_TYPES)))
assert [t.value for t in _ENTRY_TYPES] == list(range(len(_ENTRY_TYPES)))

_BATCH_PREFIX = msgpack.packb([CODEC_VERSION, None])[:-1]
"""The bytes of a 2-list header and the version, before the message list."""


class MalformedFrame(ValueError):
    """A peer sent bytes that are not a valid frame of this protocol.

    The only remedy is to drop that peer's connection; nothing else is
    affected.
    """


@dataclass(frozen=True, slots=True)
class Handshake:
    """The first frame on every peer connection: who is calling whom."""

    version: int
    cluster_id: int
    from_id: int
    to_id: int


@dataclass(frozen=True, slots=True)
class SnapshotChunk:
    """One piece of a snapshot file on its way to a follower."""

    term: int
    index: int
    offset: int
    data: bytes
    is_last: bool


_CHUNK_PACKER = msgpack.Packer()


def snapshot_chunk_parts(
    term: int, index: int, offset: int, data_length: int, is_last: bool
) -> tuple[bytes, bytes]:
    """The encoded chunk without its data: the bytes before and after ``data``.

    ``head + data + tail`` is the chunk's msgpack encoding; the sender joins
    them once instead of copying a megabyte of data through ``packb``.
    """
    packer = _CHUNK_PACKER
    head = b"".join(
        (
            packer.pack_array_header(5),
            packer.pack(term),
            packer.pack(index),
            packer.pack(offset),
            _bin_header(data_length),
        )
    )
    return head, packer.pack(is_last)


def _bin_header(length: int) -> bytes:
    """The msgpack header of a ``bin`` value of ``length`` bytes."""
    if length < 0x100:
        return b"\xc4" + length.to_bytes(1, "big")
    if length < 0x10000:
        return b"\xc5" + length.to_bytes(2, "big")
    return b"\xc6" + length.to_bytes(4, "big")


def encode_snapshot_chunk(chunk: SnapshotChunk) -> bytes:
    """Return the msgpack encoding of ``chunk``."""
    head, tail = snapshot_chunk_parts(
        chunk.term, chunk.index, chunk.offset, len(chunk.data), chunk.is_last
    )
    return b"".join((head, chunk.data, tail))


def decode_snapshot_chunk(body: bytes) -> SnapshotChunk:
    """Decode a chunk; raise :class:`MalformedFrame` if it is not exactly one."""
    value = _unpack(body)
    if type(value) is not list or len(value) != 5:
        raise MalformedFrame("a snapshot chunk is a list [term, index, offset, data, is_last]")
    term, index, offset, data, is_last = value
    _check_uint(term, "chunk term")
    _check_uint(index, "chunk index")
    _check_uint(offset, "chunk offset")
    _check_bytes(data, "chunk data")
    if type(is_last) is not bool:
        raise MalformedFrame("chunk is_last must be a boolean")
    return SnapshotChunk(term, index, offset, data, is_last)


def encode_message(message: Message) -> bytes:
    """Return the msgpack encoding of one message (one element of a batch).

    The message is trusted (it comes from our own raft); no validation beyond
    what msgpack itself does.
    """
    flat: list[object] = []
    for e in message.entries:
        flat += (e.term, e.index, int(e.type), e.data)
    snap = message.snapshot
    if snap is None:
        wire_snapshot = None
    else:
        meta = snap.metadata
        wire_snapshot = (
            meta.index,
            meta.term,
            meta.conf_state.voters,
            meta.conf_state.learners,
            snap.data,
        )
    return msgpack.packb(
        (
            int(message.type),
            message.to,
            message.from_,
            message.term,
            message.log_term,
            message.index,
            flat,
            message.commit,
            wire_snapshot,
            message.reject,
            message.reject_hint,
            message.context,
        ),
        use_bin_type=True,
    )


def batch_body(encoded_messages: Sequence[bytes]) -> bytes:
    """Join messages already encoded by :func:`encode_message` into a batch.

    The result is exactly ``encode_batch`` of the original messages.
    """
    header = msgpack.Packer().pack_array_header(len(encoded_messages))
    return b"".join((_BATCH_PREFIX, header, *encoded_messages))


def encode_batch(messages: Iterable[Message]) -> bytes:
    """Return the msgpack encoding of a batch of messages, in order."""
    return batch_body([encode_message(m) for m in messages])


def decode_batch(body: bytes) -> list[Message]:
    """Decode a batch made by :func:`encode_batch`, in order.

    Raises :class:`MalformedFrame` for anything that is not exactly a valid
    version-1 batch: bad msgpack, trailing bytes, wrong shapes or types,
    negative or oversized integers, unknown enum values.
    """
    value = _unpack(body)
    if type(value) is not list or len(value) != 2:
        raise MalformedFrame("a batch is a list [version, messages]")
    version, wire_messages = value
    if version != CODEC_VERSION or type(version) is not int:
        raise MalformedFrame(f"unsupported codec version {version!r}")
    if type(wire_messages) is not list:
        raise MalformedFrame("the messages of a batch must be a list")
    return [_decode_message(w) for w in wire_messages]


def encode_handshake(handshake: Handshake) -> bytes:
    """Return the msgpack encoding of a handshake."""
    return msgpack.packb(
        (
            handshake.version,
            handshake.cluster_id,
            handshake.from_id,
            handshake.to_id,
        )
    )


def decode_handshake(body: bytes) -> Handshake:
    """Decode a handshake; raise :class:`MalformedFrame` if it is not one.

    Only the shape is checked here; whether the version, cluster and ids are
    acceptable is the receiving protocol's decision.
    """
    value = _unpack(body)
    if type(value) is not list or len(value) != _HANDSHAKE_FIELDS:
        raise MalformedFrame("a handshake is a list of four integers")
    for item in value:
        _check_uint(item, "handshake field")
    return Handshake(*value)


def _unpack(body: bytes) -> object:
    try:
        return msgpack.unpackb(body, raw=False, use_list=True, strict_map_key=True)
    except Exception as e:  # msgpack raises several unrelated types
        raise MalformedFrame(f"not a msgpack value: {e}") from None


def _check_uint(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value <= _MAX_UINT64:
        raise MalformedFrame(f"{what} must be an unsigned 64-bit integer, got {value!r}")
    return value


def _check_bytes(value: object, what: str) -> bytes:
    if type(value) is not bytes:
        raise MalformedFrame(f"{what} must be bytes, got {type(value).__name__}")
    return value


def _decode_message(wire: object) -> Message:
    if type(wire) is not list or len(wire) != _MESSAGE_FIELDS:
        raise MalformedFrame(f"a message is a list of {_MESSAGE_FIELDS} fields")
    (
        mtype,
        to,
        from_,
        term,
        log_term,
        index,
        flat,
        commit,
        snapshot,
        reject,
        reject_hint,
        context,
    ) = wire
    if type(mtype) is not int or not 0 <= mtype < len(_MESSAGE_TYPES):
        raise MalformedFrame(f"unknown message type {mtype!r}")
    for value, what in (
        (to, "to"),
        (from_, "from"),
        (term, "term"),
        (log_term, "log_term"),
        (index, "index"),
        (commit, "commit"),
        (reject_hint, "reject_hint"),
    ):
        _check_uint(value, what)
    if type(reject) is not bool:
        raise MalformedFrame("reject must be a boolean")
    _check_bytes(context, "context")
    return Message(
        type=_MESSAGE_TYPES[mtype],
        to=to,
        from_=from_,
        term=term,
        log_term=log_term,
        index=index,
        entries=_decode_entries(flat),
        commit=commit,
        snapshot=None if snapshot is None else _decode_snapshot(snapshot),
        reject=reject,
        reject_hint=reject_hint,
        context=context,
    )


def _decode_entries(flat: object) -> tuple[Entry, ...]:
    if type(flat) is not list or len(flat) % _ENTRY_FIELDS:
        raise MalformedFrame("entries must be a list of 4-field groups")
    if not flat:
        return ()
    # Whole-column checks run in C: several times faster than a Python-level
    # test per entry, and this is the hot path of every append.
    terms, indexes, types, datas = flat[0::4], flat[1::4], flat[2::4], flat[3::4]
    if {*map(type, terms), *map(type, indexes), *map(type, types)} != {int}:
        raise MalformedFrame("entry term, index and type must be integers")
    if {*map(type, datas)} != {bytes}:
        raise MalformedFrame("entry data must be bytes")
    if min(terms) < 0 or min(indexes) < 0:
        raise MalformedFrame("entry term and index must be unsigned")
    if min(types) < 0 or max(types) >= len(_ENTRY_TYPES):
        raise MalformedFrame(f"unknown entry type in {sorted(set(types))!r}")
    return tuple(
        map(Entry, terms, indexes, map(_ENTRY_TYPES.__getitem__, types), datas)
    )


def _decode_snapshot(wire: object) -> Snapshot:
    if type(wire) is not list or len(wire) != _SNAPSHOT_FIELDS:
        raise MalformedFrame(f"a snapshot is nil or a list of {_SNAPSHOT_FIELDS} fields")
    index, term, voters, learners, data = wire
    _check_uint(index, "snapshot index")
    _check_uint(term, "snapshot term")
    return Snapshot(
        metadata=SnapshotMetadata(
            index=index,
            term=term,
            conf_state=ConfState(
                voters=_decode_ids(voters, "voters"),
                learners=_decode_ids(learners, "learners"),
            ),
        ),
        data=_check_bytes(data, "snapshot data"),
    )


def _decode_ids(wire: object, what: str) -> tuple[int, ...]:
    if type(wire) is not list:
        raise MalformedFrame(f"{what} must be a list")
    for item in wire:
        _check_uint(item, what)
    return tuple(wire)
