"""The byte stream a member sends for etcd's ``Maintenance.Snapshot``:
a MetaStore snapshot file wrapped the way ``etcdctl snapshot save``
accepts.

etcd streams its database followed by the database's SHA-256, and
``etcdctl snapshot save`` (3.4) refuses a stream whose length minus 32 is
not a multiple of 512 ("sha256 checksum not found").  So the stream is::

    snapshot file | zero padding | u64 length of the file (big-endian) | sha256

with the padding sized so that everything before the SHA-256 is a multiple
of ``STREAM_ALIGN`` bytes, and the SHA-256 taken over everything before it.
``--restore-from`` takes either form: ``unwrapped`` finds the snapshot
file inside a saved stream.
"""

from __future__ import annotations

import hashlib
import os
import struct
from typing import Iterator

STREAM_ALIGN = 512
DIGEST_BYTES = hashlib.sha256().digest_size
_LENGTH = struct.Struct(">Q")


def _padding(size: int) -> int:
    return -(size + _LENGTH.size) % STREAM_ALIGN


def stream_size(file_size: int) -> int:
    """The length of the stream of a snapshot file of ``file_size`` bytes."""
    return file_size + _padding(file_size) + _LENGTH.size + DIGEST_BYTES


def stream_chunks(path: str, chunk_bytes: int) -> Iterator[bytes]:
    """The stream of the snapshot file at ``path``, in chunks of at most
    ``chunk_bytes`` (the last holds the padding, length and SHA-256), read
    one at a time."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as source:
        while blob := source.read(chunk_bytes):
            size += len(blob)
            digest.update(blob)
            yield blob
    tail = bytes(_padding(size)) + _LENGTH.pack(size)
    digest.update(tail)
    yield tail + digest.digest()


def unwrap(path: str, out_path: str, chunk_bytes: int = 1 << 20) -> bool:
    """If the file at ``path`` is a whole saved stream (aligned, its length
    field consistent, zero padding, its SHA-256 right), write the snapshot
    file inside it to ``out_path`` and return True; otherwise write nothing
    and return False.  Reads in chunks of ``chunk_bytes``."""
    total = os.path.getsize(path)
    if total < STREAM_ALIGN + DIGEST_BYTES or (total - DIGEST_BYTES) % STREAM_ALIGN:
        return False
    with open(path, "rb") as source:
        source.seek(total - DIGEST_BYTES - _LENGTH.size)
        (size,) = _LENGTH.unpack(source.read(_LENGTH.size))
        expected = source.read(DIGEST_BYTES)
        if stream_size(size) != total:
            return False
        source.seek(0)
        digest = hashlib.sha256()
        with open(out_path, "wb") as out:
            left = size
            while left:
                blob = source.read(min(chunk_bytes, left))
                digest.update(blob)
                out.write(blob)
                left -= len(blob)
        tail = source.read(total - DIGEST_BYTES - size)
        digest.update(tail)
    if any(tail[: -_LENGTH.size]) or digest.digest() != expected:
        os.remove(out_path)
        return False
    return True
