"""Hostile bytes on the peer port: the connection is dropped, the member is not.

A real three-member cluster runs; the tests connect to member 1's peer
port with raw sockets and send random bytes, oversized length prefixes,
frames from another cluster, from a non-member, out of order, or garbage
after a valid handshake.  Each time member 1 must close that connection
(within the 5 s handshake timeout at worst), and afterwards the cluster
must still elect, write and read, with no traceback in any log.
"""

from __future__ import annotations

import os
import struct

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from metastore.transport import cluster_id_from_token
from metastore.transport.codec import PROTOCOL_VERSION, Handshake, encode_handshake
from metastore.transport.protocol import FrameKind
from tests.chaos.helpers import exchange, http_json, http_request, is_leader, peer_port, poll
from tests.process import Member, free_port

CLUSTER_ID = cluster_id_from_token("metastore")
DROP_WITHIN = 8.0
"""Seconds a hostile connection may stay open: the 5 s handshake timeout plus slack."""


def frame(kind: int, body: bytes) -> bytes:
    """One frame: length (kind + body), kind, body."""
    return struct.pack(">I", len(body) + 1) + bytes([kind]) + body


def handshake(cluster_id=CLUSTER_ID, from_id=2, to_id=1, version=PROTOCOL_VERSION) -> bytes:
    """A well-formed handshake frame."""
    return frame(FrameKind.HANDSHAKE, encode_handshake(Handshake(version, cluster_id, from_id, to_id)))


class HostilePeerTests(SynchronousTestCase):
    """Raw bytes against member 1 of a running three-member cluster."""

    def setUp(self):
        workdir = self.mktemp()
        cluster = [f"http://127.0.0.1:{free_port()}" for _ in range(3)]
        self.members = [
            Member(member_id=i, cluster=cluster, http_port=free_port(), workdir=workdir,
                   extra=["--request-timeout", "2", *self.extra_flags_for(workdir)])
            for i in (1, 2, 3)
        ]
        for member in self.members:
            member.start()
            self.addCleanup(member.kill)
        poll(lambda: any(is_leader(m) for m in self.members), timeout=30, what="a leader")
        # Every member must be up, member 1's peer port above all: a leader
        # can be elected by 2 and 3 before 1 listens.
        for member in self.members:
            poll(lambda m=member: http_json(m.url + "/health")[0] == 200, timeout=30, what=f"member {member.member_id} healthy")
        self.target = self.members[0]
        self.port = peer_port(self.target)

    def extra_flags_for(self, workdir: str) -> list[str]:
        """Flags every member gets besides the cluster's (none here)."""
        return []

    def assert_dropped(self, data: bytes, half_close: bool = False) -> None:
        """Member 1 closes the connection after ``data``."""
        closed, _ = exchange(self.port, data, wait_for_close=DROP_WITHIN, half_close=half_close)
        self.assertTrue(closed, f"member kept a connection open after {data[:80]!r}")

    def assert_cluster_unharmed(self) -> None:
        """Member 1 is healthy, and writes through it reach the others."""
        url = self.target.url
        poll(lambda: http_json(url + "/health")[0] == 200, timeout=30, what="member 1 healthy")
        poll(lambda: http_request(url + "/after-hostile", "PUT", b"v") == 204, timeout=30, what="a PUT on member 1")
        for member in self.members:
            self.assertEqual(http_request(member.url + "/after-hostile", "GET"), 200)
            self.assertNotIn("Traceback", member.log_text())

    def test_oversized_length_prefix(self):
        """A length of 4 GiB, or just over the handshake limit, is refused at once."""
        self.assert_dropped(b"\xff\xff\xff\xff" + b"\x01" * 100)
        self.assert_dropped(struct.pack(">I", 257) + b"\x01" * 257)
        self.assert_cluster_unharmed()

    def test_frames_from_another_cluster_or_stranger(self):
        """Valid handshakes that name another cluster, a non-member, another
        addressee, this member itself or an unknown protocol version."""
        for data in (
            handshake(cluster_id=cluster_id_from_token("another")),
            handshake(from_id=99),
            handshake(to_id=3),
            handshake(from_id=1),
            handshake(version=PROTOCOL_VERSION + 7),
        ):
            self.assert_dropped(data)
        self.assert_cluster_unharmed()

    def test_malformed_frames(self):
        """Empty frames, unknown kinds, messages before the handshake, and
        undecodable handshakes."""
        for data in (
            struct.pack(">I", 0),
            frame(99, b"x"),
            frame(FrameKind.MESSAGES, msgpack.packb([1, []])),
            frame(FrameKind.HANDSHAKE, b"\xc1"),
            frame(FrameKind.HANDSHAKE, msgpack.packb(["a", "b"])),
            frame(FrameKind.HANDSHAKE, msgpack.packb([PROTOCOL_VERSION, -1, 2, 1])),
            frame(FrameKind.REJECTED, b""),
        ):
            self.assert_dropped(data)
        self.assert_cluster_unharmed()

    def test_garbage_after_a_valid_handshake(self):
        """An impostor with a valid handshake, then junk: dropped; the real
        member 2 reconnects and the cluster carries on."""
        for junk in (
            frame(FrameKind.MESSAGES, b"\x00\x01\x02"),
            frame(FrameKind.MESSAGES, msgpack.packb([1, [b"not a message"]])),
            frame(FrameKind.MESSAGES, msgpack.packb([1, [[1, 2, 3]]])),
            frame(FrameKind.HANDSHAKE, encode_handshake(Handshake(PROTOCOL_VERSION, CLUSTER_ID, 2, 1))),
            frame(77, b""),
            struct.pack(">I", 0xFFFFFFFF),
        ):
            self.assert_dropped(handshake() + junk)
        self.assert_cluster_unharmed()

    def test_silent_connection_dropped(self):
        """A connection that never sends its handshake is closed by the timeout."""
        self.assert_dropped(b"")
        self.assert_cluster_unharmed()

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.binary(min_size=1, max_size=512))
    def test_random_bytes(self, data):
        """Random bytes never earn a lasting connection.  (The sender ends its
        side, so an incomplete frame is dropped at once rather than by the
        handshake timeout, which ``test_silent_connection_dropped`` covers.)"""
        self.assert_dropped(data, half_close=True)

    def test_random_bytes_leave_cluster_unharmed(self):
        """After random junk the cluster still works (checked once, cheaply)."""
        self.assert_dropped(bytes(range(256)) * 2)
        self.assert_cluster_unharmed()


class HostilePeerWithTokenTests(HostilePeerTests):
    """The same hostile bytes against a cluster with ``--peer-token-file``:
    the member's challenge comes first, and nothing gets further; the
    refusals of one address are one log line, not one per connection."""

    def extra_flags_for(self, workdir: str) -> list[str]:
        """Every member proves the same secret."""
        os.makedirs(workdir, exist_ok=True)
        path = os.path.abspath(os.path.join(workdir, "token"))
        with open(path, "w") as f:
            f.write("hostile-peer-test-secret-0123456789\n")
        return ["--peer-token-file", path]

    def assert_cluster_unharmed(self) -> None:
        """As without a token, and the refusals were logged once."""
        super().assert_cluster_unharmed()
        self.assertEqual(self.target.log_text().count("Refused peer connection from 127.0.0.1"), 1)
