"""The peer transport service: one listener, one outbound link per peer.

:class:`PeerTransport` is what the node driver uses.  It listens on the
member's own peer URL (see ``protocol`` for the one-way connections), keeps
one :class:`PeerLink` per peer, and reports trouble to raft through a
``report_unreachable(peer_id)`` callback; raft recovers lost messages itself.

Nothing queues without bound: a link queues encoded messages only while it
is disconnected or its transport is over its high-water mark, up to
:attr:`TransportSettings.max_queued_messages` messages and
:attr:`TransportSettings.max_queued_bytes` bytes; beyond that messages are
dropped and the peer reported unreachable.

Snapshots travel as files (:meth:`PeerTransport.send_snapshot`, see
``snapshots``), never inside a message.
"""

from __future__ import annotations

import hashlib
import random as _random
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Optional

from twisted.application import service
from twisted.application.internet import ClientService, StreamServerEndpointService
from twisted.internet import defer
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    TCP6ClientEndpoint,
    TCP6ServerEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IProtocolFactory,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from metastore.raft.types import Message, MessageType

from .codec import PROTOCOL_VERSION, Handshake, encode_message
from .protocol import (
    MAX_MESSAGE_LENGTH,
    REJECTED_REMOVED,
    InboundPeerFactory,
    OutboundPeerFactory,
    OutboundPeerProtocol,
    message_frames,
)
from .snapshots import IncomingSnapshots, RunBlocking, SnapshotStream, deferred_to_reactor_threads
from .urls import is_ip_literal, is_ipv6_literal, parse_peer_url

if TYPE_CHECKING:
    from metastore.snapshots.format import SnapshotDirectory

log = Logger()


@dataclass(frozen=True, slots=True)
class TransportSettings:
    """Timing and bounds of a :class:`PeerTransport`; defaults suit a LAN."""

    initial_backoff: float = 0.05
    """Seconds before the first reconnect attempt after a failure or loss."""
    max_backoff: float = 2.0
    """Upper bound of the exponential backoff, before jitter."""
    backoff_factor: float = 2.0
    """Each consecutive failure multiplies the delay by this."""
    max_jitter: float = 0.05
    """Up to this many random seconds are added to every delay, so members
    restarted together do not reconnect in lockstep."""
    short_lived_connection: float = 1.0
    """A connection lost sooner than this after it was made counts as a
    failed attempt for backoff: a peer that accepts and then refuses our
    handshake is retried at max_backoff, not 20 times a second."""
    connect_timeout: float = 5.0
    """Seconds to wait for a TCP connect before counting it a failure."""
    handshake_timeout: float = 5.0
    """Seconds an accepted connection has to send its handshake."""
    max_queued_messages: int = 4096
    """A link's queue bound in messages."""
    max_queued_bytes: int = 64 * 1024 * 1024
    """A link's queue bound in encoded bytes."""
    snapshot_chunk_bytes: int = 1024 * 1024
    """The data carried by one SNAPSHOT_CHUNK frame."""
    max_snapshot_bytes: int = 8 * 1024**3
    """The largest snapshot file accepted from a peer; a longer stream drops
    the connection."""


def cluster_id_from_token(token: str) -> int:
    """A stable 64-bit cluster id for a cluster token string (the first
    8 bytes of its SHA-256), for the handshake's ``cluster_id``."""
    return int.from_bytes(hashlib.sha256(token.encode("utf-8")).digest()[:8], "big")


