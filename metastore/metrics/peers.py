"""Round trips between the leader and each follower, timed on heartbeats."""

from __future__ import annotations

import time
from typing import Callable, Iterable

from metastore.raft.types import Message, MessageType

STALE_SECONDS = 5.0
"""A heartbeat unanswered this long is forgotten, not timed (the peer was
away; its late answer would measure the outage, not the network)."""


def peer_label(member_id: int) -> str:
    """A member id as etcd writes it in metric labels (hexadecimal)."""
    return format(member_id, "x")


class PeerRoundTrips:
    """Times each follower's answer to the leader's heartbeat: from the
    send of a heartbeat to the receipt of the next heartbeat response from
    that follower.  ``histogram`` is labelled by ``To`` (etcd's
    ``etcd_network_peer_round_trip_time_seconds``).  The time includes the
    follower's turn of its event loop, as etcd's prober includes its HTTP
    handling."""

    def __init__(self, histogram, clock: Callable[[], float] = time.perf_counter) -> None:
        self._histogram = histogram
        self._clock = clock
        self._waiting: dict[int, float] = {}
        self._children: dict[int, object] = {}

    def sent(self, messages: Iterable[Message]) -> None:
        """Messages went out: note when each unanswered heartbeat left."""
        now = None
        for m in messages:
            if m.type is MessageType.MsgHeartbeat and m.to not in self._waiting:
                if now is None:
                    now = self._clock()
                self._waiting[m.to] = now

    def received(self, messages: Iterable[Message]) -> None:
        """Messages arrived: a heartbeat response closes its peer's round trip."""
        for m in messages:
            if m.type is MessageType.MsgHeartbeatResp:
                sent = self._waiting.pop(m.from_, None)
                if sent is None:
                    continue
                elapsed = self._clock() - sent
                if elapsed <= STALE_SECONDS:
                    self._child(m.from_).observe(elapsed)

    def _child(self, peer_id: int):
        child = self._children.get(peer_id)
        if child is None:
            child = self._children[peer_id] = self._histogram.labels(To=peer_label(peer_id))
        return child
