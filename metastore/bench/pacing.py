"""Holding a run to a total request rate (``metastore-bench --rate R``).

A token bucket in front of the closed-loop clients, as etcd's benchmark
tool does: a client sends only when it holds a token, tokens come at
``rate`` per second, and at most :data:`BURST_SECONDS` of them are banked
while every client is busy.  The clients still bound the requests in
flight, so a server slower than the rate is simply driven closed-loop.
"""

from __future__ import annotations

BURST_SECONDS = 0.05
"""Tokens banked while no client wants one, in seconds of the rate; a
short stall of the load generator is caught up, a long one is not."""

_ROUNDING = 1e-9
"""Slack for a token that is whole but for floating-point rounding."""

MIN_WAKE_SECONDS = 0.005
"""The shortest pause before waiting clients are woken again: at high
rates the tokens of several requests are handed out per wake-up, rather
than one timer per request."""


class TokenBucket:
    """Grants ``rate`` tokens per second from time ``start`` on, at most
    ``burst`` of them banked (and the first one at ``start``).  Pure: the
    caller passes the time."""

    def __init__(self, rate: float, start: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("the rate must be positive")
        self.rate = rate
        self.burst = max(1.0, rate * BURST_SECONDS) if burst is None else burst
        self._tokens = 1.0
        self._at = start

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now

    def take(self, now: float) -> bool:
        """Take one token if one is there at ``now``."""
        self._refill(now)
        if self._tokens >= 1.0 - _ROUNDING:
            self._tokens = max(0.0, self._tokens - 1.0)
            return True
        return False

    def available(self, now: float) -> bool:
        """Whether :meth:`take` at ``now`` would succeed (takes nothing)."""
        self._refill(now)
        return self._tokens >= 1.0 - _ROUNDING

    def wait(self, now: float) -> float:
        """Seconds from ``now`` until the next token (0 if one is there)."""
        self._refill(now)
        return max(0.0, (1.0 - self._tokens) / self.rate)
