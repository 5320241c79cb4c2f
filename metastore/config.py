"""One immutable configuration for a MetaStore member.

Built from the command line by ``metastore.tap`` or directly by a program
that embeds MetaStore.  ``Config.validate`` names the first bad field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from metastore.auth.tokens import TokenOptionError, token_provider
from metastore.kv.autocompaction import (
    DEFAULT_MODE,
    DEFAULT_RETENTION,
    AutoCompactionPolicy,
    parse_auto_compaction,
)

STORAGE_ENGINES = ("memory", "rocksdb")
MAX_KEY_BYTES = 1536
"""The largest key accepted: 1.5 KiB."""


MAX_WORKERS = 64


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the flag."""


@dataclass(frozen=True, slots=True)
class Config:
    """Everything a member needs to start; defaults are the seed's."""

    member_id: int = 1
    cluster: tuple[str, ...] = ("http://127.0.0.1:9021",)
    port: int = 9121
    join: bool = False
    storage: str = "memory"
    data_dir: str = "."
    listen_host: str = "127.0.0.1"
    snapshot_count: int = 100_000
    snapshot_catchup_entries: int = 5_000
    max_snapshots: int = 5
    wal_segment_bytes: int = 64 * 2**20
    rocksdb_block_cache_bytes: int = 64 * 2**20
    rocksdb_write_buffer_bytes: int = 32 * 2**20
    rocksdb_newest_cache_bytes: int = 16 * 2**20
    request_timeout: float = 5.0
    header_timeout: float = 10.0
    max_request_bytes: int = 1536 * 1024
    quota_backend_bytes: int = 2 * 2**30
    """Above this much data on disk a write raises the NOSPACE alarm (etcd's default, 2 GiB)."""
    restore_from: str = ""
    """A snapshot file (from ``/v3/maintenance/snapshot``) a new member of a
    new cluster starts from; its data directory must be empty."""
    tick_ms: int = 100
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    cluster_token: str = "metastore"
    lease_checkpoint_interval: float = 300.0
    """Seconds between the leader's checkpoints of remaining lease TTLs."""
    watch_progress_interval: float = 600.0
    """Seconds between progress notifications to watches that asked for them."""
    grpc_port: int | None = None
    """Port of etcd's gRPC API; None serves no gRPC (the default)."""
    strict_reconfig_check: bool = True
    metrics: bool = True
    """Serve ``/metrics`` and measure for it; False measures nothing."""
    """etcd's check: refuse membership changes that could lose quorum."""
    auth_token: str = "simple"
    """etcd's ``--auth-token``: ``simple`` or ``jwt,priv-key=...,sign-method=...``."""
    auth_token_ttl: int = 300
    """Seconds a simple token lives after its last use (etcd's ``--auth-token-ttl``)."""
    auto_compaction_mode: str = DEFAULT_MODE
    auto_compaction_retention: str = DEFAULT_RETENTION
    """Revisions to keep (revision mode) or a duration (periodic mode, e.g.
    ``5m``; a bare number is hours, as in etcd); ``0`` turns it off."""
    workers: int = 0
    """Front processes serving the client port (``metastore.workers``);
    0 serves it from this process alone."""
    # Transport security (docs/security.md).  Client side: HTTP APIs and gRPC.
    cert_file: str = ""
    key_file: str = ""
    trusted_ca_file: str = ""
    client_cert_auth: bool = False
    """Refuse clients without a certificate signed by ``trusted_ca_file``."""
    auto_tls: bool = False
    """Serve clients TLS with a self-signed certificate made in the data directory (tests only)."""
    peer_cert_file: str = ""
    peer_key_file: str = ""
    peer_trusted_ca_file: str = ""
    peer_cert_allowed_cn: str = ""
    peer_cert_allowed_hostname: str = ""
    peer_token_file: str = ""
    """A file holding the cluster secret peers prove they know (challenge/response)."""
    # Limits (0: none).
    max_client_connections: int = 0
    max_watchers_per_stream: int = 0
    max_streams_per_connection: int = 0
    client_request_rate: float = 0.0
    """Requests per second each client address may make (HTTP APIs); 0 is no limit."""
    client_request_burst: int = 0
    """Requests a client may make at once above its rate (default: one second's worth)."""

    @property
    def client_tls(self) -> bool:
        """Whether the client APIs are served over TLS."""
        return bool(self.cert_file or self.auto_tls)

    @property
    def peer_tls(self) -> bool:
        """Whether peer connections use (mutual) TLS."""
        return bool(self.peer_cert_file)

    def auto_compaction_policy(self) -> AutoCompactionPolicy | None:
        """The auto-compaction policy the flags ask for (None: off)."""
        return parse_auto_compaction(self.auto_compaction_mode, self.auto_compaction_retention)

    def validate(self) -> "Config":
        """Return self, or raise ``ConfigError`` naming the offending flag."""
        if self.member_id < 1:
            raise ConfigError("--id must be a positive integer")
        if not self.cluster:
            raise ConfigError("--cluster must list at least one peer URL")
        if self.member_id > len(self.cluster):
            raise ConfigError(
                f"--id {self.member_id} has no entry in --cluster "
                f"({len(self.cluster)} URL(s)); member ids are positions in that list"
            )
        if not 0 <= self.port <= 65535:
            raise ConfigError("--port must be between 0 and 65535")
        if self.grpc_port is not None and not 0 <= self.grpc_port <= 65535:
            raise ConfigError("--grpc-port must be between 0 and 65535")
        if not 0 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f"--workers must be between 0 and {MAX_WORKERS}")
        if self.storage not in STORAGE_ENGINES:
            raise ConfigError(f"--storage must be one of {', '.join(STORAGE_ENGINES)}")
        if self.snapshot_count < 1:
            raise ConfigError("--snapshot-count must be at least 1")
        if self.snapshot_catchup_entries < 0:
            raise ConfigError("--snapshot-catchup-entries must be 0 or more")
        if self.max_snapshots < 1:
            raise ConfigError("--max-snapshots must be at least 1")
        if self.wal_segment_bytes < 64 * 1024:
            raise ConfigError("--wal-segment-bytes must be at least 65536")
        if self.rocksdb_block_cache_bytes < 2**20 or self.rocksdb_write_buffer_bytes < 2**20:
            raise ConfigError("--rocksdb-block-cache-bytes and --rocksdb-write-buffer-bytes must be at least 1048576")
        if self.rocksdb_newest_cache_bytes < 0:
            raise ConfigError("--rocksdb-newest-cache-bytes must be 0 or more")
        if not self.request_timeout > 0:
            raise ConfigError("--request-timeout must be a positive number of seconds")
        if not self.header_timeout > 0:
            raise ConfigError("--header-timeout must be a positive number of seconds")
        if not self.lease_checkpoint_interval > 0 or not self.watch_progress_interval > 0:
            raise ConfigError("--lease-checkpoint-interval and --watch-progress-interval must be positive numbers of seconds")
        if self.max_request_bytes < 1024:
            raise ConfigError("--max-request-bytes must be at least 1024")
        if self.quota_backend_bytes < 1:
            raise ConfigError("--quota-backend-bytes must be at least 1")
        if self.restore_from and self.join:
            raise ConfigError("--restore-from founds a new cluster; it cannot be used with --join")
        if self.tick_ms < 1:
            raise ConfigError("--tick-ms must be at least 1")
        if self.heartbeat_ticks < 1:
            raise ConfigError("--heartbeat-ticks must be at least 1")
        if self.election_ticks <= self.heartbeat_ticks:
            raise ConfigError("--election-ticks must be greater than --heartbeat-ticks")
        self._validate_security()
        try:
            self.auto_compaction_policy()
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.auth_token_ttl < 1:
            raise ConfigError("--auth-token-ttl must be at least 1")
        try:
            token_provider(self.auth_token, None, self.auth_token_ttl)
        except TokenOptionError as e:
            raise ConfigError(str(e)) from None
        return self

    def _validate_security(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise ConfigError("--cert-file and --key-file go together")
        if self.auto_tls and self.cert_file:
            raise ConfigError("--auto-tls makes its own certificate; leave out --cert-file and --key-file")
        if self.client_cert_auth and not (self.cert_file and self.trusted_ca_file):
            raise ConfigError("--client-cert-auth needs --cert-file, --key-file and --trusted-ca-file")
        if self.trusted_ca_file and not self.cert_file:
            raise ConfigError("--trusted-ca-file needs --cert-file and --key-file")
        peer = (self.peer_cert_file, self.peer_key_file, self.peer_trusted_ca_file)
        if any(peer) and not all(peer):
            raise ConfigError(
                "peer TLS is always mutual: give --peer-cert-file, --peer-key-file and --peer-trusted-ca-file together")
        if (self.peer_cert_allowed_cn or self.peer_cert_allowed_hostname) and not self.peer_tls:
            raise ConfigError("--peer-cert-allowed-cn and --peer-cert-allowed-hostname need peer TLS (--peer-cert-file)")
        if self.peer_cert_allowed_cn and self.peer_cert_allowed_hostname:
            raise ConfigError("give --peer-cert-allowed-cn or --peer-cert-allowed-hostname, not both")
        for flag in ("max_client_connections", "max_watchers_per_stream", "max_streams_per_connection",
                     "client_request_burst"):
            if getattr(self, flag) < 0:
                raise ConfigError(f"--{flag.replace('_', '-')} must be 0 (no limit) or more")
        if not self.client_request_rate >= 0:
            raise ConfigError("--client-request-rate must be 0 (no limit) or a positive number")
        unsupported = self.workers_unsupported() if self.workers else ""
        if unsupported:
            raise ConfigError(f"--workers {self.workers} cannot yet be combined with {unsupported}; use --workers 0 "
                              "(or --workers auto, which then starts none)")

    def workers_unsupported(self) -> str:
        """What in this configuration front processes (``--workers``) cannot
        serve yet, as a phrase naming the flags; "" when they can serve it."""
        # The fronts listen on the client port themselves, without the TLS and limits of metastore.listening.
        flags = [name for name, on in (("client TLS (--cert-file or --auto-tls)", self.client_tls),
                                       ("--client-request-rate", self.client_request_rate),
                                       ("--max-client-connections", self.max_client_connections)) if on]
        return " and ".join(flags)

    @property
    def wal_dir(self) -> str:
        """The memory engine's WAL directory (the seed's layout)."""
        return os.path.join(self.data_dir, f"metaStore-{self.member_id}")

    @property
    def snap_dir(self) -> str:
        """The memory engine's snapshot directory (the seed's layout)."""
        return os.path.join(self.data_dir, f"metaStore-{self.member_id}-snap")
