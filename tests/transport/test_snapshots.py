"""Tests for streaming snapshot files between peers (``metastore.transport.snapshots``).

The receiving side is driven byte by byte over ``StringTransport``; whole
transfers run between two ``PeerTransport``s on a ``MemoryReactorClock``
connected by ``twisted.test.iosim``, with the sender's transport given a
high-water mark so that back-pressure is real.  One test uses loopback TCP.
"""

from __future__ import annotations

import hashlib
import os
import random
from typing import Callable

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.test.iosim import ConnectionCompleter, IOPump
from twisted.trial.unittest import SynchronousTestCase, TestCase

from metastore.raft.types import ConfState, Message, MessageType, Snapshot, SnapshotMetadata
from metastore.storage.engine import ClusterState, Event, KeyValue
from metastore.snapshots.format import SnapshotDirectory, SnapshotHeader, write_snapshot
from metastore.transport.codec import (
    MalformedFrame,
    SnapshotChunk,
    decode_snapshot_chunk,
    encode_snapshot_chunk,
)
from metastore.transport.peers import PeerTransport, TransportSettings
from metastore.transport.protocol import InboundPeerFactory, snapshot_chunk_frame
from metastore.transport.snapshots import IncomingSnapshots

from .test_protocol import CLUSTER_ID, LOCAL_ID, MEMBERS, batch, heartbeat, hello, raw_frame

TERM = 4
INDEX = 1234
CHUNK = 16 * 1024


def make_snapshot_file(directory: str, keys: int = 3000, index: int = INDEX, term: int = TERM) -> str:
    """A real snapshot file (about 130 bytes per key) at ``index``/``term``."""
    header = SnapshotHeader(index, term, keys + 1, ClusterState(voters=(1, 2, 3)))
    items = (Event(KeyValue(b"key/%08d" % i, b"v" * 100, i + 1, i + 1, 1), 0) for i in range(keys))
    return write_snapshot(directory, header, items)


def msg_snap(from_: int = 2, to: int = LOCAL_ID, index: int = INDEX, term: int = TERM) -> Message:
    """Raft's MsgSnap for the snapshot at ``index``/``term``, without data."""
    return Message(
        MessageType.MsgSnap, to=to, from_=from_, term=term,
        snapshot=Snapshot(SnapshotMetadata(index, term, ConfState((1, 2, 3))), b""),
    )


def chunk_frames(data: bytes, chunk: int = CHUNK, index: int = INDEX, term: int = TERM) -> list[bytes]:
    """The SNAPSHOT_CHUNK frames a sender writes for file contents ``data``."""
    offsets = range(0, len(data), chunk)
    return [
        snapshot_chunk_frame(term, index, o, data[o : o + chunk], o + chunk >= len(data))
        for o in offsets
    ]


def read_bytes(path: str) -> bytes:
    """The contents of the file at ``path``."""
    with open(path, "rb") as f:
        return f.read()


class HeldCalls:
    """A run_blocking stand-in that runs nothing until ``run_all``, so a test
    can look at the state while a verification is "in a thread"."""

    def __init__(self) -> None:
        """No calls pending."""
        self.pending: list[tuple[Callable, tuple, defer.Deferred]] = []

    def __call__(self, f: Callable, *args: object) -> defer.Deferred:
        """Record the call; its Deferred fires in ``run_all``."""
        d: defer.Deferred = defer.Deferred()
        self.pending.append((f, args, d))
        return d

    def run_all(self) -> None:
        """Run every pending call (in order) and fire its Deferred."""
        for _ in range(100):
            if not self.pending:
                return
            f, args, d = self.pending.pop(0)
            try:
                result = f(*args)
            except BaseException:
                d.errback(Failure())
            else:
                d.callback(result)


def run_now(f: Callable, *args: object) -> defer.Deferred:
    """A run_blocking stand-in that runs the call at once."""
    return defer.maybeDeferred(f, *args)


class ChunkCodecTests(SynchronousTestCase):
    """Chunk bodies encode and decode exactly, and bad ones are refused."""

    def test_round_trip(self) -> None:
        """A chunk, including empty and binary data, decodes to itself; the
        frame helper builds the same body."""
        for data in (b"", bytes(range(256)) * 10):
            chunk = SnapshotChunk(2**64 - 1, 7, 12345, data, True)
            body = encode_snapshot_chunk(chunk)
            self.assertEqual(decode_snapshot_chunk(body), chunk)
            frame = snapshot_chunk_frame(chunk.term, chunk.index, chunk.offset, data, True)
            self.assertEqual(frame[5:], body)

    def test_malformed(self) -> None:
        """Wrong shapes and types raise MalformedFrame."""
        import msgpack

        for value in ([1, 2, 3, b"", True, 0], [1, 2, -1, b"", True], [1, 2, 3, "text", True],
                      [1, 2, 3, b"", 1], {"term": 1}):
            self.assertRaises(MalformedFrame, decode_snapshot_chunk, msgpack.packb(value))
        self.assertRaises(MalformedFrame, decode_snapshot_chunk, b"\xc1")


