"""etcdctl's non-interactive ``txn`` text: compares, a blank line, the
success requests, a blank line, the failure requests.

    mod("key1") > "0"
    value("key2") = "x"

    put key1 "new value"
    del key2

    get key1
"""

from __future__ import annotations

import re
import shlex

from metastore.client import wire

_COMPARE = re.compile(r'^\s*(value|version|create|mod|lease)\("((?:[^"\\]|\\.)*)"\)\s*(=|!=|<|>)\s*(.*?)\s*$')
_TARGETS = {"value": "VALUE", "version": "VERSION", "create": "CREATE", "mod": "MOD", "lease": "LEASE"}
_RESULTS = {"=": "EQUAL", "!=": "NOT_EQUAL", "<": "LESS", ">": "GREATER"}


class TxnSyntaxError(ValueError):
    """The text is not etcdctl's txn format; the message names the line."""


def _unquote(text: str) -> str:
    return shlex.split(text)[0] if text.startswith('"') else text


def parse_compare(line: str) -> wire.Compare:
    """One compare line, e.g. ``mod("key1") > "0"``."""
    match = _COMPARE.match(line)
    if match is None:
        raise TxnSyntaxError(f"not a compare: {line!r} (expected e.g. mod(\"key\") > \"0\")")
    target, key, op, operand = match.groups()
    operand = _unquote(operand)
    if target != "value":
        try:
            operand = int(operand, 16) if target == "lease" else int(operand)
        except ValueError:
            raise TxnSyntaxError(f"{target} compares a number: {line!r}") from None
    return wire.Compare(key.encode(), _TARGETS[target], _RESULTS[op], operand)


def parse_op(line: str) -> dict:
    """One request line: ``put KEY VALUE [--lease=ID]``, ``get KEY
    [RANGE_END] [--prefix]`` or ``del KEY [RANGE_END] [--prefix]``."""
    try:
        words = shlex.split(line)
    except ValueError as e:
        raise TxnSyntaxError(f"{line!r}: {e}") from None
    flags = {w.split("=")[0] for w in words if w.startswith("--")}
    args = [w for w in words if not w.startswith("--")]
    if not args or args[0] not in ("put", "get", "del", "delete"):
        raise TxnSyntaxError(f"not a request: {line!r} (put, get or del)")
    verb, rest = args[0], args[1:]
    if verb == "put":
        if len(rest) != 2:
            raise TxnSyntaxError(f"put takes a key and a value: {line!r}")
        lease = next((int(w.split("=", 1)[1], 16) for w in words if w.startswith("--lease=")), 0)
        return wire.op_put(rest[0], rest[1], lease=lease)
    if not 1 <= len(rest) <= 2:
        raise TxnSyntaxError(f"{verb} takes a key and an optional range end: {line!r}")
    options = {"prefix": "--prefix" in flags, "from_key": "--from-key" in flags}
    end = rest[1] if len(rest) == 2 else None
    return wire.op_range(rest[0], end, **options) if verb == "get" else wire.op_delete(rest[0], end, **options)


def parse_txn(text: str) -> wire.Call:
    """The whole text as a ``/kv/txn`` call."""
    sections: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.strip():
            sections[-1].append(line)
        elif len(sections) < 3:
            sections.append([])
    sections += [[] for _ in range(3 - len(sections))]
    compares, success, failure = sections
    return wire.txn_request([parse_compare(c) for c in compares], [parse_op(o) for o in success],
                            [parse_op(o) for o in failure])
