"""Tests for ``metastore.transport.peers``: links, queues, reconnects.

Members share one ``MemoryReactorClock``; connections are completed by hand
with ``twisted.test.iosim`` and time only moves when a test advances it.
"""

from __future__ import annotations

import random
from typing import Optional

from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.test.iosim import ConnectionCompleter, IOPump
from twisted.trial.unittest import SynchronousTestCase

from metastore.raft.types import Entry, Message, MessageType
from metastore.transport.peers import (
    PeerTransport,
    TransportSettings,
    cluster_id_from_token,
    reconnect_delay,
)
from metastore.transport.protocol import MAX_MESSAGE_LENGTH

CLUSTER_ID = 0xABC
SETTINGS = TransportSettings(max_queued_messages=8, max_queued_bytes=64 * 1024)


class NoJitter(random.Random):
    """A random source whose jitter is always zero, for exact delays."""

    def random(self) -> float:
        """Always 0.0."""
        return 0.0


def app(from_: int, to: int, index: int, size: int = 16) -> Message:
    """A MsgApp with one entry of ``size`` bytes."""
    return Message(
        MessageType.MsgApp, to=to, from_=from_, term=1, index=index,
        entries=(Entry(1, index + 1, data=b"e" * size),),
    )


class Member:
    """One PeerTransport plus what it delivered and reported."""

    def __init__(self, reactor: MemoryReactorClock, member_id: int,
                 settings: TransportSettings = SETTINGS,
                 is_member: Optional[object] = None,
                 cluster_id: int = CLUSTER_ID) -> None:
        """Build (not start) the transport for ``member_id`` on port 7000+id."""
        self.id = member_id
        self.url = f"http://127.0.0.1:{7000 + member_id}"
        self.delivered: list[list[Message]] = []
        self.unreachable: list[int] = []
        self.transport = PeerTransport(
            reactor, member_id, cluster_id, self.url,
            self.delivered.append, self.unreachable.append, is_member,
            settings=settings, random=NoJitter(),
        )


class PeerTransportFixture(SynchronousTestCase):
    """Three members (1, 2, 3) on one memory reactor, each knowing the
    others, started, with no connection completed yet."""

    def setUp(self) -> None:
        """Create and start members 1..3 and add every peer."""
        self.reactor = MemoryReactorClock()
        self.completer = ConnectionCompleter(self.reactor)
        self.members = {i: Member(self.reactor, i) for i in (1, 2, 3)}
        for m in self.members.values():
            m.transport.startService()
            for other in self.members.values():
                if other is not m:
                    m.transport.add_peer(other.id, other.url)

    def tearDown(self) -> None:
        """Stop every member."""
        for m in self.members.values():
            if m.transport.running:
                m.transport.stopService()

    def pending_ports(self) -> list[int]:
        """Ports of the outbound connection attempts not yet completed."""
        return [client[1] for client in self.reactor.tcpClients]

    def complete(self, from_id: int, to_id: int) -> IOPump:
        """Complete the pending connection from ``from_id`` to ``to_id``."""
        port = 7000 + to_id
        ports = self.pending_ports()
        # The completer takes the first pending attempt: move ours first.
        index = ports.index(port)
        clients, connectors = self.reactor.tcpClients, self.reactor.connectors
        clients.insert(0, clients.pop(index))
        connectors.insert(0, connectors.pop(index))
        pump = self.completer.succeedOnce()
        assert pump is not None
        pump.flush()
        return pump

    def refuse(self, to_id: int) -> None:
        """Fail the pending connection attempt to ``to_id`` as refused."""
        index = self.pending_ports().index(7000 + to_id)
        self.reactor.tcpClients.pop(index)[2].clientConnectionFailed(
            self.reactor.connectors.pop(index), Failure(ConnectionRefusedError())
        )


