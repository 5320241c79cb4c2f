"""No one joins uninvited: peer TLS and the cluster token on real members.

Three ``twistd`` members run with mutual peer TLS (certificates from a
test CA) and ``--peer-token-file``.  Strangers then try, on member 1's peer
port, to vote (a MsgVote at a high term) and to append (a MsgApp) as
member 2: over plain TCP, over TLS with a certificate from another CA, an
expired one, and with a certificate of the right CA but without the
secret.  Each is refused; the cluster's term, leader and commit index are
unchanged; member 1 logs the refusals of that one address once.
A second cluster runs with the token and without TLS.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time

from twisted.trial.unittest import SynchronousTestCase

from metastore.raft.types import Entry, Message, MessageType
from metastore.transport import cluster_id_from_token
from metastore.transport.codec import PROTOCOL_VERSION, Handshake, encode_handshake, encode_message
from metastore.transport.protocol import FrameKind, message_frames, proof_frame
from tests.chaos.helpers import http_json, http_request, is_leader, peer_port, poll
from tests.process import Member, free_port
from tests.security.fixtures import Certificates, Pair

CLUSTER_ID = cluster_id_from_token("metastore")
REFUSAL_LINE = "Refused peer connection from 127.0.0.1"


def frame(kind: int, body: bytes) -> bytes:
    """One peer frame."""
    return struct.pack(">I", len(body) + 1) + bytes([kind]) + body


def impostor_bytes() -> bytes:
    """Member 2's handshake, a made-up proof, then a vote at term 1000 and an append."""
    hello = frame(FrameKind.HANDSHAKE, encode_handshake(Handshake(PROTOCOL_VERSION, CLUSTER_ID, 2, 1)))
    vote = Message(MessageType.MsgVote, to=1, from_=2, term=1000, log_term=1000, index=10**6)
    append = Message(MessageType.MsgApp, to=1, from_=2, term=1000, log_term=0, index=0, commit=5,
                     entries=(Entry(term=1000, index=1, data=b"forged"),))
    return hello + proof_frame(b"\1" * 32, b"\2" * 32) + message_frames([encode_message(vote), encode_message(append)])


