"""The peer wire protocol: length-prefixed frames over TCP.

Frame format (every frame, both directions)::

    +----------------------+------------+------------------------+
    | length: uint32, BE   | kind: u8   | body: length - 1 bytes |
    +----------------------+------------+------------------------+

``length`` counts the kind byte and the body.  Kinds (:class:`FrameKind`):

- ``HANDSHAKE``: msgpack ``[version, cluster_id, from_id, to_id]``; the
  first frame of every connection and only then.
- ``MESSAGES``: a batch of Raft messages (see ``codec``).
- ``SNAPSHOT_CHUNK``: one piece of a snapshot file (see ``codec`` and
  ``snapshots``); accepted only by a member that was given a snapshot
  directory, otherwise it drops the connection.
- ``REJECTED``: msgpack ``[code, text]``, the accepting side's last word
  before it closes (e.g. "you were removed").
- ``CHALLENGE`` and ``PROOF``: only with a cluster secret
  (``--peer-token-file``, see ``metastore.security.peer_token``): the
  acceptor's first frame is a CHALLENGE (a nonce); the dialer answers with
  its HANDSHAKE and a PROOF (msgpack ``[nonce, mac]``), and the acceptor
  with its own PROOF (``[b"", mac]``) before the dialer sends anything else.

Connections are one-way, like etcd's stream pipelines: the dialing side
(:class:`OutboundPeerProtocol`) writes a handshake and then message batches
and never reads; the accepting side (:class:`InboundPeerProtocol`) reads and
never writes (but for the challenge and proof of a cluster secret, and a
REJECTED frame).  Two members therefore talk over two TCP connections, one each
way, and neither side ever has to decide who dials whom.

A peer's bad bytes (an unknown kind, an invalid body, a length above the
limit, a handshake naming another cluster, another member or an unknown
member) drop that one connection, with one log line, and nothing else.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from typing import Callable, Optional, Protocol, Sequence

import msgpack
from OpenSSL import SSL
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import Int32StringReceiver
from zope.interface import implementer

from metastore.raft import LOCAL_MESSAGE_TYPES
from metastore.security import peer_token
from metastore.security.refusals import RefusalLog
from metastore.raft.types import Message, MessageType

from .codec import (
    PROTOCOL_VERSION,
    Handshake,
    MalformedFrame,
    batch_body,
    decode_batch,
    decode_handshake,
    decode_snapshot_chunk,
    encode_handshake,
    snapshot_chunk_parts,
)

log = Logger()


class FrameKind(enum.IntEnum):
    """The first byte of a frame: what its body is."""

    HANDSHAKE = 1
    MESSAGES = 2
    SNAPSHOT_CHUNK = 3
    """A piece of a snapshot file being streamed."""
    REJECTED = 4
    """The accepting side refuses the dialer."""
    CHALLENGE = 5
    """The acceptor's nonce, when the cluster has a secret."""
    PROOF = 6
    """``[nonce, mac]``: proof of knowing the cluster secret."""


MAX_FRAME_LENGTH = 64 * 1024 * 1024
"""The largest frame accepted after the handshake, in bytes.

A frame must hold at least one whole message, and one MsgApp can carry up to
raft's per-message size limit plus one oversized entry (entries run to about
1.5 MiB), so the limit must be well above that; 64 MiB leaves room for a far
larger per-message limit.  It is also the most memory one authenticated peer
can make us buffer for one frame.  Snapshots never travel as one frame.
"""

MAX_HANDSHAKE_FRAME_LENGTH = 256
"""The largest frame accepted before the handshake: a stranger can make us
buffer only this much (a real handshake is under 40 bytes)."""

FRAME_TARGET_LENGTH = 4 * 1024 * 1024
"""Senders start a new frame once one reaches this size.  Smaller frames let
the receiver decode and deliver the first messages of a big write sooner."""

_PREFIX = struct.Struct(">I")
_BATCH_OVERHEAD = 1 + len(batch_body([])) + 4  # kind, envelope, array32 header

MAX_MESSAGE_LENGTH = MAX_FRAME_LENGTH - _BATCH_OVERHEAD
"""The largest single encoded message a sender may put in a frame."""

