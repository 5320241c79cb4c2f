"""A write's permission is checked again at apply, with the auth revision
(etcd's model), on a real member on a controlled clock and disk.

The write is authorized, then a revocation is proposed before it, so the
revocation's entry applies between the write's check and its apply: the
write is refused with etcd's ``revision of auth store is old`` and nothing
of it is stored, also after the member restarts from its WAL or a snapshot.
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock

from metastore.api.v3.kv import KVService
from metastore.auth.errors import AuthOldRevision, PermissionDenied, UserNotFound
from metastore.auth.messages import (
    AuthEnable,
    Permission,
    PermissionType,
    RoleAdd,
    RoleGrantPermission,
    RoleRevokePermission,
    UserAdd,
    UserDelete,
    UserGrantRole,
    UserRevokeRole,
)
from metastore.auth.tokens import JwtTokens
from metastore.config import Config
from metastore.facade import MemberFacade
from metastore.kv.messages import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    LeaseGrantRequest,
    LeaseRevokeRequest,
    PutRequest,
    RangeRequest,
    TxnRequest,
)
from metastore.service import open_member
from tests.test_node import ControlledDisk, NodeHarness

SECRET = b"apply-check-test-secret-of-32-bytes!"


class AuthAtApplyTests(NodeHarness):
    """User ``u`` may read and write ``[a, b)``; root may do anything."""

    def setUp(self) -> None:
        config = Config(cluster=("http://127.0.0.1:0",), port=0, data_dir=self.mktemp()).validate()
        self.open(config)
        self.addCleanup(self.stop)
        self.tokens = JwtTokens(self.clock, "HS256", SECRET, SECRET)
        self.api = MemberFacade(self.node, auth_tokens=self.tokens)
        for command in (
            UserAdd("root", b"", no_password=True), UserGrantRole("root", "root"), RoleAdd("rw"),
            RoleGrantPermission("rw", Permission(PermissionType.READWRITE, b"a", b"b")),
            UserAdd("u", b"", no_password=True), UserGrantRole("u", "rw"), AuthEnable(),
        ):  # fmt: skip
            self.successResultOf(self.settled(self.api.propose(command)))
        self.user = self.tokens.issue("u", self.api.auth_state().revision)
        self.root = self.tokens.issue("root", self.api.auth_state().revision)

    def settled(self, d):
        self.settle()
        return d

    def revoke_between(self, request):
        """Check ``request`` for ``u``, apply a revocation of ``u``'s
        permission, then propose ``request`` as checked; (revocation, write)."""
        auth = self.api.authorize(self.user, request)
        self.assertEqual(auth.user, "u")
        revoke = RoleRevokePermission("rw", b"a", b"b")
        revoked = self.api.propose(revoke, self.api.authorize_admin(self.root))
        written = self.api.propose(request, auth)
        self.settle()
        return revoked, written

    def test_a_write_checked_before_a_revocation_is_refused_at_apply(self) -> None:
        """The revocation applies first (log order), so the put finds the
        auth revision moved: refused, the key absent, the revision unchanged."""
        revision = self.node.store.revision
        revoked, written = self.revoke_between(PutRequest(b"a1", b"v"))
        self.successResultOf(revoked)
        self.failureResultOf(written, AuthOldRevision)
        self.assertIsNone(self.node.store.get(b"a1"))
        self.assertEqual(self.node.store.revision, revision)
        self.assertRaises(PermissionDenied, self.api.authorize, self.user, PutRequest(b"a1", b"v"))

    def test_every_kind_of_write_is_refused(self) -> None:
        """Delete, txn (both branches) and lease grant checked before the
        revocation are refused alike."""
        self.successResultOf(self.settled(self.api.propose(PutRequest(b"a2", b"old"), self.api.authorize(
            self.user, PutRequest(b"a2", b"old")))))
        revision = self.node.store.revision
        txn = TxnRequest((Compare(CompareTarget.VERSION, CompareResult.EQUAL, b"a2", 5),),
                         (PutRequest(b"a3", b"x"),), (DeleteRangeRequest(b"a2"),))
        for request in (DeleteRangeRequest(b"a2"), txn, LeaseGrantRequest(60, 77)):
            auth = self.api.authorize(self.user, request)
            self.successResultOf(self.settled(self.api.propose(UserAdd(f"x{id(request)}", b"", True))))
            self.failureResultOf(self.settled(self.api.propose(request, auth)), AuthOldRevision)
        self.assertEqual(self.node.store.get(b"a2").value, b"old")
        self.assertEqual(self.node.store.revision, revision)
        self.assertEqual(self.node.store.leases(), [])

    def test_a_write_checked_at_the_current_revision_is_applied(self) -> None:
        """Control: with no auth change in between, the write is stored."""
        request = PutRequest(b"a1", b"v")
        self.successResultOf(self.settled(self.api.propose(request, self.api.authorize(self.user, request))))
        self.assertEqual(self.node.store.get(b"a1").value, b"v")

    def test_a_key_attached_to_the_lease_after_the_check_refuses_the_revoke(self) -> None:
        """etcd's lease check at apply: root attaches a key ``u`` may not
        write to ``u``'s lease between the check of ``u``'s revoke (or of
        ``u``'s put attaching a key) and its apply; no auth change happened,
        yet both are refused and the lease and root's key stay."""
        granted = self.api.propose(LeaseGrantRequest(60, 9), self.api.authorize(self.user, LeaseGrantRequest(60, 9)))
        self.successResultOf(self.settled(granted))
        revoke, put = LeaseRevokeRequest(9), PutRequest(b"a1", b"v", lease=9)
        checked = [(request, self.api.authorize(self.user, request)) for request in (revoke, put)]
        root_put = PutRequest(b"z", b"root's", lease=9)
        self.successResultOf(self.settled(self.api.propose(root_put, self.api.authorize(self.root, root_put))))
        for request, auth in checked:
            self.failureResultOf(self.settled(self.api.propose(request, auth)), PermissionDenied)
        self.assertEqual(self.node.store.lease_keys(9), [b"z"])
        self.assertIsNone(self.node.store.get(b"a1"))

    def test_an_auth_change_by_a_user_demoted_since_its_check_is_denied(self) -> None:
        """etcd's admin check at apply: ``admin`` (granted the root role) is
        checked for a user add, then root takes the role away and that
        applies first; the add is denied and no user is added.  Checked
        again, ``admin`` is denied; root, checked before that change and
        still root, may add (an older auth revision alone refuses no auth
        change, as in etcd)."""
        for command in (UserAdd("admin", b"", no_password=True), UserGrantRole("admin", "root")):
            self.successResultOf(self.settled(self.api.propose(command, self.api.authorize_admin(self.root))))
        admin = self.tokens.issue("admin", self.api.auth_state().revision)
        checked, root_checked = self.api.authorize_admin(admin), self.api.authorize_admin(self.root)
        self.assertEqual(checked.user, "admin")
        demoted = self.api.propose(UserRevokeRole("admin", "root"), self.api.authorize_admin(self.root))
        added = self.api.propose(UserAdd("evil", b"", no_password=True), checked)
        root_added = self.api.propose(UserAdd("fine", b"", no_password=True), root_checked)
        self.settle()
        self.successResultOf(demoted)
        self.failureResultOf(added, PermissionDenied)
        self.successResultOf(root_added)
        users = self.api.auth_state().users
        self.assertNotIn("evil", users)
        self.assertIn("fine", users)
        self.assertRaises(PermissionDenied, self.api.authorize_admin, admin)

    def test_an_auth_change_by_a_user_deleted_since_its_check_is_refused(self) -> None:
        """The checked user was deleted before the change's entry: etcd's
        ``user name not found``, and nothing changes."""
        for command in (UserAdd("admin", b"", no_password=True), UserGrantRole("admin", "root")):
            self.successResultOf(self.settled(self.api.propose(command, self.api.authorize_admin(self.root))))
        checked = self.api.authorize_admin(self.tokens.issue("admin", self.api.auth_state().revision))
        deleted = self.api.propose(UserDelete("admin"), self.api.authorize_admin(self.root))
        added = self.api.propose(RoleAdd("evil"), checked)
        self.settle()
        self.successResultOf(deleted)
        self.failureResultOf(added, UserNotFound)
        self.assertNotIn("evil", self.api.auth_state().roles)

    def test_a_read_answered_after_an_auth_change_is_refused(self) -> None:
        """etcd checks the auth revision again once a range is served: a
        range (and a read-only txn) checked before an auth change and
        answered after it is refused; one checked after it is answered."""
        kv = KVService(self.api, lambda revision: None)
        request = RangeRequest(b"a", b"b")
        checked = [(request, self.api.authorize(self.user, request)),
                   (TxnRequest(success=(request,)), self.api.authorize(self.user, request))]
        self.successResultOf(self.settled(self.api.propose(UserAdd("x", b"", True))))
        for asked, auth in checked:
            self.failureResultOf(self.settled(kv.range(asked, auth) if asked is request else kv.txn(asked, auth)),
                                 AuthOldRevision)
        self.assertEqual(self.successResultOf(self.settled(kv.range(request, self.api.authorize(
            self.user, request)))).count, 0)

    def test_the_refusal_survives_restart_from_the_wal_and_a_snapshot(self) -> None:
        """A restarted member replays the same entries to the same decision."""
        _, written = self.revoke_between(PutRequest(b"a1", b"v"))
        self.failureResultOf(written, AuthOldRevision)
        expected = (self.node.store.revision, self.node.store.keyspace_hash(), self.api.auth_state().revision)
        for snapshot_first in (False, True):
            if snapshot_first:
                self.successResultOf(self.settled(self.member.api.take_snapshot()))
            self.restart()
            self.assertIsNone(self.node.store.get(b"a1"))
            state = (self.node.store.revision, self.node.store.keyspace_hash(), self.node.membership.auth.revision)
            self.assertEqual(state, expected)

    def restart(self) -> None:
        """Stop the member and open it again from its data directory."""
        self.node.stopService()
        self.open(self.member.config)

    def open(self, config: Config) -> None:
        """Open and start the member on a new clock and controlled disk
        (its snapshots written on the same disk), until it leads."""
        self.disk = ControlledDisk()
        self.clock = MemoryReactorClock()
        self.member = open_member(config, self.clock, run_blocking=self.disk, snapshot_run_blocking=self.disk)
        self.node = self.member.node
        self.node.startService()
        self.lead()
