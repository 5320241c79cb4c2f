"""The sans-IO core of the client: what to send to etcd's v3 JSON API
and what its answers mean, with no I/O at all.

Each ``*_request`` function returns a ``Call`` (the path, the JSON body,
and whether sending it twice is harmless); each ``parse_*`` function
turns a decoded JSON answer into a frozen dataclass.  Both flavours of
the client (``metastore.client.sync`` and ``metastore.client.tx``) send
these calls and parse these answers, so a field name is written here
only.  Keys and values are bytes; int64s arrive as decimal strings and
leave as numbers, bytes leave and arrive as padded base64.  Keys come
back as the store's ``KeyValue``; the answers carry the full header
(cluster, member, revision, term), which the server's messages leave to
its API layer.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

from metastore.kv.messages import ALL_KEYS, CompareTarget, SortOrder, SortTarget, prefix_range_end
from metastore.storage.engine import KeyValue

API_PREFIX = "/v3"
NOT_FOUND = 5
"""The gRPC code of an unknown lease (etcd's "requested lease not found")."""
UNAUTHENTICATED_STATUS = 401
"""etcd's answer to an expired or unknown token ("etcdserver: invalid auth token")."""



class ClientError(Exception):
    """A member answered with an error: ``status`` is the HTTP status,
    ``code`` the gRPC code and ``message`` etcd's text (``etcdserver: ...``)."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class NoMemberAvailable(Exception):
    """No member could be asked safely (all refused, failed or were unavailable)."""


@dataclass(frozen=True, slots=True)
class Call:
    """One request: ``path`` (under the server's root), its JSON ``body``,
    and whether it is ``idempotent`` (sending it again after a lost answer
    changes nothing, so it may go to another member)."""

    path: str
    body: dict
    idempotent: bool

    def encode(self) -> bytes:
        """The body as sent."""
        return json.dumps(self.body, separators=(",", ":")).encode()


def b64(data: bytes) -> str:
    """Bytes as etcd's JSON writes them."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str | None) -> bytes:
    """Bytes from etcd's JSON (absent: empty)."""
    return base64.b64decode(text) if text else b""


def as_bytes(value: bytes | str) -> bytes:
    """Keys and values may be given as text (UTF-8) or bytes."""
    return value.encode("utf-8") if isinstance(value, str) else value


def _int(value) -> int:
    return int(value) if value not in (None, "") else 0


# -- answers -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Header:
    """``ResponseHeader``."""

    cluster_id: int = 0
    member_id: int = 0
    revision: int = 0
    raft_term: int = 0


@dataclass(frozen=True, slots=True)
class RangeResult:
    """``RangeResponse``: ``count`` is every match, ``kvs`` those returned."""

    header: Header
    kvs: tuple[KeyValue, ...] = ()
    more: bool = False
    count: int = 0


@dataclass(frozen=True, slots=True)
class PutResult:
    """``PutResponse``."""

    header: Header
    prev_kv: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """``DeleteRangeResponse``."""

    header: Header
    deleted: int = 0
    prev_kvs: tuple[KeyValue, ...] = ()


@dataclass(frozen=True, slots=True)
class TxnResult:
    """``TxnResponse``: each response is a RangeResult, PutResult or DeleteResult."""

    header: Header
    succeeded: bool = False
    responses: tuple = ()


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease's answer (grant, keep-alive, time-to-live): ``ttl`` -1
    means the lease is gone."""

    header: Header
    id: int
    ttl: int = -1
    granted_ttl: int = 0
    keys: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class Member:
    """``Member``."""

    id: int
    name: str = ""
    peer_urls: tuple[str, ...] = ()
    client_urls: tuple[str, ...] = ()
    is_learner: bool = False


@dataclass(frozen=True, slots=True)
class MemberList:
    """``MemberListResponse`` (and the add/remove/promote answers); ``added``
    is the new member of an add."""

    header: Header
    members: tuple[Member, ...] = ()
    added: Member | None = None


@dataclass(frozen=True, slots=True)
class Status:
    """``StatusResponse``."""

    header: Header
    version: str = ""
    db_size: int = 0
    leader: int = 0
    raft_index: int = 0
    raft_term: int = 0
    raft_applied_index: int = 0
    is_learner: bool = False
    errors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HashKV:
    """``HashKVResponse``."""

    header: Header
    hash: int = 0
    compact_revision: int = 0


@dataclass(frozen=True, slots=True)
class Event:
    """``mvccpb.Event``: ``type`` is ``"PUT"`` or ``"DELETE"``."""

    type: str
    kv: KeyValue
    prev_kv: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class WatchMessage:
    """One ``WatchResponse`` of the stream."""

    header: Header
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    cancel_reason: str = ""
    events: tuple[Event, ...] = field(default_factory=tuple)


def parse_error(status: int, content: bytes) -> ClientError:
    """The error a non-200 answer means."""
    try:
        body = json.loads(content)
        message = body.get("message") or body.get("error") or ""
        code = _int(body.get("code"))
    except (ValueError, AttributeError):
        message, code = content[:300].decode("utf-8", "replace").strip(), 0
    return ClientError(status, code, message or f"HTTP {status}")


def parse_header(body: dict | None) -> Header:
    """``ResponseHeader`` from its JSON."""
    body = body or {}
    return Header(_int(body.get("cluster_id")), _int(body.get("member_id")), _int(body.get("revision")),
                  _int(body.get("raft_term")))


def parse_kv(body: dict) -> KeyValue:
    """``KeyValue`` from its JSON."""
    return KeyValue(unb64(body.get("key")), unb64(body.get("value")), _int(body.get("create_revision")),
                    _int(body.get("mod_revision")), _int(body.get("version")), _int(body.get("lease")))


def parse_range(body: dict) -> RangeResult:
    """``RangeResponse``."""
    return RangeResult(parse_header(body.get("header")), tuple(parse_kv(kv) for kv in body.get("kvs", ())),
                       bool(body.get("more")), _int(body.get("count")))


def parse_put(body: dict) -> PutResult:
    """``PutResponse``."""
    prev = body.get("prev_kv")
    return PutResult(parse_header(body.get("header")), None if prev is None else parse_kv(prev))


def parse_delete(body: dict) -> DeleteResult:
    """``DeleteRangeResponse``."""
    return DeleteResult(parse_header(body.get("header")), _int(body.get("deleted")),
                        tuple(parse_kv(kv) for kv in body.get("prev_kvs", ())))


_OP_PARSERS = {"response_range": parse_range, "response_put": parse_put, "response_delete_range": parse_delete}


def parse_txn(body: dict) -> TxnResult:
    """``TxnResponse``; a nested txn's answer is a TxnResult too."""
    responses = []
    for op in body.get("responses", ()):
        ((name, value),) = op.items()
        responses.append(parse_txn(value) if name == "response_txn" else _OP_PARSERS[name](value))
    return TxnResult(parse_header(body.get("header")), bool(body.get("succeeded")), tuple(responses))


def parse_lease(body: dict) -> Lease:
    """A grant, keep-alive (its ``result``) or time-to-live answer."""
    body = body.get("result", body)
    ttl = body.get("TTL")
    return Lease(parse_header(body.get("header")), _int(body.get("ID")), -1 if ttl is None else int(ttl),
                 _int(body.get("grantedTTL")), tuple(unb64(k) for k in body.get("keys", ())))


def parse_leases(body: dict) -> tuple[int, ...]:
    """``LeaseLeasesResponse``: the ids."""
    return tuple(_int(lease.get("ID")) for lease in body.get("leases", ()))


def parse_member(body: dict) -> Member:
    """``Member``."""
    return Member(_int(body.get("ID")), body.get("name", ""), tuple(body.get("peerURLs", ())),
                  tuple(body.get("clientURLs", ())), bool(body.get("isLearner")))


def parse_members(body: dict) -> MemberList:
    """A member list (or add/remove/update/promote) answer."""
    added = body.get("member")
    return MemberList(parse_header(body.get("header")), tuple(parse_member(m) for m in body.get("members", ())),
                      None if added is None else parse_member(added))


def parse_status(body: dict) -> Status:
    """``StatusResponse``."""
    return Status(parse_header(body.get("header")), body.get("version", ""), _int(body.get("dbSize")),
                  _int(body.get("leader")), _int(body.get("raftIndex")), _int(body.get("raftTerm")),
                  _int(body.get("raftAppliedIndex")), bool(body.get("isLearner")), tuple(body.get("errors", ())))


def parse_hashkv(body: dict) -> HashKV:
    """``HashKVResponse``."""
    return HashKV(parse_header(body.get("header")), _int(body.get("hash")), _int(body.get("compact_revision")))


def parse_event(body: dict) -> Event:
    """``mvccpb.Event`` (a PUT has no ``type``)."""
    prev = body.get("prev_kv")
    return Event(body.get("type", "PUT"), parse_kv(body.get("kv", {})), None if prev is None else parse_kv(prev))


def parse_watch_message(body: dict) -> WatchMessage:
    """One stream message, ``{"result": WatchResponse}``."""
    body = body.get("result", body)
    return WatchMessage(parse_header(body.get("header")), bool(body.get("created")), bool(body.get("canceled")),
                        _int(body.get("compact_revision")), body.get("cancel_reason", ""),
                        tuple(parse_event(e) for e in body.get("events", ())))


def parse_snapshot_chunk(body: dict) -> tuple[bytes, int]:
    """One snapshot stream message: ``(blob, remaining_bytes)``."""
    body = body.get("result", body)
    return unb64(body.get("blob")), _int(body.get("remaining_bytes"))


# -- requests ------------------------------------------------------------


def _call(path: str, body: dict, idempotent: bool) -> Call:
    return Call(API_PREFIX + path, {k: v for k, v in body.items() if v not in (None, False, 0, "")}, idempotent)


def _key_range(key: bytes | str, range_end: bytes | str | None, prefix: bool, from_key: bool) -> dict:
    key = as_bytes(key)
    if prefix:
        end = prefix_range_end(key) if key else ALL_KEYS
        key = key or ALL_KEYS
    elif from_key:
        end, key = ALL_KEYS, key or ALL_KEYS
    else:
        end = as_bytes(range_end) if range_end else b""
    return {"key": b64(key), "range_end": b64(end) if end else None}


def range_body(key, range_end=None, *, prefix=False, from_key=False, revision=0, limit=0, keys_only=False,
               count_only=False, serializable=False, sort_order="NONE", sort_target="KEY") -> dict:
    """A ``RangeRequest``'s JSON (also a txn's ``request_range``)."""
    return {k: v for k, v in {
        **_key_range(key, range_end, prefix, from_key), "revision": revision, "limit": limit,
        "keys_only": keys_only, "count_only": count_only, "serializable": serializable,
        "sort_order": SortOrder[sort_order].value, "sort_target": SortTarget[sort_target].value,
    }.items() if v not in (None, False, 0, "")}  # fmt: skip


def range_request(key, range_end=None, **options) -> Call:
    """``/kv/range``: ``key``, or ``[key, range_end)``; ``prefix=True``
    every key under ``key``; ``from_key=True`` every key from ``key`` on."""
    return Call(API_PREFIX + "/kv/range", range_body(key, range_end, **options), idempotent=True)


def put_body(key, value, *, lease=0, prev_kv=False, ignore_value=False, ignore_lease=False) -> dict:
    """A ``PutRequest``'s JSON (also a txn's ``request_put``)."""
    body = {"key": b64(as_bytes(key)), "value": b64(as_bytes(value)), "lease": lease, "prev_kv": prev_kv,
            "ignore_value": ignore_value, "ignore_lease": ignore_lease}
    return {k: v for k, v in body.items() if v not in (False, 0)}


def put_request(key, value, **options) -> Call:
    """``/kv/put``: not idempotent (a second put is a second revision)."""
    return Call(API_PREFIX + "/kv/put", put_body(key, value, **options), idempotent=False)


def delete_body(key, range_end=None, *, prefix=False, from_key=False, prev_kv=False) -> dict:
    """A ``DeleteRangeRequest``'s JSON (also a txn's ``request_delete_range``)."""
    body = {**_key_range(key, range_end, prefix, from_key), "prev_kv": prev_kv}
    return {k: v for k, v in body.items() if v not in (None, False)}


def delete_request(key, range_end=None, **options) -> Call:
    """``/kv/deleterange``: not idempotent (the second answer says 0 deleted)."""
    return Call(API_PREFIX + "/kv/deleterange", delete_body(key, range_end, **options), idempotent=False)


@dataclass(frozen=True, slots=True)
class Compare:
    """A txn compare: ``target`` VERSION, CREATE, MOD, VALUE or LEASE;
    ``result`` EQUAL, NOT_EQUAL, GREATER or LESS."""

    key: bytes | str
    target: str
    result: str
    value: int | bytes | str
    range_end: bytes | str | None = None

    def to_json(self) -> dict:
        """The compare's JSON (the operand in the target's own field)."""
        target = CompareTarget[self.target]
        value = b64(as_bytes(self.value)) if target is CompareTarget.VALUE else int(self.value)
        body = {"key": b64(as_bytes(self.key)), "target": target.name, "result": self.result,
                _COMPARE_FIELDS[target]: value}
        if self.range_end:
            body["range_end"] = b64(as_bytes(self.range_end))
        return body


_COMPARE_FIELDS = {CompareTarget.VERSION: "version", CompareTarget.CREATE: "create_revision",
                   CompareTarget.MOD: "mod_revision", CompareTarget.VALUE: "value", CompareTarget.LEASE: "lease"}


def op_range(key, range_end=None, **options) -> dict:
    """A txn op reading."""
    return {"request_range": range_body(key, range_end, **options)}


def op_put(key, value, **options) -> dict:
    """A txn op writing."""
    return {"request_put": put_body(key, value, **options)}


def op_delete(key, range_end=None, **options) -> dict:
    """A txn op deleting."""
    return {"request_delete_range": delete_body(key, range_end, **options)}


def txn_request(compare=(), success=(), failure=()) -> Call:
    """``/kv/txn``: ``compare`` holds ``Compare``s, ``success`` and
    ``failure`` ops from ``op_range``/``op_put``/``op_delete``.  Idempotent
    only when no op writes."""
    ops = list(success) + list(failure)
    read_only = all("request_range" in op for op in ops)
    body = {"compare": [c.to_json() for c in compare], "success": list(success), "failure": list(failure)}
    return Call(API_PREFIX + "/kv/txn", body, idempotent=read_only)


def compaction_request(revision: int, physical: bool = False) -> Call:
    """``/kv/compaction``: a retry answers "compacted", so not idempotent."""
    return _call("/kv/compaction", {"revision": revision, "physical": physical}, idempotent=False)


def lease_grant_request(ttl: int, lease_id: int = 0) -> Call:
    """``/lease/grant``: not idempotent (a second grant is a second lease)."""
    return _call("/lease/grant", {"TTL": ttl, "ID": lease_id}, idempotent=False)


def lease_revoke_request(lease_id: int) -> Call:
    """``/lease/revoke``: a retry answers "not found", so not idempotent."""
    return _call("/lease/revoke", {"ID": lease_id}, idempotent=False)


def lease_keepalive_request(lease_id: int) -> Call:
    """``/lease/keepalive``: idempotent (it resets the TTL again)."""
    return _call("/lease/keepalive", {"ID": lease_id}, idempotent=True)


def lease_time_to_live_request(lease_id: int, keys: bool = False) -> Call:
    """``/lease/timetolive``."""
    return _call("/lease/timetolive", {"ID": lease_id, "keys": keys}, idempotent=True)


def lease_leases_request() -> Call:
    """``/lease/leases``."""
    return _call("/lease/leases", {}, idempotent=True)


def member_list_request() -> Call:
    """``/cluster/member/list``."""
    return _call("/cluster/member/list", {}, idempotent=True)


def member_add_request(peer_url: str, learner: bool = False) -> Call:
    """``/cluster/member/add``."""
    return _call("/cluster/member/add", {"peerURLs": [peer_url], "isLearner": learner}, idempotent=False)


def member_remove_request(member_id: int) -> Call:
    """``/cluster/member/remove``."""
    return _call("/cluster/member/remove", {"ID": member_id}, idempotent=False)


def member_promote_request(member_id: int) -> Call:
    """``/cluster/member/promote``."""
    return _call("/cluster/member/promote", {"ID": member_id}, idempotent=False)


def status_request() -> Call:
    """``/maintenance/status`` (of the member asked)."""
    return _call("/maintenance/status", {}, idempotent=True)


def hashkv_request(revision: int = 0) -> Call:
    """``/maintenance/hashkv`` (of the member asked)."""
    return _call("/maintenance/hashkv", {"revision": revision}, idempotent=True)


def defragment_request() -> Call:
    """``/maintenance/defragment`` (of the member asked)."""
    return _call("/maintenance/defragment", {}, idempotent=True)


def snapshot_request() -> Call:
    """``/maintenance/snapshot``: a stream of blobs."""
    return _call("/maintenance/snapshot", {}, idempotent=True)


def authenticate_request(name: str, password: str) -> Call:
    """``/auth/authenticate``: its answer's ``token`` goes in ``Authorization``."""
    return _call("/auth/authenticate", {"name": name, "password": password}, idempotent=True)


def watch_request(key, range_end=None, *, prefix=False, from_key=False, start_revision=0, prev_kv=False,
                  filters=(), progress_notify=False) -> Call:
    """``/watch``: one ``create_request``; ``filters`` names NOPUT / NODELETE."""
    body = {**_key_range(key, range_end, prefix, from_key), "start_revision": start_revision,
            "prev_kv": prev_kv, "filters": list(filters), "progress_notify": progress_notify}
    return Call(API_PREFIX + "/watch", {"create_request": {k: v for k, v in body.items() if v}}, idempotent=True)
