"""The one auth check every client API makes, and authentication.

The JSON, gRPC and REST APIs each take the token their wire carries (the
``Authorization`` header, the ``token`` metadata, ``Bearer``/Basic) and
ask ``AuthChecker`` (through the member's facade) before serving a
request: ``authorize`` for a KV or lease request, ``authorize_read`` for
a watch, ``authorize_admin`` for compaction, member, maintenance and auth
management calls.  While auth is disabled every check passes.

Checks read this member's applied ``AuthState``: a permission change is
in force here from the auth revision that applied it on, as on every other
member.  Watches are registered with ``track_watch``; when the auth state
changes, a watch whose user may no longer read its range is cancelled.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet import defer
from twisted.internet.threads import deferToThread

from metastore.auth import errors
from metastore.auth.messages import AuthInfo, PermissionType
from metastore.auth.passwords import verify_password
from metastore.auth.ranges import covers
from metastore.auth.state import AuthState
from metastore.auth.tokens import TokenProvider
from metastore.kv.messages import (
    CompactionRequest,
    DeleteRangeRequest,
    LeaseRevokeRequest,
    PutRequest,
    RangeRequest,
    TxnRequest,
)

READ, WRITE = PermissionType.READ, PermissionType.WRITE

REVOKED_WATCH_REASON = "etcdserver: permission denied"


class AuthChecker:
    """Checks requests against ``state()`` (the applied auth state) for the
    user a token stands for; ``lease_keys(id)`` lists a lease's keys."""

    def __init__(
        self,
        state: Callable[[], AuthState],
        tokens: TokenProvider,
        lease_keys: Callable[[int], list[bytes]],
        verify: Callable[[str, bytes], defer.Deferred] | None = None,
    ) -> None:
        self._state = state
        self.tokens = tokens
        self._lease_keys = lease_keys
        self._verify = verify or (lambda password, stored: deferToThread(verify_password, password, stored))
        self._watches: dict[int, tuple[object, str, bytes, bytes]] = {}
        self._prune_at = 64
        self._passwords = {name: user.password_hash for name, user in state().users.items()}

    @property
    def enabled(self) -> bool:
        """Whether auth is enabled (as applied here)."""
        return self._state().enabled

    # -- who --------------------------------------------------------------------

    def user_of(self, token: str | None) -> str | None:
        """The user ``token`` stands for, None while auth is disabled.
        Raises ``UserEmpty`` for no token (as etcd does), ``InvalidAuthToken``
        for a bad or expired one."""
        state = self._state()
        if not state.enabled:
            return None
        if not token:
            raise errors.UserEmpty()
        user = self.tokens.user_of(token)
        if user not in state.users:
            raise errors.InvalidAuthToken()
        return user

    async def authenticate(self, name: str, password: str) -> str:
        """A token for ``name`` once ``password`` checks out (hashed off the
        reactor thread); ``AuthNotEnabled`` or ``AuthFailed`` otherwise."""
        state = self._state()
        if not state.enabled:
            raise errors.AuthNotEnabled()
        if not name:
            raise errors.UserEmpty()
        user = state.users.get(name)
        matched = await self._verify(password, user.password_hash if user is not None else b"")
        state = self._state()
        if user is None or user.no_password or not matched or name not in state.users:
            raise errors.AuthFailed()
        return self.tokens.issue(name, state.revision)

    # -- what ---------------------------------------------------------------------

    def authorize(self, token: str | None, request) -> AuthInfo | None:
        """Raise ``PermissionDenied`` (or a token error) unless the token's
        user may make ``request``: a range (read), put or delete (write; and
        read for ``prev_kv``; a put naming a lease, write on every key
        already attached to it, as etcd), txn (read on every compare, and
        every operation of both branches), compaction (admin), lease revoke
        (write on every attached key); other lease calls need a user.
        Answers who was checked at which auth revision (None while auth is
        disabled): a write proposes it, and every member refuses the write
        at apply if the auth state changed in between."""
        user = self.user_of(token)
        if user is None:
            return None
        state = self._state()
        if not state.is_root(user):
            if isinstance(request, CompactionRequest):
                raise errors.PermissionDenied()
            for needed, key, range_end in _needs(request, self._lease_keys):
                self._check(user, needed, key, range_end)
        return AuthInfo(user, state.revision)

    def still_current(self, auth: AuthInfo | None) -> None:
        """``AuthOldRevision`` when auth is enabled and its revision moved
        past the one ``auth`` was checked at."""
        state = self._state()
        if auth is not None and state.enabled and auth.revision != state.revision:
            raise errors.AuthOldRevision()

    def authorize_read(self, token: str | None, key: bytes, range_end: bytes) -> str | None:
        """``PermissionDenied`` unless the token's user may read the range
        (a watch); the user (None while auth is disabled)."""
        user = self.user_of(token)
        if user is not None and not self._state().is_root(user):
            self._check(user, READ, key, range_end)
        return user

    def authorize_admin(self, token: str | None) -> AuthInfo | None:
        """``PermissionDenied`` unless the token's user holds the root role;
        who was checked at which auth revision (None while auth is
        disabled): an auth change proposes it, and every member refuses the
        change at apply if the auth state changed in between."""
        user = self.user_of(token)
        if user is None:
            return None
        state = self._state()
        if not state.is_root(user):
            raise errors.PermissionDenied()
        return AuthInfo(user, state.revision)

    def authorize_user(self, token: str | None) -> None:
        """A token error unless the token names a user (any user)."""
        self.user_of(token)

    def _check(self, user: str, needed: PermissionType, key: bytes, range_end: bytes) -> None:
        if not covers(self._state().permissions_of(user), needed, key, range_end):
            raise errors.PermissionDenied()

    # -- watches ----------------------------------------------------------------

    def track_watch(self, user: str | None, key: bytes, range_end: bytes, watch) -> None:
        """Cancel ``watch`` (it has ``cancel(reason)``) once ``user`` may no
        longer read ``[key, range_end)``."""
        if user is None:
            return
        self._watches[id(watch)] = (watch, user, key, range_end)
        if len(self._watches) >= self._prune_at:  # forget ended watches, amortized
            self._watches = {k: v for k, v in self._watches.items() if not getattr(v[0], "canceled", False)}
            self._prune_at = max(64, 2 * len(self._watches))

    def auth_changed(self) -> None:
        """The auth state changed: forget the tokens of users deleted or
        with a new password (as etcd does), and cancel the watches no longer
        permitted."""
        state = self._state()
        passwords = {name: user.password_hash for name, user in state.users.items()}
        for name, password_hash in self._passwords.items():
            if passwords.get(name) != password_hash:
                self.tokens.forget_user(name)
        self._passwords = passwords
        for watch_key, (watch, user, key, range_end) in list(self._watches.items()):
            if getattr(watch, "canceled", False):
                del self._watches[watch_key]
                continue
            allowed = not state.enabled or state.is_root(user) or (
                user in state.users and covers(state.permissions_of(user), READ, key, range_end))
            if not allowed:
                del self._watches[watch_key]
                watch.cancel(REVOKED_WATCH_REASON)


def _needs(request, lease_keys) -> list[tuple[PermissionType, bytes, bytes]]:
    """The (permission, key, range_end) triples ``request`` needs."""
    if isinstance(request, RangeRequest):
        return [(READ, request.key, request.range_end)]
    if isinstance(request, PutRequest):
        needs = [(WRITE, request.key, b"")] + ([(READ, request.key, b"")] if request.prev_kv else [])
        return needs + ([(WRITE, key, b"") for key in lease_keys(request.lease)] if request.lease else [])
    if isinstance(request, DeleteRangeRequest):
        needs = [(WRITE, request.key, request.range_end)]
        return needs + ([(READ, request.key, request.range_end)] if request.prev_kv else [])
    if isinstance(request, TxnRequest):
        needs = [(READ, c.key, c.range_end) for c in request.compare]
        for op in request.success + request.failure:
            needs.extend(_needs(op, lease_keys))
        return needs
    if isinstance(request, LeaseRevokeRequest):
        return [(WRITE, key, b"") for key in lease_keys(request.id)]
    return []