def handshake_frame(handshake: Handshake) -> bytes:
    """Return the complete frame (prefix included) carrying ``handshake``."""
    return _frame(FrameKind.HANDSHAKE, encode_handshake(handshake))


def message_frames(encoded_messages: Sequence[bytes]) -> bytes:
    """Return complete MESSAGES frames carrying the encoded messages in order.

    Messages are packed greedily, a new frame starting once one reaches
    :data:`FRAME_TARGET_LENGTH`; the result is meant for a single write.
    Every message must be at most :data:`MAX_MESSAGE_LENGTH` bytes (a
    ``ValueError`` otherwise: the caller checks before queueing).
    """
    frames: list[bytes] = []
    group: list[bytes] = []
    size = 0
    for encoded in encoded_messages:
        if len(encoded) > MAX_MESSAGE_LENGTH:
            raise ValueError(f"a message of {len(encoded)} bytes cannot be framed")
        if group and size + len(encoded) > FRAME_TARGET_LENGTH:
            frames.append(_frame(FrameKind.MESSAGES, batch_body(group)))
            group, size = [], 0
        group.append(encoded)
        size += len(encoded)
    if group or not frames:
        frames.append(_frame(FrameKind.MESSAGES, batch_body(group)))
    return b"".join(frames)


REJECTED_REMOVED = 1
"""Reason code of a REJECTED frame: the dialing member was removed."""


def rejected_frame(code: int, text: str) -> bytes:
    """A REJECTED frame: the acceptor's last word before it closes."""
    return _frame(FrameKind.REJECTED, msgpack.packb([code, text]))


def proof_frame(nonce: bytes, mac: bytes) -> bytes:
    """A PROOF frame (see ``metastore.security.peer_token``)."""
    return _frame(FrameKind.PROOF, msgpack.packb([nonce, mac]))


def decode_proof(body: memoryview) -> tuple[bytes, bytes]:
    """``(nonce, mac)`` of a PROOF frame; raises MalformedFrame."""
    try:
        nonce, mac = msgpack.unpackb(body)
    except Exception:
        raise MalformedFrame("undecodable PROOF frame") from None
    if not isinstance(nonce, bytes) or not isinstance(mac, bytes) or len(nonce) > 64 or len(mac) > 64:
        raise MalformedFrame("malformed PROOF frame")
    return nonce, mac


def decode_rejected(body: memoryview) -> tuple[int, str]:
    """``(code, text)`` of a REJECTED frame; raises MalformedFrame."""
    try:
        code, text = msgpack.unpackb(body)
    except Exception:
        raise MalformedFrame("undecodable REJECTED frame") from None
    if not isinstance(code, int) or not isinstance(text, str):
        raise MalformedFrame("malformed REJECTED frame")
    return code, text


def snapshot_chunk_frame(term: int, index: int, offset: int, data: bytes, is_last: bool) -> bytes:
    """Return the complete SNAPSHOT_CHUNK frame carrying ``data`` of snapshot
    ``index`` (``term``) at byte ``offset``, copying ``data`` once."""
    head, tail = snapshot_chunk_parts(term, index, offset, len(data), is_last)
    length = 1 + len(head) + len(data) + len(tail)
    return b"".join((_PREFIX.pack(length), bytes((FrameKind.SNAPSHOT_CHUNK,)), head, data, tail))


def _frame(kind: FrameKind, body: bytes) -> bytes:
    return b"".join((_PREFIX.pack(len(body) + 1), bytes((kind,)), body))


