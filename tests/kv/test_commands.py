"""Commands survive their wire encoding; garbage is refused, not guessed at."""

import msgpack
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from metastore.kv.commands import (
    CommandError,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRange,
    Put,
    Txn,
    decode_command,
    encode_command,
)

_bytes = st.binary(max_size=64)
_puts = st.builds(Put, _bytes, _bytes, st.integers(0, 2**63 - 1))
_deletes = st.builds(DeleteRange, _bytes, st.none() | _bytes)
_ops = _puts | _deletes
_compares = st.builds(
    Compare,
    st.sampled_from(CompareTarget),
    st.sampled_from(CompareResult),
    _bytes,
    st.integers(0, 2**63 - 1) | _bytes,
)
_txns = st.builds(Txn, st.tuples(_compares), st.lists(_ops, max_size=3).map(tuple), st.lists(_ops, max_size=3).map(tuple))


class CommandCodecTests(SynchronousTestCase):
    """``encode_command`` and ``decode_command`` are inverses."""

    @given(st.binary(min_size=1, max_size=16), _ops | _txns)
    def test_round_trip(self, request_id, command):
        """Every command decodes to itself with its request id."""
        self.assertEqual(decode_command(encode_command(request_id, command)), (request_id, command))

    def test_garbage_is_refused(self):
        """Bytes that are not a command raise CommandError."""
        for data in (b"", b"\xc1", msgpack.packb([9, b"id", [1]]), msgpack.packb([1, b"id", [77, 1]]), msgpack.packb({"a": 1})):
            self.assertRaises(CommandError, decode_command, data)

    def test_nested_txn_is_refused(self):
        """A Txn may not contain a Txn."""
        inner = [3, [], [], []]
        data = msgpack.packb([1, b"id", [3, [], [inner], []]])
        self.assertRaises(CommandError, decode_command, data)
