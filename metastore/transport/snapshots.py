"""Streaming snapshot files to followers over the peer connections.

Sending (:class:`SnapshotStream`): a leader streams the file of a MsgSnap to
the follower on its ordinary outbound connection as SNAPSHOT_CHUNK frames,
then writes the MsgSnap itself (without data) as a normal MESSAGES frame.
A chunk is read from disk only when the connection is writable, i.e. its
transport is under its high-water mark, so at most one chunk sits in the
transport's buffer and one in hand.  Ordinary raft messages to that peer
are not held up: they are written between chunks, so heartbeats keep
flowing during a long transfer.

Receiving (:class:`IncomingSnapshots`, one per transport, and a
:class:`SnapshotReceiver` per accepted connection): chunks are appended to
``SnapshotDirectory.incoming_path(term, index)`` (a ``.part`` file), their
offsets must be contiguous, and a stream may not exceed a size bound.  The
last chunk hands the part to ``SnapshotDirectory.accept_incoming`` (fsync,
verify, rename) on a worker thread.  Anything inconsistent drops the
connection and deletes the part; so does a broken connection.  There is no
resuming: raft starts the whole transfer again ("restartable").

A chunk at offset 0 always starts a stream, discarding any unfinished one
on that connection: that is how a sender that gave up on one snapshot
(because a newer one superseded it) starts the next.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, Optional

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from metastore.raft.types import Message

from .codec import MalformedFrame, SnapshotChunk, encode_message
from .protocol import OutboundPeerProtocol, message_frames, snapshot_chunk_frame

if TYPE_CHECKING:
    from metastore.snapshots.format import SnapshotDirectory

log = Logger()

RunBlocking = Callable[..., "defer.Deferred[object]"]
"""Runs ``f(*args)`` off the reactor thread and returns a Deferred of its result."""


class SnapshotStreamError(MalformedFrame):
    """A snapshot stream cannot go on (bad offset, too big, disk error, already
    being verified): the connection carrying it is dropped."""


class SnapshotStream:
    """One snapshot file on its way to one peer, over one connection.

    :attr:`done` fires True once every chunk and the MsgSnap were written
    to the connection, or False if the stream was cancelled (connection
    lost, superseded, link removed) or the file could not be read.  It
    never errbacks.
    """

    def __init__(self, message: Message, path: str, chunk_bytes: int) -> None:
        """Open ``path`` for streaming the snapshot of MsgSnap ``message``.

        Raises ``OSError`` if the file cannot be opened.
        """
        if chunk_bytes <= 0:
            raise ValueError(f"chunk_bytes must be positive, not {chunk_bytes}")
        assert message.snapshot is not None
        meta = message.snapshot.metadata
        self.peer_id = message.to
        self.term = meta.term
        self.index = meta.index
        self.path = path
        self.offset = 0
        """How many bytes of the file have been written to the connection."""
        self._chunk_bytes = chunk_bytes
        self._file = open(path, "rb", buffering=0)
        self.size = os.fstat(self._file.fileno()).st_size
        self._message_frame = message_frames([encode_message(message)])
        self.done: defer.Deferred[bool] = defer.Deferred()
        self.finished = False

    def pump(self, protocol: OutboundPeerProtocol) -> None:
        """Write chunks while ``protocol`` is writable; after the last one,
        write the MsgSnap and fire :attr:`done` with True."""
        while not self.finished and protocol.writable:
            want = min(self._chunk_bytes, self.size - self.offset)
            try:
                data = self._file.read(want)
            except OSError as e:
                self._give_up(protocol, f"cannot read {self.path}: {e}")
                return
            if len(data) != want:
                self._give_up(protocol, f"{self.path} shrank while being sent")
                return
            is_last = self.offset + want == self.size
            protocol.write(snapshot_chunk_frame(self.term, self.index, self.offset, data, is_last))
            self.offset += want
            if is_last:
                protocol.write(self._message_frame)
                log.info(
                    "Sent snapshot {index} (term {term}, {size} bytes) to peer {peer}",
                    index=self.index, term=self.term, size=self.size, peer=self.peer_id,
                )
                self._finish(True)

    def cancel(self) -> None:
        """Stop streaming; :attr:`done` fires False unless already fired."""
        self._finish(False)

    def _give_up(self, protocol: OutboundPeerProtocol, reason: str) -> None:
        # The receiver holds a partial file; closing the connection is the
        # one signal that makes it discard it.
        log.warn("Cannot send snapshot to peer {peer}: {reason}", peer=self.peer_id, reason=reason)
        self._finish(False)
        protocol.drop(f"snapshot stream aborted: {reason}")

    def _finish(self, ok: bool) -> None:
        if self.finished:
            return
        self.finished = True
        self._file.close()
        self.done.callback(ok)


def deferred_to_reactor_threads(reactor: object) -> RunBlocking:
    """A RunBlocking that uses ``reactor``'s thread pool."""
    from twisted.internet.threads import deferToThreadPool

    def run(f: Callable[..., object], *args: object) -> defer.Deferred[object]:
        return deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)

    return run


