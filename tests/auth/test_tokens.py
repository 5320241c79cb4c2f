"""Tests of auth tokens and the checker, with time passed by ``task.Clock``."""

from __future__ import annotations

from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from metastore.auth import errors
from metastore.auth.checker import AuthChecker
from metastore.auth.messages import (
    AuthEnable,
    Permission,
    PermissionType,
    RoleAdd,
    RoleGrantPermission,
    RoleRevokePermission,
    UserAdd,
    UserGrantRole,
)
from metastore.auth.state import AuthState
from metastore.auth.tokens import JwtTokens, SimpleTokens, TokenOptionError, parse_duration, token_provider
from metastore.kv.messages import (
    CompactionRequest,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    LeaseRevokeRequest,
    PutRequest,
    RangeRequest,
    TxnRequest,
)


class SimpleTokenTests(SynchronousTestCase):
    """Simple tokens live ``ttl`` seconds after their last use."""

    def test_expired_token_is_refused_and_so_is_its_replay(self):
        """Past its TTL a token is invalid, and presenting it again later still is."""
        clock = task.Clock()
        tokens = SimpleTokens(clock, ttl=10)
        token = tokens.issue("u", 1)
        clock.advance(9)
        self.assertEqual(tokens.user_of(token), "u")  # use extends its life
        clock.advance(9)
        self.assertEqual(tokens.user_of(token), "u")
        clock.advance(10)
        self.assertRaises(errors.InvalidAuthToken, tokens.user_of, token)
        self.assertRaises(errors.InvalidAuthToken, tokens.user_of, token)
        clock.advance(1000)
        tokens.issue("v", 1)  # pruning on issue must not revive it
        self.assertRaises(errors.InvalidAuthToken, tokens.user_of, token)

    def test_tokens_are_distinct_and_unknown_ones_refused(self):
        """Every token issued is new; a made-up one is invalid."""
        tokens = SimpleTokens(task.Clock())
        self.assertNotEqual(tokens.issue("u", 1), tokens.issue("u", 1))
        self.assertRaises(errors.InvalidAuthToken, tokens.user_of, "made-up.1")


