"""Which member to ask, and when asking another one is safe (sans-IO).

The rule, the same in both flavours:

* a call that is idempotent (every read, a keep-alive, a status, a
  read-only txn, a watch) moves on to the next member after any failure:
  refused, reset, timed out, or an answer of 5xx (no leader, timeout);
* a write moves on only when the connection was refused, so the request
  was never sent, or when the member refused it unread (etcd's
  "etcdserver: not leader": membership changes go to the leader).  After a reset, a timeout or a 5xx the write may have
  been applied, and sending it again could apply it twice: the error goes
  to the caller.

Members are asked in the order given, starting from the one that answered
last; after a full round of failures the caller pauses ``pause`` seconds,
and gives up after ``rounds`` rounds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Iterator

from metastore.client.wire import Call, ClientError


class Outcome(enum.Enum):
    """What came of one attempt."""

    ANSWERED = "answered"
    REFUSED = "refused"  # not connected: the request never left
    LOST = "lost"  # sent (or maybe sent), then reset or timed out
    UNAVAILABLE = "unavailable"  # answered 5xx: no leader, timed out, stopping


NOT_LEADER = "etcdserver: not leader"
"""The answer of a member asked what only the leader does; it did nothing."""


def outcome_of_error(error: ClientError) -> Outcome:
    """A 5xx answer means the member could not serve it now; "not leader"
    that it refused it without acting."""
    if error.message == NOT_LEADER:
        return Outcome.REFUSED
    return Outcome.UNAVAILABLE if error.status >= 500 else Outcome.ANSWERED


def may_retry(call: Call, outcome: Outcome) -> bool:
    """Whether ``call`` may go to another member after ``outcome``."""
    if outcome is Outcome.ANSWERED:
        return False
    return call.idempotent or outcome is Outcome.REFUSED


def normalize(url: str) -> str:
    """``host:port`` or a URL, as a base URL without a trailing slash."""
    url = url.strip().rstrip("/")
    return url if "://" in url else "http://" + url


@dataclass
class Endpoints:
    """The members' base URLs and the one in use."""

    urls: list[str]
    rounds: int = 3
    pause: float = 0.25
    current: int = field(default=0)

    def __post_init__(self) -> None:
        self.urls = [normalize(u) for u in self.urls if u.strip()]
        if not self.urls:
            raise ValueError("at least one endpoint is needed")

    @classmethod
    def parse(cls, text: str, **options) -> "Endpoints":
        """From etcdctl's comma-separated ``--endpoints``."""
        return cls(text.split(","), **options)

    def attempts(self) -> Iterator[tuple[str, float]]:
        """``(url, seconds to pause first)`` for every attempt allowed,
        starting with the member in use."""
        for round_number in range(self.rounds):
            for step in range(len(self.urls)):
                pause = self.pause if round_number and not step else 0.0
                yield self.urls[(self.current + step) % len(self.urls)], pause

    def answered(self, url: str) -> None:
        """``url`` answered: keep asking it."""
        self.current = self.urls.index(url)


class Reconnects:
    """When a long-lived stream (a watch) breaks: move to the next member,
    pause after each full round, and give up after ``rounds`` rounds with
    no message received."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints
        self._failures = 0

    def received(self) -> None:
        """The stream delivered a message: failures so far are forgiven."""
        self._failures = 0

    def broke(self) -> float | None:
        """The stream broke (or never opened): seconds to pause before
        reopening it on the next member, or None to give up."""
        endpoints = self.endpoints
        self._failures += 1
        if self._failures > endpoints.rounds * len(endpoints.urls):
            return None
        endpoints.current = (endpoints.current + 1) % len(endpoints.urls)
        return endpoints.pause if endpoints.current == 0 else 0.0

    @property
    def url(self) -> str:
        """The member to open the stream on."""
        return self.endpoints.urls[self.endpoints.current]
