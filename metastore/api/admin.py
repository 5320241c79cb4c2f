"""Operator endpoints: ``/health``, ``/version``, ``/admin/status`` and
``/admin/members``.  This is the root application; every other path goes
to the REST API."""

from __future__ import annotations

import json

import treq
from klein import Klein
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool

from metastore import __version__
from metastore.api.errors import write_error

PEER_STATUS_TIMEOUT_SECONDS = 1.0

log = Logger()


def _json(request, value, status: int = 200) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    return json.dumps(value).encode() + b"\n"


class AdminAPI:
    """The root HTTP application of a member."""

    app = Klein()

    def __init__(self, node, reactor, rest, storage_name: str = "memory") -> None:
        self.node = node
        self.storage_name = storage_name
        self.rest_resource = rest.app.resource()
        self._http = treq.client.HTTPClient(
            Agent(reactor, connectTimeout=PEER_STATUS_TIMEOUT_SECONDS, pool=HTTPConnectionPool(reactor, persistent=False))
        )
        self._reactor = reactor

    @app.route("/health", methods=["GET", "HEAD"])
    def health(self, request):
        """200 ``{"health": "true"}`` while the member can serve; else 503 with the reason."""
        node = self.node
        reason = ""
        if node.failure is not None:
            reason = f"storage failed: {node.failure}"
        elif node.leader_id == 0:
            reason = "no leader"
        body = {"health": "false" if reason else "true", "reason": reason}
        return _json(request, body, 503 if reason else 200)

    @app.route("/version", methods=["GET", "HEAD"])
    def version(self, request):
        """The MetaStore version."""
        return _json(request, {"metastore": __version__})

    @app.route("/admin/status", methods=["GET", "HEAD"])
    def status(self, request):
        """This member's view: role, leader, term, indexes, revision, health."""
        return _json(request, self.status_document())

    def status_document(self) -> dict:
        """What ``/admin/status`` answers."""
        node = self.node
        status = node.rawnode.status()
        return {
            "member_id": node.member_id,
            "leader": node.leader_id,
            "role": status.raft_state.name.removeprefix("State").lower(),
            "term": status.term,
            "commit_index": status.commit,
            "applied_index": node.applied_index,
            "snapshot_index": node.snapshotter.snapshot_index if node.snapshotter else 0,
            "start_applied_index": node.start_applied_index,
            "first_applied_index": node.first_applied_index,
            "wal_syncs": node.wal_syncs,
            "storage": self.storage_name,
            "first_log_index": node.raft_storage.first_index(),
            "revision": node.store.revision,
            "healthy": node.healthy,
            "storage_failure": None if node.failure is None else str(node.failure),
        }

    @app.route("/admin/hashkv", methods=["GET"])
    def hashkv(self, request):
        """A hash of this member's whole keyspace, with the index it reflects."""
        node = self.node
        return _json(request, {
            "member_id": node.member_id,
            "applied_index": node.applied_index,
            "revision": node.store.revision,
            "hash": node.store.keyspace_hash(),
        })

    @app.route("/admin/snapshot", methods=["POST"])
    async def snapshot(self, request):
        """Take a snapshot now; answers with its index once the file is durable."""
        try:
            index = await self.node.take_snapshot()
        except RuntimeError as e:
            return write_error(request, 409, "snapshot_in_progress", str(e))
        return _json(request, {"snapshot_index": index})

    @app.route("/admin/members", methods=["GET", "HEAD"])
    async def members(self, request):
        """Every member: peer and client URLs, learner or voter, who leads,
        and each one's applied index (null when it cannot be reached)."""
        node = self.node
        listed = sorted(node.members.values(), key=lambda m: m.member_id)
        applied = await defer.gatherResults([defer.ensureDeferred(self._applied_index(m)) for m in listed])
        return _json(request, {
            "member_id": node.member_id,
            "leader": node.leader_id,
            "members": [
                {
                    "id": m.member_id,
                    "peer_urls": [m.peer_url],
                    "client_urls": [m.client_url] if m.client_url else [],
                    "is_learner": m.is_learner,
                    "is_leader": m.member_id == node.leader_id,
                    "applied_index": index,
                }
                for m, index in zip(listed, applied)
            ],
        })

    async def _applied_index(self, member) -> int | None:
        if member.member_id == self.node.member_id:
            return self.node.applied_index
        if not member.client_url:
            return None
        try:
            d = self._http.get(member.client_url + "/admin/status")
            d.addTimeout(PEER_STATUS_TIMEOUT_SECONDS, self._reactor)
            response = await d
            body = await treq.json_content(response)
            return int(body["applied_index"])
        except Exception as e:  # unreachable, slow or confused: reported as unknown
            log.debug("no status from member {id}: {e}", id=member.member_id, e=e)
            return None

    @app.route("/admin/", branch=True)
    def unknown_admin(self, request):
        """Unknown admin paths are 404."""
        return write_error(request, 404, "not_found", "no such admin endpoint")

    @app.route("/", branch=True)
    def everything_else(self, request):
        """Keys and members: the seed REST API."""
        return self.rest_resource
