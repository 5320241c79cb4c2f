"""``metastore.snapshots.stream``: the streamed form of a snapshot file."""

from __future__ import annotations

import hashlib
import os

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from metastore.snapshots import stream


class StreamTests(SynchronousTestCase):
    """What ``etcdctl snapshot save`` accepts, and ``--restore-from`` unwraps."""

    def write(self, data: bytes) -> str:
        """A temporary file holding ``data``; its path."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(data)
        return path

    def streamed(self, data: bytes, chunk: int = 7) -> bytes:
        """The stream of a file holding ``data``, joined."""
        return b"".join(stream.stream_chunks(self.write(data), chunk))

    @settings(max_examples=50, deadline=None)
    @given(st.binary(max_size=2000), st.integers(1, 600))
    def test_aligned_and_unwraps_to_the_file(self, data, chunk):
        """Whatever the size and chunking: etcdctl's rule holds (length
        minus the SHA-256 a multiple of 512), the last 32 bytes are the
        SHA-256 of the rest, ``stream_size`` is right and the file comes back."""
        out = self.streamed(data, chunk)
        self.assertEqual((len(out) - 32) % 512, 0)
        self.assertEqual(hashlib.sha256(out[:-32]).digest(), out[-32:])
        self.assertEqual(len(out), stream.stream_size(len(data)))
        inner = self.mktemp()
        self.assertTrue(stream.unwrap(self.write(out), inner))
        with open(inner, "rb") as f:
            self.assertEqual(f.read(), data)

    def test_damage_is_not_unwrapped(self):
        """A flipped byte, a cut or an extra byte: not a stream, nothing written."""
        out = self.streamed(b"snapshot bytes" * 50)
        flipped = bytearray(out)
        flipped[3] ^= 1
        for damaged in (bytes(flipped), out[:-1], out + b"\0", out[:512] + out[-32:]):
            inner = self.mktemp()
            self.assertFalse(stream.unwrap(self.write(damaged), inner))
            self.assertFalse(os.path.exists(inner))

    def test_a_plain_file_is_not_a_stream(self):
        """A file that is no stream (a raw snapshot file) is left alone."""
        inner = self.mktemp()
        self.assertFalse(stream.unwrap(self.write(b"MSSNAP\0\1" + bytes(600)), inner))
        self.assertFalse(os.path.exists(inner))
