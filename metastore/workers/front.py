"""A front process: ``python -m metastore.workers.front SETTINGS-JSON``.

Started by its member's core (``metastore.workers.supervisor``).  It
connects to the core's link socket, waits for its replica of the store,
then listens on the member's client port with ``SO_REUSEPORT`` beside the
other fronts (the kernel spreads connections over them) and serves the
site ``front_root`` builds.  When the link to the core is lost it stops
listening, answers what is in flight with 503, and exits: a front never
outlives its core.
"""

from __future__ import annotations

import json
import socket
import sys
from dataclasses import dataclass

from twisted.internet import defer, endpoints
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.web.resource import IResource, Resource

from metastore.api.rest import RestAPI
from metastore.api.fastpath import HotRoutes
from metastore.api.root import member_root
from metastore.api.site import MetaStoreSite
from metastore.api.v3.app import V3API
from metastore.workers.proxy import CoreProxy
from metastore.workers.remote import FrontLink, RemoteFacade, housekeeping

log = Logger()

EXIT_GRACE_SECONDS = 1.0
"""How long a front whose core is gone lingers so its 503s reach their clients."""
V3_LOCAL_RPCS = frozenset((b"kv/range", b"kv/put", b"kv/deleterange", b"kv/txn", b"kv/compaction", b"watch"))
"""The v3 calls a front answers itself (the KV service, watch streams);
the others go to the core."""


@dataclass(frozen=True, slots=True)
class FrontSettings:
    """What a front needs to know, passed by the core as JSON."""

    link: str
    """The core's link socket."""
    core_http: str
    """The core's HTTP socket (for the routes forwarded whole)."""
    host: str
    port: int
    cluster_id: int
    max_request_bytes: int
    header_timeout: float
    call_timeout: float

    def to_json(self) -> str:
        """The settings as the command-line argument."""
        return json.dumps({name: getattr(self, name) for name in self.__slots__})

    @classmethod
    def from_json(cls, text: str) -> "FrontSettings":
        """Settings from ``to_json``'s text."""
        return cls(**json.loads(text))


class V3Split(Resource):
    """``/v3/...``: the calls in ``V3_LOCAL_RPCS`` to this front's v3 API,
    the others to the core."""

    isLeaf = True

    def __init__(self, local: IResource, core: IResource) -> None:
        super().__init__()
        self._local = local
        self._core = core

    def render(self, request):
        """Hand ``request`` to whichever serves its service."""
        rpc = request.path.split(b"/", 2)[-1]
        target = self._local if rpc in V3_LOCAL_RPCS else self._core
        return target.render(request)


class AuthGate(Resource):
    """While auth is enabled (as the core last pushed it, at once when it
    changes) every request goes whole to ``core``, whose own site checks
    it exactly as a member in one process does; otherwise ``local``
    serves it.  A request served here while auth was off is checked again
    in the core if auth came on meanwhile (``RemoteFacade``)."""

    def __init__(self, facade: RemoteFacade, local: Resource, core: IResource) -> None:
        super().__init__()
        self._facade = facade
        self._local = local
        self._core = core

    def getChildWithDefault(self, segment: bytes, request) -> IResource:
        """``core`` while auth is enabled, else what ``local`` routes to."""
        if self._facade.auth_state().enabled:
            return self._core
        return self._local.getChildWithDefault(segment, request)


def front_root(facade: RemoteFacade, reactor, cluster_id: int, core: IResource,
               max_request_bytes: int) -> tuple[IResource, HotRoutes]:
    """The site a front serves: ``member_root`` over ``facade`` for the
    seed REST API, the v3 KV service and watch streams, ``core`` (the
    proxy to the core) for the admin endpoints, ``/metrics`` (the core's)
    and the other v3 services, and for everything while auth is enabled
    (``AuthGate``); and the hot routes answered before it, as a member's
    own site does (they step aside while auth is enabled)."""
    rest = RestAPI(facade, reactor)
    v3 = V3API(facade, cluster_id, facade.wait_physical, max_request_bytes=max_request_bytes)
    root = member_root(rest.app.resource(), core, V3Split(v3.app.resource(), core), metrics=core)
    return AuthGate(facade, root, core), HotRoutes(facade, v3)


def listen_reuseport(reactor, host: str, port: int, factory):
    """Listen on ``host:port`` with ``SO_REUSEPORT`` (beside the member's
    other fronts); the ``IListeningPort``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
        return reactor.adoptStreamPort(sock.fileno(), socket.AF_INET, factory)
    finally:
        sock.close()


async def serve(reactor, settings: FrontSettings) -> None:
    """Connect to the core, then serve until the link is lost."""
    link = FrontLink(reactor, settings.call_timeout)
    endpoint = endpoints.UNIXClientEndpoint(reactor, settings.link, timeout=10)
    await endpoints.connectProtocol(endpoint, link)
    await link.ready
    stop_chores = housekeeping(link, reactor)
    facade = RemoteFacade(link)
    root, hot_routes = front_root(facade, reactor, settings.cluster_id, CoreProxy(reactor, settings.core_http),
                                  settings.max_request_bytes)
    site = MetaStoreSite(root, settings.max_request_bytes, reactor=reactor, header_timeout=settings.header_timeout,
                         hot_routes=hot_routes)
    port = listen_reuseport(reactor, settings.host, settings.port, site)
    link.send(("listening",))
    log.info("front serving port {port} for member {id}", port=settings.port, id=link.member_id)
    await link.lost
    stop_chores()
    await defer.maybeDeferred(port.stopListening)
    log.info("the link to the core is gone: exiting")
    await _sleep(reactor, EXIT_GRACE_SECONDS)


def _sleep(reactor, seconds: float) -> defer.Deferred:
    d: defer.Deferred = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


def main(argv: list[str]) -> int:
    """Run one front; its exit status (1 when it could not start)."""
    settings = FrontSettings.from_json(argv[1])
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    from twisted.internet import reactor

    status = [0]

    def failed(failure):
        log.failure("the front could not serve", failure)
        status[0] = 1

    def start() -> None:
        d = defer.ensureDeferred(serve(reactor, settings))
        d.addErrback(failed)
        d.addBoth(lambda _: reactor.running and reactor.stop())

    reactor.callWhenRunning(start)
    reactor.run()
    return status[0]


if __name__ == "__main__":
    sys.exit(main(sys.argv))
