"""Snapshots and log compaction, in one place.

- ``format``: the snapshot file format and ``SnapshotDirectory`` (the files
  of one member, atomic writes, verification of received files);
- ``snapshotter``: taking, checkpointing and installing snapshots off the
  reactor thread, and ``SnapshotPolicy`` (when, and how much log to keep);
- ``compaction``: what the driver uses: when a snapshot is due, compacting
  raft's log and releasing WAL segments behind it, installing a received one;
- ``recovery``: a restart from the newest usable snapshot plus the WAL.

The streaming of snapshot files between members stays in
``metastore.transport.snapshots``.
"""
