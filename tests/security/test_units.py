"""Unit tests of ``metastore.security``: the peer token proof over the
peer protocol, rate-limited refusal logs, token buckets, reloading TLS
contexts and the security flags.  No sockets: ``StringTransport``,
``task.Clock`` and files under ``mktemp``."""

from __future__ import annotations

import os

from OpenSSL import SSL
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from metastore.config import Config, ConfigError
from metastore.raft.types import Message, MessageType
from metastore.security import peer_token
from metastore.security.limits import ConnectionCap, TokenBuckets
from metastore.security.refusals import RefusalLog
from metastore.security.selfsigned import CertificateAuthority, auto_tls_files
from metastore.security.tls import ReloadingTLS, TLSConfigError, TLSFiles, identity_refusal
from metastore.transport.codec import PROTOCOL_VERSION, Handshake, encode_handshake, encode_message
from metastore.transport.protocol import (
    FrameKind,
    InboundPeerFactory,
    OutboundPeerFactory,
    message_frames,
    proof_frame,
)
from tests.transport.test_protocol import parse_frames

SECRET = b"a cluster secret of 32 bytes...."
CLUSTER_ID = 0xC0FFEE


class _Link:
    """Records what an outbound protocol reports."""

    def __init__(self):
        self.ready = []

    def connection_ready(self, protocol):
        self.ready.append(protocol)

    def connection_writable(self, protocol):
        pass

    def connection_lost(self, protocol):
        pass

    def connection_rejected(self, protocol, code, text):
        pass


def _inbound(clock, secret=SECRET, delivered=None):
    delivered = [] if delivered is None else delivered
    factory = InboundPeerFactory(clock, 1, CLUSTER_ID, {1, 2, 3}.__contains__, delivered.extend, 5.0, secret=secret)
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return factory, protocol, transport, delivered


def _outbound(clock, secret=SECRET):
    link = _Link()
    factory = OutboundPeerFactory(link, Handshake(PROTOCOL_VERSION, CLUSTER_ID, 2, 1), secret=secret, clock=clock)
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return link, protocol, transport


def _vote() -> bytes:
    return message_frames([encode_message(Message(MessageType.MsgVote, to=1, from_=2, term=99))])


