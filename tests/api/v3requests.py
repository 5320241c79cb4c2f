"""A seeded random source of etcd v3 KV requests, in etcd's JSON, and the
rules for comparing two systems' answers to them.

The requests are written from etcd's documented JSON contract (the
grpc-gateway's field names; bytes as base64; int64 as a JSON number or a
decimal string, enums as a name or a number, both of which the gateway
accepts), never from what MetaStore happens to parse.  The key space is
small on purpose so that puts, deletes, ranges and txn compares keep
meeting the same keys, and so that duplicate-key errors happen.

The generator follows the reference's answers (its revision, and the
revision of each successful compaction) so that past revisions, compacted
revisions and future revisions are all asked for.  Given the same seed
and the same reference answers it produces the same sequence.
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass

KEYS = [b"a", b"a/1", b"a/2", b"a/3", b"ab", b"b", b"b/1", b"c", b"\xff"]
PREFIXES = [b"a", b"a/", b"b", b"\xff"]
VALUES = [b"", b"1", b"2", b"10", b"x"]

SORT_ORDERS = ["NONE", "ASCEND", "DESCEND"]
SORT_TARGETS = ["KEY", "VERSION", "CREATE", "MOD", "VALUE"]
COMPARE_TARGETS = ["VERSION", "CREATE", "MOD", "VALUE", "LEASE"]
COMPARE_RESULTS = ["EQUAL", "GREATER", "LESS", "NOT_EQUAL"]
COMPARE_FIELDS = {
    "VERSION": "version", "CREATE": "create_revision", "MOD": "mod_revision", "VALUE": "value", "LEASE": "lease",
}
MAX_TXN_OPS = 128  # etcd's --max-txn-ops default

WRITE_PATHS = ("/v3/kv/put", "/v3/kv/deleterange", "/v3/kv/txn", "/v3/kv/compaction")
IGNORED_HEADER_FIELDS = ("cluster_id", "member_id", "raft_term")


def b64(data: bytes) -> str:
    """Standard padded base64, as the gateway carries bytes."""
    return base64.b64encode(data).decode("ascii")


def prefix_end(prefix: bytes) -> bytes:
    """etcd's range_end for "every key starting with ``prefix``": the
    prefix with its last byte below 0xff incremented and the rest cut;
    ``\\0`` (every key from ``prefix`` on) when every byte is 0xff."""
    for i in range(len(prefix) - 1, -1, -1):
        if prefix[i] < 0xFF:
            return prefix[:i] + bytes([prefix[i] + 1])
    return b"\0"


@dataclass(frozen=True)
class Request:
    """One request: its path, its JSON body, and whether it may be served
    from a member's local state (a serializable read)."""

    path: str
    body: dict
    local: bool

    @property
    def writes(self) -> bool:
        """Whether the request may change the store."""
        return self.path in WRITE_PATHS


