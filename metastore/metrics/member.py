"""One member's registry, its histograms, and wiring them into its parts."""

from __future__ import annotations

from typing import Callable

from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import CollectorRegistry

from metastore.facade import MemberFacade
from metastore.metrics.collector import MemberStateCollector
from metastore.metrics.histogram import HistogramFamily
from metastore.metrics.http import MetricsResource, RequestDurations
from metastore.metrics.keyspace import KeyspaceCounts
from metastore.metrics.peers import PeerRoundTrips


def _doubling(start: float, count: int) -> tuple[float, ...]:
    return tuple(round(start * 2**i, 10) for i in range(count))


DISK_BUCKETS = _doubling(0.001, 14)
"""etcd's buckets for disk latencies: 1 ms to 8.192 s."""
PEER_BUCKETS = _doubling(0.0001, 16)
"""etcd's buckets for peer round trips: 0.1 ms to 3.2768 s."""
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SNAPSHOT_BUCKETS = _doubling(0.01, 14)
"""10 ms to 81.92 s."""


class MemberMetrics:
    """A registry of one member's own (members sharing a process keep
    theirs apart): the member's state read at scrape time
    (``MemberStateCollector``), the histograms its parts observe, and the
    process' CPU, memory and file descriptors."""

    def __init__(self, facade: MemberFacade, keyspace: KeyspaceCounts) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=False)
        self.wal_fsync_seconds = self._family(
            "etcd_disk_wal_fsync_duration_seconds", "The latency distributions of fsync called by WAL.",
            buckets=DISK_BUCKETS)
        self.backend_commit_seconds = self._family(
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend (one applied batch of entries).",
            buckets=DISK_BUCKETS)
        self.peer_round_trip_seconds = self._family(
            "etcd_network_peer_round_trip_time_seconds", "Round-Trip-Time histogram between peers",
            labelnames=("To",), buckets=PEER_BUCKETS)
        self.request_seconds = self._family(
            "metastore_http_request_duration_seconds",
            "Time from a request's head arriving to its answer's last byte, by method, route and status code.",
            labelnames=("method", "route", "code"), buckets=REQUEST_BUCKETS)
        self.snapshot_save_seconds = self._family(
            "metastore_snapshot_save_duration_seconds", "Time to write a snapshot file until it is durable.",
            buckets=SNAPSHOT_BUCKETS)
        self.snapshot_install_seconds = self._family(
            "metastore_snapshot_install_duration_seconds", "Time to install a snapshot received from the leader.",
            buckets=SNAPSHOT_BUCKETS)
        registry.register(MemberStateCollector(facade, keyspace))
        ProcessCollector(registry=registry)

    def _family(self, name: str, documentation: str, buckets, labelnames=()) -> HistogramFamily:
        family = HistogramFamily(name, documentation, buckets, labelnames)
        self.registry.register(family)
        return family

    def resource(self) -> MetricsResource:
        """The ``/metrics`` resource for this registry."""
        return MetricsResource(self.registry)

    def request_durations(self, is_mounted: Callable[[bytes], bool]) -> RequestDurations:
        """The site's hook that times each request (``RequestDurations``)."""
        return RequestDurations(self.request_seconds, is_mounted)


def instrument(node, facade: MemberFacade) -> MemberMetrics:
    """Build ``node``'s metrics and hand its parts their histograms."""
    metrics = MemberMetrics(facade, KeyspaceCounts(node.store))
    node.disk.fsync_seconds = metrics.wal_fsync_seconds
    node.applier.commit_seconds = metrics.backend_commit_seconds
    node.compaction.snapshotter.save_seconds = metrics.snapshot_save_seconds
    node.compaction.snapshotter.install_seconds = metrics.snapshot_install_seconds
    if node.transport is not None:
        node.transport.observer = PeerRoundTrips(metrics.peer_round_trip_seconds)
    return metrics
