"""Tests of the replicated auth state, its permission ranges and its wire form."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from metastore.auth import errors
from metastore.auth.messages import (
    AUTH_COMMANDS,
    AuthDisable,
    AuthEnable,
    Permission,
    PermissionType,
    RoleAdd,
    RoleDelete,
    RoleGrantPermission,
    RoleRevokePermission,
    UserAdd,
    UserChangePassword,
    UserDelete,
    UserGrantRole,
    UserRevokeRole,
)
from metastore.auth.ranges import covers
from metastore.auth.state import AuthState, Role, User
from metastore.kv.commands import CommandError, decode_command, encode_command

READ, WRITE, RW = PermissionType.READ, PermissionType.WRITE, PermissionType.READWRITE

AUTH_STATE = AuthState(True, 7, {"root": User("root", b"hash", ("root",))},
                       {"r": Role("r", (Permission(WRITE, b"a", b"\0"),))}).encode()
"""A replicated auth state's stored form (the engines and snapshots carry it)."""


def with_root() -> AuthState:
    """A state with the root user holding the root role."""
    state = AuthState()
    state.apply(UserAdd("root", b"h"))
    state.apply(UserGrantRole("root", "root"))
    return state


class AuthStateTests(SynchronousTestCase):
    """etcd's auth store rules, applied deterministically."""

    def test_enable_needs_root_user_with_root_role(self):
        """Enable is refused without a root user, and without the root role."""
        state = AuthState()
        self.assertRaises(errors.RootUserMissing, state.apply, AuthEnable())
        state.apply(UserAdd("root", b"h"))
        self.assertRaises(errors.RootRoleMissing, state.apply, AuthEnable())
        state.apply(UserGrantRole("root", "root"))
        state.apply(AuthEnable())
        self.assertTrue(state.enabled)
        state.apply(AuthDisable())
        self.assertFalse(state.enabled)

    def test_every_change_bumps_the_revision_and_refusals_do_not(self):
        """The auth revision grows by one per applied change only."""
        state = AuthState()
        state.apply(RoleAdd("r"))
        self.assertEqual(state.revision, 2)
        self.assertRaises(errors.RoleExists, state.apply, RoleAdd("r"))
        self.assertEqual(state.revision, 2)

    def test_refusals_carry_etcds_messages(self):
        """Each refused change raises etcd's error."""
        state = with_root()
        cases = [
            (UserAdd("", b""), "etcdserver: user name is empty"),
            (UserAdd("root", b""), "etcdserver: user name already exists"),
            (UserDelete("nobody"), "etcdserver: user name not found"),
            (UserGrantRole("root", "nope"), "etcdserver: role name not found"),
            (UserRevokeRole("root", "other"), "etcdserver: role is not granted to the user"),
            (RoleAdd(""), "etcdserver: role name is empty"),
            (RoleRevokePermission("nope", b"a"), "etcdserver: role name not found"),
        ]
        for command, message in cases:
            with self.subTest(command=command):
                error = self.assertRaises(errors.AuthError, state.apply, command)
                self.assertEqual(error.message, message)
        state.apply(RoleAdd("r"))
        error = self.assertRaises(errors.AuthError, state.apply, RoleRevokePermission("r", b"a"))
        self.assertEqual(error.message, "etcdserver: permission is not granted to the role")

    def test_root_is_protected_while_enabled(self):
        """With auth enabled, root cannot be deleted nor lose the root role."""
        state = with_root()
        state.apply(AuthEnable())
        self.assertRaises(errors.InvalidAuthManagement, state.apply, UserDelete("root"))
        self.assertRaises(errors.InvalidAuthManagement, state.apply, UserRevokeRole("root", "root"))

    def test_permissions_follow_roles(self):
        """A user holds its roles' permissions; deleting a role takes them away."""
        state = with_root()
        state.apply(UserAdd("u", b"h"))
        state.apply(RoleAdd("r"))
        state.apply(RoleGrantPermission("r", Permission(READ, b"a", b"c")))
        state.apply(UserGrantRole("u", "r"))
        self.assertEqual(state.permissions_of("u"), [Permission(READ, b"a", b"c")])
        state.apply(RoleGrantPermission("r", Permission(RW, b"a", b"c")))  # replaces the same range
        self.assertEqual(state.permissions_of("u"), [Permission(RW, b"a", b"c")])
        state.apply(UserChangePassword("u", b"new"))
        self.assertEqual(state.users["u"].password_hash, b"new")
        state.apply(RoleDelete("r"))
        self.assertEqual(state.permissions_of("u"), [])
        self.assertEqual(state.users["u"].roles, ())

    def test_encode_round_trips(self):
        """The stored form gives back the same state, and equal states give equal bytes."""
        state = with_root()
        state.apply(RoleAdd("r"))
        state.apply(RoleGrantPermission("r", Permission(WRITE, b"k", b"\0")))
        state.apply(AuthEnable())
        again = AuthState.decode(state.encode())
        self.assertEqual(again, state)
        self.assertEqual(again.encode(), state.encode())
        self.assertEqual(AuthState.decode(b""), AuthState())


class RangeTests(SynchronousTestCase):
    """Permission coverage of key ranges."""

    def test_single_key_range_and_prefix(self):
        """A key, a range and everything-from-a-key are covered as etcd covers them."""
        perms = [Permission(READ, b"a", b"c"), Permission(WRITE, b"x", b"")]
        self.assertTrue(covers(perms, READ, b"a", b""))
        self.assertTrue(covers(perms, READ, b"b", b"c"))
        self.assertFalse(covers(perms, READ, b"b", b"d"))
        self.assertFalse(covers(perms, WRITE, b"a", b""))
        self.assertTrue(covers(perms, WRITE, b"x", b""))
        self.assertFalse(covers(perms, WRITE, b"x", b"y"))
        self.assertFalse(covers(perms, READ, b"a", b"\0"))
        self.assertTrue(covers([Permission(RW, b"a", b"\0")], READ, b"zz", b"\0"))

    def test_adjacent_ranges_join(self):
        """Two permissions that touch cover the range across them."""
        perms = [Permission(READ, b"a", b"b"), Permission(RW, b"b", b"d")]
        self.assertTrue(covers(perms, READ, b"a", b"d"))
        self.assertFalse(covers(perms, READ, b"a", b"e"))


class AuthCommandCodingTests(SynchronousTestCase):
    """Auth commands through the raft entry encoding."""

    def test_every_auth_command_round_trips(self):
        """Each auth command decodes to itself."""
        commands = [
            AuthEnable(), AuthDisable(), UserAdd("u", b"hash", True), UserDelete("u"),
            UserChangePassword("u", b"h2"), UserGrantRole("u", "r"), UserRevokeRole("u", "r"), RoleAdd("r"),
            RoleDelete("r"), RoleGrantPermission("r", Permission(RW, b"a", b"\0")), RoleRevokePermission("r", b"a", b"b"),
        ]  # fmt: skip
        self.assertEqual({type(c) for c in commands}, set(AUTH_COMMANDS))
        for command in commands:
            self.assertEqual(decode_command(encode_command(b"id", command))[1], command)

    def test_malformed_auth_commands_are_refused(self):
        """Wrong kinds, counts and field types are ``CommandError``s."""
        import msgpack

        for op in ([13], [13, 99], [13, 2, "u"], [13, 9, "r", [7, b"a", b""]], [13, 7, 5]):
            with self.subTest(op=op):
                self.assertRaises(CommandError, decode_command, msgpack.packb([2, b"id", op]))
