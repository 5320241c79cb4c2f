"""The bytes of each benchmark request, for each client API.

``--api seed`` is MetaStore's REST API (``PUT``/``GET /{key}``,
``?serializable=true``); ``--api v3`` is etcd's JSON gateway (``POST
/v3/kv/put``, ``/v3/kv/range``, ``/v3/kv/txn``, ``/v3/lease/…``, base64
keys and values).  ``--api grpc`` has its name reserved here and is refused
with a clear message until a gRPC client is written.

A builder turns an operation kind (see :mod:`metastore.bench.stats`) and a
key number into one complete HTTP/1.1 request, as cheaply as it can: the
load generator shares the machine with the server it measures.
"""

from __future__ import annotations

import base64
import json
import os
import random
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, urlsplit

from metastore.bench.stats import (
    GET,
    GET_SERIALIZABLE,
    KEEPALIVE,
    LEASE_GRANT,
    PUT,
    TXN_PUT,
    TXN_RANGE,
)

SEED = "seed"
V3 = "v3"
GRPC = "grpc"
API_NAMES = (SEED, V3, GRPC)


KEY_CACHE_SIZE = 1_000_000
"""Encoded keys kept per builder, so each key is encoded once, not per request."""


class UnsupportedRequest(ValueError):
    """The chosen API cannot express what was asked of it."""


