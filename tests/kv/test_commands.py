"""Commands survive their wire encoding; garbage is refused, not guessed at;
entries written by the seed (command format 1) still decode."""

import msgpack
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from metastore.auth.messages import AuthInfo
from metastore.kv.commands import (
    AlarmType,
    CommandError,
    CompactionRequest,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    PublishMember,
    PutRequest,
    SetAlarm,
    UpdateMember,
    RangeRequest,
    SortOrder,
    SortTarget,
    TxnRequest,
    _encode_operation,
    decode_command,
    decode_proposal,
    encode_command,
)

_bytes = st.binary(max_size=64)
_revisions = st.integers(0, 2**63 - 1)
_puts = st.builds(PutRequest, _bytes, _bytes, _revisions, st.booleans(), st.booleans(), st.booleans())
_deletes = st.builds(DeleteRangeRequest, _bytes, _bytes, st.booleans())
_ranges = st.builds(
    RangeRequest, _bytes, _bytes, _revisions, _revisions, st.sampled_from(SortOrder), st.sampled_from(SortTarget),
    st.booleans(), st.booleans(), st.booleans(), _revisions, _revisions, _revisions, _revisions,
)  # fmt: skip
_compares = st.builds(
    Compare,
    st.sampled_from(CompareTarget),
    st.sampled_from(CompareResult),
    _bytes,
    _revisions | _bytes,
    _bytes,
)
_ops = st.recursive(
    _puts | _deletes | _ranges,
    lambda inner: st.builds(
        TxnRequest,
        st.lists(_compares, max_size=2).map(tuple),
        st.lists(inner, max_size=3).map(tuple),
        st.lists(inner, max_size=3).map(tuple),
    ),
    max_leaves=8,
)
_commands = (
    _ops
    | st.builds(CompactionRequest, _revisions, st.booleans())
    | st.builds(PublishMember, _revisions, st.text(max_size=20), st.text(max_size=20))
    | st.builds(UpdateMember, _revisions, st.text(max_size=20))
    | st.builds(SetAlarm, _revisions, st.sampled_from(AlarmType), st.booleans())
)


class CommandCodecTests(SynchronousTestCase):
    """``encode_command`` and ``decode_command`` are inverses."""

    @given(st.binary(min_size=1, max_size=16), _commands)
    def test_round_trip(self, request_id, command):
        """Every command, nested txns included, decodes to itself with its request id."""
        self.assertEqual(decode_command(encode_command(request_id, command)), (request_id, command))

    def test_garbage_is_refused(self):
        """Bytes that are not a command raise CommandError."""
        for data in (
            b"",
            b"\xc1",
            msgpack.packb([9, b"id", [1]]),
            msgpack.packb([1, b"id", [77, 1]]),
            msgpack.packb({"a": 1}),
            msgpack.packb([2, b"id", [5, b"k", b"", 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0]]),
            msgpack.packb([2, b"id", [6, 3, False, b"extra"]]),
            msgpack.packb([2, b"id", [3, [], [[6, 3, False]], []]]),
        ):
            self.assertRaises(CommandError, decode_command, data)

    def test_nested_txn_is_refused_in_format_1(self):
        """The seed's format had no nested txn: one there is damage."""
        inner = [3, [], [], []]
        data = msgpack.packb([1, b"id", [3, [], [inner], []]])
        self.assertRaises(CommandError, decode_command, data)


class AuthInfoTests(SynchronousTestCase):
    """A write checked while auth is enabled carries its ``AuthInfo``; one
    checked while it is disabled carries nothing more than before."""

    def test_round_trip(self):
        """The user and auth revision come back with the command."""
        data = encode_command(b"r", PutRequest(b"k", b"v"), 12, AuthInfo("alice", 7))
        self.assertEqual(decode_proposal(data), (b"r", PutRequest(b"k", b"v"), 12, AuthInfo("alice", 7)))
        data = encode_command(b"r", PutRequest(b"k", b"v"), None, AuthInfo("alice", 7))
        self.assertEqual(decode_proposal(data), (b"r", PutRequest(b"k", b"v"), None, AuthInfo("alice", 7)))

    def test_no_bytes_while_auth_is_disabled(self):
        """Without ``AuthInfo`` the entry is the 4-element form written before it existed."""
        put = PutRequest(b"k", b"v")
        self.assertEqual(encode_command(b"r", put, 12), msgpack.packb([2, b"r", _encode_operation(put), 12]))
        self.assertEqual(encode_command(b"r", put, 12, None), encode_command(b"r", put, 12))

    def test_entries_without_it_decode_unchecked(self):
        """3- and 4-element entries (older WALs) decode with no ``AuthInfo``."""
        self.assertEqual(decode_proposal(msgpack.packb([2, b"r", [1, b"k", b"v", 0, 0, 0, 0]]))[3], None)
        self.assertEqual(decode_proposal(msgpack.packb([2, b"r", [1, b"k", b"v", 0, 0, 0, 0], 3]))[3], None)

    def test_malformed_auth_info_is_refused(self):
        """A fifth element that is not ``[user, int64 revision]`` is damage."""
        op = [1, b"k", b"v", 0, 0, 0, 0]
        for bad in (["u"], [b"u", 1], ["u", "1"], ["u", (1 << 64) - 1], "u", ["u", 1, 2]):
            self.assertRaises(CommandError, decode_proposal, msgpack.packb([2, b"r", op, 3, bad]))


class FormatOneTests(SynchronousTestCase):
    """WAL entries written by the seed (format 1) decode to the same requests."""

    def test_put(self):
        """``[1, key, value, lease]`` is a plain put."""
        data = msgpack.packb([1, b"r", [1, b"k", b"v", 7]])
        self.assertEqual(decode_command(data), (b"r", PutRequest(b"k", b"v", 7)))

    def test_delete_single_key_and_range(self):
        """A nil range_end was the single-key form, now ``b""``."""
        single = msgpack.packb([1, b"r", [2, b"k", None]])
        ranged = msgpack.packb([1, b"r", [2, b"a", b"z"]])
        self.assertEqual(decode_command(single), (b"r", DeleteRangeRequest(b"k", b"")))
        self.assertEqual(decode_command(ranged), (b"r", DeleteRangeRequest(b"a", b"z")))

    def test_txn(self):
        """A seed txn (compares without range_end) decodes with its operations."""
        data = msgpack.packb([1, b"r", [3, [[2, 0, b"k", 5]], [[1, b"k", b"v", 0]], [[2, b"k", None]]]])
        expected = TxnRequest(
            (Compare(CompareTarget.MOD, CompareResult.EQUAL, b"k", 5),),
            (PutRequest(b"k", b"v"),),
            (DeleteRangeRequest(b"k"),),
        )
        self.assertEqual(decode_command(data), (b"r", expected))

    def test_publish_member(self):
        """Membership metadata kept its shape."""
        data = msgpack.packb([1, b"r", [4, 3, "http://c:1"]])
        self.assertEqual(decode_command(data), (b"r", PublishMember(3, "http://c:1")))
