"""One integration test over real loopback TCP, bounded to a few seconds."""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from metastore.raft.types import Entry, Message, MessageType
from metastore.transport.peers import PeerTransport

CLUSTER_ID = 77


class LoopbackTests(TestCase):
    """Two transports on the real reactor exchange batches over 127.0.0.1."""

    timeout = 3

    @defer.inlineCallbacks
    def test_exchange(self):
        """Members on port-0 listeners learn their ports, dial each other,
        and deliver a small and a 1.5 MiB message in order (sent before the
        links are up, so they may arrive as one batch); then stop cleanly."""
        from twisted.internet import reactor

        received: dict[int, list[Message]] = {1: [], 2: []}
        arrived: dict[int, defer.Deferred] = {}

        def collector(member_id):
            """An on_messages callback recording what member_id receives."""

            def on_messages(batch):
                """Record a batch; fire the waiter once two messages are in."""
                received[member_id].extend(batch)
                if len(received[member_id]) == 2:
                    arrived[member_id].callback(None)
            return on_messages

        members = {
            i: PeerTransport(reactor, i, CLUSTER_ID, "tcp://127.0.0.1:0", collector(i), lambda peer: None)
            for i in (1, 2)
        }
        for transport in members.values():
            transport.startService()
            self.addCleanup(transport.stopService)
        ports = {}
        for i, transport in members.items():
            port = yield transport.when_listening()
            ports[i] = port.getHost().port
        members[1].add_peer(2, f"http://127.0.0.1:{ports[2]}")
        members[2].add_peer(1, f"127.0.0.1:{ports[1]}")

        big = bytes(range(256)) * 6144
        to_two = [
            [Message(MessageType.MsgHeartbeat, to=2, from_=1, term=1)],
            [Message(MessageType.MsgApp, to=2, from_=1, term=1, entries=(Entry(1, 1, data=big),))],
        ]
        to_one = [
            [Message(MessageType.MsgHeartbeatResp, to=1, from_=2, term=1)],
            [Message(MessageType.MsgAppResp, to=1, from_=2, term=1, index=1)],
        ]
        waits = []
        for i in (1, 2):
            arrived[i] = defer.Deferred()
            waits.append(arrived[i])
        for batch in to_two:
            members[1].send(batch)
        for batch in to_one:
            members[2].send(batch)
        yield defer.gatherResults(waits)
        self.assertEqual(received[2], [m for batch in to_two for m in batch])
        self.assertEqual(received[1], [m for batch in to_one for m in batch])
        self.assertTrue(members[1].connected(2))
        self.assertTrue(members[2].connected(1))
