"""A permission revoked while its user writes, on three real members.

Clients on every member write unique keys as user ``u`` through the v3
JSON API while root revokes ``u``'s permission.  A write checked before
the revocation but ordered after it in the log is refused at apply by
every member ("revision of auth store is old"), so afterwards no member's
history holds a write of ``u`` at a revision after the revocation's.
"""

from __future__ import annotations

import base64
import json

from twisted.internet import defer
from twisted.python import log
from twisted.trial.unittest import TestCase

from tests.process import Cluster, wait_healthy, wait_until

CLIENTS_PER_MEMBER = 3
WRITES_BEFORE_REVOKE = 60
WRITES_PER_CLIENT = 400
"""Each client's bound; clients stop sooner, once refused after the revocation."""


def b64(data: bytes) -> str:
    """etcd's JSON bytes."""
    return base64.b64encode(data).decode()


class RevokeWhileWritingTests(TestCase):
    """Writes racing a revocation never land after it, on any member."""

    timeout = 180

    async def post(self, member_id: int, path: str, body: dict, token: str | None = None) -> tuple[int, dict]:
        """POST a v3 JSON request; ``(status, answer)`` (status 0: no answer)."""
        headers = {b"Content-Type": [b"application/json"]}
        if token:
            headers[b"Authorization"] = [token.encode()]
        code, content, _ = await self.cluster.request(member_id, "POST", path, json.dumps(body).encode(), headers)
        return code, (json.loads(content) if content.startswith(b"{") else {})

    async def ok(self, member_id: int, path: str, body: dict, token: str | None = None) -> dict:
        """POST, retrying a bounded while the cluster answers 503 (an election)."""
        answers = []

        async def attempt() -> bool:
            answers.append(await self.post(member_id, path, body, token))
            return answers[-1][0] == 200

        await wait_until(attempt, timeout=30, interval=0.2, what=f"{path} on member {member_id}")
        return answers[-1][1]

    async def test_no_write_of_the_user_after_the_revocation(self) -> None:
        """Every member holds the same writes of ``u``, all at or below the
        revision the revocation answered with; writes went on until each
        client was refused."""
        self.cluster = cluster = Cluster(self, 3)
        cluster.start()
        for member in cluster.members.values():
            await wait_healthy(member, 40)
        await cluster.leader()
        await self.ok(1, "/v3/auth/user/add", {"name": "root", "password": "rootpw"})
        await self.ok(1, "/v3/auth/user/grant", {"user": "root", "role": "root"})
        await self.ok(1, "/v3/auth/role/add", {"name": "w"})
        await self.ok(1, "/v3/auth/role/grant", {"name": "w", "perm": {"permType": "READWRITE", "key": b64(b"w/"),
                                                                       "range_end": b64(b"w0")}})
        await self.ok(1, "/v3/auth/user/add", {"name": "u", "password": "upw"})
        await self.ok(1, "/v3/auth/user/grant", {"user": "u", "role": "w"})
        await self.ok(1, "/v3/auth/enable", {})
        tokens, roots = {}, {}
        for member_id in cluster.members:  # simple tokens are each member's own
            roots[member_id] = (await self.ok(member_id, "/v3/auth/authenticate",
                                              {"name": "root", "password": "rootpw"}))["token"]
            tokens[member_id] = (await self.ok(member_id, "/v3/auth/authenticate",
                                               {"name": "u", "password": "upw"}))["token"]
            await self.ok(member_id, "/v3/kv/put", {"key": b64(b"w/probe-%d" % member_id), "value": b64(b"u")},
                          tokens[member_id])

        acknowledged = []
        refusals: dict[str, int] = {}
        revoked = defer.Deferred()

        async def client(member_id: int, name: str) -> None:
            for n in range(WRITES_PER_CLIENT):
                key = f"w/{name}-{n}".encode()
                code, answer = await self.post(member_id, "/v3/kv/put", {"key": b64(key), "value": b64(b"u")},
                                               tokens[member_id])
                if code == 200:
                    acknowledged.append(key)
                    if len(acknowledged) == WRITES_BEFORE_REVOKE and not revoked.called:
                        revoked.callback(None)
                else:
                    reason = answer.get("error", str(code))
                    refusals[reason] = refusals.get(reason, 0) + 1
                    if revoked.called and code in (400, 403):
                        return  # refused after the revocation: this client is done

        clients = [defer.ensureDeferred(client(m, f"c{m}.{i}"))
                   for m in cluster.members for i in range(CLIENTS_PER_MEMBER)]
        await revoked
        answer = await self.ok(1, "/v3/auth/role/revoke", {"role": "w", "key": b64(b"w/"), "range_end": b64(b"w0")},
                               roots[1])
        revocation = int(answer["header"]["revision"])
        await defer.DeferredList(clients, consumeErrors=True)
        self.assertTrue(refusals, "no write was refused after the revocation")

        async def same_revision() -> bool:
            revisions = set()
            for member_id in cluster.members:
                status = await cluster.status(member_id)
                revisions.add(status and status["revision"])
            return len(revisions) == 1 and None not in revisions

        await wait_until(same_revision, timeout=30, what="the members to converge")
        held = {}
        for member_id in cluster.members:
            found = await self.ok(member_id, "/v3/kv/range", {"key": b64(b"w/"), "range_end": b64(b"w0"),
                                                              "serializable": True}, roots[member_id])
            held[member_id] = {base64.b64decode(kv["key"]): int(kv["mod_revision"]) for kv in found.get("kvs", [])}
            late = {k: r for k, r in held[member_id].items() if r > revocation}
            self.assertEqual(late, {}, f"member {member_id} applied writes of u after the revocation at "
                                       f"revision {revocation}; refusals {refusals}")
        self.assertEqual(held[1], held[2])
        self.assertEqual(held[1], held[3])
        self.assertLessEqual(set(acknowledged), set(held[1]))
        log.msg(f"revocation at revision {revocation}: {len(acknowledged)} writes acknowledged, refused {refusals}")
