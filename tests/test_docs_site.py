"""The documentation site and the deployment examples in ``docs/``.

The site must build with ``mkdocs build --strict`` (no broken link, no
page missing from the files); the systemd unit and the Kubernetes example
may only use flags that ``twistd metastore`` accepts.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from metastore.tap import Options
from tests.process import REPO_ROOT

DOCS = os.path.join(REPO_ROOT, "docs")


def _flags_used(text: str) -> set[str]:
    """The ``--flags`` outside comment lines (comments show other commands)."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return set(re.findall(r"(?<![\w-])--([a-z][a-z-]+)", "\n".join(lines)))


def _known_flags() -> set[str]:
    """Every flag ``twistd metastore`` accepts, by its long name."""
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
                     "deploy/metastore.service", "images/dashboard.png", "monitoring/index.html",
                     "grafana/metastore-dashboard.json"):
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