class ListeningTests(SynchronousTestCase):
    """The listener binds the member's own URL; the port can be learnt."""

    def test_when_listening(self) -> None:
        """when_listening fires with the port, before or after listening."""
        reactor = MemoryReactorClock()
        member = Member(reactor, 1)
        early = member.transport.when_listening()
        self.assertNoResult(early)
        member.transport.startService()
        port = self.successResultOf(early)
        self.assertEqual(port.getHost().port, 7001)
        self.assertIs(self.successResultOf(member.transport.when_listening()), port)
        self.assertEqual(reactor.tcpServers[0][0], 7001)
        self.assertEqual(reactor.tcpServers[0][3], "127.0.0.1")

    def test_listen_hosts(self) -> None:
        """IPv6, localhost and other names choose the documented interface."""
        for url, interface in (
            ("tcp://[::1]:0", "::1"),
            ("localhost:0", "127.0.0.1"),
            ("http://node-1.example:2380", ""),
        ):
            reactor = MemoryReactorClock()
            PeerTransport(reactor, 1, CLUSTER_ID, url, list, list).startService()
            self.assertEqual(reactor.tcpServers[0][3], interface, url)

    def test_cluster_id_from_token(self) -> None:
        """Token-derived cluster ids are stable, 64-bit, and differ by token."""
        a = cluster_id_from_token("metastore")
        self.assertEqual(a, cluster_id_from_token("metastore"))
        self.assertNotEqual(a, cluster_id_from_token("metastore-2"))
        self.assertTrue(0 <= a < 2**64)

    def test_bad_arguments(self) -> None:
        """A bad listen URL, a zero id, dialing oneself and sending to
        oneself are ValueErrors."""
        reactor = MemoryReactorClock()
        self.assertRaises(ValueError, PeerTransport, reactor, 1, 1, "h", list, list)
        self.assertRaises(ValueError, PeerTransport, reactor, 0, 1, "h:1", list, list)
        transport = PeerTransport(reactor, 1, 1, "h:1", list, list)
        self.assertRaises(ValueError, transport.add_peer, 1, "h:2")
        self.assertRaises(ValueError, transport.add_peer, 2, "h:0")
        self.assertRaises(ValueError, transport.send, [app(2, 1, 1)])
        self.assertRaises(ValueError, transport.send, [app(1, 0, 1)])


class DeliveryTests(PeerTransportFixture):
    """Connected members deliver batches whole and in order."""

    def test_batches_in_order(self) -> None:
        """Three sends from 1 to 2 arrive at 2 as three batches, in order."""
        pump = self.complete(1, 2)
        self.assertTrue(self.members[1].transport.connected(2))
        sent = [[app(1, 2, i), app(1, 2, i + 1)] for i in range(0, 6, 2)]
        for batch in sent:
            self.members[1].transport.send(batch)
        pump.flush()
        self.assertEqual(self.members[2].delivered, sent)
        self.assertEqual(self.members[1].unreachable, [])

    def test_one_write_per_peer(self) -> None:
        """All messages for a peer in one send() go out in exactly one write,
        each peer getting its own."""
        to_two = self.complete(1, 2)
        to_three = self.complete(1, 3)
        writes: dict[int, int] = {2: 0, 3: 0}
        for peer, pump in ((2, to_two), (3, to_three)):
            original = pump.clientIO.write

            def counting(data: bytes, peer: int = peer, original=original) -> None:
                """Count one write to ``peer`` and pass it on."""
                writes[peer] += 1
                original(data)

            pump.clientIO.write = counting
        self.members[1].transport.send(
            [app(1, 2, 1), app(1, 3, 1), app(1, 2, 2), app(1, 2, 3), app(1, 3, 2)]
        )
        self.assertEqual(writes, {2: 1, 3: 1})
        to_two.flush()
        to_three.flush()
        self.assertEqual(self.members[2].delivered, [[app(1, 2, 1), app(1, 2, 2), app(1, 2, 3)]])
        self.assertEqual(self.members[3].delivered, [[app(1, 3, 1), app(1, 3, 2)]])

    def test_queued_until_connected(self) -> None:
        """Messages sent before the connection exists go out as one batch
        right after the handshake."""
        self.members[1].transport.send([app(1, 2, 1)])
        self.members[1].transport.send([app(1, 2, 2)])
        self.assertFalse(self.members[1].transport.connected(2))
        self.complete(1, 2)
        self.assertEqual(self.members[2].delivered, [[app(1, 2, 1), app(1, 2, 2)]])

    def test_backpressure_queues(self) -> None:
        """While the transport is over its high-water mark sends queue; on
        resume the backlog goes out in one write."""
        pump = self.complete(1, 2)
        pump.clientIO.producer.pauseProducing()
        self.members[1].transport.send([app(1, 2, 1)])
        self.members[1].transport.send([app(1, 2, 2)])
        self.assertEqual(pump.clientIO.stream, [])
        pump.clientIO.producer.resumeProducing()
        self.assertEqual(len(pump.clientIO.stream), 1)
        pump.flush()
        self.assertEqual(self.members[2].delivered, [[app(1, 2, 1), app(1, 2, 2)]])

    def test_both_directions(self) -> None:
        """Each member dials the other; replies travel on the other link."""
        one_to_two = self.complete(1, 2)
        two_to_one = self.complete(2, 1)
        self.members[1].transport.send([app(1, 2, 1)])
        self.members[2].transport.send([Message(MessageType.MsgAppResp, to=1, from_=2, index=2)])
        one_to_two.flush()
        two_to_one.flush()
        self.assertEqual(self.members[2].delivered, [[app(1, 2, 1)]])
        self.assertEqual(
            self.members[1].delivered,
            [[Message(MessageType.MsgAppResp, to=1, from_=2, index=2)]],
        )


