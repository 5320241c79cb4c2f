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

from metastore.api.errors import internal_error
from metastore.api.v3.errors import INVALID_ARGUMENT, REQUEST_TOO_LARGE, V3Error, v3_error
from metastore.api.v3.header import Headers
from metastore.api.v3.json_fields import parse_body
from metastore.api.v3 import kv_codec
from metastore.api.v3.cluster import ClusterJSON, ClusterService
from metastore.api.v3.kv import KVService
from metastore.api.v3.maintenance import MaintenanceJSON, MaintenanceService
from metastore.api.v3.streaming import LineProducer
from metastore.facade import MemberFacade

API = "/<any(v3, v3beta, v3alpha):api>"
"""The path prefixes served (etcd 3.4 serves /v3/ and /v3beta/)."""


def _json(request, value: dict, status: int = 200) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    return json.dumps(value, separators=(",", ":")).encode()


def _kv_rpc(decode, method, headers: Headers) -> Callable[[dict], Awaitable[dict]]:
    """A KV route: the body decoded to its request, ``method``'s response
    encoded with the header at its revision."""

    async def call(body: dict) -> dict:
        response = await method(decode(body))
        return kv_codec.kv_response(response, headers.at(response.header.revision))

    return call


def _body(request) -> dict:
    if getattr(request, "body_too_large", False):
        raise V3Error(INVALID_ARGUMENT, REQUEST_TOO_LARGE)
    return parse_body(request.content.read())


class V3API:
    """etcd's v3 JSON API over a member's facade; mount ``app.resource()``
    at ``/v3``, ``/v3beta`` and ``/v3alpha``."""

    app = Klein()

    def __init__(
        self, member: MemberFacade, cluster_id: int, wait_physical: Callable[[int], defer.Deferred]
    ) -> None:
        self.headers = Headers(member, cluster_id)
        kv = KVService(member, wait_physical)
        self.cluster = ClusterJSON(ClusterService(member), self.headers.at)
        self.maintenance = MaintenanceJSON(MaintenanceService(member), self.headers)
        self.rpcs: dict[str, Callable[[dict], Awaitable[dict]]] = {
            "kv/range": _kv_rpc(kv_codec.range_request, kv.range, self.headers),
            "kv/put": _kv_rpc(kv_codec.put_request, kv.put, self.headers),
            "kv/deleterange": _kv_rpc(kv_codec.delete_range_request, kv.delete_range, self.headers),
            "kv/txn": _kv_rpc(kv_codec.txn_request, kv.txn, self.headers),
            "kv/compaction": _kv_rpc(kv_codec.compaction_request, kv.compact, self.headers),
            "cluster/member/list": self.cluster.list,
            "cluster/member/add": self.cluster.add,
            "cluster/member/remove": self.cluster.remove,
            "cluster/member/update": self.cluster.update,
            "cluster/member/promote": self.cluster.promote,
            "maintenance/status": self.maintenance.status,
            "maintenance/hash": self.maintenance.hash,
            "maintenance/hashkv": self.maintenance.hashkv,
            "maintenance/defragment": self.maintenance.defragment,
            "maintenance/alarm": self.maintenance.alarm,
            "maintenance/transfer-leadership": self.maintenance.move_leader,
        }
        """Each RPC's path after the prefix, and the method answering it."""

    @app.handle_errors(Exception)
    def _error(self, request, failure):
        error = v3_error(failure.value)
        if error is None:
            return internal_error(request, failure)
        request.setResponseCode(error.http_status)
        request.setHeader(b"Content-Type", b"application/json")
        return error.body()

    @app.route(API + "/maintenance/snapshot", methods=["POST"])
    async def snapshot(self, request, api: str):
        """etcd's ``Maintenance.Snapshot``: a stream of JSON lines."""
        messages = await self.maintenance.snapshot(_body(request))
        request.setHeader(b"Content-Type", b"application/json")
        await LineProducer(request, messages).start()
        return b""

    @app.route(API + "/<path:rpc>", methods=["POST"])
    async def call(self, request, api: str, rpc: str):
        """``POST /v3/<rpc>``: the JSON body to the RPC's method, its answer back."""
        method = self.rpcs.get(rpc)
        if method is None:
            raise NotFound()
        return _json(request, await method(_body(request)))
