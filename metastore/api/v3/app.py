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
from metastore.api.v3.cluster import ClusterService
from metastore.api.v3.kv import KVService
from metastore.api.v3.maintenance import MaintenanceService
from metastore.api.v3.streaming import LineProducer
from metastore.facade import MemberFacade

API = "/<any(v3, v3beta, v3alpha):api>"
"""The path prefixes served (etcd 3.4 serves /v3/ and /v3beta/)."""


_COMPACT = json.JSONEncoder(separators=(",", ":"))


def compact_json(value: dict) -> bytes:
    """``value`` as the gateway writes JSON: no spaces."""
    return _COMPACT.encode(value).encode()


def _json(request, value: dict, status: int = 200) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    return compact_json(value)


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
        self, member: MemberFacade, cluster_id: int, wait_physical: Callable[[int], defer.Deferred]
    ) -> None:
        self.headers = Headers(member, cluster_id)
        self.kv = KVService(member, self.headers, wait_physical)
        self.cluster = ClusterService(member, self.headers)
        self.maintenance = MaintenanceService(member, self.headers)
        self.rpcs: dict[str, Callable[[dict], Awaitable[dict]]] = {
            "kv/range": self.kv.range,
            "kv/put": self.kv.put,
            "kv/deleterange": self.kv.delete_range,
            "kv/txn": self.kv.txn,
            "kv/compaction": self.kv.compact,
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
        return error_answer(request, failure)

    @app.route(API + "/maintenance/snapshot", methods=["POST"])
    async def snapshot(self, request, api: str):
        """etcd's ``Maintenance.Snapshot``: a stream of JSON lines."""
        messages = await self.maintenance.snapshot(request_body(request))
        request.setHeader(b"Content-Type", b"application/json")
        await LineProducer(request, messages).start()
        return b""

    @app.route(API + "/<path:rpc>", methods=["POST"])
    async def call(self, request, api: str, rpc: str):
        """``POST /v3/<rpc>``: the JSON body to the RPC's method, its answer back."""
        method = self.rpcs.get(rpc)
        if method is None:
            raise NotFound()
        return _json(request, await method(request_body(request)))
