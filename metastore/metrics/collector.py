"""The gauges and totals of a member, read from it at scrape time."""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from metastore import __version__
from metastore.api.v3.versions import ETCD_SERVER_VERSION
from metastore.facade import MemberFacade
from metastore.metrics.keyspace import KeyspaceCounts
from metastore.metrics.peers import peer_label


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _info(name: str, documentation: str, label: str, value: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    family.add_metric([value], 1)
    return family


class MemberStateCollector(Collector):
    """Reads ``facade`` (and ``keyspace``) when scraped: nothing is kept
    up to date on the request path for these.  Names, types and help are
    etcd 3.4's where etcd has the metric."""

    def __init__(self, facade: MemberFacade, keyspace: KeyspaceCounts) -> None:
        self._facade = facade
        self._keyspace = keyspace

    def collect(self) -> Iterator[Metric]:
        """Every gauge and total of the member, as of now."""
        facade = self._facade
        status = facade.status()
        activity = facade.activity()
        keyspace = self._keyspace
        yield _gauge("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.",
                     1 if status.leader else 0)
        yield _gauge("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.",
                     1 if status.leader == status.member_id else 0)
        yield _gauge("etcd_server_is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise.",
                     1 if activity.is_learner else 0)
        yield _counter("etcd_server_leader_changes_seen_total", "The number of leader changes seen.",
                       activity.leader_changes_seen)
        yield _gauge("etcd_server_proposals_committed_total", "The total number of consensus proposals committed.",
                     status.commit_index)
        yield _gauge("etcd_server_proposals_applied_total", "The total number of consensus proposals applied.",
                     status.applied_index)
        yield _gauge("etcd_server_proposals_pending", "The current number of pending proposals to commit.",
                     activity.proposals_pending)
        yield _counter("etcd_server_proposals_failed_total", "The total number of failed proposals seen.",
                       activity.proposals_failed)
        yield _gauge("etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes.",
                     facade.quota_bytes)
        yield _info("etcd_server_version", "Which version is running. 1 for 'server_version' label with current version.",
                    "server_version", ETCD_SERVER_VERSION)
        yield _info("etcd_server_id", "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
                    "server_id", peer_label(status.member_id))
        yield _gauge("etcd_mvcc_db_total_size_in_bytes",
                     "Total size of the underlying database physically allocated in bytes.", facade.db_size())
        yield _gauge("etcd_debugging_mvcc_keys_total", "Total number of keys.", keyspace.keys())
        yield _gauge("etcd_debugging_mvcc_watcher_total", "Total number of watchers.", activity.watchers)
        yield _gauge("etcd_debugging_mvcc_current_revision", "The current revision of store.", status.revision)
        yield _gauge("etcd_debugging_mvcc_compact_revision", "The revision of the last compaction in store.",
                     facade.compacted_revision)
        yield _counter("etcd_debugging_lease_granted_total", "The total number of granted leases.",
                       keyspace.leases_granted)
        yield _counter("etcd_debugging_lease_revoked_total", "The total number of revoked leases.",
                       keyspace.leases_revoked)
        yield _counter("etcd_debugging_lease_renewed_total", "The number of renewed leases seen by the leader.",
                       keyspace.leases_renewed)
        yield _info("metastore_build_info", "MetaStore's version. 1 for 'version' label with the running version.",
                    "version", __version__)
        yield _gauge("metastore_raft_term", "The Raft term this member is in.", status.term)
        yield _gauge("metastore_apply_lag_entries", "Committed entries not yet applied on this member.",
                     max(0, status.commit_index - status.applied_index))
        yield _gauge("metastore_snapshot_index", "The Raft index of this member's newest snapshot.",
                     status.snapshot_index)
        yield _counter("metastore_wal_fsyncs_total", "WAL fsyncs done by this process (one per group commit).",
                       status.wal_syncs)
        yield _gauge("metastore_healthy", "Whether this member can serve (its /health): 1 if it can, 0 otherwise.",
                     1 if status.healthy else 0)
        yield _gauge("metastore_peers_connected", "Peers this member's transport is connected to now.",
                     len(status.connected_peers))