@dataclass(frozen=True, slots=True)
class Target:
    """One member to send requests to, parsed from a base URL."""

    url: str
    host: str
    port: int
    host_header: bytes
    path_prefix: bytes  # the URL's path without its trailing slash
    tls: bool = False
    """An ``https://`` URL: connect with TLS."""

    @classmethod
    def from_url(cls, url: str) -> Target:
        """Parse ``http[s]://host[:port][/path]``; raises ValueError otherwise."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"{url!r}: only http:// and https:// URLs are supported")
        if not parts.hostname:
            raise ValueError(f"{url!r}: no host")
        if parts.query or parts.fragment:
            raise ValueError(f"{url!r}: a base URL takes no query or fragment")
        return cls(
            url=url,
            host=parts.hostname,
            port=parts.port or (443 if parts.scheme == "https" else 80),
            host_header=parts.netloc.encode("ascii"),
            path_prefix=parts.path.rstrip("/").encode("ascii"),
            tls=parts.scheme == "https",
        )


def key_bytes(prefix: bytes, index: int, key_size: int = 0) -> bytes:
    """Key number ``index``: ``prefix`` then the decimal number, zero-padded
    so the key is ``key_size`` bytes long (never cut: a key stays unique)."""
    digits = b"%d" % index
    return prefix + digits.rjust(key_size - len(prefix), b"0")


class ValueSource:
    """Values for writes: always the same bytes, or (``random_values``)
    distinct incompressible slices of one random pool, each of the same size."""

    def __init__(self, value: bytes, random_values: bool = False) -> None:
        self.value = value
        self.random = random_values
        self._size = len(value)
        self._pool = os.urandom(max(self._size, 1) * 256) if random_values else None

    def next(self) -> bytes:
        """The value for the next write."""
        if self._pool is None:
            return self.value
        offset = random.randrange(len(self._pool) - self._size)
        return self._pool[offset : offset + self._size]


class RequestBuilder(Protocol):
    """Makes the request bytes of one API for one target."""

    ops: frozenset[str]
    """The operation kinds this API can send."""

    def request(self, op: str, key_index: int) -> bytes:
        """The bytes of an ``op`` request for key (or lease) number ``key_index``."""


class SeedRequests:
    """The seed REST API: keys are one percent-encoded path segment under
    the URL's path (so ``bench/7`` is ``/bench%2F7``), values the raw body."""

    ops = frozenset({PUT, GET, GET_SERIALIZABLE})

    def __init__(self, target: Target, key_prefix: str, values: ValueSource, key_size: int = 0) -> None:
        self._prefix = key_prefix.encode()
        self._key_size = key_size
        self._values = values
        self._path = target.path_prefix + b"/"
        self._paths: dict[int, bytes] = {}
        host = b" HTTP/1.1\r\nHost: " + target.host_header + b"\r\n"
        self._put_head = host + b"Content-Length: %d\r\n\r\n"
        self._get_end = host + b"\r\n"
        self._get_serializable_end = b"?serializable=true" + host + b"\r\n"

    def _key_path(self, key_index: int) -> bytes:
        path = self._paths.get(key_index)
        if path is None:
            path = self._path + quote(key_bytes(self._prefix, key_index, self._key_size), safe="").encode("ascii")
            if len(self._paths) < KEY_CACHE_SIZE:
                self._paths[key_index] = path
        return path

    def request(self, op: str, key_index: int) -> bytes:
        """See :class:`RequestBuilder`."""
        path = self._key_path(key_index)
        if op == PUT:
            value = self._values.next()
            return b"".join((b"PUT ", path, self._put_head % len(value), value))
        if op == GET:
            return b"".join((b"GET ", path, self._get_end))
        if op == GET_SERIALIZABLE:
            return b"".join((b"GET ", path, self._get_serializable_end))
        raise UnsupportedRequest(f"the seed API has no {op} request")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class V3Requests:
    """etcd's v3 JSON gateway: every request a ``POST`` with a JSON body,
    keys and values in base64, lease IDs as JSON numbers."""

    ops = frozenset({PUT, GET, GET_SERIALIZABLE, TXN_PUT, TXN_RANGE, LEASE_GRANT, KEEPALIVE})

    def __init__(
        self, target: Target, key_prefix: str, values: ValueSource, key_size: int = 0, lease_ttl: int = 60
    ) -> None:
        self._prefix = key_prefix.encode()
        self._key_size = key_size
        self._values = values
        self._fixed_value = None if values.random else _b64(values.value)
        self._lease_ttl = lease_ttl
        self._keys: dict[int, str] = {}
        self._head = (
            b" HTTP/1.1\r\nHost: " + target.host_header + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        )
        self._paths = {
            op: b"POST " + target.path_prefix + path
            for op, path in (
                (PUT, b"/v3/kv/put"),
                (GET, b"/v3/kv/range"),
                (GET_SERIALIZABLE, b"/v3/kv/range"),
                (TXN_PUT, b"/v3/kv/txn"),
                (TXN_RANGE, b"/v3/kv/txn"),
                (LEASE_GRANT, b"/v3/lease/grant"),
                (KEEPALIVE, b"/v3/lease/keepalive"),
            )
        }
        self._watch_path = b"POST " + target.path_prefix + b"/v3/watch"

    def _value(self) -> str:
        return self._fixed_value or _b64(self._values.next())

    def body(self, op: str, key_index: int) -> bytes:
        """The JSON body of an ``op`` request."""
        if op == KEEPALIVE:
            return b'{"ID":%d}' % key_index
        if op == LEASE_GRANT:
            return b'{"TTL":%d}' % self._lease_ttl
        key = self._keys.get(key_index)
        if key is None:
            key = _b64(key_bytes(self._prefix, key_index, self._key_size))
            if len(self._keys) < KEY_CACHE_SIZE:
                self._keys[key_index] = key
        if op == PUT:
            text = f'{{"key":"{key}","value":"{self._value()}"}}'
        elif op == GET:
            text = f'{{"key":"{key}"}}'
        elif op == GET_SERIALIZABLE:
            text = f'{{"key":"{key}","serializable":true}}'
        elif op == TXN_PUT:
            text = f'{{"success":[{{"request_put":{{"key":"{key}","value":"{self._value()}"}}}}]}}'
        elif op == TXN_RANGE:
            text = f'{{"success":[{{"request_range":{{"key":"{key}"}}}}]}}'
        else:
            raise UnsupportedRequest(f"the v3 API has no {op} request")
        return text.encode("ascii")

    def request(self, op: str, key_index: int) -> bytes:
        """See :class:`RequestBuilder`."""
        body = self.body(op, key_index)
        return b"".join((self._paths[op], self._head % len(body), body))

    def watch_request(self, key: bytes, range_end: bytes) -> bytes:
        """A ``POST /v3/watch`` creating one watcher on ``[key, range_end)``."""
        body = json.dumps({"create_request": {"key": _b64(key), "range_end": _b64(range_end)}}).encode()
        return b"".join((self._watch_path, self._head % len(body), body))


def request_builder(
    api: str, target: Target, key_prefix: str, values: ValueSource, key_size: int = 0, lease_ttl: int = 60
) -> SeedRequests | V3Requests:
    """The builder of ``api`` for ``target``; raises :class:`UnsupportedRequest`
    for an API this tool cannot drive yet."""
    if api == SEED:
        return SeedRequests(target, key_prefix, values, key_size)
    if api == V3:
        return V3Requests(target, key_prefix, values, key_size, lease_ttl)
    if api == GRPC:
        raise UnsupportedRequest("--api grpc is not implemented yet: use --api v3 (etcd's JSON gateway) or seed")
    raise UnsupportedRequest(f"unknown API {api!r}; choose one of {', '.join(API_NAMES)}")


def lease_id_of(body: bytes) -> int:
    """The lease ID in a ``/v3/lease/grant`` answer; ValueError if there is none."""
    try:
        return int(json.loads(body)["ID"])
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"no lease ID in {body[:200]!r}") from None
