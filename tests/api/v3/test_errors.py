"""etcd's error answers: the gRPC code, the HTTP status derived from it, the body."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase
from werkzeug.exceptions import MethodNotAllowed, NotFound

from metastore.api.v3.errors import HTTP_STATUS, V3Error, v3_error
from metastore.api.v3.json_fields import BadBody
from metastore.auth.errors import AuthOldRevision
from metastore.errors import NoLeader, RequestTimedOut, StorageFailed
from metastore.facade import MembershipError
from metastore.kv.errors import CompactedError, DuplicateKeyError, LeaseNotFoundError


class ErrorMappingTests(SynchronousTestCase):
    """Every failure a handler meets becomes etcd's answer."""

    def answer(self, error: Exception) -> tuple[int, dict]:
        mapped = v3_error(error)
        return mapped.http_status, json.loads(mapped.body())

    def test_kv_errors(self):
        """A ``KVError`` keeps etcd's message and code; the status follows the code."""
        self.assertEqual(self.answer(CompactedError()), (400, {
            "error": "etcdserver: mvcc: required revision has been compacted", "code": 11,
            "message": "etcdserver: mvcc: required revision has been compacted"}))  # fmt: skip
        self.assertEqual(self.answer(DuplicateKeyError())[1]["code"], 3)
        self.assertEqual(self.answer(LeaseNotFoundError()), (404, {
            "error": "etcdserver: requested lease not found", "code": 5,
            "message": "etcdserver: requested lease not found"}))  # fmt: skip

    def test_auth_old_revision(self):
        """A request checked at an auth revision since passed: etcd 3.4.23's
        gateway answers 400 with InvalidArgument (its gRPC code 3)."""
        message = "etcdserver: revision of auth store is old"
        self.assertEqual(self.answer(AuthOldRevision()), (400, {"error": message, "code": 3, "message": message}))

    def test_bad_body(self):
        """A body jsonpb would refuse is InvalidArgument, 400."""
        status, body = self.answer(BadBody("key: illegal base64 data"))
        self.assertEqual((status, body["code"]), (400, 3))

    def test_unavailable(self):
        """The node's unavailability is gRPC Unavailable, 503, with etcd's words where etcd has them."""
        self.assertEqual(self.answer(NoLeader("x")), (503, {"error": "etcdserver: no leader", "code": 14,
                                                             "message": "etcdserver: no leader"}))
        self.assertEqual(self.answer(RequestTimedOut("x"))[1]["error"], "etcdserver: request timed out")
        self.assertEqual(self.answer(StorageFailed("disk gone"))[0], 503)

    def test_membership_errors(self):
        """Membership refusals get etcd's cluster errors."""
        self.assertEqual(self.answer(MembershipError("no_such_member", "x")),
                         (404, {"error": "etcdserver: member not found", "code": 5,
                                "message": "etcdserver: member not found"}))
        status, body = self.answer(MembershipError("learner_not_ready", "x"))
        self.assertEqual((status, body["error"]), (412, "etcdserver: can only promote a learner member which is in sync with leader"))

    def test_routing(self):
        """Unknown paths are 404 and other methods 405, in etcd's error shape."""
        self.assertEqual(self.answer(NotFound())[0], 404)
        self.assertEqual(self.answer(MethodNotAllowed(["POST"]))[0], 405)

    def test_grpc_gateway_statuses(self):
        """The code-to-status table is grpc-gateway's."""
        self.assertEqual(
            [HTTP_STATUS[c] for c in range(17)],
            [200, 408, 500, 400, 504, 404, 409, 403, 429, 412, 409, 400, 501, 500, 503, 500, 401],
        )
        self.assertEqual(V3Error(99, "x").http_status, 500)

    def test_bugs_are_not_mapped(self):
        """Anything else is a bug, left to the 500 answer."""
        self.assertIsNone(v3_error(ZeroDivisionError()))
