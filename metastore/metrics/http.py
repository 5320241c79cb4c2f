"""``GET /metrics`` and the latency of every HTTP request, by route and code."""

from __future__ import annotations

import re
import time
from typing import Callable

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import CollectorRegistry
from twisted.web.resource import Resource

from metastore.api.errors import write_error

MAX_ROUTES = 100
"""Distinct route labels kept; later ones are all ``other`` (labels must
stay few whatever paths clients send)."""

KEY_ROUTE = "/{key}"
UNMATCHED_ROUTE = "unmatched"
OTHER_ROUTE = "other"

_METHODS = frozenset((b"GET", b"HEAD", b"PUT", b"POST", b"DELETE", b"OPTIONS", b"PATCH"))
_NAME = re.compile(rb"[A-Za-z][A-Za-z0-9_.-]{0,40}")


def route_label(path: bytes, is_mounted: Callable[[bytes], bool]) -> str:
    """The route of ``path`` as a label: a path under a mounted API (``v3``,
    ``admin``, ``health``...) by its segments, numbers as ``{id}``; a key
    of the seed API as ``/{key}`` (``/kv/{key}`` for its ``/kv/`` spelling),
    never the key itself."""
    segments = path.split(b"/", 2)
    first = segments[1] if len(segments) > 1 else b""
    if not is_mounted(first):
        return "/kv" + KEY_ROUTE if first == b"kv" and len(segments) > 2 else KEY_ROUTE
    parts = []
    for segment in path.split(b"/")[1:5]:
        if segment.isdigit():
            parts.append("{id}")
        elif _NAME.fullmatch(segment):
            parts.append(segment.decode("ascii"))
        else:
            return OTHER_ROUTE
    return "/" + "/".join(parts)


class RequestDurations:
    """The site's request hook: each finished request's time, from its
    head's arrival to its last byte, goes to ``histogram`` labelled by
    method, route (``route_label``) and status code.  A request to a
    mounted API answered 404 or 405 counts as route ``unmatched``, so
    unknown paths cannot grow the label set (a key's 404 is still
    ``/{key}``)."""

    def __init__(self, histogram, is_mounted: Callable[[bytes], bool], clock: Callable[[], float] = time.perf_counter):
        self._histogram = histogram
        self._is_mounted = is_mounted
        self._clock = clock
        self._children: dict[tuple, object] = {}
        self._routes: set[str] = set()
        self._route_of: dict[bytes, str] = {}
        """Routes of paths under mounted APIs, as found (few paths: 404s are not kept)."""

    def __call__(self, request) -> None:
        """Record ``request`` (finished; it has ``received_at``)."""
        received_at = getattr(request, "received_at", None)
        if received_at is None:
            return
        elapsed = self._clock() - received_at
        code = request.code
        path = request.path
        route = self._route_of.get(path)
        if route is None:
            route = route_label(path, self._is_mounted)
            if code in (404, 405) and not route.endswith(KEY_ROUTE):
                route = UNMATCHED_ROUTE
            elif route is not OTHER_ROUTE and not route.endswith(KEY_ROUTE) and len(self._route_of) < 10 * MAX_ROUTES:
                self._route_of[path] = route
        method = request.method if request.method in _METHODS else b"other"
        key = (method, route, code)
        child = self._children.get(key)
        if child is None:
            child = self._new_child(*key)
        child.observe(elapsed)

    def _new_child(self, method: bytes, route: str, code: int):
        if route not in self._routes:
            if len(self._routes) >= MAX_ROUTES:
                route = OTHER_ROUTE
            self._routes.add(route)
        child = self._histogram.labels(method=method.decode("ascii"), route=route, code=str(code))
        self._children[(method, route, code)] = child
        return child


class MetricsResource(Resource):
    """``GET /metrics``: the registry in Prometheus' text format; any other
    method but HEAD is a JSON 405."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def render_GET(self, request) -> bytes:
        """The exposition of every metric now, in text format 0.0.4 (as etcd
        serves it: every Prometheus server reads it)."""
        request.setHeader(b"Content-Type", CONTENT_TYPE_PLAIN_0_0_4.encode("ascii"))
        return generate_latest(self._registry)

    def render_HEAD(self, request) -> bytes:
        """As GET, without the body (Twisted drops it)."""
        return self.render_GET(request)

    def render(self, request) -> bytes:
        """GET or HEAD; a JSON 405 for any other method."""
        if request.method not in (b"GET", b"HEAD"):
            return write_error(request, 405, "method_not_allowed", "/metrics answers GET only",
                               {b"Allow": b"GET, HEAD"})
        return super().render(request)
