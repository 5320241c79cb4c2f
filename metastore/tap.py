"""``twistd metastore``: command-line options and ``makeService``.

Flags and defaults are the original MetaStore's, plus MetaStore's own.
Every bad value is a usage error that names its flag; under twistd it is
one line on standard error and exit status 2.  A member that cannot start
(unusable data directory, damaged WAL, a port in use) prints one clear
line and exits with status 1.  ``--version`` prints MetaStore's version.
"""

from __future__ import annotations

import dataclasses
import sys

from twisted.application import service
from twisted.logger import ILogObserver, Logger
from twisted.python import usage

from metastore.config import STORAGE_ENGINES, Config, ConfigError
from metastore.kv.autocompaction import DEFAULT_MODE, DEFAULT_RETENTION, MODES
from metastore.errors import StartupError
from metastore.gctuning import tune_for_server
from metastore.logs import FORMATS, LEVELS, twistd_observer_factory
from metastore.options import VersionOption
from metastore.workers import auto as auto_workers

log = Logger()

USAGE_EXIT_STATUS = 2
STARTUP_EXIT_STATUS = 1
REMOVED_EXIT_GRACE_SECONDS = 1.0
"""How long a removed member lingers before it exits, so that answers
already written (among them the 204 to its own removal) reach their clients."""

_INT_FLAGS = {
    "id": "member_id",
    "port": "port",
    "snapshot-count": "snapshot_count",
    "snapshot-catchup-entries": "snapshot_catchup_entries",
    "max-snapshots": "max_snapshots",
    "wal-segment-bytes": "wal_segment_bytes",
    "rocksdb-block-cache-bytes": "rocksdb_block_cache_bytes",
    "rocksdb-write-buffer-bytes": "rocksdb_write_buffer_bytes",
    "rocksdb-newest-cache-bytes": "rocksdb_newest_cache_bytes",
    "max-request-bytes": "max_request_bytes",
    "quota-backend-bytes": "quota_backend_bytes",
    "tick-ms": "tick_ms",
    "election-ticks": "election_ticks",
    "heartbeat-ticks": "heartbeat_ticks",
    "max-client-connections": "max_client_connections",
    "max-watchers-per-stream": "max_watchers_per_stream",
    "max-streams-per-connection": "max_streams_per_connection",
    "client-request-burst": "client_request_burst",
    "auth-token-ttl": "auth_token_ttl",
}
_TEXT_FLAGS = (
    "cert-file", "key-file", "trusted-ca-file", "peer-cert-file", "peer-key-file", "peer-trusted-ca-file",
    "peer-cert-allowed-cn", "peer-cert-allowed-hostname", "peer-token-file",
)


def _exit_with_one_line(message: str, status: int) -> None:
    # The process's real standard error: once twistd runs, sys.stderr goes to its log file.
    stream = sys.__stderr__ or sys.stderr
    stream.write(f"metastore: {message}\n")
    stream.flush()
    raise SystemExit(status)


