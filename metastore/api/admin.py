"""Operator endpoints: ``/health``, ``/livez``, ``/readyz``, ``/version``,
``/admin/status``, ``/admin/hashkv``, ``/admin/snapshot``, ``/admin/members``
and ``/admin/members/{id}``; mounted by ``metastore.api.root``.

A known endpoint asked with a method it does not serve answers 405 with
``Allow``; every answer, errors included, has a JSON body.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from klein import Klein
from twisted.internet import defer
from twisted.python.failure import Failure
from werkzeug.routing import RequestRedirect

from metastore import __version__
from metastore.api import validation
from metastore.api.credentials import caller_token
from metastore.api.errors import RETRY_AFTER_SECONDS, HTTPError, answer_failure, write_error
from metastore.api.members import MembershipAPI
from metastore.api.peer_status import PeerStatus, PeerStatusClient
from metastore.api.v3.versions import version_document
from metastore.facade import MemberFacade

MEMBERS_PREFIX = b"/admin/members/"

ROUTE_METHODS: dict[str, tuple[str, ...]] = {
    "/health": ("GET", "HEAD"),
    "/livez": ("GET", "HEAD"),
    "/readyz": ("GET", "HEAD"),
    "/version": ("GET", "HEAD"),
    "/admin/status": ("GET", "HEAD"),
    "/admin/hashkv": ("GET",),
    "/admin/snapshot": ("POST",),
    "/admin/members": ("GET", "HEAD"),
    "/admin/debug/propose-raw": ("POST",),
}
"""Each fixed endpoint and the methods it serves (the one place they are named)."""


def _methods(path: str) -> list[str]:
    return list(ROUTE_METHODS[path])


def _method_not_allowed(request, allowed) -> HTTPError:
    return HTTPError(405, "method_not_allowed",
                     f"{request.method.decode('ascii', 'replace')} is not allowed here",
                     {b"Allow": ", ".join(allowed).encode("ascii")})


def _json(request, value, status: int = 200) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    return json.dumps(value).encode() + b"\n"


class AdminAPI:
    """A member's operator endpoints."""

    app = Klein()

    def __init__(
        self, member: MemberFacade, peers: PeerStatusClient, membership: MembershipAPI, raw_proposals: bool = False
    ) -> None:
        self.member = member
        self.raw_proposals = raw_proposals
        """Whether the test-only ``/admin/debug/propose-raw`` is served (``metastore.faults``)."""
        self.membership = membership
        self._peers = peers

    @app.handle_errors(Exception)
    def _error(self, request, failure):
        if failure.check(RequestRedirect):
            # Werkzeug would redirect POST /admin/members to the branch below it.
            allowed = ROUTE_METHODS.get(request.path.decode("ascii", "replace"))
            if allowed is not None:
                failure = Failure(_method_not_allowed(request, allowed))
        return answer_failure(request, failure)

    @app.route("/health", methods=_methods("/health"))
    def health(self, request):
        """200 ``{"health": "true"}`` while the member can serve; else 503
        with the reason (no leader, disk failed) and Retry-After."""
        reasons = self.member.health_problems()
        if reasons:
            request.setHeader(b"Retry-After", RETRY_AFTER_SECONDS)
        body = {"health": "false" if reasons else "true", "reason": "; ".join(reasons)}
        return _json(request, body, 503 if reasons else 200)

    @app.route("/livez", methods=_methods("/livez"))
    def livez(self, request):
        """200 while the process serves HTTP at all (etcd 3.5's /livez)."""
        return _json(request, {"live": True})

    @app.route("/readyz", methods=_methods("/readyz"))
    def readyz(self, request):
        """200 when a leader is known, the disk is fine and everything known
        committed is applied here (etcd 3.5's /readyz); else 503 with the
        reasons and Retry-After."""
        reasons = self.member.readiness_problems()
        if reasons:
            request.setHeader(b"Retry-After", RETRY_AFTER_SECONDS)
        return _json(request, {"ready": not reasons, "reasons": reasons}, 503 if reasons else 200)

    @app.route("/version", methods=_methods("/version"))
    def version(self, request):
        """The etcd versions clients discover the v3 API by, and MetaStore's own."""
        return _json(request, version_document(__version__))

    @app.route("/admin/status", methods=_methods("/admin/status"))
    def status(self, request):
        """This member's view: role, leader, term, indexes, revision, health."""
        return _json(request, self.status_document())

    def status_document(self) -> dict:
        """What ``/admin/status`` answers."""
        return asdict(self.member.status())

    @app.route("/admin/hashkv", methods=_methods("/admin/hashkv"))
    async def hashkv(self, request):
        """A hash of this member's whole keyspace, with the index it reflects (root only with auth on)."""
        self.member.authorize_admin(await caller_token(self.member, request))
        status = self.member.status()
        return _json(request, {
            "member_id": status.member_id,
            "applied_index": status.applied_index,
            "revision": status.revision,
            "hash": self.member.keyspace_hash(),
        })

    @app.route("/admin/snapshot", methods=_methods("/admin/snapshot"))
    async def snapshot(self, request):
        """Take a snapshot now; answers with its index once the file is durable (root only with auth on)."""
        self.member.authorize_admin(await caller_token(self.member, request))
        try:
            index = await self.member.take_snapshot()
        except RuntimeError as e:
            return write_error(request, 409, "snapshot_in_progress", str(e))
        return _json(request, {"snapshot_index": index})

    @app.route("/admin/debug/propose-raw", methods=_methods("/admin/debug/propose-raw"))
    async def propose_raw(self, request):
        """Test-only, off unless ``METASTORE_DEBUG_PROPOSE_RAW=1``: propose
        the body unchecked as a ``type=normal`` or ``type=conf-change``
        entry; 200 once applied, 409 ``entry_rejected`` once every member
        applied it as a no-op."""
        if not self.raw_proposals:
            raise HTTPError(404, "not_found", "the raw proposal route is off (see metastore.faults)")
        self.member.authorize_admin(await caller_token(self.member, request))
        kind = request.args.get(b"type", [b"normal"])[0]
        if kind not in (b"normal", b"conf-change"):
            raise HTTPError(400, "bad_type", "type must be normal or conf-change")
        await self.member.propose_raw(request.content.read(), conf_change=kind == b"conf-change")
        return _json(request, {"applied": True})

    @app.route("/admin/members", methods=_methods("/admin/members"))
    async def members(self, request):
        """Every member: peer and client URLs, learner or voter, who leads,
        and what each one reports of itself (applied index, term, role,
        health; all null when it cannot be reached).  With auth on, any
        authenticated user (as etcd's member list)."""
        self.member.authorize_user(await caller_token(self.member, request))
        listed = self.member.members()
        leader = self.member.leader_id
        statuses = await defer.gatherResults([defer.ensureDeferred(self._status(m)) for m in listed])
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
                    "applied_index": None if s is None else s.applied_index,
                    "term": None if s is None else s.term,
                    "role": None if s is None else s.role,
                    "healthy": None if s is None else s.healthy,
                }
                for m, s in zip(listed, statuses)
            ],
        })

    async def _status(self, member) -> PeerStatus | None:
        """What ``member`` reports of itself (read locally for this one)."""
        if member.member_id == self.member.member_id:
            own = self.member.status()
            return PeerStatus(own.applied_index, own.term, own.role, own.healthy)
        if not member.client_url:
            return None
        return await self._peers.status(member.client_url)

    @app.route("/admin/members/", branch=True)
    async def member(self, request):
        """``POST /admin/members/{id}`` (body: peer URL) adds a member,
        ``DELETE /admin/members/{id}`` removes one; 204 once applied here."""
        if request.method not in (b"POST", b"DELETE"):
            raise _method_not_allowed(request, ("POST", "DELETE"))
        member_id = validation.member_id(request.path[len(MEMBERS_PREFIX):])
        self.member.authorize_admin(await caller_token(self.member, request))
        if request.method == b"POST":
            return await self.membership.add(request, member_id)
        return await self.membership.remove(request, member_id)

    @app.route("/admin/", branch=True)
    def unknown_admin(self, request):
        """Unknown admin paths are 404; a known one asked with another method, 405."""
        self._refuse_wrong_method(request)
        return write_error(request, 404, "not_found", "no such admin endpoint")

    @app.route("/", branch=True)
    def wrong_method(self, request):
        """A fixed endpoint (mounted here by the root) asked with a method it
        does not serve: 405 with ``Allow``."""
        self._refuse_wrong_method(request)
        return write_error(request, 404, "not_found", "no such endpoint")

    @staticmethod
    def _refuse_wrong_method(request) -> None:
        allowed = ROUTE_METHODS.get(request.path.decode("ascii", "replace"))
        if allowed is not None:
            raise _method_not_allowed(request, allowed)
