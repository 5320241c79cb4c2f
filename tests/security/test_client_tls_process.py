"""TLS on a real member's client ports (HTTP APIs and gRPC).

One member process serves its HTTP APIs and gRPC with a certificate from a
test CA and ``--client-cert-auth``.  A client with the right CA and
certificate is served; one that trusts another CA, presents a certificate
from another CA, an expired one or none, or expects another host name,
gets no answer.  Replacing the certificate files and sending SIGHUP
changes the certificate new connections see, without a restart.  Debian's
``etcdctl --cacert --cert --key`` works against the TLS gRPC port.
"""

from __future__ import annotations

import json
import os
import signal

from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.chaos.helpers import poll
from tests.etcdctl import etcdctl, skip_without_etcdctl
from tests.process import Member, free_port
from tests.security.fixtures import Certificates, client_context, peer_certificate_cn, tls_get


def start_tls_member(testcase, certs: Certificates, *extra: str) -> Member:
    """One member with client TLS and client certificate auth, healthy."""
    member = Member(
        member_id=1, cluster=[f"http://127.0.0.1:{free_port()}"], http_port=free_port(), workdir=testcase.mktemp(),
        extra=["--cert-file", certs.members[1].cert, "--key-file", certs.members[1].key,
               "--trusted-ca-file", certs.ca, "--client-cert-auth", *extra],
    )  # fmt: skip
    member.start()
    testcase.addCleanup(member.kill)
    good = client_context(certs.ca, certs.client)
    try:
        poll(lambda: _healthy(member, good), timeout=30, what="the TLS member to be healthy")
    except AssertionError:
        raise AssertionError(f"the TLS member did not become healthy; log:\n{member.log_text()[-3000:]}") from None
    return member


def _healthy(member: Member, context) -> bool:
    result = tls_get(member.http_port, "/health", context, timeout=2)
    return isinstance(result, tuple) and result[0] == 200


class ClientTLSTests(SynchronousTestCase):
    """Who is served on a TLS client port with --client-cert-auth."""

    def setUp(self):
        self.certs = Certificates(self.mktemp())
        self.member = start_tls_member(self, self.certs)
        self.port = self.member.http_port

    def test_a_client_with_the_right_ca_and_certificate_is_served(self):
        """The control case: a write and a read over HTTPS."""
        result = tls_get(self.port, "/health", client_context(self.certs.ca, self.certs.client))
        self.assertEqual(result[0], 200, result)
        self.assertEqual(json.loads(result[1])["health"], "true")

    def test_refused_clients(self):
        """Wrong CA (either side), expired, no certificate, wrong host: no answer."""
        certs = self.certs
        cases = {
            "client trusts another CA": (client_context(certs.other_ca, certs.client), "127.0.0.1"),
            "client certificate from another CA": (client_context(certs.ca, certs.foreign), "127.0.0.1"),
            "expired client certificate": (client_context(certs.ca, certs.expired), "127.0.0.1"),
            "no client certificate": (client_context(certs.ca, None), "127.0.0.1"),
            "server certificate is not for this host": (client_context(certs.ca, certs.client), "other.example"),
        }
        for what, (context, host) in cases.items():
            result = tls_get(self.port, "/health", context, host=host)
            self.assertIsInstance(result, str, f"{what}: served {result!r}")
        self.assertIn("CERTIFICATE_VERIFY_FAILED", tls_get(self.port, "/health", cases["client trusts another CA"][0]))
        self.assertNotIn("Traceback", self.member.log_text())

    def test_plain_http_gets_no_answer(self):
        """An HTTP request on the TLS port is not served."""
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", "/health")
            status = connection.getresponse().status
        except (ConnectionError, http.client.HTTPException, OSError):
            status = None
        finally:
            connection.close()
        self.assertIsNone(status)

    def test_sighup_reloads_the_certificate(self):
        """SIGHUP reloads (logged); new files + SIGHUP: new connections see
        the new certificate; the member keeps running."""
        good = client_context(self.certs.ca, self.certs.client)
        self.assertEqual(peer_certificate_cn(self.port, self.certs.ca, self.certs.client), "member-1")
        self.member.process.send_signal(signal.SIGHUP)  # unchanged files: the handler runs, nothing changes
        poll(lambda: "TLS certificate reloaded" in self.member.log_text(), timeout=15, what="the SIGHUP reload")
        self.assertEqual(peer_certificate_cn(self.port, self.certs.ca, self.certs.client), "member-1")
        new = self.certs.ca_obj.issue("member-1-renewed")
        with open(self.certs.members[1].key, "wb") as f:
            f.write(new.key_pem)
        with open(self.certs.members[1].cert, "wb") as f:
            f.write(new.cert_pem)
        self.member.process.send_signal(signal.SIGHUP)
        poll(lambda: peer_certificate_cn(self.port, self.certs.ca, self.certs.client) == "member-1-renewed",
             timeout=15, what="the renewed certificate")
        self.assertEqual(tls_get(self.port, "/health", good)[0], 200)
        self.assertTrue(self.member.running())
        self.assertNotIn("Traceback", self.member.log_text())


class EtcdctlTLSTests(TestCase):
    """Debian's etcdctl against a TLS gRPC member."""

    timeout = 120

    async def test_etcdctl_with_cacert_cert_key(self):
        """put/get with --cacert/--cert/--key works; without a client
        certificate, or trusting another CA, etcdctl cannot talk to it."""
        skip_without_etcdctl()
        certs = Certificates(self.mktemp())
        grpc_port = free_port()
        member = start_tls_member(self, certs, "--grpc-port", str(grpc_port))
        endpoint = f"https://127.0.0.1:{grpc_port}"
        tls = ["--cacert", certs.ca, "--cert", certs.client.cert, "--key", certs.client.key]
        code, out, err = await etcdctl(endpoint, *tls, "put", "secure-key", "v1")
        self.assertEqual((code, out.strip()), (0, "OK"), err)
        code, out, err = await etcdctl(endpoint, *tls, "get", "secure-key")
        self.assertEqual(out.split(), ["secure-key", "v1"], err)
        code, out, err = await etcdctl(endpoint, "--cacert", certs.ca, "--dial-timeout=2s", "get", "secure-key")
        self.assertNotEqual(code, 0, out)
        code, out, err = await etcdctl(endpoint, "--cacert", certs.other_ca, "--cert", certs.client.cert,
                                       "--key", certs.client.key, "--dial-timeout=2s", "get", "secure-key")
        self.assertNotEqual(code, 0, out)
        code, out, err = await etcdctl(endpoint, *tls, "member", "list", "-w", "json")
        urls = [u for m in json.loads(out)["members"] for u in m["clientURLs"]]
        self.assertTrue(urls and all(u.startswith("https://") for u in urls), urls)
        self.assertTrue(member.running())
        self.assertTrue(os.path.exists(certs.ca))
