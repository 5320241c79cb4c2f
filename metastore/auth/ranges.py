"""Whether a set of permissions covers a key range (etcd's range permission cache).

Ranges are half-open ``[start, end)`` over byte strings, ``end`` None for
"no end": a single key ``k`` is ``[k, k + b"\\0")``, a ``range_end`` of
``b"\\0"`` is every key from ``key`` on.
"""

from __future__ import annotations

from typing import Iterable

from metastore.auth.messages import Permission, PermissionType

Span = tuple[bytes, bytes | None]


def span(key: bytes, range_end: bytes) -> Span:
    """The keys etcd's ``key``/``range_end`` pair names."""
    if not range_end:
        return key, key + b"\0"
    if range_end == b"\0":
        return key, None
    return key, range_end


def _ends_before(end: bytes | None, start: bytes) -> bool:
    return end is not None and end < start


def covers(permissions: Iterable[Permission], needed: PermissionType, key: bytes, range_end: bytes) -> bool:
    """Whether the permissions of type ``needed`` (READWRITE counts for
    both) together cover every key of ``key``/``range_end``."""
    start, end = span(key, range_end)
    if end is not None and end <= start:
        return True  # an empty range reads or writes nothing
    spans = sorted(span(p.key, p.range_end) for p in permissions if p.perm_type.allows(needed))
    reached = start
    for s, e in spans:
        if s > reached:
            break
        if e is None:
            return True
        if e > reached:
            reached = e
        if end is not None and reached >= end:
            return True
    return False