class JwtTokenTests(SynchronousTestCase):
    """JWT tokens: signed, carrying user and expiry."""

    def test_signed_token_expires_and_tampering_is_refused(self):
        """A token checks out until its expiry; a forged or expired one is invalid."""
        clock = task.Clock()
        clock.advance(1_000_000)
        tokens = JwtTokens(clock, "HS256", b"k" * 32, b"k" * 32, ttl=60)
        token = tokens.issue("u", 3)
        self.assertEqual(tokens.user_of(token), "u")
        other = JwtTokens(clock, "HS256", b"x" * 32, b"x" * 32, ttl=60)
        self.assertRaises(errors.InvalidAuthToken, other.user_of, token)
        self.assertRaises(errors.InvalidAuthToken, tokens.user_of, token[:-2] + "AA")
        clock.advance(61)
        self.assertRaises(errors.InvalidAuthToken, tokens.user_of, token)

    def test_rs256_from_the_option(self):
        """``jwt,priv-key=...,sign-method=RS256,ttl=5m`` signs with the key; another member verifies."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        clock = task.Clock()
        one = token_provider(f"jwt,priv-key={path},sign-method=RS256,ttl=5m", clock)
        two = token_provider(f"jwt,priv-key={path},sign-method=RS256,ttl=5m", clock)
        token = one.issue("u", 1)
        self.assertEqual(two.user_of(token), "u")
        clock.advance(301)
        self.assertRaises(errors.InvalidAuthToken, two.user_of, token)

    def test_bad_options(self):
        """Unknown kinds, parameters and methods are refused with a reason."""
        for option in ("nope", "jwt", "jwt,sign-method=XX,priv-key=/x", "jwt,color=red", "jwt,priv-key=/nonexistent"):
            with self.subTest(option=option):
                self.assertRaises(TokenOptionError, token_provider, option, task.Clock())
        self.assertIsInstance(token_provider("simple", task.Clock()), SimpleTokens)
        self.assertEqual(parse_duration("5m"), 300)


def checker_with_user() -> tuple[AuthChecker, AuthState, SimpleTokens, dict]:
    """Auth enabled; ``u`` may read and write ``[a, c)`` and read ``r``."""
    state = AuthState()
    for command in (UserAdd("root", b""), UserGrantRole("root", "root"), UserAdd("u", b""), RoleAdd("r"),
                    RoleGrantPermission("r", Permission(PermissionType.READWRITE, b"a", b"c")),
                    RoleGrantPermission("r", Permission(PermissionType.READ, b"r", b"")),
                    UserGrantRole("u", "r"), AuthEnable()):  # fmt: skip
        state.apply(command)
    tokens = SimpleTokens(task.Clock())
    lease_keys = {7: [b"a"], 8: [b"a", b"z"]}
    checker = AuthChecker(lambda: state, tokens, lambda lease: lease_keys.get(lease, []),
                          verify=lambda password, stored: defer.succeed(password == "pw"))
    return checker, state, tokens, lease_keys


class CheckerTests(SynchronousTestCase):
    """``AuthChecker.authorize`` on each kind of request."""

    def setUp(self):
        self.checker, self.state, self.tokens, _ = checker_with_user()
        self.user = self.tokens.issue("u", 1)
        self.root = self.tokens.issue("root", 1)

    def assertDenied(self, request) -> None:
        self.assertRaises(errors.PermissionDenied, self.checker.authorize, self.user, request)
        self.checker.authorize(self.root, request)  # root may do anything

    def test_each_request_kind(self):
        """Reads, writes, prev_kv, txn parts, compaction and lease revoke."""
        self.checker.authorize(self.user, PutRequest(b"a"))
        self.checker.authorize(self.user, RangeRequest(b"r"))
        self.assertDenied(PutRequest(b"r"))
        self.assertDenied(PutRequest(b"z"))
        self.assertDenied(DeleteRangeRequest(b"a", b"d"))
        self.assertDenied(CompactionRequest(1))
        compare = Compare(CompareTarget.VERSION, CompareResult.EQUAL, b"z", 0)
        self.assertDenied(TxnRequest((compare,), (), ()))
        self.assertDenied(TxnRequest((), (PutRequest(b"a"),), (RangeRequest(b"z"),)))
        self.checker.authorize(self.user, LeaseRevokeRequest(7))
        self.assertDenied(LeaseRevokeRequest(8))

    def test_tokens_when_enabled_and_disabled(self):
        """No token is "user name is empty"; a bad one invalid; disabled auth checks nothing."""
        self.assertRaises(errors.UserEmpty, self.checker.authorize, None, RangeRequest(b"a"))
        self.assertRaises(errors.InvalidAuthToken, self.checker.authorize, "bad", RangeRequest(b"a"))
        self.state.enabled = False
        self.checker.authorize(None, CompactionRequest(1))

    def test_authenticate(self):
        """Right password: a token for the user; wrong: authentication failed."""
        token = self.successResultOf(defer.Deferred.fromCoroutine(self.checker.authenticate("u", "pw")))
        self.assertEqual(self.tokens.user_of(token), "u")
        failure = self.failureResultOf(defer.Deferred.fromCoroutine(self.checker.authenticate("u", "no")))
        failure.trap(errors.AuthFailed)
        failure = self.failureResultOf(defer.Deferred.fromCoroutine(self.checker.authenticate("ghost", "pw")))
        failure.trap(errors.AuthFailed)

    def test_new_password_or_deleted_user_voids_simple_tokens(self):
        """After a password change the user's old tokens are invalid; other users' stay valid."""
        from metastore.auth.messages import UserChangePassword, UserDelete

        self.state.apply(UserChangePassword("u", b"new"))
        self.checker.auth_changed()
        self.assertRaises(errors.InvalidAuthToken, self.checker.authorize, self.user, RangeRequest(b"a"))
        self.checker.authorize(self.root, RangeRequest(b"a"))
        fresh = self.tokens.issue("u", self.state.revision)
        self.checker.authorize(fresh, RangeRequest(b"a"))
        self.state.apply(UserDelete("u"))
        self.checker.auth_changed()
        self.assertRaises(errors.InvalidAuthToken, self.tokens.user_of, fresh)

    def test_revoked_permission_cancels_tracked_watch(self):
        """After the permission goes, the watch is cancelled with etcd's reason; others stay."""

        class FakeWatch:
            canceled = False
            reason = None

            def cancel(self, reason=""):
                self.canceled, self.reason = True, reason

        kept, revoked = FakeWatch(), FakeWatch()
        self.checker.track_watch(self.checker.authorize_read(self.user, b"r", b""), b"r", b"", kept)
        self.checker.track_watch(self.checker.authorize_read(self.user, b"b", b""), b"b", b"", revoked)
        self.state.apply(RoleRevokePermission("r", b"a", b"c"))
        self.checker.auth_changed()
        self.assertEqual((revoked.canceled, revoked.reason), (True, "etcdserver: permission denied"))
        self.assertFalse(kept.canceled)
