"""The hot requests, answered without Klein.

Most of what a member serves is one of a few requests: ``GET``, ``PUT`` and
``DELETE`` of one key in the seed API (``/{key}`` and ``/kv/{key}``) and
``POST /v3/kv/range``, ``/v3/kv/put``, ``/v3/kv/deleterange`` and
``/v3/kv/txn``.  Routing those through Klein and werkzeug costs more CPU
than the rest of the request together, so ``HotRoutes`` recognizes them
from the request line alone and answers them against the facade: no
resource traversal, no URL matcher, no coroutine, and the answer (status
line, headers with an exact ``Content-Length``, body) goes out in one
``transport.write``.

It answers only what it is sure to answer exactly as the Klein APIs do;
anything else (another method or path, a query other than
``serializable``, ``If-Match``, a body over the limit, a key that needs
percent-decoding, HTTP/1.0) is left to the site's resource tree, which
stays the one place where the APIs are written.  The site calls
``HotRoutes.answer`` once the request's head and body are in
(``metastore.api.site.MetaStoreRequest``); a ``--workers`` front process
builds its own ``HotRoutes`` over its remote facade.
"""

from __future__ import annotations

import re
import time
from urllib.parse import unquote_to_bytes

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES, datetimeToString
from twisted.web.server import version as SERVER_VERSION

from metastore.api.errors import answer_failure, json_body
from metastore.api.v3 import kv_codec
from metastore.api.rest import RESERVED_PREFIXES
from metastore.api.v3.app import V3API, compact_json, error_answer, kv_answer, request_body
from metastore.config import MAX_KEY_BYTES
from metastore.facade import Consistency, MemberFacade
from metastore.kv.messages import DeleteRange, Put

_PLAIN_PATH = re.compile(rb"(?:/(?:[A-Za-z0-9_~:@+,=-]|%[0-9A-Fa-f]{2})(?:[A-Za-z0-9._~:@+,=-]|%[0-9A-Fa-f]{2})*)+")
"""Paths served here: non-empty segments of unreserved characters and
``%XX`` escapes, none starting with a dot (no ``//``, ``.`` or ``..``
segment that a router might treat specially).  The routers see escapes
as text, as this does; the key is the path percent-decoded, as the seed
API decodes it."""

_NOT_KEYS = frozenset([p.strip(b"/") for p in RESERVED_PREFIXES] + [b"v3beta", b"v3alpha"])
"""First path segments that are never a seed-API key at the root (the
seed API's reserved prefixes, and the older v3 prefixes)."""

_SERIALIZABLE = {b"serializable=true": True, b"serializable=1": True,
                 b"serializable=false": False, b"serializable=0": False}
"""The one query a hot GET may carry (anything else goes to Klein)."""

_V3_RPCS = (
    ("kv/range", kv_codec.range_request, "range"),
    ("kv/put", kv_codec.put_request, "put"),
    ("kv/deleterange", kv_codec.delete_range_request, "delete_range"),
    ("kv/txn", kv_codec.txn_request, "txn"),
)
"""The hot v3 RPCs: path after the prefix, body decoder, ``KVService`` method."""
_V3_PREFIXES = (b"/v3/", b"/v3beta/", b"/v3alpha/")

_NOT_FOUND = json_body("not_found", "no such key")
_JSON = b"Content-Type: application/json\r\n"
_OCTETS = b"Content-Type: application/octet-stream\r\n"