class RequestGenerator:
    """Seeded random v3 KV requests: ranges, puts, deletes, txns (nested,
    with every compare target and result) and compactions, including
    requests etcd refuses (empty key, duplicate key in a txn, too many
    operations, unknown lease, compacted and future revisions)."""

    def __init__(self, seed: int, valid_revisions_in_txn: bool = False) -> None:
        self.rng = random.Random(seed)
        # A multi-member etcd 3.4 diverges when a txn range names a compacted
        # or future revision (etcd issue 18667: only the member the client
        # asked checks it); a run against such a cluster must not ask that.
        self.valid_revisions_in_txn = valid_revisions_in_txn
        self.revision = 1
        self.compacted = 0

    def observe(self, request: Request, answer_status: int, answer: object) -> None:
        """Learn the reference's revision and compacted revision from its answer."""
        if answer_status != 200 or not isinstance(answer, dict):
            return
        revision = answer.get("header", {}).get("revision")
        if revision is not None:
            self.revision = max(self.revision, int(revision))
        if request.path == "/v3/kv/compaction":
            self.compacted = max(self.compacted, int(request.body.get("revision", 0)))

    def next(self) -> Request:
        """The next request."""
        kind = self.rng.choices(
            ["range", "put", "deleterange", "txn", "compaction"], weights=[33, 27, 10, 27, 3]
        )[0]
        body = getattr(self, f"_{kind}")()
        if kind == "txn":
            avoid_etcd_panics(body)
        return Request(path=f"/v3/kv/{kind}", body=body, local=served_locally(kind, body))

    # -- field encodings -------------------------------------------------

    def _chance(self, p: float) -> bool:
        return self.rng.random() < p

    def _int64(self, value: int):
        """An int64 as a JSON number, or as the decimal string jsonpb also accepts."""
        return str(value) if self._chance(0.3) else value

    def _enum(self, names: list[str], name: str):
        """An enum as its name, or as its number."""
        return names.index(name) if self._chance(0.4) else name

    def _key(self) -> bytes:
        return b"" if self._chance(0.01) else self.rng.choice(KEYS)

    def _key_range(self, forms=("single", "prefix", "from", "all", "between"), weights=(40, 25, 10, 10, 15)) -> dict:
        form = self.rng.choices(forms, weights=weights)[0]
        if form == "single":
            return {"key": b64(self._key())}
        if form == "prefix":
            prefix = self.rng.choice(PREFIXES)
            return {"key": b64(prefix), "range_end": b64(prefix_end(prefix))}
        if form == "from":
            return {"key": b64(self._key()), "range_end": b64(b"\0")}
        if form == "all":
            return {"key": b64(b"\0"), "range_end": b64(b"\0")}
        return {"key": b64(self._key()), "range_end": b64(self.rng.choice(KEYS))}

    def _revision(self, valid: bool = False) -> int:
        """A revision to read at: current, retained, or (unless ``valid``)
        compacted or future."""
        weights = [20, 50, 0, 0] if valid else [20, 50, 15, 15]
        kind = self.rng.choices(["current", "retained", "compacted", "future"], weights=weights)[0]
        if kind == "retained" or (kind == "compacted" and self.compacted <= 1):
            return self.rng.randint(max(1, self.compacted), self.revision)
        if kind == "compacted":
            return self.rng.randint(1, self.compacted - 1)
        if kind == "future":
            return self.revision + self.rng.randint(1, 3)
        return self.revision

    # -- requests --------------------------------------------------------

    def _range(self, in_txn: bool = False) -> dict:
        body = self._key_range()
        if self._chance(0.3):
            body["limit"] = self._int64(self.rng.randint(0, 4))
        if self._chance(0.3):
            body["revision"] = self._int64(self._revision(valid=in_txn and self.valid_revisions_in_txn))
        if self._chance(0.35):
            body["sort_order"] = self._enum(SORT_ORDERS, self.rng.choice(SORT_ORDERS))
        if self._chance(0.35):
            body["sort_target"] = self._enum(SORT_TARGETS, self.rng.choice(SORT_TARGETS))
        if self._chance(0.15):
            body["keys_only"] = True
        if self._chance(0.1):
            body["count_only"] = True
        for bound in ("min_mod_revision", "max_mod_revision", "min_create_revision", "max_create_revision"):
            if self._chance(0.06):
                body[bound] = self._int64(self.rng.randint(0, self.revision + 1))
        if self._chance(0.05 if in_txn else 0.2):
            body["serializable"] = True
        return body

    def _put(self) -> dict:
        body = {"key": b64(self._key())}
        if self._chance(0.1):
            body["ignore_value"] = True
            if self._chance(0.2):
                body["value"] = b64(self.rng.choice(VALUES[1:]))
        else:
            value = self.rng.choice(VALUES)
            if value or self._chance(0.5):
                body["value"] = b64(value)
        if self._chance(0.3):
            body["prev_kv"] = True
        if self._chance(0.1):
            body["ignore_lease"] = True
        if self._chance(0.03):
            # No lease exists in these runs: etcd answers "requested lease not found".
            body["lease"] = self._int64(self.rng.randint(1, 2**62))
        return body

    def _deleterange(self) -> dict:
        body = self._key_range()
        if self._chance(0.35):
            body["prev_kv"] = True
        return body

    def _compare(self) -> dict:
        compare = self._key_range(forms=("single", "prefix", "from"), weights=(70, 20, 10))
        target = self.rng.choice(COMPARE_TARGETS)
        compare["target"] = self._enum(COMPARE_TARGETS, target)
        compare["result"] = self._enum(COMPARE_RESULTS, self.rng.choice(COMPARE_RESULTS))
        if target == "VALUE":
            operand = b64(self.rng.choice(VALUES))
        elif target == "VERSION":
            operand = self._int64(self.rng.randint(0, 4))
        elif target == "LEASE":
            operand = self._int64(0 if self._chance(0.8) else self.rng.randint(1, 2**62))
        else:
            operand = self._int64(self.rng.randint(0, self.revision + 1))
        if operand not in (0, "0", "") or self._chance(0.7):
            compare[COMPARE_FIELDS[target]] = operand
        return compare

    def _op(self, depth: int) -> dict:
        kinds, weights = ["range", "put", "deleterange", "txn"], [35, 30, 20, 15 if depth < 2 else 0]
        kind = self.rng.choices(kinds, weights=weights)[0]
        if kind == "range":
            return {"request_range": self._range(in_txn=True)}
        if kind == "put":
            return {"request_put": self._put()}
        if kind == "deleterange":
            return {"request_delete_range": self._deleterange()}
        return {"request_txn": self._txn(depth + 1)}

    def _txn(self, depth: int = 0) -> dict:
        body = {}
        if depth == 0 and self._chance(0.01):
            body["success"] = [{"request_range": {"key": b64(key)}} for key in (KEYS * 20)[: MAX_TXN_OPS + 1]]
            return body
        compares = self.rng.choice([0, 0, 1, 1, 1, 2, 3])
        if compares or self._chance(0.5):
            body["compare"] = [self._compare() for _ in range(compares)]
        for branch in ("success", "failure"):
            ops = self.rng.choice([0, 1, 1, 2, 3])
            if ops or self._chance(0.3):
                body[branch] = [self._op(depth) for _ in range(ops)]
        return body

    def _compaction(self) -> dict:
        kind = self.rng.choices(["retained", "compacted", "future"], weights=[70, 15, 15])[0]
        if kind == "retained" and self.compacted < self.revision:
            gap = self.revision - self.compacted
            revision = self.compacted + self.rng.randint(1, max(1, gap // 3))
        elif kind == "future":
            revision = self.revision + self.rng.randint(1, 2)
        else:
            revision = self.rng.randint(max(0, self.compacted - 2), self.compacted)
        body = {"revision": self._int64(revision)}
        if self._chance(0.5):
            body["physical"] = True
        return body


LEASE_IDS = [1, 2, 3, 2**62 + 5]
"""Lease ids the lease sequences name (the same on both systems, so their
answers compare; one above 2**53 checks exact 64-bit handling)."""
LEASE_TTLS = [30, 600, 3600]
"""TTLs long enough that nothing expires during a run (expiry is timing)."""
LEASE_PATHS = {
    "grant": ("/v3/lease/grant",),
    "revoke": ("/v3/lease/revoke", "/v3/kv/lease/revoke"),
    "keepalive": ("/v3/lease/keepalive",),
    "timetolive": ("/v3/lease/timetolive", "/v3/kv/lease/timetolive"),
    "leases": ("/v3/lease/leases",),
}


class LeaseRequestGenerator:
    """Seeded random lease requests (grant with named ids, revoke on both
    paths, keepalive, timetolive with and without keys, the list) mixed
    with puts that attach keys to leases (known or not), deletes and txns
    whose puts carry leases."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def observe(self, request: Request, answer_status: int, answer: object) -> None:
        """Nothing to learn: lease ids are named, not generated."""

    def next(self) -> Request:
        """The next request."""
        kind = self.rng.choices(
            ["grant", "put", "revoke", "keepalive", "timetolive", "leases", "deleterange", "txn"],
            weights=[14, 30, 8, 10, 12, 4, 10, 8],
        )[0]
        if kind in LEASE_PATHS:
            return Request(self.rng.choice(LEASE_PATHS[kind]), getattr(self, f"_{kind}")(), local=False)
        return Request(f"/v3/kv/{kind}", getattr(self, f"_{kind}")(), local=False)

    def _id(self):
        value = self.rng.choice(LEASE_IDS)
        return str(value) if self.rng.random() < 0.3 else value

    def _grant(self) -> dict:
        ttl = 9_000_000_001 if self.rng.random() < 0.05 else self.rng.choice(LEASE_TTLS)
        return {"TTL": ttl, "ID": self._id()}

    def _revoke(self) -> dict:
        return {"ID": self._id()}

    _keepalive = _revoke

    def _timetolive(self) -> dict:
        body = {"ID": self._id()}
        if self.rng.random() < 0.6:
            body["keys"] = True
        return body

    def _leases(self) -> dict:
        return {}

    def _put(self) -> dict:
        body = {"key": b64(self.rng.choice(KEYS)), "value": b64(self.rng.choice(VALUES))}
        if self.rng.random() < 0.7:
            body["lease"] = self._id()
        if self.rng.random() < 0.2:
            body["prev_kv"] = True
        return body

    def _deleterange(self) -> dict:
        prefix = self.rng.choice(PREFIXES)
        body = {"key": b64(prefix)}
        if self.rng.random() < 0.5:
            body["range_end"] = b64(prefix_end(prefix))
        return body

    def _txn(self) -> dict:
        keys = self.rng.sample(KEYS, self.rng.randint(1, 3))
        puts = [{"request_put": {"key": b64(k), "value": b64(b"t"), "lease": self._id()}} for k in keys]
        return {"success": puts}


def served_locally(kind: str, body: dict) -> bool:
    """Whether etcd serves the request from the asked member's state without
    a linearizable read: a serializable range, and a txn whose success and
    failure lists hold only serializable ranges, or nothing at all (so even
    a txn of compares alone may answer from a stale member)."""
    if kind == "range":
        return body.get("serializable") is True
    if kind == "txn":
        ops = body.get("success", []) + body.get("failure", [])
        return all(op.get("request_range", {}).get("serializable") is True for op in ops)
    return False


def _ops(txn: dict, depth: int = 0):
    """Every (op, depth) of a txn request, nested txns included."""
    for op in txn.get("success", []) + txn.get("failure", []):
        yield op, depth
        if "request_txn" in op:
            yield from _ops(op["request_txn"], depth + 1)


def avoid_etcd_panics(txn: dict) -> None:
    """Change a generated txn so it cannot crash etcd 3.4.23 (which would
    leave nothing to compare with): etcd panics on a put with an unknown
    lease inside a nested txn, and on a put with ignore_value or
    ignore_lease whose key an earlier delete of the same txn removed (its
    duplicate-key check misses deletes whose range_end is ``\\0``)."""
    ops = list(_ops(txn))
    deletes_from = any(op.get("request_delete_range", {}).get("range_end") == b64(b"\0") for op, _ in ops)
    for op, depth in ops:
        put = op.get("request_put")
        if put is None:
            continue
        if depth > 0:
            put.pop("lease", None)
        if deletes_from:
            put.pop("ignore_lease", None)
            if put.pop("ignore_value", None):
                put.pop("value", None)


def outcome(request: Request, status: int, answer: object) -> str:
    """A label for what the reference did with a request, to show that a
    run went through every kind of outcome (not just, say, errors)."""
    kind = request.path.rsplit("/", 1)[-1]
    if status != 200:
        message = answer.get("message", "?") if isinstance(answer, dict) else "?"
        return f"{kind}: {status} {message}"
    if kind == "txn":
        return "txn: succeeded" if answer.get("succeeded") else "txn: failed"
    if kind == "range" and "revision" in request.body:
        return "range: 200 at a revision"
    return f"{kind}: 200"


def comparable(status: int, content_type: str, body: bytes) -> tuple:
    """What must be equal between etcd's answer and another system's: the
    status, and the JSON body without the header's cluster_id, member_id
    and raft_term (which differ between any two clusters); a body that is
    not JSON is compared with its Content-Type, as text."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return status, content_type.split(";")[0].strip(), body.decode("utf-8", "replace")
    return status, without_ids(parsed)


def without_ids(parsed):
    """An answer (or a stream message's ``result``) without the header
    fields that differ between any two clusters."""
    if isinstance(parsed, dict) and isinstance(parsed.get("result"), dict):
        return {**parsed, "result": without_ids(parsed["result"])}
    if isinstance(parsed, dict) and isinstance(parsed.get("header"), dict):
        parsed = {**parsed, "header": {k: v for k, v in parsed["header"].items() if k not in IGNORED_HEADER_FIELDS}}
    return parsed


FORWARDED_LEASE_CALLS = ("timetolive", "leases", "keepalive")
"""Lease calls an etcd follower forwards to its leader but answers with its
own, possibly older, header revision."""


def lease_comparable(path: str, status: int, content_type: str, body: bytes) -> tuple:
    """``comparable`` for an answer to ``path``, with what is timing or
    etcd's map order made comparable: a remaining TTL within 5 s of the
    granted one is "counting down", lease lists and lease keys are sorted
    (etcd lists leases by expiry and a lease's keys in map order), and the
    header revision of ``FORWARDED_LEASE_CALLS`` is left out."""
    status, parsed = comparable(status, content_type, body)
    if status == 200 and path.rsplit("/", 1)[-1] in FORWARDED_LEASE_CALLS:
        message = parsed.get("result", parsed)
        message["header"].pop("revision", None)
    if isinstance(parsed, dict):
        if "grantedTTL" in parsed and 0 <= int(parsed["grantedTTL"]) - int(parsed.get("TTL", "0")) <= 5:
            parsed["TTL"] = "counting down"
        if "keys" in parsed:
            parsed["keys"] = sorted(parsed["keys"])
        if "leases" in parsed:
            parsed["leases"] = sorted(parsed["leases"], key=lambda lease: int(lease["ID"]))
    return status, parsed


def readable(value):
    """``value`` (a request or an answer) with its base64 keys, range ends
    and values decoded, for people reading a failure."""
    if isinstance(value, dict):
        return {k: _decoded(v) if k in ("key", "range_end", "value") else readable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [readable(v) for v in value]
    return value


def _decoded(value):
    if not isinstance(value, str):
        return value
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return value
