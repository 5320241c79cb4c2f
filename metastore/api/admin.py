"""Operator endpoints: ``/health``, ``/version`` and ``/admin/*``
(status, hashkv, snapshot, members); mounted by ``metastore.api.root``."""

from __future__ import annotations

import json
from dataclasses import asdict

from klein import Klein
from twisted.internet import defer

from metastore import __version__
from metastore.api.errors import write_error
from metastore.api.peer_status import PeerStatusClient
from metastore.facade import MemberFacade


def _json(request, value, status: int = 200) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    return json.dumps(value).encode() + b"\n"


class AdminAPI:
    """A member's operator endpoints."""

    app = Klein()

    def __init__(self, member: MemberFacade, peers: PeerStatusClient) -> None:
        self.member = member
        self._peers = peers

    @app.route("/health", methods=["GET", "HEAD"])
    def health(self, request):
        """200 ``{"health": "true"}`` while the member can serve; else 503 with the reason."""
        reason = self.member.health()
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
        return asdict(self.member.status())

    @app.route("/admin/hashkv", methods=["GET"])
    def hashkv(self, request):
        """A hash of this member's whole keyspace, with the index it reflects."""
        status = self.member.status()
        return _json(request, {
            "member_id": status.member_id,
            "applied_index": status.applied_index,
            "revision": status.revision,
            "hash": self.member.keyspace_hash(),
        })

    @app.route("/admin/snapshot", methods=["POST"])
    async def snapshot(self, request):
        """Take a snapshot now; answers with its index once the file is durable."""
        try:
            index = await self.member.take_snapshot()
        except RuntimeError as e:
            return write_error(request, 409, "snapshot_in_progress", str(e))
        return _json(request, {"snapshot_index": index})

    @app.route("/admin/members", methods=["GET", "HEAD"])
    async def members(self, request):
        """Every member: peer and client URLs, learner or voter, who leads,
        and each one's applied index (null when it cannot be reached)."""
        listed = self.member.members()
        leader = self.member.leader_id
        applied = await defer.gatherResults([defer.ensureDeferred(self._applied_index(m)) for m in listed])
        return _json(request, {
            "member_id": self.member.member_id,
            "leader": leader,
            "members": [
                {
                    "id": m.member_id,
                    "peer_urls": [m.peer_url],
                    "client_urls": [m.client_url] if m.client_url else [],
                    "is_learner": m.is_learner,
                    "is_leader": m.member_id == leader,
                    "applied_index": index,
                }
                for m, index in zip(listed, applied)
            ],
        })

    async def _applied_index(self, member) -> int | None:
        if member.member_id == self.member.member_id:
            return self.member.status().applied_index
        if not member.client_url:
            return None
        return await self._peers.applied_index(member.client_url)

    @app.route("/admin/", branch=True)
    def unknown_admin(self, request):
        """Unknown admin paths are 404."""
        return write_error(request, 404, "not_found", "no such admin endpoint")
