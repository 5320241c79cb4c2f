"""Tests for ``metastore.transport.protocol``: framing and connection rules.

Everything runs over ``StringTransport`` and ``task.Clock``: no sockets.
"""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from metastore.raft.types import Entry, Message, MessageType
from metastore.transport import protocol as wire
from metastore.transport.codec import (
    PROTOCOL_VERSION,
    Handshake,
    decode_batch,
    decode_handshake,
    encode_message,
)
from metastore.transport.protocol import (
    FRAME_TARGET_LENGTH,
    MAX_FRAME_LENGTH,
    MAX_HANDSHAKE_FRAME_LENGTH,
    MAX_MESSAGE_LENGTH,
    FrameKind,
    InboundPeerFactory,
    InboundPeerProtocol,
    OutboundPeerFactory,
    OutboundPeerProtocol,
    REJECTED_REMOVED,
    decode_rejected,
    handshake_frame,
    message_frames,
    rejected_frame,
)

from .strategies import sample_messages

LOCAL_ID = 1
CLUSTER_ID = 0xC0FFEE
MEMBERS = {1, 2, 3}


def raw_frame(kind: int, body: bytes) -> bytes:
    """A frame with any kind byte, bypassing the module's own framing."""
    return struct.pack(">I", len(body) + 1) + bytes((kind,)) + body


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split concatenated frames into (kind, body) pairs; asserts exactness."""
    frames = []
    position = 0
    while position < len(data):
        (length,) = struct.unpack_from(">I", data, position)
        start = position + 4
        frames.append((data[start], data[start + 1 : start + length]))
        position = start + length
    assert position == len(data), "trailing partial frame"
    return frames


def hello(from_id: int = 2, to_id: int = LOCAL_ID, cluster_id: int = CLUSTER_ID,
          version: int = PROTOCOL_VERSION) -> bytes:
    """A handshake frame, by default a valid one from member 2."""
    return handshake_frame(Handshake(version, cluster_id, from_id, to_id))


def batch(*messages: Message) -> bytes:
    """MESSAGES frames carrying ``messages``."""
    return message_frames([encode_message(m) for m in messages])


def heartbeat(from_: int = 2, to: int = LOCAL_ID, term: int = 1) -> Message:
    """A small valid message from ``from_`` to ``to``."""
    return Message(MessageType.MsgHeartbeat, to=to, from_=from_, term=term)


class InboundFixture(SynchronousTestCase):
    """An inbound factory on a Clock that records delivered batches."""

    def setUp(self) -> None:
        """Build the factory; deliveries go to ``self.delivered``."""
        self.clock = Clock()
        self.delivered: list[list[Message]] = []
        self.factory = InboundPeerFactory(
            self.clock, LOCAL_ID, CLUSTER_ID, MEMBERS.__contains__,
            self.delivered.append, handshake_timeout=5.0,
        )

    def accept(self) -> tuple[InboundPeerProtocol, StringTransport]:
        """A new accepted connection, before any byte arrives."""
        protocol = self.factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def assertDropped(self, transport: StringTransport) -> None:
        """The connection was closed by us."""
        self.assertTrue(transport.disconnecting, "connection was not dropped")

    def assertOpen(self, transport: StringTransport) -> None:
        """The connection is still open."""
        self.assertFalse(transport.disconnecting, "connection was dropped")


class InboundFramingTests(InboundFixture):
    """Frames are reassembled from any split of the byte stream."""

    def test_byte_by_byte(self) -> None:
        """A handshake and three batches fed one byte at a time arrive as
        three batches, in order, and the accepting side writes nothing."""
        protocol, transport = self.accept()
        b1 = [heartbeat(term=1)]
        b2 = sample_messages(to=LOCAL_ID, from_=2)
        b2 = [m for m in b2 if m.type not in wire.LOCAL_MESSAGE_TYPES]
        b3 = [heartbeat(term=3), heartbeat(term=4)]
        stream = hello() + batch(*b1) + batch(*b2) + batch(*b3)
        for i in range(len(stream)):
            protocol.dataReceived(stream[i : i + 1])
        self.assertEqual(self.delivered, [b1, b2, b3])
        self.assertEqual(protocol.peer_id, 2)
        self.assertEqual(transport.value(), b"")
        self.assertOpen(transport)

    def test_all_at_once(self) -> None:
        """Many frames in one read are all delivered."""
        protocol, transport = self.accept()
        protocol.dataReceived(hello() + b"".join(batch(heartbeat(term=t)) for t in range(50)))
        self.assertEqual([b[0].term for b in self.delivered], list(range(50)))
        self.assertOpen(transport)

    def test_empty_batch_not_delivered(self) -> None:
        """An empty batch is accepted and not passed on."""
        protocol, transport = self.accept()
        protocol.dataReceived(hello() + message_frames([]))
        self.assertEqual(self.delivered, [])
        self.assertOpen(transport)

    def test_oversized_prefix_after_handshake(self) -> None:
        """A length prefix above MAX_FRAME_LENGTH drops the connection at once,
        without waiting for (or buffering) the announced bytes."""
        protocol, transport = self.accept()
        protocol.dataReceived(hello())
        protocol.dataReceived(struct.pack(">I", MAX_FRAME_LENGTH + 1) + b"x" * 100)
        self.assertDropped(transport)
        protocol.dataReceived(batch(heartbeat()))
        self.assertEqual(self.delivered, [])

    def test_prefix_at_limit_waits(self) -> None:
        """A prefix of exactly MAX_FRAME_LENGTH is legal: the receiver waits."""
        protocol, transport = self.accept()
        protocol.dataReceived(hello() + struct.pack(">I", MAX_FRAME_LENGTH) + b"\x02")
        self.assertOpen(transport)

    def test_oversized_prefix_before_handshake(self) -> None:
        """Before the handshake, anything over MAX_HANDSHAKE_FRAME_LENGTH drops."""
        protocol, transport = self.accept()
        protocol.dataReceived(struct.pack(">I", MAX_HANDSHAKE_FRAME_LENGTH + 1))
        self.assertDropped(transport)

    def test_bad_frames_drop(self) -> None:
        """Empty frames, unknown kinds, reserved snapshot chunks, second
        handshakes and undecodable batches each drop the connection."""
        for bad in (
            raw_frame(0, b""),  # kind 0 is not a kind
            struct.pack(">I", 0),  # empty frame
            raw_frame(99, b"\x90"),
            raw_frame(FrameKind.SNAPSHOT_CHUNK, b"chunk"),
            hello(),
            raw_frame(FrameKind.MESSAGES, b"\xc1"),
            raw_frame(FrameKind.MESSAGES, b"\x92\x01\x91\x01"),
        ):
            protocol, transport = self.accept()
            protocol.dataReceived(hello())
            protocol.dataReceived(bad)
            self.assertDropped(transport)
            self.assertEqual(self.delivered, [], bad)

    def test_wrong_addresses_drop(self) -> None:
        """A message not from the handshake's member, not to us, or of a
        local-only type drops the connection and delivers nothing of its batch."""
        for bad in (
            heartbeat(from_=3),
            heartbeat(to=3),
            Message(MessageType.MsgHup, to=LOCAL_ID, from_=2),
            Message(MessageType.MsgUnreachable, to=LOCAL_ID, from_=2),
        ):
            protocol, transport = self.accept()
            protocol.dataReceived(hello() + batch(heartbeat(), bad))
            self.assertDropped(transport)
            self.assertEqual(self.delivered, [])

    def test_large_entry_frame(self) -> None:
        """A 1.5 MiB entry delivered in 64 KiB reads arrives intact."""
        protocol, transport = self.accept()
        data = bytes(range(256)) * 6144
        m = Message(MessageType.MsgApp, to=LOCAL_ID, from_=2, entries=(Entry(1, 1, data=data),))
        stream = hello() + batch(m)
        for i in range(0, len(stream), 65536):
            protocol.dataReceived(stream[i : i + 65536])
        self.assertEqual(self.delivered, [[m]])
        self.assertOpen(transport)


class HandshakeTests(InboundFixture):
    """Only a handshake from a current member of our cluster, to us, opens
    a connection; any other first frame drops it."""

    def test_refusals(self) -> None:
        """Other cluster, unknown member, wrong to_id, our own id, another
        version, and non-handshake first frames all drop; nothing delivered."""
        for first in (
            hello(cluster_id=CLUSTER_ID + 1),
            hello(from_id=9),
            hello(to_id=3),
            hello(from_id=LOCAL_ID),
            hello(version=PROTOCOL_VERSION + 1),
            batch(heartbeat()),
            raw_frame(FrameKind.HANDSHAKE, b"\x93\x01\x02\x03"),
        ):
            protocol, transport = self.accept()
            protocol.dataReceived(first + batch(heartbeat()))
            self.assertDropped(transport)
            self.assertIsNone(protocol.peer_id)
        self.assertEqual(self.delivered, [])
        self.assertEqual(self.factory.connections, {})

    def test_refusal_reasons(self) -> None:
        """handshake_refusal names what is wrong, and accepts a good one."""
        refuse = self.factory.handshake_refusal
        self.assertIsNone(refuse(Handshake(PROTOCOL_VERSION, CLUSTER_ID, 2, LOCAL_ID)))
        self.assertIn("cluster", refuse(Handshake(PROTOCOL_VERSION, 7, 2, LOCAL_ID)))
        self.assertIn("not a member", refuse(Handshake(PROTOCOL_VERSION, CLUSTER_ID, 9, LOCAL_ID)))
        self.assertIn("addressed to", refuse(Handshake(PROTOCOL_VERSION, CLUSTER_ID, 2, 3)))
        self.assertIn("version", refuse(Handshake(9, CLUSTER_ID, 2, LOCAL_ID)))

    def test_timeout(self) -> None:
        """A connection that sends no handshake within the timeout is dropped;
        one that did is kept."""
        silent, silent_transport = self.accept()
        polite, polite_transport = self.accept()
        polite.dataReceived(hello())
        self.clock.advance(4.9)
        self.assertOpen(silent_transport)
        self.clock.advance(0.2)
        self.assertDropped(silent_transport)
        self.assertOpen(polite_transport)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timer_cancelled_on_loss(self) -> None:
        """A connection lost before its handshake leaves no timer behind."""
        protocol, transport = self.accept()
        protocol.connectionLost(None)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_newer_connection_replaces_older(self) -> None:
        """A second accepted connection from a member closes the first."""
        old, old_transport = self.accept()
        old.dataReceived(hello())
        new, new_transport = self.accept()
        new.dataReceived(hello())
        self.assertDropped(old_transport)
        self.assertOpen(new_transport)
        old.connectionLost(None)
        self.assertIs(self.factory.connections[2], new)

    def test_drop_member_and_all(self) -> None:
        """drop_member closes that member's connection; drop_all closes every
        open one, handshaken or not."""
        two, two_transport = self.accept()
        two.dataReceived(hello(from_id=2))
        three, three_transport = self.accept()
        three.dataReceived(hello(from_id=3))
        stranger, stranger_transport = self.accept()
        self.factory.drop_member(2, "removed")
        self.assertDropped(two_transport)
        self.assertOpen(three_transport)
        self.factory.drop_all("stopping")
        self.assertDropped(three_transport)
        self.assertDropped(stranger_transport)


class RemovedMemberTests(SynchronousTestCase):
    """A removed member's handshake is answered with REJECTED, then closed."""

    def test_removed_member_is_told(self) -> None:
        """The acceptor writes one REJECTED frame naming the removal."""
        factory = InboundPeerFactory(
            Clock(), LOCAL_ID, CLUSTER_ID, lambda member_id: False, lambda batch: None,
            handshake_timeout=5.0, was_removed=lambda member_id: member_id == 3,
        )
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(handshake_frame(Handshake(PROTOCOL_VERSION, CLUSTER_ID, 3, LOCAL_ID)))
        [(kind, body)] = parse_frames(transport.value())
        self.assertEqual((kind, decode_rejected(body)[0]), (FrameKind.REJECTED, REJECTED_REMOVED))
        self.assertTrue(transport.disconnecting)

    def test_stranger_is_not_told(self) -> None:
        """A non-member that was never removed gets no answer at all."""
        factory = InboundPeerFactory(
            Clock(), LOCAL_ID, CLUSTER_ID, lambda member_id: False, lambda batch: None,
            handshake_timeout=5.0, was_removed=lambda member_id: False,
        )
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(handshake_frame(Handshake(PROTOCOL_VERSION, CLUSTER_ID, 3, LOCAL_ID)))
        self.assertEqual(transport.value(), b"")
        self.assertTrue(transport.disconnecting)


