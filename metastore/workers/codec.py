"""The front <-> core wire encoding: msgpack with MetaStore's own types.

A value crossing the link is plain msgpack, except three kinds of objects
carried as msgpack extension types:

- a frozen dataclass of the facade's vocabulary (requests, responses,
  ``KeyValue``, ``MemberStatus``, ``WatchResponse``...): ext 1, the
  packed list ``[type number, field values in declaration order...]``;
- an ``Enum`` of that vocabulary: ext 2, ``[type number, value]``;
- an expected error (``KVError``, ``Unavailable``, ``MembershipError``...):
  ext 3, ``[type number, args, attributes]``.  Any other exception is sent
  as ``RemoteError`` with its repr, never by pickling.

Type numbers are positions in ``TYPES``, the sorted list of every such type
in ``VOCABULARY_MODULES``; ``SCHEMA`` (a hash of that list) is checked in
the link's handshake, so a front never talks to a core of another version.
Sequences decode as tuples (the dataclasses' own field type).  Packing is
strict about types, so an ``IntEnum`` (an ``int``) keeps its type.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
import hashlib
import importlib
import operator
from typing import Any

import msgpack

from metastore.errors import MetaStoreError

VOCABULARY_MODULES = (
    "metastore.auth.errors",
    "metastore.auth.messages",
    "metastore.errors",
    "metastore.facade",
    "metastore.kv.commands",
    "metastore.kv.errors",
    "metastore.kv.messages",
    "metastore.kv.store",
    "metastore.leases",
    "metastore.membership",
    "metastore.raft.types",
    "metastore.storage.engine",
    "metastore.watch",
    "metastore.workers.codec",
)
"""The modules whose dataclasses, enums and exceptions may cross the link."""

_DATACLASS, _ENUM, _ERROR = 1, 2, 3


class RemoteError(MetaStoreError):
    """An unexpected error in the core, as its repr (answered 500)."""


def _vocabulary() -> list[type]:
    found: dict[str, type] = {}
    for name in VOCABULARY_MODULES:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if not isinstance(value, type) or value.__module__ != name:
                continue
            if dataclasses.is_dataclass(value) or issubclass(value, (enum.Enum, BaseException)):
                found[f"{name}.{value.__qualname__}"] = value
    return [found[k] for k in sorted(found)]


TYPES: list[type] = _vocabulary()
"""Every type the codec carries, by type number."""
SCHEMA: str = hashlib.sha256("\n".join(f"{t.__module__}.{t.__qualname__}" for t in TYPES).encode()).hexdigest()[:16]
"""Names this codec's vocabulary; both ends of a link must agree on it."""
_NUMBER = {t: i for i, t in enumerate(TYPES)}
_FIELDS = {t: tuple(f.name for f in dataclasses.fields(t)) for t in TYPES if dataclasses.is_dataclass(t)}
_GETTERS = {t: operator.attrgetter(*names) if len(names) > 1 else (lambda o, n=names: tuple(getattr(o, f) for f in n))
            for t, names in _FIELDS.items()}


def carries(value: Any) -> bool:
    """Whether ``value``'s own type is in the vocabulary (an error that is
    not arrives as ``RemoteError``)."""
    return type(value) in _NUMBER


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str, bytes, tuple, list, dict))


def _default(value: Any):
    kind = type(value)
    if kind is tuple:
        return list(value)
    number = _NUMBER.get(kind)
    if number is not None:
        getter = _GETTERS.get(kind)
        if getter is not None:
            return msgpack.ExtType(_DATACLASS, pack((number, *getter(value))))
        if isinstance(value, enum.Enum):
            return msgpack.ExtType(_ENUM, pack([number, value.value]))
        attributes = {k: v for k, v in vars(value).items() if _plain(v)} if hasattr(value, "__dict__") else {}
        return msgpack.ExtType(_ERROR, pack([number, list(value.args), attributes]))
    if isinstance(value, BaseException):
        return _default(RemoteError(repr(value)))
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, Sequence):  # e.g. the dedup window's read-only view (kv.dedup.RequestWindow)
        return list(value)
    raise TypeError(f"cannot send {kind.__name__} to the core or a front")


def _ext(code: int, data: bytes):
    items = unpack(data)
    kind = TYPES[items[0]]
    if code == _DATACLASS:
        return kind(*items[1:])
    if code == _ENUM:
        return kind(items[1])
    if code == _ERROR:
        error = kind.__new__(kind)
        error.args = tuple(items[1])
        for name, value in items[2].items():
            setattr(error, name, value)
        return error
    return msgpack.ExtType(code, data)


_packers: list[msgpack.Packer] = []
"""One reusable packer per nesting level (an object's fields are packed
while its container is): making a packer costs more than packing a request."""
_depth = 0


def pack(value: Any) -> bytes:
    """``value`` as bytes (see the module docstring).  Not thread-safe:
    the reactor thread alone packs."""
    global _depth
    if _depth == len(_packers):
        _packers.append(msgpack.Packer(default=_default, use_bin_type=True, strict_types=True))
    level = _depth
    _depth += 1
    try:
        return _packers[level].pack(value)
    except BaseException:
        _packers[level] = msgpack.Packer(default=_default, use_bin_type=True, strict_types=True)
        raise
    finally:
        _depth -= 1


_HEADER_PACKER = msgpack.Packer()


def array_header(length: int) -> bytes:
    """The msgpack header of an array of ``length`` items: followed by
    that many ``pack``ed values, it is the ``pack`` of their list."""
    return _HEADER_PACKER.pack_array_header(length)


def unpack(data: bytes) -> Any:
    """The value ``pack`` made ``data`` from; raises ``ValueError`` (or a
    msgpack error, a subclass) on bytes it did not make."""
    return msgpack.unpackb(data, ext_hook=_ext, raw=False, use_list=False, strict_map_key=False)