class _Date:
    """The ``Date`` header's value, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second, self._value = now, datetimeToString(now)
        return self._value


_date = _Date()


def _status_line(code: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (code, RESPONSES[code])


_STATUS = {code: _status_line(code) for code in (200, 204, 404)}


def _write(request, code: int, headers: bytes, body: bytes | None) -> None:
    """Answer ``request`` with ``code``, the header lines ``headers`` and
    ``body`` (None: none, for 204) in one write, then finish it.  Nothing
    is written to a connection that was lost meanwhile."""
    if request._disconnected:
        return
    close = b"Connection: close\r\n" if request.responseHeaders.hasHeader(b"connection") else b""
    length = b"" if body is None else b"Content-Length: %d\r\n" % len(body)
    request.code = code
    request.startedWriting = True
    request.channel.write(b"%sServer: %s\r\nDate: %s\r\n%s%s%s\r\n%s" % (
        _STATUS[code], SERVER_VERSION, _date(), headers, close, length, body or b""))
    request.finish()


def _write_prepared(request, body: bytes) -> None:
    """Answer ``request`` with the status and headers already set on it
    (an error answer) and ``body``, in one write, then finish it."""
    if request._disconnected:
        return
    if request.startedWriting:
        return  # the failure came after the answer went out; it was logged
    lines = [b"HTTP/1.1 %d %s\r\nServer: %s\r\nDate: %s\r\n" % (
        request.code, request.code_message, SERVER_VERSION, _date())]
    for name, values in request.responseHeaders.getAllRawHeaders():
        lines.extend(b"%s: %s\r\n" % (name, value) for value in values)
    lines.append(b"Content-Length: %d\r\n\r\n" % len(body))
    lines.append(body)
    request.startedWriting = True
    request.channel.write(b"".join(lines))
    request.finish()


def _revision_lines(revision: int) -> bytes:
    return b"X-Metastore-Revision: %d\r\nX-Metastore-Index: %d\r\n" % (revision, revision)


class HotRoutes:
    """Answers the hot seed-API requests directly against ``member`` and
    the hot v3 KV requests through ``v3``'s ``KVService`` and response
    headers (the same objects the Klein v3 API uses); ``answer`` says
    whether it took a request."""

    def __init__(self, member: MemberFacade, v3: V3API) -> None:
        self._member = member
        self._headers = v3.headers
        self._v3 = {prefix + path.encode(): (decode, getattr(v3.kv, method))
                    for prefix in _V3_PREFIXES for path, decode, method in _V3_RPCS}

    def answer(self, request, method: bytes, target: bytes, version: bytes) -> bool:
        """Take ``request`` (its head and body received) if it is a hot one
        and start answering it; False, touching nothing, if it is not."""
        if version != b"HTTP/1.1" or self._member.auth_state().enabled:
            return False  # with auth on, the Klein APIs check every request
        path, _, query = target.partition(b"?")
        if method == b"POST":
            rpc = self._v3.get(path)
            if rpc is None or query:
                return False
            _take(request, method, target, path)
            self._call_v3(request, rpc)
            return True
        serializable = False
        if method == b"GET":
            serializable = _SERIALIZABLE.get(query) if query else False
            if serializable is None:
                return False
        elif method not in (b"PUT", b"DELETE") or query:
            return False
        key = _key(path, method)
        if key is None or _conditional(request) or (method == b"PUT" and request.body_too_large):
            return False
        _take(request, method, target, path)
        try:
            d = self._start_seed(request, method, key, serializable)
        except Exception:
            d = defer.fail(Failure())
        d.addErrback(_seed_failed, request)
        return True

    # -- the seed API -----------------------------------------------------------

    def _start_seed(self, request, method: bytes, key: bytes, serializable: bool) -> defer.Deferred:
        if method == b"GET":
            consistency = Consistency.SERIALIZABLE if serializable else Consistency.LINEARIZABLE
            return self._member.read(consistency).addCallback(self._got, request, key)
        if method == b"PUT":
            return self._member.propose(Put(key, request.content.read())).addCallback(self._put, request)
        return self._member.propose(DeleteRange(key)).addCallback(self._deleted, request)

    def _got(self, _, request, key: bytes) -> None:
        kv = self._member.get(key)
        revisions = _revision_lines(self._member.revision)
        if kv is None:
            _write(request, 404, revisions + _JSON, _NOT_FOUND)
            return
        _write(request, 200, b"%sETag: \"%d\"\r\nX-Metastore-Create-Revision: %d\r\n"
                             b"X-Metastore-Mod-Revision: %d\r\nX-Metastore-Version: %d\r\n%s" % (
                   revisions, kv.mod_revision, kv.create_revision, kv.mod_revision, kv.version, _OCTETS),
               kv.value)

    @staticmethod
    def _put(result, request) -> None:
        _write(request, 204, b"ETag: \"%d\"\r\nX-Metastore-Revision: %d\r\n" % (result.revision, result.revision),
               None)

    @staticmethod
    def _deleted(result, request) -> None:
        revision = b"X-Metastore-Revision: %d\r\n" % result.revision
        if result.deleted:
            _write(request, 204, revision, None)
        else:
            _write(request, 404, revision + _JSON, _NOT_FOUND)

    # -- the v3 API -------------------------------------------------------------

    def _call_v3(self, request, rpc) -> None:
        decode, call = rpc
        try:
            d = call(decode(request_body(request)))
        except Exception:
            d = defer.fail(Failure())
        d.addCallback(self._v3_answer, request)
        d.addErrback(_v3_failed, request)

    def _v3_answer(self, response, request) -> None:
        _write(request, 200, _JSON, compact_json(kv_answer(response, self._headers)))


def _key(path: bytes, method: bytes) -> bytes | None:
    """The key a hot seed-API request addresses, or None when the path
    is not a plain key path (or the request is membership, ``DELETE /7``)."""
    if not _PLAIN_PATH.fullmatch(path):
        return None
    if path.startswith(b"/kv/"):
        key = path[4:]
    else:
        key = path[1:]
        if key.partition(b"/")[0] in _NOT_KEYS:
            return None
    if b"%" in key:
        key = unquote_to_bytes(key)
    if method == b"DELETE" and key.isdigit() and not path.startswith(b"/kv/"):
        return None
    return key if len(key) <= MAX_KEY_BYTES else None


def _conditional(request) -> bool:
    """Whether ``request`` carries ``If-Match`` or ``If-None-Match`` (a
    compare-and-swap: the REST API's own code answers it)."""
    headers = request.requestHeaders
    return headers.hasHeader(b"if-match") or headers.hasHeader(b"if-none-match")


def _take(request, method: bytes, target: bytes, path: bytes) -> None:
    """Fill in what ``twisted.web``'s ``requestReceived`` would have, for
    the error answers and their log lines."""
    request.content.seek(0)
    request.method, request.uri, request.path, request.clientproto = method, target, path, b"HTTP/1.1"
    request.args = {}
    request.site = request.channel.site
    request.prepath, request.postpath = [], []


def _seed_failed(failure, request) -> None:
    _write_prepared(request, answer_failure(request, failure))


def _v3_failed(failure, request) -> None:
    _write_prepared(request, error_answer(request, failure))
