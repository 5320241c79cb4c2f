"""The seed's REST API at the root, plus plain-HTTP compare-and-swap.

- ``GET /{key}``: 200 with the raw value (linearizable; ``?serializable=true``
  answers from local state at once), 404 when absent.  Headers: ``ETag``
  (the key's mod_revision) and ``X-MetaStore-*`` revisions.
  ``?revision=N`` reads the key as it was at revision N; a revision below
  the compacted one, or above the current one, is 400 with etcd's message
  (``compacted`` / ``future_revision``).
- ``GET /{prefix}?list`` (``GET /?list`` for every key): 200 with JSON
  ``{"revision", "count", "more", "kvs": [...]}``, the keys starting with
  the prefix in key order, each with its value and revisions; also takes
  ``revision=N`` and ``limit=N``.  A key or value is the JSON string
  ``key``/``value`` when it is UTF-8, else ``key_base64``/``value_base64``.
- ``PUT /{key}``: the body becomes the value; 204 once durable and applied.
- ``PUT /{key}?ttl=N``: the same, with a new lease of ``N`` seconds attached
  (the key is deleted when the lease expires); 200 with JSON ``{"revision",
  "lease", "ttl"}`` and the header ``X-MetaStore-Lease``.
- ``PUT /{key}?refresh``: keep the key's lease alive (the value is not
  touched; the body is ignored); 200 with JSON ``{"lease", "ttl"}``, 404
  when the key or its lease is gone, 409 ``not_leased`` for a key without
  a lease.
- Blocking reads: ``GET /{key}?index=N`` (and ``GET /{prefix}?list&index=N``)
  answer once the key (a key under the prefix) changes after revision N,
  or when ``wait`` (``30s``, ``5m``, ``500ms``; default 5m, at most 10m)
  ends; every GET answers ``X-MetaStore-Index``, the revision to pass as
  ``index`` next time (see ``metastore.api.blocking``).
- ``DELETE /{key}``: 204, or 404 when there was no such key.
- ``If-Match: "<rev>"`` / ``If-Match: *`` / ``If-None-Match: *`` make PUT and
  DELETE conditional (412 when the condition fails); the check happens when
  the write is applied, in log order, so it is a true compare-and-swap.
- ``POST /{id}`` and ``DELETE /{id}`` (all-digit paths) are membership,
  as in the seed: ``DELETE /7`` removes member 7 and never the key ``7``
  (when 7 is no member the 404 says how to delete the key).
- ``/kv/{key}`` (GET, HEAD, PUT, DELETE) is the same key API without that
  ambiguity: any key, all-digit ones included.
- With auth enabled (``metastore.auth``), every request names its user
  with ``Authorization: Bearer <token>`` (a token from
  ``/v3/auth/authenticate``) or HTTP Basic (checked with the password's
  slow hash on every request: prefer tokens); a key needs read (GET, and
  a write's ``If-Match``) or write (PUT, DELETE) permission, members need
  the root role.  401, 403 or 400 with etcd's message otherwise.
- ``/v3/``, ``/kv/``, ``/admin/``, ``/health``, ``/livez``, ``/readyz``,
  ``/metrics``, ``/version``, ``/ui`` are reserved: never keys at the root.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import unquote_to_bytes

from klein import Klein

from metastore.api import validation
from metastore.api.blocking import blocking_index, wait_for_change, wait_seconds
from metastore.api.credentials import caller_token
from metastore.api.errors import HTTPError, answer_failure
from metastore.api.members import MembershipAPI
from metastore.auth.messages import AuthInfo
from metastore.config import MAX_KEY_BYTES
from metastore.facade import Consistency, KeyValue, MemberFacade
from metastore.kv.messages import (
    MAX_LEASE_TTL,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRange,
    DeleteRangeRequest,
    DeleteRangeResponse,
    Put,
    PutRequest,
    PutResponse,
    RangeRequest,
    Txn,
    TxnResponse,
    prefix_range_end,
)

RESERVED_PREFIXES = (
    b"/v3/", b"/kv/", b"/admin/", b"/health", b"/livez", b"/readyz", b"/metrics", b"/version", b"/ui",
)
KEY_METHODS = b"GET, HEAD, PUT, DELETE"
MEMBER_METHODS = b"GET, HEAD, PUT, POST, DELETE"
KV_PREFIX = b"/kv/"


def _is_reserved(path: bytes) -> bool:
    return any(
        path == p.rstrip(b"/") or path.startswith(p if p.endswith(b"/") else p + b"/")
        for p in RESERVED_PREFIXES
    )


def _parse_revision_tag(value: bytes) -> int:
    """The revision in an ETag (``"12"``, ``W/"12"`` or ``12``)."""
    text = value.strip()
    if text.startswith(b"W/"):
        text = text[2:]
    return validation.revision(text.strip(b'"'), "If-Match")


def _non_negative_argument(request, name: bytes) -> int:
    """The query argument ``name`` as an integer >= 0 (0 when absent)."""
    raw = request.args.get(name, [b"0"])[0]
    if not raw.isdigit():
        raise HTTPError(400, f"bad_{name.decode()}", f"{name.decode()} must be a non-negative integer, got {raw!r}")
    return int(raw)


def _has_query_flag(request, name: bytes) -> bool:
    """Whether the query string names ``name``, with or without a value
    (Twisted's ``request.args`` drops a bare ``?name``)."""
    query = request.uri.partition(b"?")[2]
    return any(item.partition(b"=")[0] == name for item in query.split(b"&"))


def _text_or_base64(name: str, data: bytes) -> dict:
    """``{name: text}`` when ``data`` is UTF-8, else ``{name_base64: ...}``."""
    try:
        return {name: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{name}_base64": base64.b64encode(data).decode("ascii")}


def _json_answer(request, body: dict) -> bytes:
    request.setHeader(b"Content-Type", b"application/json")
    return json.dumps(body).encode() + b"\n"


def kv_json(kv: KeyValue) -> dict:
    """A key with its value and metadata, as the listing answers it."""
    return {
        **_text_or_base64("key", kv.key),
        **_text_or_base64("value", kv.value),
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "version": kv.version,
        "lease": kv.lease,
    }


def write_condition(request, key: bytes) -> tuple[Compare, ...]:
    """The compares that ``If-Match`` / ``If-None-Match`` ask for."""
    if_match = request.getHeader(b"if-match")
    if_none_match = request.getHeader(b"if-none-match")
    if if_match is not None and if_none_match is not None:
        raise HTTPError(400, "bad_precondition", "use If-Match or If-None-Match, not both")
    if if_none_match is not None:
        if if_none_match.strip() != b"*":
            raise HTTPError(400, "bad_precondition", "If-None-Match supports only *")
        return (Compare(CompareTarget.VERSION, CompareResult.EQUAL, key, 0),)
    if if_match is not None:
        if if_match.strip() == b"*":
            return (Compare(CompareTarget.VERSION, CompareResult.GREATER, key, 0),)
        revision = _parse_revision_tag(if_match)
        return (Compare(CompareTarget.MOD, CompareResult.EQUAL, key, revision),)
    return ()


class RestAPI:
    """The seed REST API over a member's facade; mount ``app.resource()``."""

    app = Klein()

    def __init__(self, member: MemberFacade, clock=None) -> None:
        self.member = member
        self.members = MembershipAPI(member)
        if clock is None:
            from twisted.internet import reactor as clock
        self._clock = clock

    @app.handle_errors(Exception)
    def _error(self, request, failure):
        return answer_failure(request, failure)

    @app.route("/kv/", branch=True)
    async def key(self, request):
        """``/kv/{key}``: the key API for any key, all-digit ones included."""
        key = unquote_to_bytes(request.path[len(KV_PREFIX):])
        if request.method in (b"GET", b"HEAD") and _has_query_flag(request, b"list"):
            return await self._list(request, key)
        return await self._key_request(request, self._checked_key(key), KEY_METHODS)

    @app.route("/", branch=True)
    async def key_or_member(self, request):
        """Dispatch on the raw path: keys, member ids, or reserved prefixes."""
        path = request.path
        if _is_reserved(path):
            raise HTTPError(404, "reserved", f"{path.decode('ascii', 'replace')} is reserved for another API")
        key = unquote_to_bytes(path[1:])
        method = request.method
        if key.isdigit() and method in (b"POST", b"DELETE"):
            return await self._member(request, method, key)
        if method in (b"GET", b"HEAD") and _has_query_flag(request, b"list"):
            return await self._list(request, key)
        return await self._key_request(request, self._checked_key(key), MEMBER_METHODS if key.isdigit() else KEY_METHODS)

    async def _key_request(self, request, key: bytes, allow: bytes):
        method = request.method
        auth = await self._authorize_key(request, key)
        if method in (b"GET", b"HEAD"):
            return await self._get(request, key, auth)
        if method == b"PUT":
            return await self._put(request, key, auth)
        if method == b"DELETE":
            return await self._delete(request, key, auth)
        raise HTTPError(405, "method_not_allowed", f"{method.decode('ascii', 'replace')} is not allowed here", {b"Allow": allow})

    async def _authorize_key(self, request, key: bytes) -> AuthInfo | None:
        """Raise etcd's auth error unless the caller may do to ``key`` what
        the method does: read it (GET, HEAD, and a write's condition) or
        write it (PUT, DELETE); who was checked, when (None while auth is
        disabled), to propose the write with."""
        method = request.method
        wanted = {b"GET": RangeRequest(key), b"HEAD": RangeRequest(key), b"PUT": PutRequest(key),
                  b"DELETE": DeleteRangeRequest(key)}.get(method)
        if wanted is None:
            return None
        token = await caller_token(self.member, request)
        auth = self.member.authorize(token, wanted)
        if method in (b"PUT", b"DELETE") and write_condition(request, key):
            self.member.authorize(token, RangeRequest(key))
        return auth

    @staticmethod
    def _checked_key(key: bytes) -> bytes:
        if not key:
            raise HTTPError(400, "empty_key", "the key is empty: use PUT /{key} or PUT /kv/{key}")
        if len(key) > MAX_KEY_BYTES:
            raise HTTPError(413, "key_too_large", f"the key is {len(key)} bytes; the limit is {MAX_KEY_BYTES}")
        return key

    def _revision_headers(self, request, kv) -> None:
        request.setHeader(b"X-MetaStore-Revision", str(self.member.revision).encode())
        request.setHeader(b"X-MetaStore-Index", str(self.member.revision).encode())
        if kv is not None:
            request.setHeader(b"ETag", b'"%d"' % kv.mod_revision)
            request.setHeader(b"X-MetaStore-Create-Revision", b"%d" % kv.create_revision)
            request.setHeader(b"X-MetaStore-Mod-Revision", b"%d" % kv.mod_revision)
            request.setHeader(b"X-MetaStore-Version", b"%d" % kv.version)

    async def _read_barrier(self, request) -> None:
        serializable = request.args.get(b"serializable", [b"false"])[0].lower() in (b"true", b"1")
        await self.member.read(Consistency.SERIALIZABLE if serializable else Consistency.LINEARIZABLE)

    async def _wait_if_asked(self, request, key: bytes, range_end: bytes) -> None:
        """Block while nothing in the key or range changed after ``index``
        (when given), at most ``wait``."""
        index = blocking_index(request)
        if index is None:
            return
        seconds = wait_seconds(request.args.get(b"wait", [None])[0])
        waiting = wait_for_change(self.member, key, range_end, index, seconds, self._clock)
        request.notifyFinish().addErrback(lambda _: waiting.cancel())
        await waiting

    async def _get(self, request, key: bytes, auth: AuthInfo | None):
        revision = _non_negative_argument(request, b"revision")
        await self._read_barrier(request)
        await self._wait_if_asked(request, key, b"")
        self.member.auth_still_current(auth)
        kv = self.member.get(key, revision)
        self._revision_headers(request, kv)
        if kv is None:
            raise HTTPError(404, "not_found", "no such key")
        request.setHeader(b"Content-Type", b"application/octet-stream")
        return kv.value

    async def _list(self, request, prefix: bytes):
        revision = _non_negative_argument(request, b"revision")
        limit = _non_negative_argument(request, b"limit")
        if len(prefix) > MAX_KEY_BYTES:
            raise HTTPError(413, "key_too_large", f"the prefix is {len(prefix)} bytes; the limit is {MAX_KEY_BYTES}")
        auth = self.member.authorize(await caller_token(self.member, request), RangeRequest(prefix, prefix_range_end(prefix)))
        await self._read_barrier(request)
        await self._wait_if_asked(request, prefix, prefix_range_end(prefix))
        self.member.auth_still_current(auth)
        found = self.member.range_request(RangeRequest(prefix, prefix_range_end(prefix), limit=limit, revision=revision))
        request.setHeader(b"X-MetaStore-Revision", b"%d" % found.header.revision)
        request.setHeader(b"X-MetaStore-Index", b"%d" % found.header.revision)
        body = {
            "revision": found.header.revision,
            "count": found.count,
            "more": found.more,
            "kvs": [kv_json(kv) for kv in found.kvs],
        }
        return _json_answer(request, body)

    async def _put(self, request, key: bytes, auth: AuthInfo | None):
        if getattr(request, "body_too_large", False):
            limit = request.channel.site.max_request_bytes
            raise HTTPError(413, "body_too_large", f"the body is over the limit of {limit} bytes")
        if _has_query_flag(request, b"refresh"):
            return await self._refresh(request, key)
        value = request.content.read()
        compares = write_condition(request, key)
        if b"ttl" in request.args:
            return await self._put_with_lease(request, key, value, compares, auth)
        result = await self._write(key, Put(key, value), compares, auth)
        request.setResponseCode(204)
        request.setHeader(b"ETag", b'"%d"' % result.revision)
        request.setHeader(b"X-MetaStore-Revision", b"%d" % result.revision)
        return b""

    async def _put_with_lease(self, request, key: bytes, value: bytes, compares, auth: AuthInfo | None):
        ttl = _non_negative_argument(request, b"ttl")
        if not 1 <= ttl <= MAX_LEASE_TTL:
            raise HTTPError(400, "bad_ttl", f"ttl is a number of seconds from 1 to {MAX_LEASE_TTL}")
        granted = await self.member.lease_grant(ttl, auth=auth)
        try:
            result = await self._write(key, Put(key, value, lease=granted.id), compares, auth)
        except Exception:
            self.member.lease_revoke(granted.id).addErrback(lambda _: None)  # it would expire anyway
            raise
        request.setHeader(b"ETag", b'"%d"' % result.revision)
        request.setHeader(b"X-MetaStore-Revision", b"%d" % result.revision)
        request.setHeader(b"X-MetaStore-Lease", b"%d" % granted.id)
        return _json_answer(request, {"revision": result.revision, "lease": granted.id, "ttl": granted.ttl})

    async def _refresh(self, request, key: bytes):
        await self.member.read(Consistency.LINEARIZABLE)
        kv = self.member.get(key)
        if kv is None:
            raise HTTPError(404, "not_found", "no such key")
        if not kv.lease:
            raise HTTPError(409, "not_leased", "the key has no lease to refresh; PUT it with ?ttl=N first")
        kept = await self.member.lease_keepalive(kv.lease)
        request.setHeader(b"X-MetaStore-Lease", b"%d" % kept.id)
        return _json_answer(request, {"lease": kept.id, "ttl": kept.ttl})

    async def _delete(self, request, key: bytes, auth: AuthInfo | None):
        result = await self._write(key, DeleteRange(key), write_condition(request, key), auth)
        request.setHeader(b"X-MetaStore-Revision", b"%d" % result.revision)
        if not result.deleted:
            raise HTTPError(404, "not_found", "no such key")
        request.setResponseCode(204)
        return b""

    async def _write(self, key: bytes, write, compares, auth: AuthInfo | None) -> PutResponse | DeleteRangeResponse:
        if not compares:
            return await self.member.propose(write, auth)
        result: TxnResponse = await self.member.propose(Txn(compares, (write,)), auth)
        if not result.succeeded:
            current = self.member.get(key)
            headers = {b"ETag": b'"%d"' % current.mod_revision} if current else {}
            raise HTTPError(412, "precondition_failed", "the key changed or its presence differs from the condition", headers)
        return result.responses[0]

    async def _member(self, request, method: bytes, digits: bytes):
        member_id = validation.member_id(digits)
        self.member.authorize_admin(await caller_token(self.member, request))
        if method == b"POST":
            return await self.members.add(request, member_id)
        hint = ""
        if self.member.get(digits) is not None:
            hint = f"; to delete the key {digits.decode()!r}, use DELETE /kv/{digits.decode()}"
        return await self.members.remove(request, member_id, hint)