class PeerProtocol(Int32StringReceiver):
    """Framing shared by both directions: frames in, :meth:`frameReceived` out.

    ``dataReceived`` is replaced by a linear-time version: the inherited one
    concatenates its whole buffer on every read, which is quadratic for the
    multi-megabyte frames of a busy follower.  After :meth:`drop` nothing
    more is parsed.
    """

    MAX_LENGTH = MAX_FRAME_LENGTH

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._frame_length: Optional[int] = None
        self.dropped = False

    def dataReceived(self, data: bytes) -> None:
        """Buffer ``data`` and hand every complete frame to stringReceived."""
        if self.dropped:
            return
        buffer = self._buffer
        buffer += data
        position = 0
        while not self.dropped:
            if self._frame_length is None:
                if len(buffer) - position < 4:
                    break
                (length,) = _PREFIX.unpack_from(buffer, position)
                if length > self.MAX_LENGTH:
                    self.lengthLimitExceeded(length)
                    break
                self._frame_length = length
                position += 4
            end = position + self._frame_length
            if len(buffer) < end:
                break
            frame = bytes(memoryview(buffer)[position:end])
            position = end
            self._frame_length = None
            self.stringReceived(frame)
        if self.dropped:
            self._buffer = bytearray()
        else:
            del buffer[:position]

    def lengthLimitExceeded(self, length: int) -> None:
        """Drop the connection: the peer announced a frame over the limit."""
        self.drop(f"frame of {length} bytes exceeds the limit of {self.MAX_LENGTH}")

    def stringReceived(self, frame: bytes) -> None:
        """Split a frame into kind and body; empty or unknown kinds drop."""
        if not frame:
            self.drop("empty frame")
            return
        try:
            kind = FrameKind(frame[0])
        except ValueError:
            self.drop(f"unknown frame kind {frame[0]}")
            return
        try:
            self.frameReceived(kind, memoryview(frame)[1:])
        except MalformedFrame as e:
            self.drop(str(e))

    def frameReceived(self, kind: FrameKind, body: memoryview) -> None:
        """Act on one frame; raise MalformedFrame to drop the connection."""
        raise NotImplementedError

    def drop(self, reason: str) -> None:
        """Close this connection for a protocol violation, logging one line."""
        if self.dropped:
            return
        self.dropped = True
        self.log_drop(reason)
        if self.transport is not None:
            self.transport.loseConnection()

    def log_drop(self, reason: str) -> None:
        """Log why this connection is dropped (one line)."""
        log.info("Dropping peer connection {peer}: {reason}", peer=self.describe_peer(), reason=reason)

    def describe_peer(self) -> str:
        """A short text naming the remote end, for log lines."""
        try:
            return str(self.transport.getPeer())
        except Exception:
            return "(unknown address)"

    def _tune_socket(self) -> None:
        # Raft latency is round trips of small messages: never wait for Nagle.
        for option in ("setTcpNoDelay", "setTcpKeepAlive"):
            setter = getattr(self.transport, option, None)
            if setter is not None:
                setter(True)


