"""The v3 KV path's fast JSON gives exactly what the plain one gives.

Request bodies are parsed with orjson and read by walking the fields a
body holds; range, put and delete range answers are written straight into
bytes and the others with orjson.  The references here are the plain
ways: ``json.loads``, every field read by name in declaration order, and
``json.dumps`` of the answer's dict.  Every input, accepted or refused,
must give the same message or the same ``BadBody`` text, and every answer
the same bytes.
"""

from __future__ import annotations

import base64
import json

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from metastore.api.v3 import kv_codec
from metastore.api.v3.app import compact_json
from metastore.api.v3.header import Headers
from metastore.api.v3.json_fields import (
    BadBody,
    bool_field,
    bytes_field,
    enum_field,
    int_field,
    parse_body,
)
from metastore.kv.messages import (
    CompactionResponse,
    DeleteRangeRequest,
    DeleteRangeResponse,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    ResponseHeader,
    SortOrder,
    SortTarget,
    TxnResponse,
)
from metastore.storage.engine import KeyValue

INT64_MAX = 2**63 - 1


def outcome(call, *args) -> tuple[str, str]:
    """``("ok", repr(result))`` or ``("bad", message)`` of a ``BadBody``
    (repr tells 1 from 1.0 and True, and NaN equals NaN in it)."""
    try:
        return "ok", repr(call(*args))
    except BadBody as e:
        return "bad", str(e)


# -- the references --------------------------------------------------------------


def plain_parse_body(data: bytes) -> dict:
    """A body parsed with the standard library alone."""
    if not data.strip():
        return {}
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadBody(f"invalid JSON: {e}") from None
    if not isinstance(value, dict):
        raise BadBody(f"the body must be a JSON object, not {type(value).__name__}")
    return value


def _enum(kind):
    return lambda body, name: enum_field(body, name, kind)


PLAIN_FIELDS = {
    RangeRequest: (
        ("key", bytes_field), ("range_end", bytes_field), ("limit", int_field), ("revision", int_field),
        ("sort_order", _enum(SortOrder)), ("sort_target", _enum(SortTarget)), ("serializable", bool_field),
        ("keys_only", bool_field), ("count_only", bool_field), ("min_mod_revision", int_field),
        ("max_mod_revision", int_field), ("min_create_revision", int_field), ("max_create_revision", int_field),
    ),
    PutRequest: (
        ("key", bytes_field), ("value", bytes_field), ("lease", int_field), ("prev_kv", bool_field),
        ("ignore_value", bool_field), ("ignore_lease", bool_field),
    ),
    DeleteRangeRequest: (("key", bytes_field), ("range_end", bytes_field), ("prev_kv", bool_field)),
}  # fmt: skip
"""Each message's fields in declaration order, and how each is read by name."""


def plain_read(message: type, body: dict):
    """``message`` with every field read by name, in declaration order."""
    return message(**{name: read(body, name) for name, read in PLAIN_FIELDS[message]})


# -- request bodies ----------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["", "0", "-1", "9223372036854775807", "9223372036854775808", "1.0", "ASCEND", "MOD", "x"])
)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def json_texts(draw) -> bytes:
    """JSON texts, mostly objects, as clients might send them (and some
    that are not quite JSON)."""
    value = draw(st.dictionaries(st.text(max_size=6), json_values, max_size=4) | json_values)
    text = json.dumps(value, ensure_ascii=draw(st.booleans()), separators=draw(st.sampled_from([None, (",", ":")])))
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-16", "utf-8-sig"]))
    data = text.encode(encoding, "surrogatepass")
    cut = draw(st.none() | st.integers(min_value=0, max_value=len(data)))
    return data if cut is None else data[:cut]


FIELD_NAMES = [
    "key", "range_end", "rangeEnd", "limit", "revision", "sort_order", "sortOrder", "sort_target", "sortTarget",
    "serializable", "keys_only", "keysOnly", "count_only", "countOnly", "min_mod_revision", "minModRevision",
    "max_mod_revision", "maxModRevision", "min_create_revision", "minCreateRevision", "max_create_revision",
    "maxCreateRevision", "value", "lease", "prev_kv", "prevKv", "ignore_value", "ignoreValue", "ignore_lease",
    "ignoreLease", "unknown",
]  # fmt: skip
"""Every field of range, put and delete range in both spellings, and one no message has."""