class StrangerTests(InboundFixture):
    """Garbage from a stranger drops that connection and nothing else."""

    @settings(max_examples=200, deadline=None)
    @given(garbage=st.binary(min_size=1, max_size=300), chunk=st.integers(1, 64))
    def test_random_bytes(self, garbage: bytes, chunk: int) -> None:
        """Random bytes on one connection never raise, never deliver, and a
        member's connection beside it keeps delivering."""
        delivered_before = len(self.delivered)
        member, member_transport = self.accept()
        member.dataReceived(hello(from_id=3))
        stranger, _ = self.accept()
        for i in range(0, len(garbage), chunk):
            stranger.dataReceived(garbage[i : i + chunk])
        member.dataReceived(batch(heartbeat(from_=3)))
        self.assertEqual(self.delivered[delivered_before:], [[heartbeat(from_=3)]])
        self.assertOpen(member_transport)
        stranger.connectionLost(None)
        member.connectionLost(None)


class Link:
    """A stand-in link recording what an outbound protocol reports."""

    def __init__(self) -> None:
        """Start with no events."""
        self.events: list[tuple[str, OutboundPeerProtocol]] = []

    def connection_ready(self, protocol: OutboundPeerProtocol) -> None:
        """Record readiness."""
        self.events.append(("ready", protocol))

    def connection_writable(self, protocol: OutboundPeerProtocol) -> None:
        """Record a resume."""
        self.events.append(("writable", protocol))

    def connection_lost(self, protocol: OutboundPeerProtocol) -> None:
        """Record a loss."""
        self.events.append(("lost", protocol))

    def connection_rejected(self, protocol: OutboundPeerProtocol, code: int, text: str) -> None:
        """Record a rejection."""
        self.events.append(("rejected", code, text))