class InboundPeerProtocol(PeerProtocol):
    """The accepting side of a peer connection: checks, decodes, delivers.

    The first frame must be a handshake that names our cluster, our id, a
    current member other than us and our protocol version, and it must come
    within the factory's handshake timeout; before it, frames are limited to
    :data:`MAX_HANDSHAKE_FRAME_LENGTH`.  Then every MESSAGES frame is decoded
    and each message checked to be from that member, to us, and not a local
    message type, before the whole batch goes to ``on_messages``.

    With the factory's ``incoming_snapshots`` set, SNAPSHOT_CHUNK frames are
    written to a part file; after the last chunk, reading stops and later
    frames are held until the file is verified and renamed, so a MsgSnap
    reaches ``on_messages`` only once its file is final.  A MsgSnap is
    delivered only right after the stream of its own snapshot (same term and
    index) was accepted on this connection, and is dropped otherwise.
    Without ``incoming_snapshots``, chunks drop the connection and MsgSnap
    passes through unchecked.
    """

    def __init__(self, factory: InboundPeerFactory) -> None:
        super().__init__()
        self.factory = factory
        self.peer_id: Optional[int] = None
        self.MAX_LENGTH = MAX_HANDSHAKE_FRAME_LENGTH
        self._handshake_timeout: Optional[IDelayedCall] = None
        self._snapshot_receiver = None
        self._verifying_snapshot = False
        self._held_frames: deque[tuple[FrameKind, bytes]] = deque()
        self._accepted_snapshot: Optional[tuple[int, int]] = None
        self._closed = False
        self._challenge = b""
        self._unproven: Optional[tuple[Handshake, bytes]] = None

    def connectionMade(self) -> None:
        """Start the handshake timer; with a cluster secret, send the challenge."""
        self._tune_socket()
        self._handshake_timeout = self.factory.clock.callLater(
            self.factory.handshake_timeout, self.drop, "no handshake in time"
        )
        self.factory.connection_made(self)
        if self.factory.secret is not None:
            self._challenge = peer_token.new_nonce()
            self.transport.write(_frame(FrameKind.CHALLENGE, self._challenge))

    def connectionLost(self, reason: object = None) -> None:
        """Forget this connection and discard an unfinished snapshot stream;
        a connection lost before its handshake (a failed TLS handshake) is a
        refusal, logged as such."""
        if self.peer_id is None and not self.dropped and not self._closed:
            failure = getattr(reason, "value", None)
            if isinstance(failure, SSL.Error):
                self.log_drop(f"TLS handshake failed: {failure}")
        self._closed = True
        self._cancel_timeout()
        self._abandon_snapshot("connection lost")
        self._held_frames.clear()
        self.factory.connection_lost(self)

    def drop(self, reason: str) -> None:
        """Close the connection, deleting an unfinished snapshot at once."""
        super().drop(reason)
        self._abandon_snapshot(f"connection dropped: {reason}")
        self._held_frames.clear()

    def frameReceived(self, kind: FrameKind, body: memoryview) -> None:
        """Accept one handshake, then message batches and snapshot chunks;
        anything else drops.  Frames arriving while a received snapshot is
        being verified are held, in order, until it is done."""
        if self._verifying_snapshot:
            self._held_frames.append((kind, bytes(body)))
        elif self.peer_id is None and self._unproven is not None:
            if kind is not FrameKind.PROOF:
                raise MalformedFrame(f"expected a proof of the cluster token, got {kind.name}")
            self._check_proof(*decode_proof(body))
        elif self.peer_id is None:
            if kind is not FrameKind.HANDSHAKE:
                raise MalformedFrame(f"expected a handshake, got {kind.name}")
            handshake = decode_handshake(body)
            if self.factory.secret is None:
                self._accept_handshake(handshake)
            else:
                self._unproven = (handshake, bytes(body))
        elif kind is FrameKind.MESSAGES:
            self._deliver(decode_batch(body))
        elif kind is FrameKind.SNAPSHOT_CHUNK:
            self._receive_chunk(body)
        elif kind is FrameKind.HANDSHAKE:
            raise MalformedFrame("a second handshake")
        else:
            raise MalformedFrame(f"{kind.name} frames are not accepted from a dialer")

    def _receive_chunk(self, body: memoryview) -> None:
        incoming = self.factory.incoming_snapshots
        if incoming is None:
            raise MalformedFrame("this member does not accept snapshot streams")
        chunk = decode_snapshot_chunk(body)
        if self._snapshot_receiver is None:
            self._snapshot_receiver = incoming.receiver()
        part = self._snapshot_receiver.receive(chunk)
        if part is None:
            return
        self._verifying_snapshot = True
        self._accepted_snapshot = None
        # Stop reading: what follows (at least the MsgSnap) must wait anyway,
        # and this bounds what is held meanwhile.
        self.transport.pauseProducing()
        incoming.accept(part).addCallback(self._snapshot_verified, (chunk.term, chunk.index))

    def _snapshot_verified(self, accepted: bool, snapshot: tuple[int, int]) -> None:
        self._verifying_snapshot = False
        if self._closed or self.dropped:
            self._held_frames.clear()
            return
        if accepted:
            self._accepted_snapshot = snapshot
        held = self._held_frames
        while held and not self._verifying_snapshot and not self.dropped:
            kind, body = held.popleft()
            try:
                self.frameReceived(kind, memoryview(body))
            except MalformedFrame as e:
                self.drop(str(e))
        if not self._verifying_snapshot and not self.dropped:
            self.transport.resumeProducing()

    def _abandon_snapshot(self, reason: str) -> None:
        if self._snapshot_receiver is not None:
            self._snapshot_receiver.abandon(reason)

    def _check_proof(self, nonce: bytes, mac: bytes) -> None:
        handshake, body = self._unproven
        secret = self.factory.secret
        if len(nonce) != peer_token.NONCE_BYTES or not peer_token.proof_matches(
                secret, b"dialer", self._challenge, nonce, body, mac):
            raise MalformedFrame("wrong proof of the cluster token")
        self._accept_handshake(handshake)
        answer = peer_token.proof(secret, b"acceptor", self._challenge, nonce, body)
        self.transport.write(proof_frame(b"", answer))

    def _accept_handshake(self, handshake: Handshake) -> None:
        refusal = self.factory.handshake_refusal(handshake)
        if refusal is not None:
            if self.factory.was_removed(handshake.from_id) and handshake.cluster_id == self.factory.cluster_id:
                # Tell a removed member so, or it would dial us forever.
                self.transport.write(rejected_frame(REJECTED_REMOVED, f"member {handshake.from_id} was removed"))
            raise MalformedFrame(f"handshake refused: {refusal}")
        self._cancel_timeout()
        self.peer_id = handshake.from_id
        self.MAX_LENGTH = MAX_FRAME_LENGTH
        self.factory.handshake_accepted(self)

    def _deliver(self, batch: list[Message]) -> None:
        local_id = self.factory.local_id
        for m in batch:
            if m.from_ != self.peer_id or m.to != local_id:
                raise MalformedFrame(
                    f"message from {m.from_} to {m.to} on the link "
                    f"from {self.peer_id} to {local_id}"
                )
            if m.type in LOCAL_MESSAGE_TYPES:
                raise MalformedFrame(f"local-only message type {m.type.name}")
        if self.factory.incoming_snapshots is not None:
            batch = [m for m in batch if m.type is not MessageType.MsgSnap or self._snapshot_ready(m)]
        if batch:
            self.factory.on_messages(batch)

    def _snapshot_ready(self, message: Message) -> bool:
        """True (once) if ``message``'s snapshot file was just accepted here."""
        meta = message.snapshot.metadata if message.snapshot is not None else None
        if meta is not None and self._accepted_snapshot == (meta.term, meta.index):
            self._accepted_snapshot = None
            return True
        log.warn(
            "Dropping MsgSnap from {peer}: no accepted snapshot file for it",
            peer=self.peer_id,
        )
        return False

    def _cancel_timeout(self) -> None:
        if self._handshake_timeout is not None and self._handshake_timeout.active():
            self._handshake_timeout.cancel()
        self._handshake_timeout = None

    def log_drop(self, reason: str) -> None:
        """Before the handshake is accepted the other side is a stranger:
        one line per address per interval (``RefusalLog``)."""
        if self.peer_id is not None:
            super().log_drop(reason)
            return
        try:
            address = self.transport.getPeer().host
        except Exception:
            address = "(unknown address)"
        self.factory.refusals.refused(address, reason)

    def describe_peer(self) -> str:
        """The remote address, and the member id once the handshake is in."""
        where = super().describe_peer()
        return where if self.peer_id is None else f"{where} (member {self.peer_id})"


