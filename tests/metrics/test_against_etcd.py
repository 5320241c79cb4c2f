"""MetaStore's etcd-named metrics held to a real etcd 3.4's /metrics."""

from __future__ import annotations

import treq
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from metastore.config import Config
from metastore.service import open_member
from tests.etcd import EtcdCluster
from tests.process import wait_until


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def label_names(family) -> set[str]:
    return {name for s in family.samples for name in s.labels if name != "le"}


class SameAsEtcdTests(TestCase):
    """Every ``etcd_*`` family MetaStore exports is in etcd's /metrics with
    the same type and label names."""

    timeout = 120

    async def test_names_types_and_labels(self) -> None:
        etcd = EtcdCluster(self, size=2)  # two members, so etcd times its peer round trips
        await etcd.start()

        async def etcd_scrape():
            response = await treq.get(etcd.urls[0] + "/metrics", persistent=False)
            found = families(await response.text())
            rtt = found.get("etcd_network_peer_round_trip_time_seconds")
            return found if rtt is not None and rtt.samples else None

        reference = await wait_until(etcd_scrape, timeout=30, interval=0.5, what="etcd's peer round trips")
        config = Config(cluster=("http://127.0.0.1:0",), port=0, data_dir=self.mktemp()).validate()
        member = open_member(config, reactor)
        member.startService()
        self.addCleanup(member.stopService)
        await wait_until(lambda: member.node.is_leader, timeout=10, what="leadership")
        ours = families(generate_latest(member.metrics.registry).decode())
        member.metrics.peer_round_trip_seconds.labels(To="2").observe(0.001)  # as a leader of three would
        ours.update(families(generate_latest(member.metrics.registry).decode()))
        etcd_named = sorted(name for name in ours if name.startswith("etcd_"))
        self.assertGreaterEqual(len(etcd_named), 20)
        for name in etcd_named:
            self.assertIn(name, reference, f"{name} is not etcd's")
            self.assertEqual(ours[name].type, reference[name].type, name)
            self.assertEqual(label_names(ours[name]), label_names(reference[name]), name)
