"""Heartbeat round trips: metastore.metrics.peers."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram
from twisted.trial.unittest import SynchronousTestCase

from metastore.metrics.peers import STALE_SECONDS, PeerRoundTrips
from metastore.raft.types import Message, MessageType


def message(kind: MessageType, from_: int, to: int) -> Message:
    return Message(type=kind, from_=from_, to=to)


class PeerRoundTripsTests(SynchronousTestCase):
    """A heartbeat's send to its answer is one sample per follower."""

    def setUp(self) -> None:
        self.now = 100.0  # a power of two apart from the steps, so sums are exact
        self.registry = CollectorRegistry()
        histogram = Histogram("rtt", "", labelnames=("To",), registry=self.registry)
        self.trips = PeerRoundTrips(histogram, clock=lambda: self.now)

    def samples(self, peer: str) -> tuple[float, float]:
        count = self.registry.get_sample_value("rtt_count", {"To": peer})
        total = self.registry.get_sample_value("rtt_sum", {"To": peer})
        return count, total

    def test_each_follower_timed_apart(self) -> None:
        self.trips.sent([message(MessageType.MsgHeartbeat, 1, 2), message(MessageType.MsgHeartbeat, 1, 11),
                         message(MessageType.MsgApp, 1, 2)])
        self.now += 0.25
        self.trips.received([message(MessageType.MsgHeartbeatResp, 2, 1)])
        self.now += 0.5
        self.trips.received([message(MessageType.MsgHeartbeatResp, 11, 1), message(MessageType.MsgAppResp, 2, 1)])
        self.assertEqual(self.samples("2"), (1.0, 0.25))
        self.assertEqual(self.samples("b"), (1.0, 0.75))  # member 11, in hexadecimal as etcd labels it

    def test_the_oldest_unanswered_heartbeat_is_timed_and_an_answer_counts_once(self) -> None:
        self.trips.sent([message(MessageType.MsgHeartbeat, 1, 2)])
        self.now += 0.1
        self.trips.sent([message(MessageType.MsgHeartbeat, 1, 2)])
        self.now += 0.01
        self.trips.received([message(MessageType.MsgHeartbeatResp, 2, 1)] * 2)
        self.assertEqual(self.samples("2")[0], 1.0)
        self.assertAlmostEqual(self.samples("2")[1], 0.11)

    def test_an_answer_after_an_outage_is_not_a_sample(self) -> None:
        self.trips.sent([message(MessageType.MsgHeartbeat, 1, 2)])
        self.now += STALE_SECONDS + 1
        self.trips.received([message(MessageType.MsgHeartbeatResp, 2, 1)])
        self.assertEqual(self.samples("2"), (None, None))
        self.trips.sent([message(MessageType.MsgHeartbeat, 1, 2)])
        self.now += 0.001
        self.trips.received([message(MessageType.MsgHeartbeatResp, 2, 1)])
        self.assertEqual(self.samples("2")[0], 1.0)