class Options(VersionOption, usage.Options):
    """The options of a MetaStore member.  Parsed directly, a bad flag is a
    ``UsageError``; parsed by twistd (as its subcommand), one line on
    standard error and exit status 2 instead of twistd's whole help."""

    synopsis = "[options]"
    longdesc = (
        "Run one MetaStore member: a Raft peer, a key-value state machine, and "
        "its HTTP API.  Start one process per member of the cluster."
    )
    optFlags = [
        ["join", None, "Join an existing cluster (after POST /{id} on a member) instead of founding one."],
        ["client-cert-auth", None, "Refuse clients without a certificate signed by --trusted-ca-file."],
        ["auto-tls", None, "Serve clients TLS with a self-signed certificate made in --data-dir (tests only)."],
    ]
    optParameters = [
        ["id", None, "1", "This member's id: its 1-based position in --cluster."],
        ["cluster", None, "http://127.0.0.1:9021", "Comma-separated peer URLs of all members, in id order."],
        ["port", None, "9121", "Port of the HTTP API (the key-value REST API and /health)."],
        ["storage", None, "memory", f"Storage engine: {' or '.join(STORAGE_ENGINES)}."],
        ["data-dir", None, ".", "Directory for the WAL and snapshots (created when missing)."],
        ["listen-host", None, "127.0.0.1", "Address the HTTP API and the peer port listen on."],
        ["snapshot-count", None, "100000", "Applied entries between two automatic snapshots (etcd 3.4's default)."],
        ["snapshot-catchup-entries", None, "5000", "Entries kept in the log after a snapshot, for slow followers."],
        ["max-snapshots", None, "5", "Snapshot files kept; older ones are deleted."],
        ["wal-segment-bytes", None, str(64 * 2**20), "Size at which the WAL starts a new segment file."],
        ["rocksdb-block-cache-bytes", None, str(64 * 2**20), "RocksDB block cache (with --storage rocksdb)."],
        ["rocksdb-write-buffer-bytes", None, str(32 * 2**20), "RocksDB memtable size (with --storage rocksdb)."],
        ["rocksdb-newest-cache-bytes", None, str(16 * 2**20),
         "Cache of each key's newest version, read by every put (with --storage rocksdb; 0: none)."],
        ["request-timeout", None, "5", "Seconds a request may wait for the cluster before a 503."],
        ["header-timeout", None, "10", "Seconds a request's line and headers may take to arrive, in total (408 beyond)."],
        ["lease-checkpoint-interval", None, "300", "Seconds between the leader's checkpoints of remaining lease TTLs."],
        ["watch-progress-interval", None, "600", "Seconds between progress notifications to watches that ask for them."],
        ["max-request-bytes", None, str(1536 * 1024), "Largest request body accepted, in bytes (413 beyond)."],
        ["restore-from", None, "", "Start this new member of a new cluster from a snapshot saved with /v3/maintenance/snapshot (empty --data-dir; every member of the new cluster uses the same file)."],
        ["quota-backend-bytes", None, str(2 * 2**30), "Data on disk (bytes) beyond which writes raise the NOSPACE alarm and are refused."],
        ["tick-ms", None, "100", "Milliseconds per Raft tick."],
        ["election-ticks", None, "10", "Ticks without a leader before an election (randomized up to twice that)."],
        ["heartbeat-ticks", None, "1", "Ticks between leader heartbeats."],
        ["strict-reconfig-check", None, "true",
         "Refuse membership changes that could cost the cluster its quorum (etcd's check): true or false."],
        ["cluster-token", None, "metastore", "Name of the cluster; members of different clusters refuse each other."],
        ["auto-compaction-mode", None, DEFAULT_MODE, f"When to compact history: {' or '.join(MODES)}."],
        [
            "auto-compaction-retention",
            None,
            DEFAULT_RETENTION,
            "History kept: revisions (revision mode) or a duration such as 5m or 1h (periodic mode); 0 turns it off.",
        ],
        ["workers", None, "auto",
         "Front processes serving the HTTP APIs on the client port beside this core process "
         "(Raft, the WAL and apply stay here): a number, or auto (none below "
         f"{auto_workers.MIN_CORES} usable cores, else one per core but one, at most {auto_workers.MAX_FRONTS}; "
         "none where fronts cannot serve the flags given, such as client TLS)."],
        ["auth-token", None, "simple",
         "Auth tokens: simple, or jwt,priv-key=PATH[,pub-key=PATH],sign-method=RS256|HS256[,ttl=5m] (etcd's --auth-token)."],
        ["auth-token-ttl", None, "300", "Seconds a simple auth token lives after its last use."],
        ["grpc-port", None, None, "Port of etcd's gRPC API (off when not given); runs the member on the asyncio reactor."],
        ["metrics", None, "on", "Prometheus metrics at /metrics on the client port: on or off (off measures nothing)."],
        ["log-format", None, "text", f"Log lines: {' or '.join(FORMATS)} (one event per line)."],
        ["log-level", None, "info", f"Least severe events logged: {', '.join(LEVELS)}."],
        ["cert-file", None, "", "Certificate (PEM chain) of the client HTTP APIs and gRPC: serve them over TLS."],
        ["key-file", None, "", "Private key (PEM) of --cert-file."],
        ["trusted-ca-file", None, "", "CA certificates (PEM) client certificates must chain to."],
        ["peer-cert-file", None, "", "Certificate (PEM) of this member on the peer port: mutual TLS between members."],
        ["peer-key-file", None, "", "Private key (PEM) of --peer-cert-file."],
        ["peer-trusted-ca-file", None, "", "CA certificates (PEM) every peer's certificate must chain to."],
        ["peer-cert-allowed-cn", None, "", "Accept only peer certificates with this common name."],
        ["peer-cert-allowed-hostname", None, "", "Accept only peer certificates naming this host (SAN)."],
        ["peer-token-file", None, "", "File holding the cluster secret peers prove they know (challenge/response)."],
        ["max-client-connections", None, "0", "Open client HTTP connections at most (0: no limit); 503 beyond."],
        ["max-watchers-per-stream", None, "0", "Live watches per watch stream at most (0: no limit)."],
        ["max-streams-per-connection", None, "0", "Concurrent gRPC streams per client connection (0: gRPC's default)."],
        ["client-request-rate", None, "0", "HTTP requests per second per client address (0: no limit); 429 beyond."],
        ["client-request-burst", None, "0", "Requests a client may send at once above its rate (0: one second's worth)."],
    ]

    def parseOptions(self, options=None) -> None:
        """Parse; under twistd a usage error is one line and exit status 2."""
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            if getattr(self, "parent", None) is None:
                raise
            _exit_with_one_line(f"{e} (see --help)", USAGE_EXIT_STATUS)

    def postOptions(self) -> None:
        """Build and validate the ``Config``; every error names its flag."""
        values = {}
        for flag, field in _INT_FLAGS.items():
            try:
                values[field] = int(self[flag])
            except (TypeError, ValueError):
                raise usage.UsageError(f"--{flag} must be an integer, got {self[flag]!r}") from None
        for flag in ("request-timeout", "header-timeout", "lease-checkpoint-interval", "watch-progress-interval"):
            try:
                values[flag.replace("-", "_")] = float(self[flag])
            except ValueError:
                raise usage.UsageError(f"--{flag} must be a number of seconds, got {self[flag]!r}") from None
        if self["grpc-port"] is not None:
            try:
                values["grpc_port"] = int(self["grpc-port"])
            except ValueError:
                raise usage.UsageError(f"--grpc-port must be an integer, got {self['grpc-port']!r}") from None
        workers = _workers(self["workers"])
        values["workers"] = 0 if workers is AUTO else workers
        try:
            values["client_request_rate"] = float(self["client-request-rate"])
        except ValueError:
            raise usage.UsageError(f"--client-request-rate must be a number, got {self['client-request-rate']!r}") from None
        for flag in _TEXT_FLAGS:
            values[flag.replace("-", "_")] = self[flag]
        strict = self["strict-reconfig-check"].strip().lower()
        if strict not in ("true", "false"):
            raise usage.UsageError(f"--strict-reconfig-check must be true or false, got {self['strict-reconfig-check']!r}")
        metrics = self["metrics"].strip().lower()
        if metrics not in ("on", "off"):
            raise usage.UsageError(f"--metrics must be on or off, got {self['metrics']!r}")
        self._check_logging()
        cluster = tuple(u.strip() for u in self["cluster"].split(",") if u.strip())
        self.workers_note = ""
        """The log line saying what ``--workers auto`` chose and why ("" for a count)."""
        try:
            config = Config(
                cluster=cluster,
                join=bool(self["join"]),
                client_cert_auth=bool(self["client-cert-auth"]),
                auto_tls=bool(self["auto-tls"]),
                storage=self["storage"],
                data_dir=self["data-dir"],
                listen_host=self["listen-host"],
                cluster_token=self["cluster-token"],
                strict_reconfig_check=strict == "true",
                metrics=metrics == "on",
                auto_compaction_mode=self["auto-compaction-mode"],
                auto_compaction_retention=self["auto-compaction-retention"],
                restore_from=self["restore-from"],
                auth_token=self["auth-token"],
                **values,
            ).validate()
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None
        if workers is AUTO:
            choice = auto_workers.choose(config, auto_workers.usable_cores())
            config = dataclasses.replace(config, workers=choice.workers).validate()
            self.workers_note = choice.reason
        self.config = config

    def _check_logging(self) -> None:
        """Validate --log-format and --log-level; under twistd, prepare the
        member's observer (``log_observer_factory``) unless twistd was given
        ``--logger`` or ``--syslog``."""
        for flag, choices in (("log-format", FORMATS), ("log-level", LEVELS)):
            self[flag] = self[flag].strip().lower()
            if self[flag] not in choices:
                raise usage.UsageError(f"--{flag} must be one of {', '.join(choices)}, got {self[flag]!r}")
        twistd = getattr(self, "parent", None)
        self.log_observer_factory = None
        if twistd is not None and not twistd.get("logger") and not twistd.get("syslog"):
            self.log_observer_factory = twistd_observer_factory(
                self["log-format"], self["log-level"], twistd.get("logfile") or "", bool(twistd.get("nodaemon"))
            )