class ReceiverFixture(SynchronousTestCase):
    """An inbound factory that receives snapshots into a directory, with
    verification held until the test runs it."""

    max_bytes = 8 * 1024**2

    def setUp(self) -> None:
        """A snapshot directory, a source snapshot file and the factory."""
        self.directory = SnapshotDirectory(self.mktemp())
        self.source = make_snapshot_file(self.mktemp())
        self.data = read_bytes(self.source)
        self.verifications = HeldCalls()
        self.delivered: list[list[Message]] = []
        self.factory = InboundPeerFactory(
            MemoryReactorClock(), LOCAL_ID, CLUSTER_ID, MEMBERS.__contains__,
            self.delivered.append, handshake_timeout=5.0,
            incoming_snapshots=IncomingSnapshots(self.directory, self.max_bytes, self.verifications),
        )

    def accept(self):
        """A new accepted connection past its handshake from member 2."""
        protocol = self.factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(hello())
        return protocol, transport

    def files(self) -> list[str]:
        """The names in the snapshot directory."""
        return sorted(os.listdir(self.directory.directory))

    def final_name(self, index: int = INDEX, term: int = TERM) -> str:
        """The final file name of the snapshot at ``index``/``term``."""
        return os.path.basename(self.directory.path_for(term, index))


class ReceiveTests(ReceiverFixture):
    """The accepting side writes, verifies and installs streamed snapshots."""

    def test_byte_by_byte(self) -> None:
        """Chunks, the MsgSnap and a later heartbeat fed one byte at a time:
        reading pauses after the last chunk, nothing after it is delivered
        until the file is accepted, then the MsgSnap and the heartbeat
        arrive in order and the file is identical to the source."""
        protocol, transport = self.accept()
        before = heartbeat(term=1)
        after = heartbeat(term=5)
        frames = chunk_frames(self.data)
        self.assertGreater(len(frames), 10)
        stream = batch(before) + b"".join(frames) + batch(msg_snap()) + batch(after)
        for i in range(len(stream)):
            protocol.dataReceived(stream[i : i + 1])
        self.assertEqual(self.delivered, [[before]])
        self.assertEqual(transport.producerState, "paused")
        self.assertEqual(self.files(), [self.final_name() + ".part"])
        self.verifications.run_all()
        self.assertEqual(self.delivered, [[before], [msg_snap()], [after]])
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(self.files(), [self.final_name()])
        self.assertEqual(read_bytes(self.directory.path_for(TERM, INDEX)), self.data)
        self.assertFalse(transport.disconnecting)

    def test_damaged_file_not_delivered(self) -> None:
        """A stream whose file does not verify is deleted and its MsgSnap is
        dropped; the connection stays up and later messages flow."""
        protocol, transport = self.accept()
        damaged = bytearray(self.data)
        damaged[len(damaged) // 2] ^= 0x40
        protocol.dataReceived(b"".join(chunk_frames(bytes(damaged))) + batch(msg_snap(), heartbeat()))
        self.verifications.run_all()
        self.assertEqual(self.delivered, [[heartbeat()]])
        self.assertEqual(self.files(), [])
        self.assertFalse(transport.disconnecting)

    def test_msgsnap_without_stream_dropped(self) -> None:
        """A MsgSnap with no accepted stream is dropped; the rest of its batch is delivered."""
        protocol, transport = self.accept()
        protocol.dataReceived(batch(heartbeat(), msg_snap()))
        self.assertEqual(self.delivered, [[heartbeat()]])
        self.assertFalse(transport.disconnecting)

    def test_msgsnap_for_other_snapshot_dropped(self) -> None:
        """A MsgSnap naming another snapshot than the accepted one is dropped."""
        protocol, _ = self.accept()
        protocol.dataReceived(b"".join(chunk_frames(self.data)) + batch(msg_snap(index=INDEX + 1)))
        self.verifications.run_all()
        self.assertEqual(self.delivered, [])

    def test_connection_lost_mid_stream(self) -> None:
        """A connection lost mid-stream deletes the part; nothing is delivered."""
        protocol, _ = self.accept()
        protocol.dataReceived(b"".join(chunk_frames(self.data)[:3]))
        self.assertEqual(self.files(), [self.final_name() + ".part"])
        protocol.connectionLost(None)
        self.assertEqual(self.files(), [])
        self.assertEqual(self.delivered, [])

    def test_inconsistent_chunks_drop(self) -> None:
        """A gap, an overlap, another snapshot mid-stream or a continuation
        without a start each drop the connection and delete the part."""
        frames = chunk_frames(self.data)
        other = chunk_frames(self.data, index=INDEX + 1)
        for bad in (
            frames[0] + frames[2],
            frames[0] + frames[1] + frames[1],
            frames[0] + other[1],
            frames[1],
            frames[0] + snapshot_chunk_frame(TERM, INDEX, CHUNK, b"", False) + frames[2],
        ):
            protocol, transport = self.accept()
            protocol.dataReceived(bad + batch(msg_snap()))
            self.assertTrue(transport.disconnecting)
            self.assertEqual(self.files(), [])
        self.assertEqual(self.delivered, [])
        self.assertEqual(self.verifications.pending, [])

    def test_restart_at_offset_zero(self) -> None:
        """A chunk at offset 0 restarts the stream: the earlier partial data is discarded."""
        protocol, transport = self.accept()
        frames = chunk_frames(self.data)
        protocol.dataReceived(b"".join(frames[:4]) + b"".join(frames) + batch(msg_snap()))
        self.verifications.run_all()
        self.assertEqual(self.delivered, [[msg_snap()]])
        self.assertEqual(read_bytes(self.directory.path_for(TERM, INDEX)), self.data)

    def test_newer_connection_takes_over(self) -> None:
        """A newer connection streaming the same snapshot takes the part over
        from a stale one, whose later chunks then drop it."""
        old, old_transport = self.accept()
        frames = chunk_frames(self.data)
        old.dataReceived(b"".join(frames[:3]))
        new, new_transport = self.accept()  # the factory drops ``old`` here
        self.assertTrue(old_transport.disconnecting)
        new.dataReceived(b"".join(frames) + batch(msg_snap()))
        self.verifications.run_all()
        self.assertEqual(self.delivered, [[msg_snap()]])
        self.assertEqual(self.files(), [self.final_name()])

    def test_part_being_verified_is_not_reused(self) -> None:
        """A second stream of a snapshot that is still being verified drops
        its connection and leaves the verification alone."""
        first, _ = self.accept()
        frames = chunk_frames(self.data)
        first.dataReceived(b"".join(frames) + batch(msg_snap()))
        other = self.factory.buildProtocol(None)
        other_transport = StringTransport()
        other.makeConnection(other_transport)
        other.dataReceived(hello(from_id=3) + frames[0])
        self.assertTrue(other_transport.disconnecting)
        self.verifications.run_all()
        self.assertEqual(self.delivered, [[msg_snap()]])
        self.assertEqual(self.files(), [self.final_name()])

    def test_no_directory_refuses_chunks(self) -> None:
        """A member without a snapshot directory drops a connection that sends chunks."""
        factory = InboundPeerFactory(
            MemoryReactorClock(), LOCAL_ID, CLUSTER_ID, MEMBERS.__contains__,
            self.delivered.append, handshake_timeout=5.0,
        )
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(hello() + chunk_frames(self.data)[0])
        self.assertTrue(transport.disconnecting)

    def test_malformed_chunk_drops(self) -> None:
        """An undecodable chunk body drops the connection."""
        protocol, transport = self.accept()
        protocol.dataReceived(raw_frame(3, b"\x93\x01\x02\x03"))
        self.assertTrue(transport.disconnecting)


class OversizeTests(ReceiverFixture):
    """A stream longer than the configured bound is refused."""

    max_bytes = 5 * CHUNK

    def test_oversized_stream_drops(self) -> None:
        """Going past max_bytes drops the connection and deletes the part."""
        protocol, transport = self.accept()
        protocol.dataReceived(b"".join(chunk_frames(self.data)[:6]))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.files(), [])
        self.assertEqual(self.verifications.pending, [])


