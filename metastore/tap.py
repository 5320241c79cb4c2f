"""``twistd metastore``: command-line options and ``makeService``.

Flags and defaults are the original MetaStore's, plus MetaStore's own.
Every bad value is a usage error that names its flag; a member that
cannot start (unusable data directory, damaged WAL) prints one clear line
and exits with status 1.
"""

from __future__ import annotations

import sys

from twisted.python import usage

from metastore.config import STORAGE_ENGINES, Config, ConfigError
from metastore.kv.autocompaction import DEFAULT_MODE, DEFAULT_RETENTION, MODES
from metastore.errors import StartupError

_INT_FLAGS = {
    "id": "member_id",
    "port": "port",
    "snapshot-count": "snapshot_count",
    "snapshot-catchup-entries": "snapshot_catchup_entries",
    "max-snapshots": "max_snapshots",
    "wal-segment-bytes": "wal_segment_bytes",
    "rocksdb-block-cache-bytes": "rocksdb_block_cache_bytes",
    "rocksdb-write-buffer-bytes": "rocksdb_write_buffer_bytes",
    "max-request-bytes": "max_request_bytes",
    "tick-ms": "tick_ms",
    "election-ticks": "election_ticks",
    "heartbeat-ticks": "heartbeat_ticks",
}


class Options(usage.Options):
    """The options of a MetaStore member."""

    synopsis = "[options]"
    longdesc = (
        "Run one MetaStore member: a Raft peer, a key-value state machine, and "
        "its HTTP API.  Start one process per member of the cluster."
    )
    optFlags = [
        ["join", None, "Join an existing cluster (after POST /{id} on a member) instead of founding one."],
    ]
    optParameters = [
        ["id", None, "1", "This member's id: its 1-based position in --cluster."],
        ["cluster", None, "http://127.0.0.1:9021", "Comma-separated peer URLs of all members, in id order."],
        ["port", None, "9121", "Port of the HTTP API (the key-value REST API and /health)."],
        ["storage", None, "memory", f"Storage engine: {' or '.join(STORAGE_ENGINES)}."],
        ["data-dir", None, ".", "Directory for the WAL and snapshots (created when missing)."],
        ["listen-host", None, "127.0.0.1", "Address the HTTP API and the peer port listen on."],
        ["snapshot-count", None, "10000", "Applied entries between two automatic snapshots."],
        ["snapshot-catchup-entries", None, "5000", "Entries kept in the log after a snapshot, for slow followers."],
        ["max-snapshots", None, "5", "Snapshot files kept; older ones are deleted."],
        ["wal-segment-bytes", None, str(64 * 2**20), "Size at which the WAL starts a new segment file."],
        ["rocksdb-block-cache-bytes", None, str(64 * 2**20), "RocksDB block cache (with --storage rocksdb)."],
        ["rocksdb-write-buffer-bytes", None, str(32 * 2**20), "RocksDB memtable size (with --storage rocksdb)."],
        ["request-timeout", None, "5", "Seconds a request may wait for the cluster before a 503."],
        ["max-request-bytes", None, str(1536 * 1024), "Largest request body accepted, in bytes (413 beyond)."],
        ["tick-ms", None, "100", "Milliseconds per Raft tick."],
        ["election-ticks", None, "10", "Ticks without a leader before an election (randomized up to twice that)."],
        ["heartbeat-ticks", None, "1", "Ticks between leader heartbeats."],
        ["cluster-token", None, "metastore", "Name of the cluster; members of different clusters refuse each other."],
        ["auto-compaction-mode", None, DEFAULT_MODE, f"When to compact history: {' or '.join(MODES)}."],
        [
            "auto-compaction-retention",
            None,
            DEFAULT_RETENTION,
            "History kept: revisions (revision mode) or a duration such as 5m or 1h (periodic mode); 0 turns it off.",
        ],
    ]

    def postOptions(self) -> None:
        """Build and validate the ``Config``; every error names its flag."""
        values = {}
        for flag, field in _INT_FLAGS.items():
            try:
                values[field] = int(self[flag])
            except (TypeError, ValueError):
                raise usage.UsageError(f"--{flag} must be an integer, got {self[flag]!r}") from None
        try:
            values["request_timeout"] = float(self["request-timeout"])
        except ValueError:
            raise usage.UsageError(
                f"--request-timeout must be a number of seconds, got {self['request-timeout']!r}"
            ) from None
        cluster = tuple(u.strip() for u in self["cluster"].split(",") if u.strip())
        try:
            self.config = Config(
                cluster=cluster,
                join=bool(self["join"]),
                storage=self["storage"],
                data_dir=self["data-dir"],
                listen_host=self["listen-host"],
                cluster_token=self["cluster-token"],
                auto_compaction_mode=self["auto-compaction-mode"],
                auto_compaction_retention=self["auto-compaction-retention"],
                **values,
            ).validate()
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None


def makeService(options: Options):
    """The member's service; exits with a clear message when it cannot start."""
    from twisted.internet import reactor

    from metastore.faults import wal_fsync_from_environment
    from metastore.service import open_member

    try:
        member = open_member(options.config, reactor, fsync=wal_fsync_from_environment())
    except (StartupError, ValueError) as e:
        sys.stderr.write(f"metastore: cannot start: {e}\n")
        sys.stderr.flush()
        raise SystemExit(1)
    # A member removed from the cluster has nothing left to do: exit.
    member.removed.addCallback(lambda _: reactor.stop())
    return member
