"""Seeding a new cluster's data directories from a saved snapshot (what
``etcdctl snapshot restore`` does for etcd).

A snapshot saved through ``/v3/maintenance/snapshot`` names the cluster it
came from.  ``seed_from_snapshot`` copies its history into a new member's
empty snapshot directory with the membership replaced by the new cluster's
(every ``--cluster`` URL a voter, ids by position) and the raft position
reset to term 1 at the file's index, so that every member seeded from the
same file starts from the same committed state and elects a leader as a
new cluster does.  The store's revisions and compaction state are kept.
"""

from __future__ import annotations

import os
from dataclasses import replace

from metastore.snapshots import stream
from metastore.snapshots.format import Fsync, SnapshotHeader, read_snapshot, write_snapshot
from metastore.storage.engine import ClusterState, MemberRecord

UNWRAPPED_NAME = "restore-source.tmp"
"""Where a saved stream's snapshot file is unwrapped to while it is read."""

RESTORED_TERM = 1
"""The term of the restored snapshot's entry: the new cluster's first."""


def new_cluster_state(peer_urls: tuple[str, ...]) -> ClusterState:
    """The membership of a new cluster of ``peer_urls`` (ids 1, 2, ... by position), no alarms."""
    members = tuple(MemberRecord(i, url) for i, url in enumerate(peer_urls, start=1))
    return ClusterState(voters=tuple(range(1, len(peer_urls) + 1)), members=members)


def seed_from_snapshot(source: str, snap_dir: str, peer_urls: tuple[str, ...], fsync: Fsync = os.fsync) -> SnapshotHeader:
    """Write ``source``'s history into ``snap_dir`` as the snapshot a new
    member of the cluster ``peer_urls`` starts from; returns its header.
    ``source`` is a snapshot file or a saved ``Maintenance.Snapshot``
    stream (``metastore.snapshots.stream``, what ``etcdctl snapshot save``
    writes).  Raises ``SnapshotCorruptionError`` (a damaged file, checked
    while it is copied) or ``OSError``."""
    os.makedirs(snap_dir, exist_ok=True)
    inner = os.path.join(snap_dir, UNWRAPPED_NAME)
    if stream.unwrap(source, inner):
        source = inner
    try:
        header, events = read_snapshot(source)
        seeded = replace(header, term=RESTORED_TERM, cluster_state=new_cluster_state(peer_urls))
        write_snapshot(snap_dir, seeded, events, fsync)
    finally:
        if source == inner:
            os.remove(inner)
    return seeded