field_values = (
    st.binary(max_size=12).map(lambda b: base64.b64encode(b).decode())
    | st.sampled_from(["", "YQ", "YQ=", "YQ===", "Y Q==", "%%%", "QR==", "é"])
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.integers(min_value=0, max_value=4)
    | st.integers(min_value=0, max_value=4).map(str)
    | st.sampled_from(["NONE", "ASCEND", "DESCEND", "KEY", "VERSION", "CREATE", "MOD", "VALUE", "descend", "1.5"])
    | st.booleans()
    | st.none()
    | st.floats(allow_nan=False)
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.just("a"), st.integers(), max_size=1)
)
bodies = st.dictionaries(st.sampled_from(FIELD_NAMES), field_values, max_size=6)


class ParseBodyTests(SynchronousTestCase):
    """``parse_body`` accepts, reads and refuses exactly as ``json.loads`` does."""

    @settings(max_examples=1500)
    @given(json_texts() | st.binary(max_size=24))
    @example(b'{"limit": 18446744073709551616}')
    @example(b'{"a": [{"b": -9223372036854775809}]}')
    @example(b"123456789012345678901234567890")
    @example(b'{"a": NaN, "b": Infinity}')
    @example(b'{"a": 1e400}')
    @example(b'{"a": "\\ud800"}')
    @example(b'\xef\xbb\xbf{"key": "YQ=="}')
    @example(b'{"a": 1, "a": 2}')
    @example(b'{"a": "\xff"}')
    @example(b" \t\r\n")
    @example(b"[]")
    @example(b"{}" + b" " * 3)
    def test_same_as_json_loads(self, data):
        """The same dict (exact ints, floats, surrogates, duplicate keys),
        the same refusal and its message."""
        self.assertEqual(outcome(parse_body, data), outcome(plain_parse_body, data))

    def test_nested_too_deeply(self):
        """A body nested beyond what either parser can walk is refused as
        bad JSON (a 400), not a RecursionError (a 500): arrays past
        orjson's depth, objects around Python's recursion limit."""
        for body in (b"[" * 100_000, b'{"a":' * 1010 + b"1" + b"}" * 1010,
                     b'{"a":' * 5000 + b"1.5" + b"}" * 5000):
            with self.assertRaises(BadBody) as caught:
                parse_body(body)
            self.assertIn("nested too deeply", str(caught.exception))


class RequestReadingTests(SynchronousTestCase):
    """Reading only the fields a body holds gives the message, or the first
    refusal in declaration order, that reading every field by name gives."""

    @settings(max_examples=1500)
    @given(bodies)
    @example({"key": "YQ==", "rangeEnd": "Yg==", "range_end": None})
    @example({"rangeEnd": "Yg==", "range_end": "Yw=="})
    @example({"limit": "ten", "key": "%%%"})
    @example({"keysOnly": 1, "revision": 1.5})
    @example({"lease": 2**63, "value": 7, "key": "YQ=="})
    def test_range_put_and_delete_range(self, body):
        """Both spellings, nulls, unknown fields, several bad fields at once."""
        for fast, message in (
            (kv_codec.range_request, RangeRequest),
            (kv_codec.put_request, PutRequest),
            (kv_codec.delete_range_request, DeleteRangeRequest),
        ):
            self.assertEqual(outcome(fast, body), outcome(plain_read, message, body), fast.__name__)

    def test_usual_bodies(self):
        """The bodies clients send most, read to the expected messages."""
        self.assertEqual(kv_codec.put_request({"key": "YQ==", "value": ""}), PutRequest(b"a"))
        self.assertEqual(kv_codec.put_request({"key": "AP8=", "value": "AAE=", "lease": "7", "prevKv": True}),
                         PutRequest(b"\0\xff", b"\0\1", 7, prev_kv=True))
        self.assertEqual(kv_codec.range_request({"key": "YQ==", "serializable": True}), RangeRequest(b"a", serializable=True))
        self.assertEqual(kv_codec.range_request({}), RangeRequest(b""))