AUTO = "auto"


def _workers(value: str) -> int | str:
    """``--workers``: a count, or ``AUTO`` (resolved once the rest of the
    configuration is known: ``metastore.workers.auto.choose``)."""
    if value.strip().lower() == AUTO:
        return AUTO
    try:
        return int(value)
    except ValueError:
        raise usage.UsageError(f"--workers must be an integer or auto, got {value!r}") from None


def _reactor(config: Config):
    """The running reactor; with gRPC on, the asyncio reactor, installed
    here when twistd has installed none yet (it installs one only for
    ``--reactor``)."""
    if config.grpc_port is not None and "twisted.internet.reactor" not in sys.modules:
        from twisted.internet import asyncioreactor

        asyncioreactor.install()
    from twisted.internet import reactor

    return reactor


def makeService(options: Options):
    """The member's service; exits with a clear message when it cannot start."""
    reactor = _reactor(options.config)

    from metastore.faults import raw_proposals_from_environment, wal_fsync_from_environment
    from metastore.service import open_member

    try:
        member = open_member(options.config, reactor, fsync=wal_fsync_from_environment(),
                             raw_proposals=raw_proposals_from_environment())
    except (StartupError, ValueError) as e:
        _exit_with_one_line(f"cannot start: {e}", STARTUP_EXIT_STATUS)
    from metastore.listening import reload_on_sighup

    reload_on_sighup(reactor, member.security)
    # A member removed from the cluster has nothing left to do: exit.
    member.removed.addCallback(lambda _: reactor.callLater(REMOVED_EXIT_GRACE_SECONDS, reactor.stop))
    return _CommandLineMember(member, getattr(options, "log_observer_factory", None),
                              getattr(options, "workers_note", ""))