class NoJitter(random.Random):
    """A random source whose jitter is always zero."""

    def random(self) -> float:
        """Always 0.0."""
        return 0.0


def add_high_water_mark(transport, high_water: int) -> list[int]:
    """Make an iosim FakeTransport pause its streaming producer once more
    than ``high_water`` bytes are unsent, and resume it when drained, like a
    real TCP transport.  Returns a list holding the most bytes ever unsent."""
    peak = [0]
    original_write = transport.write

    def write(data: bytes) -> None:
        original_write(data)
        unsent = sum(map(len, transport.stream))
        peak[0] = max(peak[0], unsent)
        if unsent > high_water and transport.producer is not None and not transport.producer.paused:
            transport.producer.pauseProducing()

    def check_producer() -> None:
        producer = transport.producer
        if producer is not None and producer.paused and not transport.stream and not transport.disconnecting:
            producer.resumeProducing()

    transport.write = write
    transport._checkProducer = check_producer
    return peak


class TransferTests(SynchronousTestCase):
    """Whole transfers between two PeerTransports over iosim."""

    def setUp(self) -> None:
        """Member 1 sends, member 2 receives into a snapshot directory; the
        connection 1 -> 2 is up with a 64 KiB high-water mark."""
        self.reactor = MemoryReactorClock()
        self.verifications = HeldCalls()
        self.directory = SnapshotDirectory(self.mktemp())
        self.received: list[list[Message]] = []
        self.unreachable: list[int] = []
        settings = TransportSettings(snapshot_chunk_bytes=CHUNK)
        self.sender = PeerTransport(
            self.reactor, 1, CLUSTER_ID, "tcp://127.0.0.1:7001", list, self.unreachable.append,
            settings=settings, random=NoJitter(),
        )
        self.receiver = PeerTransport(
            self.reactor, 2, CLUSTER_ID, "tcp://127.0.0.1:7002", self.received.append, self.unreachable.append,
            settings=settings, random=NoJitter(), snapshot_directory=self.directory,
            run_blocking=self.verifications,
        )
        for transport in (self.sender, self.receiver):
            transport.startService()
            self.addCleanup(transport.stopService)
        self.receiver.add_peer(1, "tcp://127.0.0.1:7001")
        self.sender.add_peer(2, "tcp://127.0.0.1:7002")
        index = [c[1] for c in self.reactor.tcpClients].index(7002)
        for pending in (self.reactor.tcpClients, self.reactor.connectors):
            pending.insert(0, pending.pop(index))
        self.pump: IOPump = ConnectionCompleter(self.reactor).succeedOnce()
        self.pump.flush()
        self.assertTrue(self.sender.connected(2))
        self.peak = add_high_water_mark(self.pump.clientIO, 64 * 1024)
        self.source = make_snapshot_file(self.mktemp(), keys=6000)
        self.message = msg_snap(from_=1, to=2)

    def test_transfer(self) -> None:
        """The file arrives identical, the MsgSnap is delivered only after
        the file is accepted, and the sender's Deferred fires True."""
        done = self.sender.send_snapshot(self.message, self.source)
        self.pump.flush()
        self.assertEqual(self.successResultOf(done), True)
        self.assertEqual(self.received, [])
        final = self.directory.path_for(TERM, INDEX)
        self.assertFalse(os.path.exists(final))
        self.verifications.run_all()
        self.assertEqual(self.received, [[self.message]])
        self.assertEqual(
            hashlib.sha256(read_bytes(final)).digest(), hashlib.sha256(read_bytes(self.source)).digest()
        )

    def test_bounded_memory(self) -> None:
        """The sender never has more than its high-water mark plus one chunk
        unsent, however large the file."""
        size = os.path.getsize(self.source)
        self.assertGreater(size, 40 * CHUNK)
        done = self.sender.send_snapshot(self.message, self.source)
        self.assertNoResult(done)
        self.pump.flush()
        self.successResultOf(done)
        self.assertLessEqual(self.peak[0], 64 * 1024 + CHUNK + 256)

    def test_messages_interleave(self) -> None:
        """Messages sent during a stream are delivered before the stream ends."""
        done = self.sender.send_snapshot(self.message, self.source)
        self.pump.pump()
        self.assertNoResult(done)
        beat = heartbeat(from_=1, to=2)
        self.sender.send([beat])
        self.pump.pump()
        self.pump.pump()
        self.assertEqual(self.received, [[beat]])
        self.assertNoResult(done)
        self.pump.flush()
        self.verifications.run_all()
        self.assertEqual(self.received, [[beat], [self.message]])

    def test_broken_link(self) -> None:
        """A link that breaks mid-stream fires False, removes the receiver's
        part file and delivers no MsgSnap."""
        done = self.sender.send_snapshot(self.message, self.source)
        self.pump.pump()
        self.pump.pump()
        self.assertNoResult(done)
        self.assertEqual(os.listdir(self.directory.directory), [os.path.basename(
            self.directory.incoming_path(TERM, INDEX))])
        self.pump.clientIO.loseConnection()
        self.pump.flush()
        self.assertEqual(self.successResultOf(done), False)
        self.assertEqual(os.listdir(self.directory.directory), [])
        self.assertEqual(self.received, [])
        self.assertFalse(self.sender.connected(2))

    def test_superseded(self) -> None:
        """A newer send_snapshot to the same peer fires the older one False
        and the newer file is the one installed."""
        newer_source = make_snapshot_file(self.mktemp(), keys=500, index=INDEX + 10)
        older = self.sender.send_snapshot(self.message, self.source)
        self.pump.pump()
        self.assertNoResult(older)
        newer_message = msg_snap(from_=1, to=2, index=INDEX + 10)
        newer = self.sender.send_snapshot(newer_message, newer_source)
        self.assertEqual(self.successResultOf(older), False)
        self.pump.flush()
        self.assertEqual(self.successResultOf(newer), True)
        self.verifications.run_all()
        self.assertEqual(self.received, [[newer_message]])
        self.assertEqual(
            [i for i, _, _ in self.directory.snapshots()], [INDEX + 10]
        )
        self.assertEqual(len(os.listdir(self.directory.directory)), 1)

    def test_unknown_or_unconnected_peer(self) -> None:
        """An unknown peer, a peer not connected now, or a missing file give False at once."""
        self.assertFalse(self.successResultOf(self.sender.send_snapshot(msg_snap(1, 3), self.source)))
        self.assertFalse(
            self.successResultOf(self.sender.send_snapshot(self.message, self.source + ".missing"))
        )
        self.sender.add_peer(3, "tcp://127.0.0.1:7003")
        self.assertFalse(self.successResultOf(self.sender.send_snapshot(msg_snap(1, 3), self.source)))

    def test_not_a_msgsnap(self) -> None:
        """Anything but a MsgSnap to another member is a ValueError."""
        self.assertRaises(ValueError, self.sender.send_snapshot, heartbeat(1, 2), self.source)
        self.assertRaises(ValueError, self.sender.send_snapshot, msg_snap(1, 1), self.source)

    def test_remove_peer_cancels(self) -> None:
        """Removing the peer mid-stream fires False."""
        done = self.sender.send_snapshot(self.message, self.source)
        self.pump.pump()
        self.sender.remove_peer(2)
        self.assertEqual(self.successResultOf(done), False)