class PeerTokenHandshakeTests(SynchronousTestCase):
    """The challenge/response of ``--peer-token-file`` on the peer protocol."""

    def test_two_members_with_the_secret_connect_and_deliver(self):
        """Challenge, handshake + proof, proof: both sides accept; the
        secret itself never appears on the wire."""
        clock = Clock()
        _, inbound, in_transport, delivered = _inbound(clock)
        link, outbound, out_transport = _outbound(clock)
        challenge = in_transport.value()
        in_transport.clear()
        outbound.dataReceived(challenge)
        self.assertEqual(link.ready, [])  # not before the acceptor proved itself
        inbound.dataReceived(out_transport.value())
        self.assertEqual(inbound.peer_id, 2)
        written = in_transport.value()
        outbound.dataReceived(written)
        self.assertEqual(link.ready, [outbound])
        inbound.dataReceived(_vote())
        self.assertEqual([m.type for m in delivered], [MessageType.MsgVote])
        self.assertNotIn(SECRET, challenge + out_transport.value() + written)

    def test_a_stranger_with_the_wrong_secret_is_dropped_before_any_message(self):
        """A dialer proving another secret is dropped, and its vote never delivered."""
        clock = Clock()
        _, inbound, in_transport, delivered = _inbound(clock)
        _, outbound, out_transport = _outbound(clock, secret=b"not the cluster secret at all!!")
        outbound.dataReceived(in_transport.value())
        inbound.dataReceived(out_transport.value() + _vote())
        self.assertTrue(inbound.dropped)
        self.assertIsNone(inbound.peer_id)
        self.assertEqual(delivered, [])
        self.assertTrue(in_transport.disconnecting)

    def test_a_handshake_without_proof_is_dropped(self):
        """A dialer that skips the proof (an old or foreign member) is dropped."""
        clock = Clock()
        _, inbound, in_transport, delivered = _inbound(clock)
        hello = FrameKind.HANDSHAKE, encode_handshake(Handshake(PROTOCOL_VERSION, CLUSTER_ID, 2, 1))
        from metastore.transport.protocol import _frame

        inbound.dataReceived(_frame(*hello) + _vote())
        self.assertTrue(inbound.dropped)
        self.assertEqual(delivered, [])

    def test_a_replayed_proof_is_refused(self):
        """A proof recorded on one connection does not open another: each
        acceptor challenges with a fresh nonce."""
        clock = Clock()
        _, first, first_transport, _ = _inbound(clock)
        _, outbound, out_transport = _outbound(clock)
        outbound.dataReceived(first_transport.value())
        recorded = out_transport.value()
        first.dataReceived(recorded)
        self.assertEqual(first.peer_id, 2)
        _, second, _, delivered = _inbound(clock)
        second.dataReceived(recorded + _vote())
        self.assertTrue(second.dropped)
        self.assertEqual(delivered, [])

    def test_an_acceptor_without_the_secret_gets_no_messages(self):
        """The dialer waits for the acceptor's proof: an acceptor answering
        with a wrong proof is dropped and the link never becomes ready."""
        clock = Clock()
        link, outbound, out_transport = _outbound(clock)
        challenge = parse_frames(_inbound(clock)[2].value())[0]
        from metastore.transport.protocol import _frame

        outbound.dataReceived(_frame(FrameKind(challenge[0]), challenge[1]))
        outbound.dataReceived(proof_frame(b"", b"\0" * 32))
        self.assertTrue(outbound.dropped)
        self.assertEqual(link.ready, [])

    def test_a_silent_acceptor_times_out(self):
        """No challenge within the handshake timeout: the dialer drops."""
        clock = Clock()
        link, outbound, _ = _outbound(clock)
        clock.advance(5.0)
        self.assertTrue(outbound.dropped)
        self.assertEqual(link.ready, [])

    def test_proof_helpers(self):
        """The proof depends on the secret, both nonces, the role and the handshake."""
        base = (SECRET, b"dialer", b"a" * 32, b"d" * 32, b"hs")
        mac = peer_token.proof(*base)
        self.assertTrue(peer_token.proof_matches(*base, mac))
        for i, other in ((0, b"x" * 32), (1, b"acceptor"), (2, b"b" * 32), (3, b"e" * 32), (4, b"hs2")):
            changed = list(base)
            changed[i] = other
            self.assertFalse(peer_token.proof_matches(*changed, mac))

    def test_short_or_missing_token_file(self):
        """A secret under 16 bytes, or no file, is refused with the path named."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("short\n")
        with self.assertRaisesRegex(peer_token.PeerTokenError, "at least 16"):
            peer_token.read_secret(path)
        with self.assertRaisesRegex(peer_token.PeerTokenError, "nothing-here"):
            peer_token.read_secret("nothing-here")


class RefusalLogTests(SynchronousTestCase):
    """Strangers are logged once per address per interval."""

    def setUp(self):
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def lines(self):
        return [e for e in self.events if e.get("log_namespace") == "metastore.security.refusals"]

    def test_a_flood_is_one_line_then_one_summary(self):
        """1000 refusals in a minute: one line; the next after the interval
        says how many were not logged."""
        clock = Clock()
        refusals = RefusalLog(clock, "peer connection", interval=60)
        for _ in range(1000):
            refusals.refused("10.0.0.9", "bad proof")
            clock.advance(0.01)
        self.assertEqual(len(self.lines()), 1)
        clock.advance(60)
        self.assertTrue(refusals.refused("10.0.0.9", "bad proof"))
        self.assertEqual(len(self.lines()), 2)
        self.assertIn("999 more", self.lines()[-1]["more"])

    def test_addresses_are_counted_apart_and_bounded(self):
        """Each address gets its first line; at most max_addresses are kept."""
        clock = Clock()
        refusals = RefusalLog(clock, "peer connection", max_addresses=10)
        for i in range(50):
            self.assertTrue(refusals.refused(f"10.0.0.{i}", "x"))
        self.assertEqual(len(refusals._seen), 10)


class TokenBucketTests(SynchronousTestCase):
    """The per-client request rate."""

    def test_burst_then_rate(self):
        """A burst of ``burst`` passes, the next waits 1/rate; clients are apart."""
        clock = Clock()
        buckets = TokenBuckets(clock, rate=2, burst=3)
        self.assertEqual([buckets.take("a") for _ in range(3)], [0.0, 0.0, 0.0])
        self.assertAlmostEqual(buckets.take("a"), 0.5)
        self.assertEqual(buckets.take("b"), 0.0)
        clock.advance(0.5)
        self.assertEqual(buckets.take("a"), 0.0)
        self.assertGreater(buckets.take("a"), 0)

    def test_connection_cap_refuses_with_json_503(self):
        """Beyond the cap a connection gets 503 with a JSON reason and is closed."""
        from twisted.internet.protocol import Factory, Protocol

        cap = ConnectionCap(Factory.forProtocol(Protocol), 1)
        first = cap.buildProtocol(None)
        first.makeConnection(StringTransport())
        refused = cap.buildProtocol(None)
        transport = StringTransport()
        refused.makeConnection(transport)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 503"))
        self.assertIn(b'"too_many_connections"', transport.value())
        self.assertTrue(transport.disconnecting)


class ReloadingTLSTests(SynchronousTestCase):
    """Contexts follow their files."""

    def setUp(self):
        self.dir = self.mktemp()
        self.ca = CertificateAuthority()
        self.ca_path = self.ca.write_ca(self.dir)
        self.cert, self.key = self.ca.issue("first").write(self.dir, "member")

    def test_a_replaced_certificate_is_used_by_the_next_connection(self):
        """Rewriting the files rebuilds the context at the next connection;
        reload() (SIGHUP) does it at once."""
        tls = ReloadingTLS(TLSFiles(self.cert, self.key, self.ca_path))
        first = tls.serverConnectionForTLS(None).get_context()
        self.assertIs(tls.serverConnectionForTLS(None).get_context(), first)
        self.ca.issue("second").write(self.dir, "member")
        os.utime(self.cert, ns=(1, 1))  # a different stamp even within one clock tick
        second = tls.serverConnectionForTLS(None).get_context()
        self.assertIsNot(second, first)
        self.assertTrue(tls.reload())
        self.assertIsNot(tls.serverConnectionForTLS(None).get_context(), second)

    def test_a_broken_file_keeps_the_old_certificate(self):
        """A half-written file is not loaded; the previous context stays."""
        tls = ReloadingTLS(TLSFiles(self.cert, self.key))
        before = tls.serverConnectionForTLS(None).get_context()
        with open(self.cert, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\ntruncated")
        self.assertFalse(tls.reload())
        self.assertIs(tls.serverConnectionForTLS(None).get_context(), before)

    def test_bad_files_at_start_are_an_error_naming_them(self):
        """A key that does not match the certificate stops the start."""
        _, other_key = self.ca.issue("other").write(self.dir, "other")
        with self.assertRaisesRegex(TLSConfigError, "member.crt"):
            ReloadingTLS(TLSFiles(self.cert, other_key))

    def test_identity_rules(self):
        """Allowed CN, allowed hostname and the dialed host are checked on the leaf."""
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(self.ca.issue("m1", ("10.1.1.1", "m1.example")).cert_pem)
        self.assertIsNone(identity_refusal(cert, TLSFiles("", "", allowed_cn="m1")))
        self.assertIn("common name", identity_refusal(cert, TLSFiles("", "", allowed_cn="m2")))
        self.assertIsNone(identity_refusal(cert, TLSFiles("", "", allowed_hostname="M1.example")))
        self.assertIn("allowed", identity_refusal(cert, TLSFiles("", "", allowed_hostname="m2.example")))
        self.assertIsNone(identity_refusal(cert, TLSFiles("", ""), expected_host="10.1.1.1"))
        self.assertIsNotNone(identity_refusal(cert, TLSFiles("", ""), expected_host="127.0.0.1"))

    def test_auto_tls_makes_one_certificate_and_keeps_it(self):
        """--auto-tls: a loadable self-signed pair, the same on a restart."""
        cert, key = auto_tls_files(os.path.join(self.dir, "auto"), ("127.0.0.1",))
        with open(cert, "rb") as f:
            first = f.read()
        ReloadingTLS(TLSFiles(cert, key))
        auto_tls_files(os.path.join(self.dir, "auto"), ("127.0.0.1",))
        with open(cert, "rb") as f:
            self.assertEqual(f.read(), first)
        self.assertEqual(os.stat(key).st_mode & 0o777, 0o600)
        self.assertIsInstance(SSL.Context(SSL.TLS_METHOD), SSL.Context)


class SecurityConfigTests(SynchronousTestCase):
    """Flags that cannot work together are refused, naming the flag."""

    def test_combinations(self):
        """Each bad combination names what is missing."""
        for fields, message in (
            ({"cert_file": "c"}, "--cert-file and --key-file"),
            ({"client_cert_auth": True, "cert_file": "c", "key_file": "k"}, "--trusted-ca-file"),
            ({"peer_cert_file": "c", "peer_key_file": "k"}, "always mutual"),
            ({"peer_cert_allowed_cn": "x"}, "need peer TLS"),
            ({"auto_tls": True, "cert_file": "c", "key_file": "k"}, "--auto-tls"),
            ({"max_client_connections": -1}, "--max-client-connections"),
            ({"client_request_rate": -1.0}, "--client-request-rate"),
        ):
            with self.assertRaisesRegex(ConfigError, message):
                Config(**fields).validate()
        self.assertTrue(Config(cert_file="c", key_file="k", trusted_ca_file="a", client_cert_auth=True).validate())
