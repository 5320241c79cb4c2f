"""etcd's gRPC codes and messages for MetaStore's failures."""

from __future__ import annotations

import grpc
from twisted.trial.unittest import SynchronousTestCase

from metastore.api.grpc.status import EtcdStatus, status_of
from metastore.api.v3.errors import v3_error
from metastore.errors import ChangeRefused, NoLeader, RequestTimedOut, Stopping, StorageFailed, UnhealthyCluster
from metastore.facade import MembershipError
from metastore.kv.errors import CompactedError, FutureRevisionError, TooManyOpsError


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

    def test_other_unavailable_is_retryable(self):
        """A refused membership change answers etcd's "unhealthy cluster";
        any other Unavailable UNAVAILABLE with its own text."""
        self.assertEqual(
            status_of(ChangeRefused("another membership change is in progress")),
            EtcdStatus(grpc.StatusCode.UNAVAILABLE, "etcdserver: unhealthy cluster"),
        )
        self.assertEqual(
            status_of(StorageFailed("disk gone")), EtcdStatus(grpc.StatusCode.UNAVAILABLE, "etcdserver: disk gone")
        )

    def test_same_table_as_the_json_api(self):
        """Membership refusals, the strict reconfiguration check and
        MetaStore's own V3Errors answer the code and message the JSON API
        answers (etcd 3.4's, as etcdctl showed them)."""
        cases = [
            (MembershipError("no_such_member", "x"), grpc.StatusCode.NOT_FOUND, "etcdserver: member not found"),
            (MembershipError("bad_transferee", "x"), grpc.StatusCode.FAILED_PRECONDITION,
             "etcdserver: bad leader transferee"),
            (MembershipError("peer_url_exists", "x"), grpc.StatusCode.FAILED_PRECONDITION,
             "etcdserver: Peer URLs already exists"),
            (UnhealthyCluster("x"), grpc.StatusCode.FAILED_PRECONDITION,
             "etcdserver: re-configuration failed due to not enough started members"),
            (TooManyOpsError(), grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: too many operations in txn request"),
            (FutureRevisionError(), grpc.StatusCode.OUT_OF_RANGE,
             "etcdserver: mvcc: required revision is a future revision"),
        ]
        for error, code, message in cases:
            self.assertEqual(status_of(error), EtcdStatus(code, message))
            self.assertEqual((v3_error(error).code, v3_error(error).message), (code.value[0], message))

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
