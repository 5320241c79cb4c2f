"""Limits that keep one client from taking the whole member.

- :class:`TokenBuckets`: a request rate per client address (a token bucket
  each: ``rate`` tokens a second, at most ``burst`` saved up).
- :class:`ConnectionCap`: at most ``limit`` open client connections; the
  next one gets a 503 with a JSON reason and is closed.
- :class:`RateLimitedRoot`: wraps the HTTP root resource; a client over its
  rate gets a 429 with a JSON reason and ``Retry-After``.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict

from twisted.internet.protocol import Protocol
from twisted.protocols.policies import WrappingFactory
from twisted.web.resource import IResource, Resource
from zope.interface import implementer

TOO_MANY_CONNECTIONS = json.dumps({
    "error": "too_many_connections",
    "message": "the member serves at most {limit} client connections (--max-client-connections); try again later",
})
TOO_MANY_REQUESTS = "too_many_requests"


class TokenBuckets:
    """A token bucket per client key, the least recently used forgotten
    beyond ``max_clients`` (a forgotten client starts with a full bucket)."""

    def __init__(self, clock, rate: float, burst: float, max_clients: int = 65536) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.clock = clock
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()  # key -> [tokens, at]

    def take(self, key: str) -> float:
        """Take one token for ``key``: 0.0 when allowed, else the seconds
        until a token is due."""
        now = self.clock.seconds()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = [self.burst, now]
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
        if bucket[0] >= 1:
            bucket[0] -= 1
            return 0.0
        return (1 - bucket[0]) / self.rate


class _Refusal(Protocol):
    """Writes one canned HTTP answer and closes."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer

    def connectionMade(self) -> None:
        self.transport.write(self.answer)
        self.transport.loseConnection()


class ConnectionCap(WrappingFactory):
    """At most ``limit`` open connections to the wrapped factory; beyond
    it a connection is answered 503 (JSON reason) and closed."""

    noisy = False

    def __init__(self, wrapped, limit: int) -> None:
        super().__init__(wrapped)
        self.limit = limit
        body = TOO_MANY_CONNECTIONS.replace("{limit}", str(limit)).encode()
        self.refusal = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\nConnection: close\r\nRetry-After: 1\r\n\r\n%s" % (len(body), body))
        self.refused = 0

    def buildProtocol(self, addr):
        """The wrapped protocol, or a refusal when ``limit`` are open."""
        if len(self.protocols) >= self.limit:
            self.refused += 1
            return _Refusal(self.refusal)
        return super().buildProtocol(addr)


@implementer(IResource)
class RateLimitedRoot:
    """The HTTP root, behind a request rate per client address: over the
    rate, 429 with a JSON reason and ``Retry-After`` (whole seconds)."""

    isLeaf = False

    def __init__(self, root: IResource, buckets: TokenBuckets) -> None:
        self.root = root
        self.buckets = buckets

    def getChildWithDefault(self, name: bytes, request) -> IResource:
        """The root's child, unless the client is over its rate."""
        wait = self.buckets.take(_client_key(request))
        if wait:
            return _TooManyRequests(wait, self.buckets.rate)
        return self.root.getChildWithDefault(name, request)

    def putChild(self, path: bytes, child: IResource) -> None:
        """Mount on the wrapped root."""
        self.root.putChild(path, child)

    def render(self, request):
        """The root itself (``/``), rate-limited like every other path."""
        wait = self.buckets.take(_client_key(request))
        if wait:
            return _TooManyRequests(wait, self.buckets.rate).render(request)
        return self.root.render(request)


def _client_key(request) -> str:
    address = request.getClientAddress()
    return getattr(address, "host", None) or str(address)


class _TooManyRequests(Resource):
    isLeaf = True

    def __init__(self, wait: float, rate: float) -> None:
        super().__init__()
        self.wait, self.rate = wait, rate

    def render(self, request) -> bytes:
        request.setResponseCode(429)
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Retry-After", b"%d" % max(1, math.ceil(self.wait)))
        return json.dumps({
            "error": TOO_MANY_REQUESTS,
            "message": f"this client is over its request rate of {self.rate:g} per second "
                       f"(--client-request-rate); retry in {self.wait:.2f} s",
        }).encode()
