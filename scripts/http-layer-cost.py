"""The CPU one hot request spends in the client port's HTTP and API layers.

Feeds a seed-API ``PUT /bench/…`` (256-byte value) and ``GET /bench/…``,
and a v3 ``POST /v3/kv/put`` and ``/v3/kv/range`` (as ``metastore-bench``
sends them) to one ``MetaStoreSite`` connection over a
``StringTransport``, in this process, through the real ``HotRoutes``,
``KVService`` and response headers, over a facade whose proposals and
reads complete once the request is handed over (as the node completes
them later, in a Ready cycle); prints the best of five rounds of the CPU time
(``time.process_time``, so less moved by other processes than a rate)
per request: parsing, routing, JSON and base64, validation, the answer's
bytes, Deferreds — what the site and the API cost, without the socket,
the reactor, Raft or the store.

    python scripts/http-layer-cost.py             # from a checkout: that checkout's site
    cd ../other-checkout && python $OLDPWD/scripts/http-layer-cost.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.getcwd())

from twisted.internet import address, defer, task  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402
from twisted.web.resource import Resource  # noqa: E402

from metastore.api.fastpath import HotRoutes  # noqa: E402
from metastore.api.site import MetaStoreSite  # noqa: E402
from metastore.api.v3.header import Headers  # noqa: E402
from metastore.api.v3.kv import KVService  # noqa: E402
from metastore.auth.state import AuthState  # noqa: E402
from metastore.facade import Consistency, MemberFacade  # noqa: E402
from metastore.kv.messages import PutResponse, RangeResponse, ResponseHeader  # noqa: E402
from metastore.storage.engine import KeyValue  # noqa: E402

REVISION = 123_456
_STORED = KeyValue(b"bench/00001234", b"v" * 256, REVISION - 99, REVISION - 9, 5)
_PUT = PutResponse(ResponseHeader(REVISION))
_RANGE = RangeResponse(ResponseHeader(REVISION), (_STORED,), count=1)


class _Member:
    """Just enough of the facade: auth off, the real request checks, a
    serializable read and the quota check passed at once; proposals and
    linearizable reads pending until ``complete``."""

    revision = REVISION
    member_id = 0x8E9E05C52164694D
    term = 7
    _auth = AuthState(enabled=False)
    check = staticmethod(MemberFacade.check)
    is_read_only = staticmethod(MemberFacade.is_read_only)

    def __init__(self) -> None:
        self._pending: list[tuple[defer.Deferred, object]] = []

    def auth_state(self) -> AuthState:
        return self._auth

    def check_space(self, request):
        return defer.succeed(None)

    def propose(self, command, auth=None):
        return self._wait(_PUT)

    def read(self, consistency=Consistency.LINEARIZABLE):
        return defer.succeed(None) if consistency is Consistency.SERIALIZABLE else self._wait(None)

    def _wait(self, result) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self._pending.append((d, result))
        return d

    def complete(self) -> None:
        """Fire every pending proposal and read."""
        pending, self._pending = self._pending, []
        for d, result in pending:
            d.callback(result)

    def read_request(self, request):
        return _RANGE

    def get(self, key: bytes, revision: int = 0):
        return _STORED


class _V3:
    """What ``HotRoutes`` takes of ``V3API``: its KV service and headers."""

    def __init__(self, member: _Member) -> None:
        self.kv = KVService(member, lambda revision: defer.succeed(None))
        self.headers = Headers(member, 0xCDF818194E3A8C32)


def requests() -> dict[str, bytes]:
    """The load generator's requests, as it sends them."""
    head = b" HTTP/1.1\r\nHost: 127.0.0.1:2379\r\n"
    key = b'"key":"YmVuY2gvMDAwMDEyMzQ="'
    v3_head = b" HTTP/1.1\r\nHost: 127.0.0.1:2379\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"

    def v3(path: bytes, body: bytes) -> bytes:
        return b"POST " + path + v3_head % len(body) + body

    return {
        "seed put": b"PUT /bench/00001234" + head + b"Content-Length: 256\r\n\r\n" + b"v" * 256,
        "v3 put": v3(b"/v3/kv/put", b"{" + key + b',"value":"' + b"dmFs" * 85 + b'"}'),
        "seed get": b"GET /bench/00001234" + head + b"\r\n",
        "v3 range": v3(b"/v3/kv/range", b"{" + key + b"}"),
    }


def cost(request: bytes, count: int) -> float:
    """Microseconds of CPU per ``request``, the best of five rounds of ``count``."""
    member = _Member()
    site = MetaStoreSite(Resource(), 1 << 20, reactor=task.Clock(), hot_routes=HotRoutes(member, _V3(member)))
    channel = site.buildProtocol(address.IPv4Address("TCP", "127.0.0.1", 1))
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(request)
    member.complete()
    if b" 200 OK" not in transport.value() and b" 204 " not in transport.value():
        raise SystemExit(f"not answered with success:\n{transport.value().decode(errors='replace')}")
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(count):
            channel.dataReceived(request)
            member.complete()
            transport.clear()
        best = min(best, (time.process_time() - started) / count * 1e6)
    return best


def main() -> None:
    """Measure each request and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000, help="requests per round")
    arguments = parser.parse_args()
    for name, request in requests().items():
        print(f"{name}: {cost(request, arguments.count):.1f} µs CPU per request")


if __name__ == "__main__":
    main()