class UnreachableTests(PeerTransportFixture):
    """Lost links, overflow and impossible sends are reported, once per
    reactor turn and never from inside send()."""

    def test_overflow_by_count(self) -> None:
        """Beyond max_queued_messages the new messages are dropped, the peer
        is reported, and the queued ones still go out on connect."""
        transport = self.members[1].transport
        transport.send([app(1, 2, i) for i in range(6)])
        transport.send([app(1, 2, 6), app(1, 2, 7), app(1, 2, 8)])
        transport.send([app(1, 2, 9), app(1, 2, 10), app(1, 2, 11)])
        self.assertEqual(self.members[1].unreachable, [])
        self.reactor.advance(0)
        self.assertEqual(self.members[1].unreachable, [2])
        self.complete(1, 2)
        self.assertEqual(self.members[2].delivered, [[app(1, 2, i) for i in range(6)]])

    def test_overflow_by_bytes(self) -> None:
        """Beyond max_queued_bytes the messages are dropped and reported."""
        transport = self.members[1].transport
        transport.send([app(1, 2, 1, size=40 * 1024)])
        transport.send([app(1, 2, 2, size=40 * 1024)])
        self.reactor.advance(0)
        self.assertEqual(self.members[1].unreachable, [2])
        self.complete(1, 2)
        self.assertEqual(self.members[2].delivered, [[app(1, 2, 1, size=40 * 1024)]])

    def test_connection_lost(self) -> None:
        """A dropped link is reported once; a peer removal is not reported."""
        pump = self.complete(1, 2)
        pump.serverIO.loseConnection()
        pump.flush()
        self.assertFalse(self.members[1].transport.connected(2))
        self.reactor.advance(0)
        self.assertEqual(self.members[1].unreachable, [2])
        pump3 = self.complete(1, 3)
        self.members[1].transport.remove_peer(3)
        pump3.flush()
        self.reactor.advance(0)
        self.assertEqual(self.members[1].unreachable, [2])

    def test_unknown_peer_and_too_large(self) -> None:
        """Messages to a peer without a link, or too large for a frame, are
        dropped and reported; other peers' messages still go."""
        pump = self.complete(1, 2)
        huge = Message(MessageType.MsgSnap, to=3, from_=1, context=b"x" * MAX_MESSAGE_LENGTH)
        self.members[1].transport.send([app(1, 9, 1), huge, app(1, 2, 1)])
        pump.flush()
        self.assertEqual(self.members[2].delivered, [[app(1, 2, 1)]])
        self.reactor.advance(0)
        self.assertEqual(self.members[1].unreachable, [3, 9])

    def test_coalesced(self) -> None:
        """Many drops for one peer in one turn make one report."""
        for i in range(30):
            self.members[1].transport.send([app(1, 9, i)])
        self.reactor.advance(0)
        self.assertEqual(self.members[1].unreachable, [9])