def attempt(port: int, pair: Pair | None, ca: str | None, tls: bool, timeout: float = 8.0) -> bool:
    """Connect (TLS with ``pair`` when ``tls``), send the impostor's bytes,
    and return True when the member closed the connection within ``timeout``."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock = raw
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            if pair is not None:
                context.load_cert_chain(pair.cert, pair.key)
            try:
                sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
            except (ssl.SSLError, OSError):
                return True
        try:
            sock.sendall(impostor_bytes())
        except OSError:
            return True
        deadline = time.monotonic() + timeout
        for _ in range(1000):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            sock.settimeout(remaining)
            try:
                if not sock.recv(65536):
                    return True
            except socket.timeout:
                return False
            except (ssl.SSLError, OSError):
                return True
        return False
    finally:
        raw.close()


class SecuredClusterMixin:
    """A three-member cluster started with ``flags(member_id)``."""

    def start_cluster(self, flags) -> None:
        workdir = self.mktemp()
        cluster = [f"https://127.0.0.1:{free_port()}" for _ in range(3)]
        self.members = [Member(member_id=i, cluster=cluster, http_port=free_port(), workdir=workdir,
                               extra=["--request-timeout", "2", *flags(i)]) for i in (1, 2, 3)]
        for member in self.members:
            member.start()
            self.addCleanup(member.kill)
        poll(lambda: any(is_leader(m) for m in self.members), timeout=40, what="a leader")
        for member in self.members:
            poll(lambda m=member: http_json(m.url + "/health")[0] == 200, timeout=30,
                 what=f"member {member.member_id} healthy")
        poll(lambda: http_request(self.members[0].url + "/before", "PUT", b"v") == 204, timeout=30, what="a PUT")
        self.port = peer_port(self.members[0])

    def status(self) -> list[tuple[int, int]]:
        """(term, leader) as each member sees them.  (The commit index is
        not compared: members publish their client URLs through Raft
        after they start, so it may move during the test.)"""
        statuses = [http_json(m.url + "/admin/status")[1] for m in self.members]
        return [(s["term"], s["leader"]) for s in statuses]

    def assert_strangers_refused(self, attempts) -> None:
        """Every attempt is closed; no member's term or leader moves (a vote
        or an append at term 1000 accepted anywhere would move them); the
        refusals are one log line; the cluster still writes."""
        before = self.status()
        for what, attempt_once in attempts:
            for _ in range(5):
                self.assertTrue(attempt_once(), f"{what}: the connection stayed open")
        self.assertEqual(self.status(), before)
        log = self.members[0].log_text()
        self.assertEqual(log.count(REFUSAL_LINE), 1, log[-3000:])
        self.assertNotIn("Traceback", log)
        poll(lambda: http_request(self.members[0].url + "/after", "PUT", b"v") == 204, timeout=30, what="a PUT")
        for member in self.members:
            self.assertEqual(http_request(member.url + "/after", "GET"), 200)
        self.assertEqual(self.status(), before)


class PeerTLSAndTokenTests(SecuredClusterMixin, SynchronousTestCase):
    """Mutual peer TLS plus the cluster token."""

    def setUp(self):
        self.certs = Certificates(self.mktemp())
        certs = self.certs
        self.start_cluster(lambda i: [
            "--peer-cert-file", certs.members[i].cert, "--peer-key-file", certs.members[i].key,
            "--peer-trusted-ca-file", certs.ca, "--peer-token-file", certs.token])

    def test_strangers_cannot_vote_or_append(self):
        """Plain TCP, TLS without a certificate, with another CA's, an expired
        one, or the right CA's without the secret: all refused, once logged."""
        certs, port = self.certs, self.port
        self.assert_strangers_refused([
            ("plain TCP", lambda: attempt(port, None, None, tls=False)),
            ("TLS without a certificate", lambda: attempt(port, None, None, tls=True)),
            ("another CA's certificate", lambda: attempt(port, certs.foreign, None, tls=True)),
            ("an expired certificate", lambda: attempt(port, certs.expired, None, tls=True)),
            ("the right CA but no secret", lambda: attempt(port, certs.client, None, tls=True)),
        ])


class PeerTokenOnlyTests(SecuredClusterMixin, SynchronousTestCase):
    """The cluster token without TLS: peers still prove who they are."""

    def setUp(self):
        self.certs = Certificates(self.mktemp(), members=0)
        self.start_cluster(lambda i: ["--peer-token-file", self.certs.token])

    def test_strangers_without_the_secret_cannot_vote_or_append(self):
        """A well-formed handshake with a made-up proof, or none, is refused."""
        port = self.port
        hello = frame(FrameKind.HANDSHAKE, encode_handshake(Handshake(PROTOCOL_VERSION, CLUSTER_ID, 2, 1)))
        vote = message_frames([encode_message(Message(MessageType.MsgVote, to=1, from_=2, term=1000))])

        def no_proof() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=8) as s:
                s.sendall(hello + vote)
                s.settimeout(8)
                try:
                    data = s.recv(4096)  # the challenge
                    while data:
                        data = s.recv(4096)
                except socket.timeout:
                    return False
                except OSError:
                    pass
                return True

        self.assert_strangers_refused([
            ("a made-up proof", lambda: attempt(port, None, None, tls=False)),
            ("no proof", no_proof),
        ])


class PeerAllowedCNTests(SecuredClusterMixin, SynchronousTestCase):
    """Peer TLS with ``--peer-cert-allowed-cn``, without a token: a
    certificate of the right CA but another common name is refused."""

    def setUp(self):
        self.certs = Certificates(self.mktemp(), members=0)
        member = self.certs.issue("member", "metastore-member")
        self.start_cluster(lambda i: [
            "--peer-cert-file", member.cert, "--peer-key-file", member.key,
            "--peer-trusted-ca-file", self.certs.ca, "--peer-cert-allowed-cn", "metastore-member"])

    def test_a_certificate_with_another_common_name_cannot_vote_or_append(self):
        """The CA's certificate for "client" is refused during the TLS handshake."""
        self.assert_strangers_refused([
            ("the right CA, another CN", lambda: attempt(self.port, self.certs.client, None, tls=True)),
        ])