class InboundPeerFactory(Factory):
    """Builds :class:`InboundPeerProtocol` for the listening port, and keeps
    track of accepted connections: at most one per member, the newest."""

    protocol = InboundPeerProtocol  # type: ignore[assignment]
    noisy = False

    def __init__(
        self,
        clock: IReactorTime,
        local_id: int,
        cluster_id: int,
        is_member: Callable[[int], bool],
        on_messages: Callable[[list[Message]], None],
        handshake_timeout: float,
        was_removed: Callable[[int], bool] = lambda member_id: False,
        incoming_snapshots: Optional[object] = None,
        secret: Optional[bytes] = None,
    ) -> None:
        """See :class:`InboundPeerProtocol`; ``incoming_snapshots`` is a
        ``snapshots.IncomingSnapshots``, or None to refuse snapshot streams;
        ``secret`` the cluster secret a dialer must prove it knows (None:
        no proof asked)."""
        self.secret = secret
        self.refusals = RefusalLog(clock, "peer connection")
        self.incoming_snapshots = incoming_snapshots
        self.clock = clock
        self.was_removed = was_removed
        self.local_id = local_id
        self.cluster_id = cluster_id
        self.is_member = is_member
        self.on_messages = on_messages
        self.handshake_timeout = handshake_timeout
        self.connections: dict[int, InboundPeerProtocol] = {}
        """Connections whose handshake was accepted, by member id."""
        self._open: set[InboundPeerProtocol] = set()

    def buildProtocol(self, addr: object) -> InboundPeerProtocol:
        """Return a new accepting-side protocol bound to this factory."""
        return InboundPeerProtocol(self)

    def handshake_refusal(self, handshake: Handshake) -> Optional[str]:
        """Why ``handshake`` is refused, or None when it is acceptable."""
        if handshake.version != PROTOCOL_VERSION:
            return f"protocol version {handshake.version}, expected {PROTOCOL_VERSION}"
        if handshake.cluster_id != self.cluster_id:
            return f"cluster {handshake.cluster_id:x}, expected {self.cluster_id:x}"
        if handshake.to_id != self.local_id:
            return f"addressed to member {handshake.to_id}, this is {self.local_id}"
        if handshake.from_id == self.local_id:
            return f"claims to be this member ({self.local_id})"
        if not self.is_member(handshake.from_id):
            return f"{handshake.from_id} is not a member"
        return None

    def connection_made(self, protocol: InboundPeerProtocol) -> None:
        """Remember an open connection, so stopping can close it."""
        self._open.add(protocol)

    def handshake_accepted(self, protocol: InboundPeerProtocol) -> None:
        """Make ``protocol`` the connection of its member, closing an older
        one (the member reconnected; the old socket is stale)."""
        assert protocol.peer_id is not None
        older = self.connections.get(protocol.peer_id)
        self.connections[protocol.peer_id] = protocol
        if older is not None and older is not protocol:
            older.drop("replaced by a newer connection from the same member")

    def connection_lost(self, protocol: InboundPeerProtocol) -> None:
        """Forget a closed connection."""
        self._open.discard(protocol)
        if protocol.peer_id is not None and self.connections.get(protocol.peer_id) is protocol:
            del self.connections[protocol.peer_id]

    def drop_member(self, member_id: int, reason: str) -> None:
        """Close the accepted connection from ``member_id``, if any."""
        protocol = self.connections.pop(member_id, None)
        if protocol is not None:
            protocol.drop(reason)

    def drop_all(self, reason: str) -> None:
        """Close every open connection, accepted or not."""
        for protocol in list(self._open):
            protocol.drop(reason)


