"""Reading protobuf fields out of a grpc-gateway JSON body.

jsonpb (what etcd's gateway decodes with) takes a field by its proto name
or its lowerCamelCase JSON name, ``null`` as the zero value, int64 and
uint64 as JSON numbers or decimal strings, bytes as padded standard
base64, enums as names or numbers, and ignores unknown fields.  Anything
else is a ``BadBody``, which the API answers 400 with gRPC code 3.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import functools
import json
import re
from typing import Callable

import orjson

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT64_MAX = 2**64 - 1
_DECIMAL = re.compile(r"-?[0-9]+\Z")


class BadBody(ValueError):
    """A request body jsonpb would refuse; the message says what is wrong."""


def parse_body(data: bytes) -> dict:
    """The JSON object of a request body (whatever its Content-Type); an
    empty body is ``{}``, as the gateway treats it."""
    if not data.strip():
        return {}
    try:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            value = _standard_json(data)  # NaN, a byte order mark, UTF-16...; or its refusal
        else:
            if _holds_float(value):  # orjson reads an integer beyond 64 bits as a float, json as an int
                value = _standard_json(data)
    except RecursionError:
        raise BadBody("invalid JSON: nested too deeply") from None
    if not isinstance(value, dict):
        raise BadBody(f"the body must be a JSON object, not {type(value).__name__}")
    return value


def _standard_json(data: bytes):
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadBody(f"invalid JSON: {e}") from None


def _holds_float(value) -> bool:
    """Whether a float is anywhere in the parsed JSON ``value``."""
    if type(value) is dict:
        value = value.values()
    elif type(value) is not list:
        return type(value) is float
    for item in value:
        kind = type(item)
        if kind is float or ((kind is dict or kind is list) and _holds_float(item)):
            return True
    return False


@functools.lru_cache(maxsize=256)
def camel_case(name: str) -> str:
    """``range_end`` -> ``rangeEnd`` (jsonpb's JSON name of a proto field)."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def raw_field(body: dict, name: str):
    """The value of field ``name`` (proto or camelCase spelling), None if absent."""
    if name in body:
        return body[name]
    return body.get(camel_case(name))


def bytes_field(body: dict, name: str) -> bytes:
    """A ``bytes`` field: padded standard base64, b"" when absent."""
    value = raw_field(body, name)
    return b"" if value is None else bytes_value(value, name)


def bytes_value(value, name: str) -> bytes:
    """The bytes of field ``name`` from its (present) JSON value."""
    if type(value) is not str:
        raise BadBody(f"{name}: bytes must be a base64 string, not {json.dumps(value)[:40]}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadBody(f"{name}: illegal base64 data") from None


def int_field(body: dict, name: str, low: int = INT64_MIN, high: int = INT64_MAX) -> int:
    """An int64 (or, with ``low=0, high=UINT64_MAX``, uint64) field, given
    as a JSON integer or a decimal string; 0 when absent."""
    value = raw_field(body, name)
    return 0 if value is None else int_value(value, name, low, high)


def int_value(value, name: str, low: int = INT64_MIN, high: int = INT64_MAX) -> int:
    """The int64 (or, with ``low`` and ``high``, other range) of field
    ``name`` from its (present) JSON value."""
    if type(value) is str and _DECIMAL.match(value):
        value = int(value)
    if type(value) is not int:
        raise BadBody(f"{name}: expected an integer, got {json.dumps(value)[:40]}")
    if not low <= value <= high:
        raise BadBody(f"{name}: {value} is out of range")
    return value


def uint_field(body: dict, name: str) -> int:
    """A uint64 field."""
    return int_field(body, name, 0, UINT64_MAX)


def bool_field(body: dict, name: str) -> bool:
    """A bool field; False when absent."""
    value = raw_field(body, name)
    return False if value is None else bool_value(value, name)


def bool_value(value, name: str) -> bool:
    """The bool of field ``name`` from its (present) JSON value."""
    if type(value) is not bool:
        raise BadBody(f"{name}: expected true or false, got {json.dumps(value)[:40]}")
    return value


def enum_field(body: dict, name: str, kind: type[enum.IntEnum]) -> enum.IntEnum:
    """An enum field given by name or number; its zero value when absent."""
    value = raw_field(body, name)
    if value is None:
        return kind(0)
    return enum_value(value, name, kind)


def enum_value(value, name: str, kind: type[enum.IntEnum]) -> enum.IntEnum:
    """One enum value of field ``name``, given by name or number."""
    try:
        if isinstance(value, str):
            return kind[value]
        if type(value) is int:
            return kind(value)
    except (KeyError, ValueError):
        pass
    raise BadBody(f"{name}: unknown {kind.__name__} {json.dumps(value)[:40]}")


def list_field(body: dict, name: str) -> list:
    """A repeated field; [] when absent."""
    value = raw_field(body, name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadBody(f"{name}: expected a list, got {json.dumps(value)[:40]}")
    return value


def object_field(body: dict, name: str) -> dict | None:
    """A message field: its JSON object, None when absent."""
    value = raw_field(body, name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadBody(f"{name}: expected an object, got {json.dumps(value)[:40]}")
    return value


Converter = Callable[[object, str], object]
"""Reads one present, non-null field from its JSON value and its proto name."""


def enum_kind(kind: type[enum.IntEnum]) -> Converter:
    """The converter of an enum field of type ``kind``."""
    return lambda value, name: enum_value(value, name, kind)


_ZERO = {bytes_value: b"", int_value: 0, bool_value: False}


class Fields:
    """How to read message ``message`` (a dataclass) from its JSON: each
    field's proto name and converter, in declaration order.

    ``read`` gives the same message, and refuses a body with the same
    ``BadBody``, as reading every field by name (``raw_field``) in that
    order would; but it walks only the fields the body holds, which for
    the usual request is a few of many."""

    def __init__(self, message: type, **converters: Converter) -> None:
        self._message = message
        self._converters = converters
        self._spellings: dict[str, tuple[str, Converter]] = {}
        for name, convert in converters.items():
            self._spellings[name] = self._spellings[camel_case(name)] = (name, convert)
        self._required = {
            f.name: _ZERO[converters[f.name]]
            for f in dataclasses.fields(message)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        """The zero values of the fields the dataclass insists on."""

    def read(self, body: dict):
        """The message in ``body``."""
        values = dict(self._required)
        spellings = self._spellings
        try:
            for spelling, value in body.items():
                found = spellings.get(spelling)
                if found is None or value is None:
                    continue
                name, convert = found
                if spelling != name and name in body:
                    continue  # the proto name wins over the camelCase one
                values[name] = convert(value, name)
        except BadBody:
            self._first_refusal(body)
            raise
        return self._message(**values)

    def _first_refusal(self, body: dict) -> None:
        """Raise the ``BadBody`` of the first bad field in declaration order."""
        for name, convert in self._converters.items():
            value = raw_field(body, name)
            if value is not None:
                convert(value, name)
