"""The documentation site and the deployment examples in ``docs/``.

The site must build with ``mkdocs build --strict`` (no broken link, no
page missing from the files); the systemd unit and the Kubernetes example
may only use flags that ``twistd metastore`` accepts; the Grafana
dashboard must be valid JSON whose queries name only metrics a member
exports (checked when the member serves ``/metrics``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from metastore.tap import Options
from tests.chaos.helpers import start_single_member
from tests.process import REPO_ROOT

DOCS = os.path.join(REPO_ROOT, "docs")
METRIC_NAME = re.compile(r"\b((?:etcd|metastore)_[a-z_]+)")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def _flags_used(text: str) -> set[str]:
    """The ``--flags`` outside comment lines (comments show other commands)."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return set(re.findall(r"(?<![\w-])--([a-z][a-z-]+)", "\n".join(lines)))


def _known_flags() -> set[str]:
    return {row[0] for row in Options.optFlags + Options.optParameters} | {"help", "version"}


class DocsSiteTests(SynchronousTestCase):
    """``mkdocs build --strict`` over ``docs/``."""

    def test_the_site_builds_strictly(self):
        """Every page builds, every link and image resolves; the nav's
        pages, the OpenAPI document and the examples are in the site."""
        try:
            import mkdocs  # noqa: F401
        except ImportError:
            raise SkipTest("mkdocs is not installed (pip install '.[docs]')")
        site = os.path.abspath(self.mktemp())
        result = subprocess.run(
            [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", site],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        for page in ("index.html", "quickstart/index.html", "concepts/index.html", "api/rest/index.html",
                     "etcd-compatibility/index.html", "operations/index.html", "deploy/index.html",
                     "dashboard/index.html", "api/openapi.yaml", "deploy/statefulset.yaml",
                     "deploy/metastore.service", "grafana/metastore-dashboard.json", "images/dashboard.png"):
            self.assertTrue(os.path.isfile(os.path.join(site, page)), page)


class DeploymentExampleTests(SynchronousTestCase):
    """The systemd unit and the StatefulSet say what a member accepts."""

    def read(self, *path: str) -> str:
        with open(os.path.join(DOCS, *path), encoding="utf-8") as f:
            return f.read()

    def test_the_examples_use_only_real_flags(self):
        """Every ``--flag`` of the unit, its environment file and the
        StatefulSet (outside comments) is one of ``twistd metastore``'s."""
        known = _known_flags()
        for name in ("metastore.service", "statefulset.yaml"):
            used = _flags_used(self.read("deploy", name))
            self.assertGreaterEqual(used, {"id", "cluster", "listen-host", "port", "data-dir"}, name)
            self.assertEqual(used - known, set(), name)
        self.assertEqual(_flags_used(self.read("deploy", "metastore.env")) - known, set())

    def test_the_statefulset_is_three_members_with_probes(self):
        """The manifests parse; the StatefulSet's replicas match its
        --cluster list and it probes /readyz and /livez."""
        try:
            import yaml
        except ImportError:
            raise SkipTest("PyYAML is not installed")
        documents = list(yaml.safe_load_all(self.read("deploy", "statefulset.yaml")))
        kinds = [d["kind"] for d in documents]
        self.assertEqual(kinds, ["Service", "Service", "PodDisruptionBudget", "StatefulSet"])
        stateful = documents[-1]["spec"]
        [container] = stateful["template"]["spec"]["containers"]
        cluster = next(e["value"] for e in container["env"] if e["name"] == "CLUSTER").split(",")
        self.assertEqual(stateful["replicas"], len(cluster))
        self.assertEqual([f"metastore-{i}.metastore" in url for i, url in enumerate(cluster)], [True] * 3)
        self.assertEqual(container["readinessProbe"]["httpGet"]["path"], "/readyz")
        self.assertEqual(container["livenessProbe"]["httpGet"]["path"], "/livez")


class GrafanaDashboardTests(SynchronousTestCase):
    """``docs/grafana/metastore-dashboard.json``."""

    def setUp(self):
        with open(os.path.join(DOCS, "grafana", "metastore-dashboard.json"), encoding="utf-8") as f:
            self.dashboard = json.load(f)
        self.expressions = [t["expr"] for p in self.dashboard["panels"] for t in p["targets"]]

    def metric_families(self) -> set[str]:
        names = set()
        for expression in self.expressions:
            for name in METRIC_NAME.findall(expression):
                for suffix in HISTOGRAM_SUFFIXES:
                    if name.endswith(suffix):
                        name = name[: -len(suffix)]
                names.add(name)
        return names

    def test_every_panel_queries_something(self):
        """Panels have unique ids, and each has at least one query naming a metric."""
        ids = [p["id"] for p in self.dashboard["panels"]]
        self.assertEqual(len(ids), len(set(ids)))
        for panel in self.dashboard["panels"]:
            self.assertTrue(panel["targets"], panel["title"])
            for target in panel["targets"]:
                self.assertRegex(target["expr"], METRIC_NAME, panel["title"])

    def test_every_metric_is_exported_by_a_member(self):
        """Every metric the dashboard queries is in a member's /metrics."""
        try:
            from prometheus_client.parser import text_string_to_metric_families
        except ImportError:
            raise SkipTest("prometheus_client is not installed")
        member = start_single_member(self)
        try:
            with urllib.request.urlopen(member.url + "/metrics", timeout=10) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as e:
            raise SkipTest(f"this checkout's member does not serve /metrics ({e.code}); "
                           "the metrics work (issue 16, ops-metrics) adds it")
        exported = {family.name for family in text_string_to_metric_families(text)}
        # The parser names counters without their _total suffix.
        exported |= {name + "_total" for name in exported}
        self.assertEqual(self.metric_families() - exported, set())
