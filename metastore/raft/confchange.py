"""The wire form of a ``ConfChange`` inside an EntryConfChange entry (msgpack)."""

from __future__ import annotations

import msgpack

from metastore.raft.types import ConfChange, ConfChangeType

_FORMAT_VERSION = 1


def encode_conf_change(change: ConfChange) -> bytes:
    """Encode ``change`` as versioned msgpack bytes."""
    return msgpack.packb(
        [_FORMAT_VERSION, int(change.type), change.node_id, change.context], use_bin_type=True
    )


def decode_conf_change(data: bytes) -> ConfChange:
    """Decode bytes made by ``encode_conf_change``; ValueError if malformed."""
    try:
        fields = msgpack.unpackb(data, raw=False)
        version, change_type, node_id, context = fields
    except Exception as error:  # msgpack raises several unrelated types
        raise ValueError(f"malformed conf change: {error}") from None
    if version != _FORMAT_VERSION:
        raise ValueError(f"unknown conf change format version {version!r}")
    if not isinstance(node_id, int) or node_id <= 0 or not isinstance(context, bytes):
        raise ValueError("malformed conf change fields")
    return ConfChange(type=ConfChangeType(change_type), node_id=node_id, context=context)
