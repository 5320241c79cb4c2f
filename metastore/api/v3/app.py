"""The v3 routes: ``POST /v3/<service>/<method>`` (also under ``/v3beta/``
and ``/v3alpha/``, for older clients), each a JSON body in and a JSON
answer out, errors in etcd's shape.

Only this module touches the HTTP request: it reads the body (as JSON,
whatever the Content-Type; over ``--max-request-bytes`` is etcd's "request
is too large"), calls a service method, and writes the answer.
"""

from __future__ import annotations

import json
from typing import Awaitable, Callable

from klein import Klein
from twisted.internet import defer
from werkzeug.exceptions import NotFound

from metastore.api.credentials import request_token
from metastore.api.errors import internal_error
from metastore.api.v3 import kv_codec, lease_codec, watch_codec
from metastore.api.v3.auth import AuthJSON, AuthService
from metastore.api.v3.cluster import ClusterJSON, ClusterService
from metastore.api.v3.errors import INVALID_ARGUMENT, REQUEST_TOO_LARGE, V3Error, v3_error
from metastore.api.v3.header import Headers
from metastore.api.v3.json_fields import object_field, parse_body
from metastore.api.v3.kv import KVService
from metastore.api.v3.lease import LeaseService
from metastore.api.v3.maintenance import MaintenanceJSON, MaintenanceService
from metastore.api.v3.streaming import LineProducer, PushedLines, json_line
from metastore.api.v3.watch import WatchService, WatchStream
from metastore.facade import MemberFacade, WatchResponse

API = "/<any(v3, v3beta, v3alpha):api>"
"""The path prefixes served (etcd 3.4 serves /v3/ and /v3beta/)."""

DEFAULT_MAX_REQUEST_BYTES = 1536 * 1024
"""etcd's default ``--max-request-bytes``."""


_COMPACT = json.JSONEncoder(separators=(",", ":"))


def compact_json(value: dict) -> bytes:
    """``value`` as the gateway writes JSON: no spaces."""
    return _COMPACT.encode(value).encode()


