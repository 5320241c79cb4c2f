"""The hot requests, answered without Klein.

Most of what a member serves is one of a few requests: ``GET``, ``PUT`` and
``DELETE`` of one key in the seed API (``/{key}`` and ``/kv/{key}``) and
``POST /v3/kv/range``, ``/v3/kv/put``, ``/v3/kv/deleterange`` and
``/v3/kv/txn``.  Routing those through Klein and werkzeug costs more CPU
than the rest of the request together, so ``HotRoutes`` recognizes them
from the request line alone and answers them against the facade: no
resource traversal, no URL matcher, no coroutine, and the answer (status
line, headers with an exact ``Content-Length``, body) goes out in one
write.

It answers only what it is sure to answer exactly as the Klein APIs do;
anything else (another method or path, a query other than
``serializable``, ``If-Match``, a body over the limit, a key that needs
percent-decoding, HTTP/1.0) is left to the site's resource tree, which
stays the one place where the APIs are written.  The site's channel
takes the plainest hot requests off the wire itself, without a
``twisted.web`` request (``HotRoutes.plan`` and ``start``,
``metastore.api.site.MetaStoreChannel``); the others it parses as
Twisted does, and ``HotRoutes.answer`` then takes the hot ones among them
(``metastore.api.site.MetaStoreRequest``).  A ``--workers`` front process
builds its own ``HotRoutes`` over its remote facade.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from twisted.internet import defer
from twisted.python.failure import Failure

from metastore.api.errors import answer_failure, json_body
from metastore.api.v3 import kv_codec
from metastore.api.rest import RESERVED_PREFIXES
from metastore.api.v3.app import V3API, error_answer, kv_answer, request_body
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


def _revision_lines(revision: int) -> bytes:
    return b"X-Metastore-Revision: %d\r\nX-Metastore-Index: %d\r\n" % (revision, revision)


class HotRoutes:
    """Answers the hot seed-API requests directly against ``member`` and
    the hot v3 KV requests through ``v3``'s ``KVService`` and response
    headers (the same objects the Klein v3 API uses).

    Two ways in: ``answer`` takes a ``twisted.web`` request the site has
    parsed; ``plan`` and ``start`` serve the channel, which takes the
    plainest requests off the wire itself (``metastore.api.hotrequest``).
    Either request is answered by its ``write_whole`` (a success, or the
    seed API's 404) or ``write_prepared`` (an error answer set up by
    ``metastore.api.errors``)."""

    def __init__(self, member: MemberFacade, v3: V3API) -> None:
        self._member = member
        self._headers = v3.headers
        self._v3 = {prefix + path.encode(): (decode, getattr(v3.kv, method))
                    for prefix in _V3_PREFIXES for path, decode, method in _V3_RPCS}

    def plan(self, method: bytes, target: bytes) -> tuple | None:
        """How to answer an HTTP/1.1 ``method target`` whose head carries
        no ``If-Match`` or ``If-None-Match`` and whose body is within the
        limit: ``(start, path, arguments)`` for ``start``; None when it
        is not a hot request (or auth is on: the Klein APIs then check
        every request)."""
        if self._member.auth_state().enabled:
            return None
        path, _, query = target.partition(b"?")
        if method == b"POST":
            rpc = self._v3.get(path)
            if rpc is None or query:
                return None
            return self._call_v3, path, rpc
        serializable = False
        if method == b"GET":
            serializable = _SERIALIZABLE.get(query) if query else False
            if serializable is None:
                return None
        elif method not in (b"PUT", b"DELETE") or query:
            return None
        key = _key(path, method)
        if key is None:
            return None
        return self._call_seed, path, (method, key, serializable)

    @staticmethod
    def start(plan: tuple, request) -> None:
        """Start answering ``request`` (head and body received) as ``plan`` says."""
        call, _, arguments = plan
        call(request, arguments)

    def answer(self, request, method: bytes, target: bytes, version: bytes) -> bool:
        """Take ``request`` (a site's, its head and body received) if it is
        a hot one and start answering it; False, touching nothing, if it
        is not."""
        if version != b"HTTP/1.1":
            return False
        plan = self.plan(method, target)
        if plan is None:
            return False
        if method != b"POST" and (_conditional(request) or (method == b"PUT" and request.body_too_large)):
            return False
        _take(request, method, target, plan[1])
        self.start(plan, request)
        return True

    # -- the seed API -----------------------------------------------------------

    def _call_seed(self, request, arguments: tuple) -> None:
        try:
            d = self._start_seed(request, *arguments)
        except Exception:
            d = defer.fail(Failure())
        d.addErrback(_seed_failed, request)

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
            request.write_whole(404, revisions + _JSON, _NOT_FOUND)
            return
        request.write_whole(200, b"%sETag: \"%d\"\r\nX-Metastore-Create-Revision: %d\r\n"
                                 b"X-Metastore-Mod-Revision: %d\r\nX-Metastore-Version: %d\r\n%s" % (
                            revisions, kv.mod_revision, kv.create_revision, kv.mod_revision, kv.version, _OCTETS),
                            kv.value)

    @staticmethod
    def _put(result, request) -> None:
        request.write_whole(204, b"ETag: \"%d\"\r\nX-Metastore-Revision: %d\r\n" % (result.revision, result.revision),
                            None)

    @staticmethod
    def _deleted(result, request) -> None:
        revision = b"X-Metastore-Revision: %d\r\n" % result.revision
        if result.deleted:
            request.write_whole(204, revision, None)
        else:
            request.write_whole(404, revision + _JSON, _NOT_FOUND)

    # -- the v3 API -------------------------------------------------------------

    def _call_v3(self, request, rpc) -> None:
        decode, call = rpc
        try:
            d = call(decode(request_body(request)))
        except Exception:
            _v3_failed(Failure(), request)
            return
        d.addCallbacks(self._v3_answer, _v3_failed, callbackArgs=(request,), errbackArgs=(request,))

    def _v3_answer(self, response, request) -> None:
        try:
            body = kv_answer(response, self._headers)
        except Exception:
            _v3_failed(Failure(), request)
            return
        request.write_whole(200, _JSON, body)


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
    request.write_prepared(answer_failure(request, failure))


def _v3_failed(failure, request) -> None:
    request.write_prepared(error_answer(request, failure))
