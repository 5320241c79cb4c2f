"""Measure one loopback snapshot transfer between two PeerTransports (not a test).

Run from the checkout: ``.venv/bin/python -m tests.transport.bench_snapshot_transfer [keys]``.
Writes a snapshot of ``keys`` 1000-byte values (200,000 keys: about 205 MB)
in a temporary directory, streams it from member 1 to member 2 over
127.0.0.1 (both in this process, on one reactor), and prints the rate at
which it was written to the socket and the rate until the receiver had
fsynced, verified and renamed it and delivered the MsgSnap.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

from twisted.internet import defer

from metastore.raft.types import ConfState, Message, MessageType, Snapshot, SnapshotMetadata
from metastore.storage.engine import ClusterState, Event, KeyValue
from metastore.snapshots.format import SnapshotDirectory, SnapshotHeader, write_snapshot
from metastore.transport.peers import PeerTransport


@defer.inlineCallbacks
def transfer(reactor, base: str, keys: int):
    """Write the source snapshot, stream it, and print the figures."""
    value = os.urandom(1000)
    header = SnapshotHeader(100, 2, keys, ClusterState((1, 2)))
    items = (Event(KeyValue(b"k%09d" % i, value, i + 1, i + 1, 1), 0) for i in range(keys))
    source = write_snapshot(os.path.join(base, "source"), header, items)
    size = os.path.getsize(source)
    batches = [defer.Deferred(), defer.Deferred()]

    def on_messages(messages):
        """Fire the next waiting Deferred."""
        batches.pop(0).callback(messages)

    connected, installed = batches
    sender = PeerTransport(reactor, 1, 9, "tcp://127.0.0.1:0", list, lambda peer: None)
    receiver = PeerTransport(
        reactor, 2, 9, "tcp://127.0.0.1:0", on_messages, lambda peer: None,
        snapshot_directory=SnapshotDirectory(os.path.join(base, "received")),
    )
    for member in (sender, receiver):
        member.startService()
    port = (yield receiver.when_listening()).getHost().port
    receiver.add_peer(1, "tcp://127.0.0.1:1")
    sender.add_peer(2, f"tcp://127.0.0.1:{port}")
    sender.send([Message(MessageType.MsgHeartbeat, to=2, from_=1, term=1)])
    yield connected
    message = Message(
        MessageType.MsgSnap, to=2, from_=1, term=2,
        snapshot=Snapshot(SnapshotMetadata(100, 2, ConfState((1, 2)))),
    )
    start = time.perf_counter()
    ok = yield sender.send_snapshot(message, source)
    sent = time.perf_counter() - start
    yield installed
    done = time.perf_counter() - start
    megabytes = size / 1e6
    print(
        f"{megabytes:.1f} MB: written to the socket in {sent:.2f}s ({megabytes / sent:.0f} MB/s), "
        f"installed in {done:.2f}s ({megabytes / done:.0f} MB/s), ok={ok}"
    )
    yield sender.stopService()
    yield receiver.stopService()


def main() -> None:
    """Run one transfer on the global reactor."""
    from twisted.internet import task

    keys = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    base = tempfile.mkdtemp()
    try:
        task.react(lambda r: transfer(r, base, keys))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
