"""``metastore-chaos --auth``: the workloads run as a user with etcd's RBAC on.

Before the workloads start, ``ChaosAuth.enable`` makes ``root`` (with the
root role) and the workload user ``chaos`` with a role granting READWRITE
on each of the workloads' key prefixes, then enables auth.  Every client
call then carries a token of ``chaos`` for the member it asks: simple
tokens are each member's own, so ``token(url)`` authenticates on that
member on first use, and again once a token was refused (``forget``): a
restarted member forgot its tokens, an idle token expired, or the auth
revision moved on.  A refused call is a definite failure (nothing was
applied), so the checkers count it as failed, never as unknown.
"""

from __future__ import annotations

from twisted.internet import defer, task

from metastore.chaos.v3client import b64
from metastore.kv.messages import prefix_range_end

ROOT = "root"
USER = "chaos"
ROLE = "chaos"
ROOT_PASSWORD = "chaos-root-password"
USER_PASSWORD = "chaos-user-password"

SETUP_ATTEMPTS = 60
"""Each setup call is tried this many times (0.5 s apart) under faults."""

OLD_REVISION = "etcdserver: revision of auth store is old"
"""Besides any 401 (an invalid or expired token), the answer after which a
client authenticates again, as etcd's clients do."""


class ChaosAuth:
    """The workload user's tokens, one per member URL; ``client`` is a
    ``V3Client`` without auth (``metastore.chaos.v3client``) for the
    setup and authentication calls."""

    def __init__(self, reactor, client) -> None:
        self._reactor = reactor
        self._client = client
        self._tokens: dict[str, str] = {}
        self._pending: dict[str, defer.Deferred] = {}
        self.authentications = 0
        """Tokens obtained (the first for each member, then one per refusal)."""
        self.refusals = 0
        """Tokens a member refused (invalid, expired, old revision)."""

    async def enable(self, urls: list[str], prefixes: list[bytes]) -> None:
        """Create root, the workload user and its role (READWRITE on every
        key under each of ``prefixes``) and enable auth, asking the members
        in turn until each step is answered; raises ``RuntimeError`` when
        one never is."""
        steps = [
            ("/v3/auth/user/add", {"name": ROOT, "password": ROOT_PASSWORD}),
            ("/v3/auth/user/grant", {"user": ROOT, "role": ROOT}),
            ("/v3/auth/role/add", {"name": ROLE}),
            *[("/v3/auth/role/grant", {"name": ROLE, "perm": {"permType": "READWRITE", "key": b64(p),
                                                              "range_end": b64(prefix_range_end(p))}})
              for p in prefixes],
            ("/v3/auth/user/add", {"name": USER, "password": USER_PASSWORD}),
            ("/v3/auth/user/grant", {"user": USER, "role": ROLE}),
            ("/v3/auth/enable", {}),
        ]  # fmt: skip
        for path, body in steps:
            await self._until_answered(urls, path, body)

    async def _until_answered(self, urls: list[str], path: str, body: dict) -> None:
        for attempt in range(SETUP_ATTEMPTS):
            reply = await self._client.call(urls[attempt % len(urls)], path, body)
            # 412 "already exists": an earlier attempt applied without an answer.
            if reply.ok or reply.code == 412:
                return
            await task.deferLater(self._reactor, 0.5, lambda: None)
        raise RuntimeError(f"--auth setup: {path} was never answered")

    async def token(self, url: str) -> str | None:
        """A token of the workload user on the member at ``url``
        (authenticating there when there is none); None when the member
        did not give one."""
        if url in self._tokens:
            return self._tokens[url]
        if url not in self._pending:  # one authentication at a time per member
            self._pending[url] = defer.ensureDeferred(self._authenticate(url))
        waiting: defer.Deferred = defer.Deferred()
        self._pending[url].addBoth(lambda result: (waiting.callback(result), result)[1])
        return await waiting

    async def _authenticate(self, url: str) -> str | None:
        try:
            reply = await self._client.call(url, "/v3/auth/authenticate", {"name": USER, "password": USER_PASSWORD})
        finally:
            self._pending.pop(url, None)
        token = (reply.body or {}).get("token") if reply.ok else None
        if token:
            self._tokens[url] = token
            self.authentications += 1
        return token

    async def close(self) -> None:
        """Close the connections of the setup and authentication calls."""
        await self._client.close()

    def answered(self, url: str, token: str, code: int | None, body: dict | None) -> None:
        """A call with ``token`` got this answer: forget the token when the
        member refused it (the next call authenticates again)."""
        refused = code == 401 or (code == 400 and OLD_REVISION in str((body or {}).get("error")))
        if refused and self._tokens.get(url) == token:
            del self._tokens[url]
            self.refusals += 1