class IncomingSnapshots:
    """Where the accepted connections of one transport write received snapshots.

    Keeps track of which ``.part`` files are being written and which are
    being verified, so two connections never write one file and a file
    being verified is never touched.
    """

    def __init__(
        self, directory: SnapshotDirectory, max_bytes: int, run_blocking: RunBlocking
    ) -> None:
        """Receive into ``directory``; a stream over ``max_bytes`` is refused;
        ``run_blocking`` runs the verification off the reactor thread."""
        self.directory = directory
        self.max_bytes = max_bytes
        self._run_blocking = run_blocking
        self._writers: dict[str, SnapshotReceiver] = {}
        self._verifying: set[str] = set()

    def receiver(self) -> SnapshotReceiver:
        """A new receiver for one connection."""
        return SnapshotReceiver(self)

    def claim(self, path: str, receiver: SnapshotReceiver) -> None:
        """Make ``receiver`` the only writer of ``path``.

        An older stream writing it (a stale connection of the same peer) is
        abandoned; a file being verified cannot be claimed.
        """
        if path in self._verifying:
            raise SnapshotStreamError(f"{path} is still being verified")
        older = self._writers.get(path)
        if older is not None and older is not receiver:
            older.abandon("a newer stream writes the same snapshot")
        self._writers[path] = receiver

    def release(self, path: str, receiver: SnapshotReceiver) -> None:
        """``receiver`` no longer writes ``path``."""
        if self._writers.get(path) is receiver:
            del self._writers[path]

    def accept(self, part_path: str) -> defer.Deferred[bool]:
        """Fsync, verify and rename the complete ``part_path`` off the reactor
        thread; fires True when it is a snapshot of the directory, False
        (logged, part deleted) when not."""
        self._verifying.add(part_path)
        d = defer.maybeDeferred(self._run_blocking, self.directory.accept_incoming, part_path)

        def accepted(result: object) -> bool:
            self._verifying.discard(part_path)
            if isinstance(result, Failure):
                log.warn(
                    "Received snapshot {path} refused: {reason}",
                    path=part_path, reason=result.getErrorMessage(),
                )
                try:
                    os.unlink(part_path)
                except OSError:
                    pass
                return False
            log.info("Received snapshot {path}", path=result)
            return True

        return d.addBoth(accepted)


class SnapshotReceiver:
    """Writes the snapshot streams of one connection to ``.part`` files.

    At most one stream is in progress.  Every chunk must continue it at the
    exact offset reached so far, except a chunk at offset 0, which starts a
    new stream.
    """

    def __init__(self, incoming: IncomingSnapshots) -> None:
        """A receiver with no stream in progress."""
        self._incoming = incoming
        self._fd: Optional[int] = None
        self._path: Optional[str] = None
        self._snapshot: Optional[tuple[int, int]] = None
        self.received = 0
        """Bytes of the stream in progress written so far."""

    @property
    def in_progress(self) -> bool:
        """True while a stream has started and not ended."""
        return self._fd is not None

    def receive(self, chunk: SnapshotChunk) -> Optional[str]:
        """Write ``chunk``; return the part's path when it was the last one.

        The returned file is complete but not yet verified: the caller
        passes it to ``IncomingSnapshots.accept``.  Raises
        :class:`SnapshotStreamError` (after deleting the part) when the chunk
        does not fit the stream or cannot be written.
        """
        if chunk.offset == 0:
            self.abandon("a new stream starts")
            self._start(chunk.term, chunk.index)
        elif not self.in_progress:
            raise SnapshotStreamError(f"chunk at offset {chunk.offset} with no stream in progress")
        elif self._snapshot != (chunk.term, chunk.index) or chunk.offset != self.received:
            expected = self._snapshot
            self.abandon("inconsistent chunk")
            raise SnapshotStreamError(
                f"chunk of snapshot {chunk.index} (term {chunk.term}) at offset {chunk.offset}, "
                f"expected snapshot {expected[1]} (term {expected[0]}) at offset {self.received}"
            )
        if self.received + len(chunk.data) > self._incoming.max_bytes:
            self.abandon("too large")
            raise SnapshotStreamError(
                f"snapshot stream exceeds the limit of {self._incoming.max_bytes} bytes"
            )
        try:
            view = memoryview(chunk.data)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as e:
            self.abandon("write failed")
            raise SnapshotStreamError(f"cannot write the received snapshot: {e}") from None
        self.received += len(chunk.data)
        if not chunk.is_last:
            return None
        path = self._path
        os.close(self._fd)
        self._incoming.release(path, self)
        self._fd = self._path = self._snapshot = None
        self.received = 0
        return path

    def abandon(self, reason: str) -> None:
        """Stop the stream in progress, if any, and delete its part file."""
        if self._fd is None:
            return
        path = self._path
        log.info("Discarding partial snapshot {path}: {reason}", path=path, reason=reason)
        os.close(self._fd)
        self._incoming.release(path, self)
        self._fd = self._path = self._snapshot = None
        self.received = 0
        try:
            os.unlink(path)
        except OSError:
            pass

    def _start(self, term: int, index: int) -> None:
        path = self._incoming.directory.incoming_path(term, index)
        self._incoming.claim(path, self)
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        except OSError as e:
            self._incoming.release(path, self)
            raise SnapshotStreamError(f"cannot create {path}: {e}") from None
        self._path = path
        self._snapshot = (term, index)
        self.received = 0
