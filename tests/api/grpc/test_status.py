"""etcd's gRPC codes and messages for MetaStore's failures."""

from __future__ import annotations

import grpc
from twisted.trial.unittest import SynchronousTestCase

from metastore.api.grpc.status import EtcdStatus, status_of
from metastore.errors import ChangeRefused, NoLeader, RequestTimedOut, Stopping
from metastore.kv.errors import CompactedError


class StatusOfTests(SynchronousTestCase):
    """``status_of`` gives each failure etcd's code and text."""

    def test_node_errors_are_etcds(self):
        """No leader, a timeout and a stopping member answer UNAVAILABLE
        (clients retry on it) with etcd's exact messages."""
        self.assertEqual(
            [status_of(e) for e in (NoLeader("x"), RequestTimedOut("x"), Stopping("x"))],
            [
                EtcdStatus(grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader"),
                EtcdStatus(grpc.StatusCode.UNAVAILABLE, "etcdserver: request timed out"),
                EtcdStatus(grpc.StatusCode.UNAVAILABLE, "etcdserver: server stopped"),
            ],
        )

    def test_other_unavailable_is_retryable_with_its_text(self):
        """Any other Unavailable answers UNAVAILABLE with its own text."""
        status = status_of(ChangeRefused("another membership change is in progress"))
        self.assertEqual(
            status,
            EtcdStatus(grpc.StatusCode.UNAVAILABLE, "etcdserver: another membership change is in progress"),
        )

    def test_error_with_its_wire_form(self):
        """A KV error answers with the gRPC code and message it carries."""
        self.assertEqual(
            status_of(CompactedError()),
            EtcdStatus(grpc.StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted"),
        )

    def test_anything_else_is_unknown(self):
        """An unexpected error answers UNKNOWN with its text, as etcd does."""
        self.assertEqual(status_of(ValueError("boom")), EtcdStatus(grpc.StatusCode.UNKNOWN, "boom"))
        self.assertEqual(status_of(KeyError()), EtcdStatus(grpc.StatusCode.UNKNOWN, "KeyError"))