class OutboundTests(SynchronousTestCase):
    """The dialing side writes a handshake, then only what it is told."""

    def setUp(self) -> None:
        """A connected outbound protocol for member 1 dialing member 2."""
        self.link = Link()
        factory = OutboundPeerFactory(self.link, Handshake(PROTOCOL_VERSION, CLUSTER_ID, 1, 2))
        self.protocol = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def test_handshake_first(self) -> None:
        """The first bytes are exactly one handshake frame, then readiness."""
        [(kind, body)] = parse_frames(self.transport.value())
        self.assertEqual(kind, FrameKind.HANDSHAKE)
        self.assertEqual(decode_handshake(body), Handshake(PROTOCOL_VERSION, CLUSTER_ID, 1, 2))
        self.assertEqual(self.link.events, [("ready", self.protocol)])
        self.assertTrue(self.protocol.writable)

    def test_backpressure(self) -> None:
        """When the transport pauses its producer the protocol is not
        writable; on resume it is again and the link hears of it."""
        self.transport.producer.pauseProducing()
        self.assertFalse(self.protocol.writable)
        self.transport.producer.resumeProducing()
        self.assertTrue(self.protocol.writable)
        self.assertEqual(self.link.events[-1], ("writable", self.protocol))

    def test_received_frames_other_than_rejected_drop(self) -> None:
        """A MESSAGES frame from the accepting side drops the connection."""
        self.protocol.dataReceived(message_frames([b""]))
        self.assertTrue(self.transport.disconnecting)
        self.assertFalse(self.protocol.writable)

    def test_oversized_reply_drops(self) -> None:
        """A length prefix over the small reply limit drops at once."""
        self.protocol.dataReceived(struct.pack(">I", MAX_HANDSHAKE_FRAME_LENGTH + 1))
        self.assertTrue(self.transport.disconnecting)

    def test_rejected_frame_reaches_the_link(self) -> None:
        """A REJECTED frame, fed byte by byte, is reported and then drops."""
        frame = rejected_frame(REJECTED_REMOVED, "member 1 was removed")
        for i in range(len(frame)):
            self.protocol.dataReceived(frame[i:i + 1])
        self.assertEqual(self.link.events[-1], ("rejected", REJECTED_REMOVED, "member 1 was removed"))
        self.assertTrue(self.transport.disconnecting)

    def test_loss_reported(self) -> None:
        """Connection loss reaches the link and ends writability."""
        self.protocol.connectionLost(None)
        self.assertEqual(self.link.events[-1], ("lost", self.protocol))
        self.assertFalse(self.protocol.writable)


class MessageFramesTests(SynchronousTestCase):
    """message_frames packs encoded messages into bounded frames."""

    def test_split_at_target(self) -> None:
        """Messages beyond FRAME_TARGET_LENGTH start new frames; the frames
        decode back to the messages in order; none exceeds MAX_FRAME_LENGTH."""
        data = b"x" * (1024 * 1024)
        messages = [
            Message(MessageType.MsgApp, to=2, from_=1, index=i, entries=(Entry(1, i, data=data),))
            for i in range(10)
        ]
        frames = parse_frames(message_frames([encode_message(m) for m in messages]))
        self.assertGreater(len(frames), 2)
        decoded = []
        for kind, body in frames:
            self.assertEqual(kind, FrameKind.MESSAGES)
            self.assertLessEqual(len(body) + 1, FRAME_TARGET_LENGTH + 64)
            decoded.extend(decode_batch(body))
        self.assertEqual(decoded, messages)

    def test_too_large(self) -> None:
        """A message that cannot fit any frame is refused."""
        self.assertRaises(ValueError, message_frames, [b"\x00" * (MAX_MESSAGE_LENGTH + 1)])