class ReconnectTests(PeerTransportFixture):
    """Links reconnect with exponential backoff on the injected clock."""

    def retry_delay(self) -> float:
        """Seconds until the only pending timer (the reconnect) fires."""
        self.reactor.advance(0)
        now = self.reactor.seconds()
        [call] = [c for c in self.reactor.getDelayedCalls() if c.getTime() > now]
        return call.getTime() - now

    def test_backoff_then_accepted(self) -> None:
        """Refused attempts are retried after 0.05, 0.1, 0.2 ... capped at
        2 s; nothing dials early; once accepted, messages flow."""
        self.reactor = MemoryReactorClock()
        self.completer = ConnectionCompleter(self.reactor)
        one, two = Member(self.reactor, 1), Member(self.reactor, 2)
        self.members = {1: one, 2: two}
        one.transport.startService()
        one.transport.add_peer(2, two.url)
        delays = []
        for attempt in range(8):
            self.refuse(2)
            delay = self.retry_delay()
            delays.append(round(delay, 6))
            self.reactor.advance(delay * 0.99)
            self.assertEqual(self.pending_ports(), [])
            self.reactor.advance(delay * 0.02)
            self.assertEqual(self.pending_ports(), [7002])
        self.assertEqual(delays, [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])
        self.assertAlmostEqual(self.reactor.seconds(), sum(delays) * 1.01)
        two.transport.startService()
        two.transport.add_peer(1, one.url)
        one.transport.send([app(1, 2, 1)])
        self.complete(1, 2)
        self.assertEqual(two.delivered, [[app(1, 2, 1)]])

    def test_reconnect_after_loss(self) -> None:
        """A healthy link that drops is redialled after initial_backoff."""
        pump = self.complete(1, 2)
        self.reactor.advance(10)
        pump.serverIO.loseConnection()
        pump.flush()
        self.assertEqual(round(self.retry_delay(), 6), 0.05)

    def test_refused_handshake_backs_off(self) -> None:
        """A peer that accepts TCP but refuses our handshake (another
        cluster) is not redialled at once: each short-lived connection
        counts as a failure, so the delay grows."""
        stranger = Member(self.reactor, 4, cluster_id=CLUSTER_ID + 1)
        self.members[1].transport.add_peer(4, stranger.url)
        stranger.transport.add_peer(1, self.members[1].url)
        stranger.transport.startService()
        delays = []
        for attempt in range(4):
            self.complete(1, 4)
            delays.append(round(self.retry_delay(), 6))
            self.reactor.advance(delays[-1])
        self.assertEqual(delays, [0.1, 0.2, 0.4, 0.8])
        self.assertEqual(stranger.delivered, [])
        stranger.transport.stopService()

    def test_reconnect_delay(self) -> None:
        """reconnect_delay grows by the factor, caps, and adds jitter."""
        s = TransportSettings()
        self.assertEqual(reconnect_delay(s, 1, 0.0), 0.05)
        self.assertEqual(reconnect_delay(s, 3, 0.0), 0.2)
        self.assertEqual(reconnect_delay(s, 10_000, 0.0), 2.0)
        self.assertAlmostEqual(reconnect_delay(s, 1, 0.5), 0.075)


class MembershipTests(PeerTransportFixture):
    """Links follow add_peer / remove_peer; connections follow membership."""

    def test_peer_ids_and_replace(self) -> None:
        """peer_ids lists links; re-adding with a new URL replaces the link;
        re-adding with the same URL changes nothing."""
        transport = self.members[1].transport
        self.assertEqual(transport.peer_ids(), {2, 3})
        attempts = len(self.pending_ports())
        transport.add_peer(2, self.members[2].url)
        self.assertEqual(len(self.pending_ports()), attempts)
        transport.add_peer(2, "tcp://127.0.0.1:7222")
        self.assertIn(7222, self.pending_ports())
        transport.remove_peer(3)
        transport.remove_peer(3)
        self.assertEqual(transport.peer_ids(), {2})

    def test_removed_member_disconnected(self) -> None:
        """Removing a member closes its connection to us, and its next
        handshake is refused (the default is_member follows add_peer)."""
        pump = self.complete(3, 2)
        self.members[2].transport.remove_peer(3)
        pump.flush()
        self.assertFalse(self.members[3].transport.connected(2))
        self.members[3].transport.send([app(3, 2, 1)])
        self.reactor.advance(1)
        self.complete(3, 2)
        self.assertEqual(self.members[2].delivered, [])

    def test_stranger_does_not_disturb(self) -> None:
        """Garbage on one accepted connection drops only that connection."""
        pump = self.complete(1, 2)
        [server_factory] = [f for port, f, _, _ in self.reactor.tcpServers if port == 7002]
        stranger = server_factory.buildProtocol(None)
        stranger_transport = StringTransport()
        stranger.makeConnection(stranger_transport)
        stranger.dataReceived(b"\xff\xff\xff\xff GET / HTTP/1.1\r\n")
        self.assertTrue(stranger_transport.disconnecting)
        self.members[1].transport.send([app(1, 2, 1)])
        pump.flush()
        self.assertEqual(self.members[2].delivered, [[app(1, 2, 1)]])

    def test_stop_closes_everything(self) -> None:
        """Stopping closes links and accepted connections without reports."""
        pump = self.complete(1, 2)
        d = self.members[2].transport.stopService()
        pump.flush()
        self.successResultOf(d)
        self.assertFalse(self.members[1].transport.connected(2))
        self.assertEqual(self.members[2].unreachable, [])