class OutboundLink(Protocol):
    """What an :class:`OutboundPeerProtocol` reports to the link that owns it."""

    def connection_ready(self, protocol: OutboundPeerProtocol) -> None:
        """The handshake is written; batches may follow."""

    def connection_writable(self, protocol: OutboundPeerProtocol) -> None:
        """The transport drained below its high-water mark again."""

    def connection_lost(self, protocol: OutboundPeerProtocol) -> None:
        """The connection is gone."""

    def connection_rejected(self, protocol: OutboundPeerProtocol, code: int, text: str) -> None:
        """The peer refused us with a REJECTED frame."""


@implementer(IPushProducer)
class _WritePressure:
    """Registered with the transport to learn when its write buffer is over
    (paused) or back under (resumed) the transport's high-water mark."""

    def __init__(self, on_resume: Callable[[], None]) -> None:
        self.paused = False
        self._on_resume = on_resume

    def pauseProducing(self) -> None:
        """The transport's buffer is full: stop writing."""
        self.paused = True

    def resumeProducing(self) -> None:
        """The transport's buffer drained: writing may go on."""
        self.paused = False
        self._on_resume()

    def stopProducing(self) -> None:
        """The connection is closing: never write again."""
        self.paused = True


class OutboundPeerProtocol(PeerProtocol):
    """The dialing side of a peer connection: writes, and reads nothing but
    one small REJECTED frame (and, with a cluster secret, the acceptor's
    CHALLENGE and PROOF).

    On connect it writes the handshake and tells its link it is ready; with
    a cluster secret it first waits for the challenge, answers it, and is
    ready only once the acceptor has proven it knows the secret too (within
    ``factory.handshake_timeout``).  It is
    :attr:`writable` while connected and the transport's buffer is under its
    high-water mark.  Any other byte received is a violation and drops it.
    """

    MAX_LENGTH = MAX_HANDSHAKE_FRAME_LENGTH

    def __init__(self, link: OutboundLink, handshake: bytes, secret: Optional[bytes] = None,
                 handshake_body: bytes = b"") -> None:
        super().__init__()
        self._link = link
        self._handshake = handshake
        self._handshake_body = handshake_body
        self._secret = secret
        self._challenge: Optional[bytes] = None
        self._nonce = b""
        self._proof_timeout: Optional[IDelayedCall] = None
        self._pressure = _WritePressure(self._resumed)
        self._open = False

    @property
    def writable(self) -> bool:
        """True when a write now goes out without piling up in memory."""
        return self._open and not self.dropped and not self._pressure.paused

    def connectionMade(self) -> None:
        """Write the handshake, then report readiness to the link (with a
        cluster secret: wait for the challenge first)."""
        self._tune_socket()
        self.transport.registerProducer(self._pressure, True)
        if self._secret is None:
            self._ready()
            return
        factory = self.factory
        self._proof_timeout = factory.clock.callLater(
            factory.handshake_timeout, self.drop, "the peer did not prove it knows the cluster token in time")

    def _ready(self) -> None:
        self._open = True
        if self._secret is None:
            self.transport.write(self._handshake)
        self._link.connection_ready(self)

    def connectionLost(self, reason: object = None) -> None:
        """Report the loss to the link."""
        if self._proof_timeout is not None and self._proof_timeout.active():
            self._proof_timeout.cancel()
        self._open = False
        self._pressure.stopProducing()
        self._link.connection_lost(self)

    def frameReceived(self, kind: FrameKind, body: memoryview) -> None:
        """A REJECTED frame is reported to the link; a CHALLENGE and then a
        PROOF are expected with a cluster secret; anything else drops."""
        if self._secret is not None and not self._open and kind is FrameKind.CHALLENGE and self._challenge is None:
            self._answer_challenge(bytes(body))
            return
        if self._secret is not None and not self._open and kind is FrameKind.PROOF and self._challenge is not None:
            _, mac = decode_proof(body)
            if not peer_token.proof_matches(self._secret, b"acceptor", self._challenge, self._nonce,
                                            self._handshake_body, mac):
                raise MalformedFrame("the peer's proof of the cluster token is wrong")
            self._proof_timeout.cancel()
            self._ready()
            return
        if kind is not FrameKind.REJECTED:
            raise MalformedFrame(f"the accepting side sent a {kind.name} frame on a one-way link")
        code, text = decode_rejected(body)
        self._link.connection_rejected(self, code, text)
        self.drop(f"rejected by the peer: {text}")

    def _answer_challenge(self, challenge: bytes) -> None:
        if len(challenge) != peer_token.NONCE_BYTES:
            raise MalformedFrame("malformed CHALLENGE frame")
        self._challenge, self._nonce = challenge, peer_token.new_nonce()
        mac = peer_token.proof(self._secret, b"dialer", challenge, self._nonce, self._handshake_body)
        self.transport.write(self._handshake + proof_frame(self._nonce, mac))

    def write(self, data: bytes) -> None:
        """Write already-framed bytes in one transport write."""
        self.transport.write(data)

    def _resumed(self) -> None:
        if self.writable:
            self._link.connection_writable(self)


class OutboundPeerFactory(Factory):
    """Builds :class:`OutboundPeerProtocol` for one link (one peer)."""

    noisy = False

    def __init__(self, link: OutboundLink, handshake: Handshake, *, secret: Optional[bytes] = None,
                 clock: Optional[IReactorTime] = None, handshake_timeout: float = 5.0) -> None:
        """``secret``: the cluster secret to prove (and to demand proof of);
        then ``clock`` bounds the wait for the acceptor's answer."""
        self.link = link
        self.handshake_body = encode_handshake(handshake)
        self.handshake = handshake_frame(handshake)
        self.secret = secret
        self.clock = clock
        self.handshake_timeout = handshake_timeout

    def buildProtocol(self, addr: object) -> OutboundPeerProtocol:
        """Return a new dialing-side protocol for this factory's link."""
        protocol = OutboundPeerProtocol(self.link, self.handshake, self.secret, self.handshake_body)
        protocol.factory = self
        return protocol
