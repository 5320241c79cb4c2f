"""The Grafana dashboard in docs/ queries only metrics a member exports."""

from __future__ import annotations

import json
import os
import re

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from metastore.config import Config
from metastore.service import open_member
from tests.process import REPO_ROOT, wait_until

DASHBOARD = os.path.join(REPO_ROOT, "docs", "grafana", "metastore-dashboard.json")
METRIC = re.compile(r"\b(?:etcd|metastore|process)_[a-z_]+\b")


class DashboardTests(TestCase):
    """Every series the dashboard asks Prometheus for exists."""

    timeout = 60

    async def test_every_queried_metric_is_exported(self) -> None:
        with open(DASHBOARD) as f:
            dashboard = json.load(f)
        queried = {name for panel in dashboard["panels"] for target in panel["targets"]
                   for name in METRIC.findall(target["expr"])}
        self.assertGreaterEqual(len(queried), 15)
        config = Config(cluster=("http://127.0.0.1:0",), port=0, data_dir=self.mktemp()).validate()
        member = open_member(config, reactor)
        member.startService()
        self.addCleanup(member.stopService)
        await wait_until(lambda: member.node.is_leader, timeout=10, what="leadership")
        member.metrics.peer_round_trip_seconds.labels(To="2").observe(0.001)  # a leader of three has these
        member.metrics.request_seconds.labels(method="GET", route="/{key}", code="200").observe(0.001)
        text = generate_latest(member.metrics.registry).decode()
        exported = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
        self.assertEqual(sorted(queried - exported), [])
