"""A real one-member cluster in this process, scraped: metastore.metrics.member."""

from __future__ import annotations

import treq
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from metastore.config import Config
from metastore.kv.messages import DeleteRangeRequest, LeaseGrantRequest, PutRequest
from metastore.measure import UNMEASURED
from metastore.service import open_member
from tests.process import wait_until

ETCD_TYPES = {
    "etcd_server_has_leader": "gauge",
    "etcd_server_is_leader": "gauge",
    "etcd_server_leader_changes_seen": "counter",
    "etcd_server_proposals_committed_total": "gauge",
    "etcd_server_proposals_applied_total": "gauge",
    "etcd_server_proposals_pending": "gauge",
    "etcd_server_proposals_failed": "counter",
    "etcd_server_version": "gauge",
    "etcd_disk_wal_fsync_duration_seconds": "histogram",
    "etcd_disk_backend_commit_duration_seconds": "histogram",
    "etcd_network_peer_round_trip_time_seconds": "histogram",
    "etcd_mvcc_db_total_size_in_bytes": "gauge",
    "etcd_debugging_mvcc_keys_total": "gauge",
    "etcd_debugging_mvcc_watcher_total": "gauge",
    "etcd_debugging_lease_granted": "counter",
    "etcd_debugging_lease_revoked": "counter",
    "etcd_debugging_lease_renewed": "counter",
}
"""etcd 3.4.23's types for these names, as its /metrics declares them (a
counter family is named without ``_total`` by the parser)."""


def scrape(text: str) -> dict[str, object]:
    """Families by name from an exposition."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families, name: str, sample: str | None = None, **labels) -> float | None:
    for s in families[name].samples:
        if s.name == (sample or name) and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


class MemberMetricsTests(TestCase):
    """Each member has its own registry, read from its state."""

    timeout = 60

    async def start(self, **flags):
        config = Config(cluster=("http://127.0.0.1:0",), port=0, data_dir=self.mktemp(), **flags).validate()
        member = open_member(config, reactor)
        member.startService()
        self.addCleanup(member.stopService)
        await wait_until(lambda: member.node.is_leader, timeout=10, what="leadership")
        port = await member.http.listening
        return member, f"http://127.0.0.1:{port.getHost().port}"

    async def test_names_types_and_values_of_a_member(self) -> None:
        member, url = await self.start()
        api = member.api
        for i in range(5):
            await api.propose(PutRequest(b"k%d" % i, b"v"))
        await api.propose(DeleteRangeRequest(b"k0"))
        await api.lease_grant(60, 42)
        watch = api.watch(b"k1", callback=lambda response: None)
        self.addCleanup(watch.cancel)
        response = await treq.get(url + "/metrics", persistent=False)
        self.assertEqual(response.code, 200)
        families = scrape(await response.text())
        for name, kind in ETCD_TYPES.items():
            self.assertEqual(families[name].type, kind, name)
        status = api.status()
        self.assertEqual(value(families, "etcd_server_has_leader"), 1)
        self.assertEqual(value(families, "etcd_server_is_leader"), 1)
        self.assertEqual(value(families, "etcd_server_leader_changes_seen", "etcd_server_leader_changes_seen_total"), 1)
        self.assertEqual(value(families, "etcd_server_proposals_applied_total"), status.applied_index)
        self.assertGreaterEqual(value(families, "etcd_server_proposals_committed_total"), status.applied_index)
        self.assertEqual(value(families, "etcd_server_proposals_pending"), 0)
        self.assertEqual(value(families, "etcd_debugging_mvcc_keys_total"), 4)
        self.assertEqual(value(families, "etcd_debugging_mvcc_watcher_total"), 1)
        self.assertEqual(value(families, "etcd_debugging_lease_granted", "etcd_debugging_lease_granted_total"), 1)
        self.assertEqual(value(families, "etcd_server_version", server_version="3.4.23"), 1)
        self.assertGreater(value(families, "etcd_mvcc_db_total_size_in_bytes"), 0)
        fsyncs = value(families, "etcd_disk_wal_fsync_duration_seconds", "etcd_disk_wal_fsync_duration_seconds_count")
        self.assertGreaterEqual(fsyncs, 7)
        self.assertEqual(value(families, "metastore_wal_fsyncs", "metastore_wal_fsyncs_total"), status.wal_syncs)
        self.assertGreater(value(families, "process_resident_memory_bytes"), 0)

    async def test_requests_are_timed_by_route_and_code(self) -> None:
        _, url = await self.start()
        for i in range(3):
            await (await treq.put(f"{url}/key{i}", data=b"v", persistent=False)).content()
        await (await treq.get(f"{url}/nothing-here", persistent=False)).content()
        families = scrape(await (await treq.get(url + "/metrics", persistent=False)).text())
        name = "metastore_http_request_duration_seconds"
        self.assertEqual(value(families, name, name + "_count", method="PUT", route="/{key}", code="204"), 3)
        self.assertEqual(value(families, name, name + "_count", method="GET", route="/{key}", code="404"), 1)

    async def test_members_in_one_process_keep_their_own(self) -> None:
        first, _ = await self.start()
        second, _ = await self.start(member_id=1)
        await first.api.propose(PutRequest(b"only-in-first", b"v"))
        keys = [value(scrape(generate_latest(m.metrics.registry).decode()), "etcd_debugging_mvcc_keys_total")
                for m in (first, second)]
        self.assertEqual(keys, [1, 0])

    async def test_off_serves_nothing_and_measures_nothing(self) -> None:
        member, url = await self.start(metrics=False)
        response = await treq.get(url + "/metrics", persistent=False)
        await response.content()
        self.assertEqual(response.code, 404)
        response = await treq.put(url + "/metrics", data=b"v", persistent=False)
        await response.content()
        self.assertEqual(response.code, 404)  # still reserved: not a key
        self.assertEqual(member.api.revision, 1)
        self.assertIsNone(member.metrics)
        self.assertIs(member.node.disk.fsync_seconds, UNMEASURED)
        self.assertIsNone(member.node.transport.observer)
