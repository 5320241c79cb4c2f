"""The CPU one hot request spends in the client port's HTTP layer.

Feeds a seed-API ``PUT /bench/…`` (256-byte value) or a v3 ``POST
/v3/kv/put`` to one ``MetaStoreSite`` connection over a
``StringTransport``, in this process, with a facade and KV service that
answer at once; prints the best of five rounds of the CPU time
(``time.process_time``, so less moved by other processes than a rate)
per request: parsing, routing, the answer's bytes, Deferreds — what the
site costs, without the socket, the reactor, Raft or the store.

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
from metastore.auth.state import AuthState  # noqa: E402
from metastore.kv.messages import PutResponse, ResponseHeader  # noqa: E402

_ANSWER = PutResponse(ResponseHeader(3))


class _Member:
    """Just enough of the facade: auth off, every proposal committed at once."""

    revision = 3
    _auth = AuthState(enabled=False)

    def auth_state(self) -> AuthState:
        return self._auth

    def propose(self, command):
        return defer.succeed(_ANSWER)


class _KV:
    """A v3 KV service answering every call at once."""

    def put(self, request):
        return defer.succeed(_ANSWER)

    range = txn = delete_range = put


class _V3:
    """What ``HotRoutes`` takes of ``V3API``."""

    def __init__(self) -> None:
        self.kv = _KV()
        self.headers = self

    @staticmethod
    def at(revision: int) -> dict:
        return {"revision": str(revision)}


def requests() -> dict[str, bytes]:
    """The load generator's requests, as it sends them."""
    head = b" HTTP/1.1\r\nHost: 127.0.0.1:2379\r\n"
    body = b'{"key": "YmVuY2gvMDAwMDEyMzQ=", "value": "' + b"dmFs" * 85 + b'"}'
    return {
        "seed put": b"PUT /bench/00001234" + head + b"Content-Length: 256\r\n\r\n" + b"v" * 256,
        "v3 put": b"POST /v3/kv/put" + head + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
            len(body), body),
    }


def cost(request: bytes, count: int) -> float:
    """Microseconds of CPU per ``request``, the best of five rounds of ``count``."""
    site = MetaStoreSite(Resource(), 1 << 20, reactor=task.Clock(), hot_routes=HotRoutes(_Member(), _V3()))
    channel = site.buildProtocol(address.IPv4Address("TCP", "127.0.0.1", 1))
    transport = StringTransport()
    channel.makeConnection(transport)
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(count):
            channel.dataReceived(request)
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
