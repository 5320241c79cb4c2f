"""The Python ``etcd3`` package (python-etcd3 0.12, gRPC) against a real
member: put, get, watch and lease, as it sees them against etcd 3.4.

etcd3 ships stubs generated for protobuf 3: with this project's protobuf
they import only on the pure-Python protobuf
(``PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python``), and they register
``etcdserverpb`` in protobuf's default pool, which MetaStore's own
messages also do; so the client runs in a child process
(``tests/etcd3_client_run.py``).  Skipped with the reason when etcd3 is not
installed.
"""

from __future__ import annotations

import importlib.util
import json
import sys

from twisted.internet import reactor, utils
from twisted.trial.unittest import SkipTest, TestCase

from tests.etcdctl import GrpcCluster
from tests.process import REPO_ROOT, child_env, wait_healthy

EXPECTED = {
    "lease_granted_ttl": 30,
    "get": ["v1", True, 1],
    "watch": [["PutEvent", "e3/k", "v2"], ["DeleteEvent", "e3/k", ""]],
    "refresh_ttl": [30],
    "remaining_ttl_positive": True,
    "keys": ["e3/leased"],
    "after_revoke": [None, -1],
}
"""What ``tests/etcd3_client_run.py`` prints against etcd 3.4.23."""


class Etcd3ClientTests(TestCase):
    """python-etcd3 against one member over gRPC."""

    timeout = 120

    async def test_put_get_watch_lease(self):
        """The client's put, get, watch (a put and a delete), lease grant,
        refresh, TTL, keys and revoke answer as against etcd."""
        if importlib.util.find_spec("etcd3") is None:
            raise SkipTest("the etcd3 package is not installed (pip install etcd3)")
        cluster = GrpcCluster(self, 1)
        cluster.start()
        await wait_healthy(cluster.members[1], 40)
        env = {**child_env(), "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}
        d = utils.getProcessOutputAndValue(
            sys.executable, ["-m", "tests.etcd3_client_run", "127.0.0.1", str(cluster.grpc_ports[1])],
            env=env, path=REPO_ROOT, reactor=reactor,
        )  # fmt: skip
        d.addTimeout(90, reactor)
        out, err, code = await d
        self.assertEqual(code, 0, err.decode()[-3000:])
        self.assertEqual(json.loads(out.decode().splitlines()[0]), EXPECTED)