def reconnect_delay(settings: TransportSettings, attempt: int, jitter: float) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (1 for the first
    retry): exponential from initial_backoff, capped at max_backoff, plus
    ``jitter`` (a number in [0, 1)) times max_jitter."""
    exponent = min(max(attempt - 1, 0), 64)
    base = min(settings.initial_backoff * settings.backoff_factor**exponent, settings.max_backoff)
    return base + jitter * settings.max_jitter


class PeerLink:
    """The outbound side towards one peer: a reconnecting client connection
    and a bounded queue of encoded messages.

    :meth:`send` writes at once when the connection is up and writable, and
    otherwise queues; whatever is queued goes out in one write as soon as
    the connection is ready or writable again.

    At most one :class:`SnapshotStream` runs on the link, bound to the
    connection it started on.  Whenever the connection is writable, queued
    messages go first and then the stream writes its next chunks, so
    messages are interleaved with chunks rather than stuck behind them.
    """

    def __init__(
        self,
        transport: PeerTransport,
        peer_id: int,
        url: str,
        endpoint: IStreamClientEndpoint,
    ) -> None:
        self.peer_id = peer_id
        self.url = url
        self._owner = transport
        self._settings = transport.settings
        self._clock = transport.reactor
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._protocol: Optional[OutboundPeerProtocol] = None
        self._connected_at = 0.0
        self._short_lived_streak = 0
        self._snapshot: Optional[SnapshotStream] = None
        handshake = Handshake(PROTOCOL_VERSION, transport.cluster_id, transport.local_id, peer_id)
        self.service = ClientService(
            endpoint,
            OutboundPeerFactory(self, handshake, secret=transport.secret, clock=transport.reactor,
                                handshake_timeout=transport.settings.handshake_timeout),
            retryPolicy=self._retry_delay,
            clock=transport.reactor,
        )

    @property
    def connected(self) -> bool:
        """True while a connection to the peer is open."""
        return self._protocol is not None

    @property
    def queued(self) -> tuple[int, int]:
        """(messages, bytes) waiting in the queue."""
        return len(self._queue), self._queued_bytes

    def send(self, encoded: list[bytes], size: int) -> bool:
        """Write or queue encoded messages, all in one write; return False,
        keeping none of them, if they do not fit the queue."""
        protocol = self._protocol
        if protocol is not None and protocol.writable and not self._queue:
            protocol.write(message_frames(encoded))
            return True
        settings = self._settings
        if (
            len(self._queue) + len(encoded) > settings.max_queued_messages
            or self._queued_bytes + size > settings.max_queued_bytes
        ):
            return False
        self._queue.extend(encoded)
        self._queued_bytes += size
        self._flush()
        return True

    def discard_queue(self) -> None:
        """Forget every queued message."""
        self._queue.clear()
        self._queued_bytes = 0

    def start_snapshot(self, stream: SnapshotStream) -> None:
        """Stream ``stream`` on the current connection, cancelling (False) any
        stream already running on this link."""
        self.cancel_snapshot()
        self._snapshot = stream
        self._flush()

    def cancel_snapshot(self) -> None:
        """Cancel the running snapshot stream, if any (its Deferred fires False)."""
        stream, self._snapshot = self._snapshot, None
        if stream is not None:
            stream.cancel()

    def abort(self) -> None:
        """Discard the queue, cancel a snapshot stream and close the
        connection without flushing.

        A graceful close waits for the write buffer to drain, which for a dead
        peer takes until TCP gives up; stopping must not wait for that, and
        raft recovers whatever was unsent.
        """
        self.discard_queue()
        self.cancel_snapshot()
        protocol = self._protocol
        if protocol is not None and protocol.transport is not None:
            abort = getattr(protocol.transport, "abortConnection", None)
            if abort is not None:
                abort()

    def connection_ready(self, protocol: OutboundPeerProtocol) -> None:
        """A new connection is up: send the backlog."""
        self._protocol = protocol
        self._connected_at = self._clock.seconds()
        log.info("Connected to peer {peer} at {url}", peer=self.peer_id, url=self.url)
        self._flush()

    def connection_writable(self, protocol: OutboundPeerProtocol) -> None:
        """The connection drained: send the backlog."""
        if protocol is self._protocol:
            self._flush()

    def connection_lost(self, protocol: OutboundPeerProtocol) -> None:
        """The connection is gone: tell raft, and adjust backoff."""
        if protocol is not self._protocol:
            return
        self._protocol = None
        self.cancel_snapshot()
        if self._clock.seconds() - self._connected_at < self._settings.short_lived_connection:
            self._short_lived_streak += 1
        else:
            self._short_lived_streak = 0
        self._owner.link_lost(self)

    def connection_rejected(self, protocol: OutboundPeerProtocol, code: int, text: str) -> None:
        """The peer refused us for a reason worth acting on: pass it up."""
        self._owner.link_rejected(self, code, text)

    def _flush(self) -> None:
        protocol = self._protocol
        if self._queue and protocol is not None and protocol.writable:
            data = message_frames(self._queue)
            self.discard_queue()
            protocol.write(data)
        stream = self._snapshot
        if stream is not None and protocol is not None:
            stream.pump(protocol)
            if stream.finished and self._snapshot is stream:
                self._snapshot = None

    def _retry_delay(self, attempt: int) -> float:
        return reconnect_delay(
            self._settings,
            attempt + self._short_lived_streak,
            self._owner.random.random(),
        )


class PeerTransport(service.MultiService):
    """Carries Raft messages to and from the other members of one cluster.

    Start it as a service (``startService`` or a parent), once: like
    Twisted's ``StreamServerEndpointService`` it does not listen again after
    a stop, so build a new one instead of restarting.  Then:

    - :meth:`when_listening` fires with the listening port (so a listen URL
      with port 0 can learn its port);
    - :meth:`add_peer` / :meth:`remove_peer` follow the membership;
    - :meth:`send` takes a Ready's messages;
    - batches received from members go to ``on_messages``, one call per
      received frame, in the order the peer sent them;
    - ``report_unreachable(peer_id)`` is called, from the reactor and never
      from inside :meth:`send`, after a connection to that peer is lost, or
      messages to it were dropped (queue full, message too large, no such
      peer); several reports for a peer within one reactor turn are one.
    """

    def __init__(
        self,
        reactor: object,
        local_id: int,
        cluster_id: int,
        listen_url: str,
        on_messages: Callable[[list[Message]], None],
        report_unreachable: Callable[[int], None],
        is_member: Optional[Callable[[int], bool]] = None,
        *,
        was_removed: Callable[[int], bool] = lambda member_id: False,
        on_removed: Callable[[int], None] = lambda by_member: None,
        settings: TransportSettings = TransportSettings(),
        random: Optional[_random.Random] = None,
        snapshot_directory: Optional[SnapshotDirectory] = None,
        run_blocking: Optional[RunBlocking] = None,
        secret: Optional[bytes] = None,
        tls: Optional[object] = None,
    ) -> None:
        """
        :param reactor: provides IReactorTCP and IReactorTime (a
            ``MemoryReactorClock`` in tests); also the clock for backoff.
        :param local_id: this member's id (non-zero).
        :param cluster_id: the cluster's id; a handshake naming another is
            refused.
        :param listen_url: this member's own peer URL; port 0 picks one.  A
            host name other than ``localhost`` listens on all IPv4 addresses.
        :param on_messages: receives each batch from a member.
        :param report_unreachable: see the class docstring.
        :param is_member: decides whether an id may connect to us; by
            default, the ids given to :meth:`add_peer`.
        :param was_removed: whether an id belongs to a removed member; such
            a member's handshake is answered with a REJECTED frame.
        :param on_removed: called with a peer's id when that peer tells us
            we were removed from the cluster.
        :param random: source of backoff jitter (seeded in tests).
        :param snapshot_directory: where snapshots streamed to us are
            received (see :meth:`send_snapshot`); None refuses them.  A
            MsgSnap reaches ``on_messages`` only after its file is final at
            ``snapshot_directory.path_for(term, index)``.
        :param run_blocking: runs a blocking call off the reactor thread
            and returns a Deferred of its result (the verification of a
            received snapshot); by default the reactor's thread pool.
        :param secret: the cluster secret (``--peer-token-file``) every
            connection proves in both directions; None asks no proof.
        :param tls: a ``metastore.security.tls.ReloadingTLS`` for mutual TLS
            on every peer connection (both directions), or None for TCP.
        """
        super().__init__()
        if local_id <= 0:
            raise ValueError(f"local_id must be a positive member id, got {local_id}")
        self.reactor = reactor
        self.local_id = local_id
        self.cluster_id = cluster_id
        self.settings = settings
        self.random = random if random is not None else _random.Random()
        self.secret = secret
        self.tls = tls
        self._report_unreachable = report_unreachable
        self._on_removed = on_removed
        self._on_messages = on_messages
        self.observer = None
        """When set (by a member with metrics), told of the messages sent
        and received (``sent(messages)``, ``received(messages)``), e.g. to
        time heartbeat round trips (``metastore.metrics.peers.PeerRoundTrips``)."""
        self._links: dict[int, PeerLink] = {}
        self._unreachable: set[int] = set()
        self._report_call: Optional[IDelayedCall] = None
        self._port: Optional[IListeningPort] = None
        self._port_failure: Optional[Failure] = None
        self._port_waiters: list[defer.Deferred[IListeningPort]] = []
        self.inbound = InboundPeerFactory(
            reactor,
            local_id,
            cluster_id,
            is_member if is_member is not None else self._links.__contains__,
            self._received,
            settings.handshake_timeout,
            was_removed,
            incoming_snapshots=None
            if snapshot_directory is None
            else IncomingSnapshots(
                snapshot_directory,
                settings.max_snapshot_bytes,
                run_blocking if run_blocking is not None else deferred_to_reactor_threads(reactor),
            ),
            secret=secret,
        )
        host, port = parse_peer_url(listen_url, allow_port_zero=True)
        listener = StreamServerEndpointService(
            _RecordingServerEndpoint(_server_endpoint(reactor, host, port), self._port_result),
            self.inbound if tls is None else TLSMemoryBIOFactory(tls, False, self.inbound),
        )
        # Fail startService loudly if the peer port cannot be bound.
        listener._raiseSynchronously = True
        listener.setServiceParent(self)

    def when_listening(self) -> defer.Deferred[IListeningPort]:
        """A Deferred firing with the listening port once it is bound (or
        with the failure to bind).  ``.getHost().port`` is the port."""
        d: defer.Deferred[IListeningPort] = defer.Deferred()
        self._port_waiters.append(d)
        self._fire_port_waiters()
        return d

    def add_peer(self, peer_id: int, url: str) -> None:
        """Start a link to ``peer_id`` at ``url`` (idempotent for the same
        URL; a new URL replaces the link and its queue)."""
        if peer_id == self.local_id:
            raise ValueError(f"member {peer_id} is this member; it never dials itself")
        if peer_id <= 0:
            raise ValueError(f"peer id must be positive, got {peer_id}")
        host, port = parse_peer_url(url)
        existing = self._links.get(peer_id)
        if existing is not None:
            if existing.url == url:
                return
            self.remove_peer(peer_id)
        link = PeerLink(self, peer_id, url, self._client_endpoint(host, port))
        self._links[peer_id] = link
        link.service.setServiceParent(self)

    def remove_peer(self, peer_id: int) -> defer.Deferred[None]:
        """Stop the link to ``peer_id``, discard its queue and close its
        connection to us; a no-op for an unknown id.  The Deferred fires
        when the outbound connection is closed."""
        link = self._links.pop(peer_id, None)
        self.inbound.drop_member(peer_id, "member removed")
        self._unreachable.discard(peer_id)
        if link is None:
            return defer.succeed(None)
        stopped = defer.maybeDeferred(link.service.disownServiceParent)
        link.abort()
        return stopped

    def peer_ids(self) -> frozenset[int]:
        """The ids of the peers this member has links to."""
        return frozenset(self._links)

    def connected(self, peer_id: int) -> bool:
        """True while the outbound connection to ``peer_id`` is open."""
        link = self._links.get(peer_id)
        return link is not None and link.connected

    def _received(self, messages: list[Message]) -> None:
        if self.observer is not None:
            self.observer.received(messages)
        self._on_messages(messages)

    def send(self, messages: Iterable[Message]) -> None:
        """Send messages, grouped by ``to``: all of one call's messages for a
        peer go out in one write (or wait in its queue together).

        Never raises for a peer's trouble: messages that cannot be sent are
        dropped and the peer reported unreachable.  Raises ValueError, before
        sending anything, for a message addressed to this member or to no one.
        """
        if self.observer is not None:
            messages = list(messages)
            self.observer.sent(messages)
        by_peer: dict[int, list[bytes]] = {}
        for m in messages:
            if m.to == self.local_id or m.to <= 0:
                raise ValueError(f"{m.type.name} addressed to {m.to} cannot be sent")
            encoded = encode_message(m)
            if len(encoded) > MAX_MESSAGE_LENGTH:
                # The chunked snapshot stream (a later issue) will take
                # MsgSnap with large data off this path.
                log.warn(
                    "Dropping {type} to {peer}: {size} bytes is over the frame limit",
                    type=m.type.name,
                    peer=m.to,
                    size=len(encoded),
                )
                self._schedule_report(m.to)
                continue
            by_peer.setdefault(m.to, []).append(encoded)
        for peer_id, encoded in by_peer.items():
            link = self._links.get(peer_id)
            if link is None:
                log.debug("No link to peer {peer}; dropping messages", peer=peer_id)
                self._schedule_report(peer_id)
            elif not link.send(encoded, sum(map(len, encoded))):
                log.debug("Queue to peer {peer} is full; dropping messages", peer=peer_id)
                self._schedule_report(peer_id)

    def send_snapshot(self, message: Message, path: str) -> defer.Deferred[bool]:
        """Stream the snapshot file at ``path`` to ``message.to``, then ``message``.

        ``message`` is raft's MsgSnap (its ``snapshot.data`` empty); its
        metadata's term and index name the file on the receiving side.  The
        file goes out as SNAPSHOT_CHUNK frames of
        :attr:`TransportSettings.snapshot_chunk_bytes`, each read only when
        the connection can take it, followed by the MsgSnap on the same
        connection.  Messages sent to the peer meanwhile are interleaved
        between chunks.

        Fires True once everything was written to the connection; False at
        once when the peer is unknown, not connected right now, or the file
        cannot be opened, and later if the connection drops, the peer is
        removed, the transport stops, or a newer ``send_snapshot`` to the
        same peer supersedes this one.  Never errbacks.  Raises ValueError
        for a message that is not a MsgSnap to another member.
        """
        if message.type is not MessageType.MsgSnap or message.snapshot is None:
            raise ValueError(f"send_snapshot takes a MsgSnap, not {message.type.name}")
        if message.to == self.local_id or message.to <= 0:
            raise ValueError(f"MsgSnap addressed to {message.to} cannot be sent")
        link = self._links.get(message.to)
        if link is None or not link.connected:
            log.info("Cannot send a snapshot to peer {peer}: not connected", peer=message.to)
            return defer.succeed(False)
        try:
            stream = SnapshotStream(message, path, self.settings.snapshot_chunk_bytes)
        except OSError as e:
            log.warn("Cannot send snapshot {path} to peer {peer}: {error}", path=path, peer=message.to, error=e)
            return defer.succeed(False)
        link.start_snapshot(stream)
        return stream.done

    def stopService(self) -> defer.Deferred[None]:
        """Stop links and listener, close accepted connections, cancel
        pending reports; nothing is reported for connections closed here."""
        if self._report_call is not None and self._report_call.active():
            self._report_call.cancel()
        self._report_call = None
        self._unreachable.clear()
        d = super().stopService()
        for link in self._links.values():
            link.abort()
        self.inbound.drop_all("transport stopping")
        self._port = self._port_failure = None
        return d

    def link_lost(self, link: PeerLink) -> None:
        """Called by a link when its connection closes."""
        if self.running and self._links.get(link.peer_id) is link:
            log.info("Lost connection to peer {peer}", peer=link.peer_id)
            self._schedule_report(link.peer_id)

    def link_rejected(self, link: PeerLink, code: int, text: str) -> None:
        """Called by a link whose peer refused it with a REJECTED frame."""
        if code == REJECTED_REMOVED and self.running:
            log.warn("Peer {peer} says this member was removed: {text}", peer=link.peer_id, text=text)
            self._on_removed(link.peer_id)

    def _schedule_report(self, peer_id: int) -> None:
        if not self.running:
            return
        self._unreachable.add(peer_id)
        if self._report_call is None:
            self._report_call = self.reactor.callLater(0, self._deliver_reports)

    def _deliver_reports(self) -> None:
        self._report_call = None
        peers, self._unreachable = sorted(self._unreachable), set()
        for peer_id in peers:
            self._report_unreachable(peer_id)

    def _port_result(self, result: object) -> object:
        if isinstance(result, Failure):
            self._port_failure = result
        else:
            self._port = result
        self._fire_port_waiters()
        return result

    def _fire_port_waiters(self) -> None:
        if self._port is None and self._port_failure is None:
            return
        waiters, self._port_waiters = self._port_waiters, []
        for d in waiters:
            if self._port is not None:
                d.callback(self._port)
            else:
                d.errback(self._port_failure)

    def _client_endpoint(self, host: str, port: int) -> IStreamClientEndpoint:
        timeout = self.settings.connect_timeout
        if is_ipv6_literal(host):
            endpoint = TCP6ClientEndpoint(self.reactor, host, port, timeout=timeout)
        elif is_ip_literal(host):
            endpoint = TCP4ClientEndpoint(self.reactor, host, port, timeout=timeout)
        else:
            endpoint = HostnameEndpoint(self.reactor, host, port, timeout=timeout)
        return endpoint if self.tls is None else wrapClientTLS(self.tls.for_host(host), endpoint)


@implementer(IStreamServerEndpoint)
class _RecordingServerEndpoint:
    """Wraps a server endpoint to pass the result of ``listen`` (the port or
    the failure) to a callback, which must return it unchanged."""

    def __init__(self, endpoint: IStreamServerEndpoint, on_result: Callable[[object], object]):
        self._endpoint = endpoint
        self._on_result = on_result

    def listen(self, factory: IProtocolFactory) -> defer.Deferred[IListeningPort]:
        """Listen with the wrapped endpoint, reporting the outcome."""
        return self._endpoint.listen(factory).addBoth(self._on_result)


def _server_endpoint(reactor: object, host: str, port: int) -> IStreamServerEndpoint:
    """The endpoint to listen on for a peer URL's host and port.

    An address listens on that address; ``localhost`` on 127.0.0.1; any
    other name on every IPv4 address (resolving a name to listen on is
    guesswork: which of its addresses are ours?).
    """
    if is_ipv6_literal(host):
        return TCP6ServerEndpoint(reactor, port, interface=host)
    if is_ip_literal(host):
        return TCP4ServerEndpoint(reactor, port, interface=host)
    if host.lower() == "localhost":
        return TCP4ServerEndpoint(reactor, port, interface="127.0.0.1")
    return TCP4ServerEndpoint(reactor, port, interface="")