# -- answers ----------------------------------------------------------------------


class _Member:
    """What ``Headers`` reads of the facade."""

    def __init__(self, member_id: int, term: int) -> None:
        self.member_id = member_id
        self.term = term


uint64 = st.integers(min_value=0, max_value=2**64 - 1)
revisions = st.integers(min_value=0, max_value=INT64_MAX) | st.integers(min_value=0, max_value=3)
key_values = st.builds(
    KeyValue,
    key=st.binary(max_size=12) | st.sampled_from([b"", b"\0", b"\xff\xfe", b"bench/00001234"]),
    value=st.binary(max_size=40) | st.just(b""),
    create_revision=revisions,
    mod_revision=revisions,
    version=revisions,
    lease=revisions,
)
headers = st.builds(ResponseHeader, revisions)
range_responses = st.builds(
    RangeResponse, headers, st.lists(key_values, max_size=3).map(tuple), st.booleans(), revisions
)
put_responses = st.builds(PutResponse, headers, st.none() | key_values)
delete_range_responses = st.builds(DeleteRangeResponse, headers, revisions, st.lists(key_values, max_size=3).map(tuple))


def nested(header):
    """Responses inside a txn: their own header, or none."""
    return (
        st.builds(RangeResponse, header, st.lists(key_values, max_size=2).map(tuple), st.booleans(), revisions)
        | st.builds(PutResponse, header, st.none() | key_values)
        | st.builds(DeleteRangeResponse, header, revisions, st.lists(key_values, max_size=2).map(tuple))
    )


txn_responses = st.builds(
    TxnResponse,
    headers,
    st.booleans(),
    st.lists(
        nested(st.none() | headers)
        | st.builds(TxnResponse, st.none() | headers, st.booleans(), st.lists(nested(st.none()), max_size=2).map(tuple)),
        max_size=3,
    ).map(tuple),
)
responses = range_responses | put_responses | delete_range_responses | txn_responses | st.builds(CompactionResponse, headers)


class AnswerTests(SynchronousTestCase):
    """The KV answers' bytes are ``json.dumps`` of their dicts, compact."""

    @settings(max_examples=1500)
    @given(responses, uint64, uint64, uint64)
    @example(PutResponse(ResponseHeader(5)), 0, 0, 0)
    @example(RangeResponse(ResponseHeader(9)), 1, 2, 3)
    @example(RangeResponse(ResponseHeader(9), (KeyValue(b"", b"", 0, 0, 0, 0),), False, 1), 1, 2, 3)
    @example(PutResponse(ResponseHeader(9), KeyValue(b"", b"", 0, 0, 0, 0)), 1, 2, 3)
    @example(PutResponse(ResponseHeader(9), KeyValue(b"k", b"", 2, 9, 3, INT64_MAX)), 2**64 - 1, 1, 2)
    @example(RangeResponse(ResponseHeader(0), (KeyValue(b"k", b"v", 1, 1, 1),), True, 2), 1, 2, 3)
    def test_same_bytes_as_the_dicts(self, response, cluster_id, member_id, term):
        """Empty and binary keys and values, leases, prev_kv, more and
        count, zero revisions, 64-bit ids, nested txns."""
        answer_headers = Headers(_Member(member_id, term), cluster_id)
        expected = compact_json(kv_codec.kv_response(response, answer_headers.at(response.header.revision)))
        self.assertEqual(kv_codec.kv_response_json(response, answer_headers), expected)

    @given(revisions, uint64, uint64, uint64)
    def test_header(self, revision, cluster_id, member_id, term):
        """``json_at`` is ``at`` in compact JSON (no revision when it is 0)."""
        answer_headers = Headers(_Member(member_id, term), cluster_id)
        self.assertEqual(answer_headers.json_at(revision), compact_json(answer_headers.at(revision)))