class _CommandLineMember(service.MultiService):
    """The member as twistd runs it: when its ports cannot be bound, one
    line on standard error and exit status 1 instead of a traceback.  With
    a ``log_observer_factory``, its observer becomes the application's
    ``ILogObserver`` (twistd then logs through it)."""

    def __init__(self, member, log_observer_factory=None, workers_note: str = "") -> None:
        super().__init__()
        self.member = member
        self._log_observer_factory = log_observer_factory
        self._workers_note = workers_note
        member.setServiceParent(self)

    def startService(self) -> None:
        """Start the member, then set the garbage collector for a long-running
        server (``metastore.gctuning``)."""
        super().startService()
        tune_for_server()

    def setServiceParent(self, parent) -> None:
        """Join twistd's application, giving it the member's log observer."""
        super().setServiceParent(parent)
        if self._log_observer_factory is not None and parent.getComponent(ILogObserver, None) is None:
            parent.setComponent(ILogObserver, self._log_observer_factory())

    def privilegedStartService(self) -> None:
        """Log what ``--workers auto`` chose; bind the member's ports, or
        exit with one line saying why not."""
        if self._workers_note:
            log.info("{note}", note=self._workers_note)
        try:
            super().privilegedStartService()
        except StartupError as e:
            _exit_with_one_line(f"cannot start: {e}", STARTUP_EXIT_STATUS)
