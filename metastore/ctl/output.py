"""How metastorectl prints: ``simple`` lines (etcdctl's default), ``table``
(boxed, the default on a terminal) and ``json`` (one document)."""

from __future__ import annotations

import json

import click

from metastore.client import wire


def table(headers: list[str], rows: list[list]) -> str:
    """A boxed table, as etcdctl draws one."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(values):
        return "|" + "|".join(f" {v:^{w}} " for v, w in zip(values, widths)) + "|"

    return "\n".join([rule, line([h.upper() for h in headers]), rule, *(line(r) for r in cells), rule])


def emit(fmt: str, document: dict, headers: list[str], rows: list[list], simple_lines: list[str] | None = None) -> None:
    """Print one answer in the chosen format: ``document`` as JSON, ``rows``
    as a table, or ``simple_lines`` (default: the rows joined by ", ")."""
    if fmt == "json":
        click.echo(json.dumps(document, default=_jsonable))
    elif fmt == "table":
        click.echo(table(headers, rows))
    else:
        for text in simple_lines if simple_lines is not None else [", ".join(str(c) for c in r) for r in rows]:
            click.echo(text)


def _jsonable(value):
    if isinstance(value, bytes):
        return wire.b64(value)
    if hasattr(value, "__dataclass_fields__"):
        return {name: getattr(value, name) for name in value.__dataclass_fields__}
    raise TypeError(f"{type(value).__name__} is not JSON")


def header_json(header: wire.Header) -> dict:
    """etcdctl's ``-w json`` header."""
    return {"cluster_id": header.cluster_id, "member_id": header.member_id, "revision": header.revision,
            "raft_term": header.raft_term}


def kv_json(kv) -> dict:
    """etcdctl's ``-w json`` key (bytes as base64)."""
    return {"key": wire.b64(kv.key), "create_revision": kv.create_revision, "mod_revision": kv.mod_revision,
            "version": kv.version, "value": wire.b64(kv.value), "lease": kv.lease}


def text(data: bytes) -> str:
    """Keys and values as text (undecodable bytes escaped)."""
    return data.decode("utf-8", "backslashreplace")