class LoopbackTransferTests(TestCase):
    """One transfer over real loopback TCP, bounded in time."""

    timeout = 30

    @defer.inlineCallbacks
    def test_loopback_transfer(self):
        """A snapshot of a few megabytes streams over 127.0.0.1 with the
        default chunk size and is installed byte for byte, then the MsgSnap
        is delivered."""
        from twisted.internet import reactor

        directory = SnapshotDirectory(self.mktemp())
        source = make_snapshot_file(self.mktemp(), keys=30000)
        batches: list[defer.Deferred] = [defer.Deferred(), defer.Deferred()]

        def on_messages(messages: list[Message]) -> None:
            """Fire the next waiting Deferred with each batch."""
            if batches:
                batches.pop(0).callback(messages)

        first, second = batches
        sender = PeerTransport(reactor, 1, CLUSTER_ID, "tcp://127.0.0.1:0", list, lambda peer: None)
        receiver = PeerTransport(
            reactor, 2, CLUSTER_ID, "tcp://127.0.0.1:0", on_messages, lambda peer: None,
            snapshot_directory=directory,
        )
        for transport in (sender, receiver):
            transport.startService()
            self.addCleanup(transport.stopService)
        port = (yield receiver.when_listening()).getHost().port
        receiver.add_peer(1, "tcp://127.0.0.1:1")
        sender.add_peer(2, f"tcp://127.0.0.1:{port}")
        # A message queued before the link is up arrives once it is up.
        sender.send([heartbeat(from_=1, to=2)])
        yield first
        message = msg_snap(from_=1, to=2)
        ok = yield sender.send_snapshot(message, source)
        self.assertTrue(ok)
        self.assertEqual((yield second), [message])
        self.assertEqual(read_bytes(directory.path_for(TERM, INDEX)), read_bytes(source))
