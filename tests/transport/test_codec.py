"""Tests for ``metastore.transport.codec``: round trips and rejection."""

from __future__ import annotations

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from metastore.raft.types import Entry, Message, MessageType
from metastore.transport.codec import (
    CODEC_VERSION,
    Handshake,
    MalformedFrame,
    batch_body,
    decode_batch,
    decode_handshake,
    encode_batch,
    encode_handshake,
    encode_message,
)

from .strategies import messages, sample_messages


def _wire(message: Message) -> list:
    """The plain msgpack structure of one encoded message, to corrupt."""
    return msgpack.unpackb(encode_message(message))


def _batch_of(*wire_messages: object) -> bytes:
    """A batch body from raw (possibly invalid) wire structures."""
    return msgpack.packb([CODEC_VERSION, list(wire_messages)], use_bin_type=True)


class RoundTripTests(SynchronousTestCase):
    """What encode_batch writes, decode_batch reads back equal and in order."""

    def test_every_message_type(self) -> None:
        """Every message type, with entries and a snapshot, survives."""
        batch = sample_messages()
        decoded = decode_batch(encode_batch(batch))
        self.assertEqual(decoded, batch)
        self.assertIsInstance(decoded[0].type, MessageType)
        self.assertIsInstance(decoded[0].entries[1].type, type(batch[0].entries[1].type))

    def test_empty_batch_and_defaults(self) -> None:
        """An empty batch and an all-defaults message round-trip."""
        self.assertEqual(decode_batch(encode_batch([])), [])
        m = Message(MessageType.MsgHeartbeat)
        self.assertEqual(decode_batch(encode_batch([m])), [m])

    def test_large_entry(self) -> None:
        """An entry of 1.5 MiB keeps every byte."""
        data = bytes(range(256)) * 6144
        m = Message(MessageType.MsgApp, to=2, from_=1, entries=(Entry(1, 1, data=data),))
        self.assertEqual(decode_batch(encode_batch([m])), [m])

    def test_batch_body_equals_encode_batch(self) -> None:
        """Joining per-message encodings gives exactly the batch encoding."""
        batch = sample_messages()
        self.assertEqual(
            batch_body([encode_message(m) for m in batch]), encode_batch(batch)
        )

    @settings(max_examples=200, deadline=None)
    @given(st.lists(messages, max_size=8))
    def test_property_round_trip(self, batch: list[Message]) -> None:
        """Any batch of valid messages decodes to itself."""
        self.assertEqual(decode_batch(encode_batch(batch)), batch)

    def test_handshake_round_trip(self) -> None:
        """A handshake decodes to itself."""
        h = Handshake(1, 2**64 - 1, 3, 4)
        self.assertEqual(decode_handshake(encode_handshake(h)), h)


class MalformedTests(SynchronousTestCase):
    """Anything but a valid batch raises MalformedFrame, never another error."""

    def assertMalformed(self, body: bytes) -> None:
        """decode_batch(body) raises MalformedFrame."""
        self.assertRaises(MalformedFrame, decode_batch, body)

    def test_not_msgpack(self) -> None:
        """Truncated, trailing or garbage bytes are malformed."""
        good = encode_batch(sample_messages())
        self.assertMalformed(b"")
        self.assertMalformed(good[:-1])
        self.assertMalformed(good + b"\x00")
        self.assertMalformed(b"\xc1")  # never used in msgpack
        self.assertMalformed(b"\xdd\xff\xff\xff\xff")  # array of 4G elements, no data

    def test_wrong_envelope(self) -> None:
        """The batch must be [CODEC_VERSION, list]."""
        for value in (
            {},
            [],
            [CODEC_VERSION],
            [CODEC_VERSION + 1, []],
            [True, []],
            ["1", []],
            [CODEC_VERSION, {}],
            [CODEC_VERSION, [], None],
        ):
            self.assertMalformed(msgpack.packb(value))

    def test_wrong_message_fields(self) -> None:
        """Each field of a message is checked for shape, type and range."""
        base = _wire(sample_messages()[3])
        self.assertEqual(decode_batch(_batch_of(base)), [sample_messages()[3]])
        corruptions = {
            0: [19, -1, "MsgApp", None, 3.0],
            1: [-1, "2", None, 1.5, True],
            3: [-5],
            6: [[1, 2, 0], [1, 2, 0, "text"], [1, 2, 2, b""], [-1, 2, 0, b""],
                [1, 2, True, b""], {}, None],
            8: [[1, 2, [], []], [1, 2, [-1], [], b""], [1, 2, [], [], "s"], 5,
                [1, 2, {}, [], b""]],
            9: [0, 1, None],
            11: ["text", None, 0],
        }
        for position, bad_values in corruptions.items():
            for bad in bad_values:
                wire = list(base)
                wire[position] = bad
                try:
                    decode_batch(_batch_of(wire))
                except MalformedFrame:
                    continue
                self.fail(f"field {position} = {bad!r} was accepted")
        self.assertMalformed(_batch_of(base[:-1]))
        self.assertMalformed(_batch_of(base + [0]))
        self.assertMalformed(_batch_of("message"))
        self.assertMalformed(_batch_of({"type": 3}))

    def test_ext_and_maps_with_odd_keys(self) -> None:
        """msgpack extension types and non-string map keys are malformed."""
        self.assertMalformed(msgpack.packb(msgpack.ExtType(1, b"x")))
        self.assertMalformed(msgpack.packb({1: 2}))

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=200))
    def test_random_bytes(self, body: bytes) -> None:
        """Random bytes either decode to messages or raise MalformedFrame."""
        try:
            result = decode_batch(body)
        except MalformedFrame:
            return
        self.assertIsInstance(result, list)

    @settings(max_examples=300, deadline=None)
    @given(st.data())
    def test_bit_flips(self, data: st.DataObject) -> None:
        """A flipped byte in a valid batch decodes or raises MalformedFrame."""
        body = bytearray(encode_batch(sample_messages()[:4]))
        position = data.draw(st.integers(0, len(body) - 1))
        body[position] ^= data.draw(st.integers(1, 255))
        try:
            decode_batch(bytes(body))
        except MalformedFrame:
            pass

    def test_bad_handshakes(self) -> None:
        """A handshake must be a list of four unsigned integers."""
        for value in ([1, 2, 3], [1, 2, 3, -4], [1, 2, 3, "4"], {}, [1, 2, 3, 4, 5]):
            self.assertRaises(MalformedFrame, decode_handshake, msgpack.packb(value))
        self.assertRaises(MalformedFrame, decode_handshake, b"\xc1")