def _json(request, value: dict | bytes, status: int = 200) -> bytes:
    """Set ``request``'s status and JSON Content-Type; ``value`` as JSON
    (given as a dict, or already encoded)."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    return value if type(value) is bytes else compact_json(value)


def kv_answer(response, headers: Headers) -> bytes:
    """A KV response's JSON, its header at the response's revision."""
    return kv_codec.kv_response_json(response, headers)


def request_body(request) -> dict:
    """The JSON object of a v3 request's body; ``V3Error`` when it is over
    ``--max-request-bytes``, ``BadBody`` when it is no JSON object."""
    if getattr(request, "body_too_large", False):
        raise V3Error(INVALID_ARGUMENT, REQUEST_TOO_LARGE)
    return parse_body(request.content.read())


def error_answer(request, failure) -> bytes:
    """Set the status and Content-Type of etcd's answer to ``failure`` on
    ``request`` and return its body (a 500, logged, for a bug)."""
    error = v3_error(failure.value)
    if error is None:
        return internal_error(request, failure)
    request.setResponseCode(error.http_status)
    request.setHeader(b"Content-Type", b"application/json")
    return error.body()


class V3API:
    """etcd's v3 JSON API over a member's facade; mount ``app.resource()``
    at ``/v3``, ``/v3beta`` and ``/v3alpha``."""

    app = Klein()

    def __init__(
        self,
        member: MemberFacade,
        cluster_id: int,
        wait_physical: Callable[[int], defer.Deferred],
        *,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_watchers_per_stream: int = 0,
    ) -> None:
        self.headers = Headers(member, cluster_id)
        self._member = member
        self.kv = kv = KVService(member, wait_physical)
        self.cluster = ClusterJSON(ClusterService(member), self.headers.at)
        self.maintenance = MaintenanceJSON(MaintenanceService(member), self.headers)
        self.lease = LeaseService(member)
        self.watch = WatchService(member, max_request_bytes, max_watchers_per_stream)
        self.watch_lines = watch_codec.SharedEncoding(self.headers)
        grant = self._json_rpc(lease_codec.grant_request, self.lease.grant, lease_codec.grant_response)
        revoke = self._json_rpc(lease_codec.revoke_request, self.lease.revoke, lease_codec.revoke_response)
        time_to_live = self._json_rpc(
            lease_codec.time_to_live_request, self.lease.time_to_live, lease_codec.time_to_live_response, stamped=False
        )
        leases = self._json_rpc(lease_codec.leases_request, self.lease.leases, lease_codec.leases_response, stamped=False)
        admin, user = self._admin_only, self._any_user
        self.rpcs: dict[str, Callable[[dict, str | None], Awaitable[dict | bytes]]] = {
            "kv/range": self._json_rpc(kv_codec.range_request, kv.range, kv_answer),
            "kv/put": self._json_rpc(kv_codec.put_request, kv.put, kv_answer),
            "kv/deleterange": self._json_rpc(kv_codec.delete_range_request, kv.delete_range, kv_answer),
            "kv/txn": self._json_rpc(kv_codec.txn_request, kv.txn, kv_answer),
            "kv/compaction": self._json_rpc(kv_codec.compaction_request, kv.compact, kv_answer),
            "cluster/member/list": user(self.cluster.list),
            "cluster/member/add": admin(self.cluster.add),
            "cluster/member/remove": admin(self.cluster.remove),
            "cluster/member/update": admin(self.cluster.update),
            "cluster/member/promote": admin(self.cluster.promote),
            "maintenance/status": user(self.maintenance.status),
            "maintenance/hash": admin(self.maintenance.hash),
            "maintenance/hashkv": admin(self.maintenance.hashkv),
            "maintenance/defragment": admin(self.maintenance.defragment),
            "maintenance/alarm": admin(self.maintenance.alarm),
            "maintenance/transfer-leadership": admin(self.maintenance.move_leader),
            "lease/grant": grant,
            "lease/revoke": revoke,
            "kv/lease/revoke": revoke,
            "lease/timetolive": time_to_live,
            "kv/lease/timetolive": time_to_live,
            "lease/leases": leases,
            **AuthJSON(AuthService(member), self.headers).rpcs,
        }
        """Each RPC's path after the prefix, and the method answering it
        (with its JSON as a dict, or encoded: the KV RPCs)."""

    def _json_rpc(self, decode, call, encode, stamped: bool = True) -> Callable[[dict, str | None], Awaitable[dict | bytes]]:
        """An RPC of a protocol-neutral service method: its request decoded
        from the JSON body and authorized (``stamped``: the ``AuthInfo``
        handed on to the method), its response encoded with this member's header."""

        async def rpc(body: dict, token: str | None) -> dict:
            request = decode(body)
            auth = self._member.authorize(token, request)
            return encode(await (call(request, auth) if stamped else call(request)), self.headers)

        return rpc

    def _admin_only(self, call: Callable[[dict], Awaitable[dict]]) -> Callable[[dict, str | None], Awaitable[dict]]:
        """An RPC only a user with the root role may call once auth is enabled."""

        async def rpc(body: dict, token: str | None) -> dict:
            self._member.authorize_admin(token)
            return await call(body)

        return rpc

    def _any_user(self, call: Callable[[dict], Awaitable[dict]]) -> Callable[[dict, str | None], Awaitable[dict]]:
        """An RPC any authenticated user may call (as etcd serves member
        list and status, which clients use to find endpoints)."""

        async def rpc(body: dict, token: str | None) -> dict:
            self._member.authorize_user(token)
            return await call(body)

        return rpc

    @app.handle_errors(Exception)
    def _error(self, request, failure):
        return error_answer(request, failure)

    @app.route(API + "/maintenance/snapshot", methods=["POST"])
    async def snapshot(self, request, api: str):
        """etcd's ``Maintenance.Snapshot``: a stream of JSON lines."""
        self._member.authorize_admin(request_token(request))
        messages = await self.maintenance.snapshot(request_body(request))
        request.setHeader(b"Content-Type", b"application/json")
        await LineProducer(request, messages).start()
        return b""

    @app.route(API + "/lease/keepalive", methods=["POST"])
    async def keepalive(self, request, api: str):
        """etcd's ``Lease.LeaseKeepAlive`` as the gateway serves it: one
        request, one stream message (no ``TTL`` for an unknown lease), end."""
        self._member.authorize_user(request_token(request))
        response = await self.lease.keepalive(lease_codec.keepalive_request(request_body(request)))
        request.setHeader(b"Content-Type", b"application/json")
        return json_line({"result": lease_codec.keepalive_response(response, self.headers)})

    @app.route(API + "/watch", methods=["POST"])
    async def watch_stream(self, request, api: str):
        """etcd's ``Watch`` as the gateway serves it: the body's
        ``create_request`` starts one watch; its responses go out as they
        happen, one chunk each, the ``created`` one at once.  The response
        ends when the watch is cancelled (compacted start, slow reader,
        member shutting down); the watch ends when the client goes away.
        A ``progress_request`` alone gets its one answer."""
        body = request_body(request)
        create = object_field(body, "create_request")
        if create is None and object_field(body, "progress_request") is None:
            raise V3Error(INVALID_ARGUMENT, "a watch request must hold create_request or progress_request")
        create_request = None if create is None else watch_codec.create_request(create)
        stream: WatchStream | None = None
        lines = PushedLines(request, pause=lambda: stream.pause(), resume=lambda: stream.resume())

        def send(response: WatchResponse) -> None:
            lines.write_line(self.watch_lines.line(response))
            if response.canceled and not stream.watch_ids:
                lines.end()

        stream = self.watch.open(send, token=request_token(request))
        request.setHeader(b"Content-Type", b"application/json")
        done = lines.start()
        try:
            if create_request is None:
                stream.request_progress()
                lines.end()
            else:
                stream.create(create_request)
            await done
        finally:
            stream.close()
            lines.end()
        return b""

    @app.route(API + "/<path:rpc>", methods=["POST"])
    async def call(self, request, api: str, rpc: str):
        """``POST /v3/<rpc>``: the JSON body to the RPC's method, its answer back."""
        method = self.rpcs.get(rpc)
        if method is None:
            raise NotFound()
        return _json(request, await method(request_body(request), request_token(request)))
