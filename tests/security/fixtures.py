"""Certificates and blocking TLS clients for the security process tests.

``Certificates`` makes, under a test's directory, a CA with member and
client certificates, plus the bad ones the tests need: signed by another
CA, expired, for another host.  ``tls_get`` speaks one HTTPS request with
the standard library and says what happened, bounded by a timeout.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
from dataclasses import dataclass

from metastore.security.selfsigned import CertificateAuthority

TOKEN = "a-cluster-secret-for-the-tests-0123456789\n"


@dataclass
class Pair:
    """Paths of a certificate and its key."""

    cert: str
    key: str


class Certificates:
    """A CA, ``members`` member certificates and the odd ones, on disk."""

    def __init__(self, directory: str, members: int = 3) -> None:
        directory = os.path.abspath(directory)  # members run in their own directories
        os.makedirs(directory, exist_ok=True)
        self.dir = directory
        self.ca_obj = CertificateAuthority("MetaStore test CA")
        self.ca = self.ca_obj.write_ca(directory, "ca")
        self.other_ca_obj = CertificateAuthority("Some other CA")
        self.other_ca = self.other_ca_obj.write_ca(directory, "other-ca")
        self.members = {i: Pair(*self.ca_obj.issue(f"member-{i}").write(directory, f"member-{i}"))
                        for i in range(1, members + 1)}
        self.client = Pair(*self.ca_obj.issue("client").write(directory, "client"))
        self.foreign = Pair(*self.other_ca_obj.issue("member-2").write(directory, "foreign"))
        self.expired = Pair(*self.ca_obj.issue("member-2", expired=True).write(directory, "expired"))
        self.wrong_host = Pair(*self.ca_obj.issue("member-2", ("wrong.example",)).write(directory, "wrong-host"))
        self.token = os.path.join(directory, "token")
        with open(self.token, "w") as f:
            f.write(TOKEN)

    def issue(self, stem: str, cn: str, hosts=("127.0.0.1", "localhost")) -> Pair:
        """A new certificate from the CA, written as ``stem``."""
        return Pair(*self.ca_obj.issue(cn, hosts).write(self.dir, stem))


def client_context(ca: str | None, pair: Pair | None = None, check_hostname: bool = True) -> ssl.SSLContext:
    """A standard-library client context trusting ``ca``, presenting ``pair``."""
    context = ssl.create_default_context(cafile=ca)
    context.check_hostname = check_hostname
    if pair is not None:
        context.load_cert_chain(pair.cert, pair.key)
    return context


def tls_get(port: int, path: str, context: ssl.SSLContext, host: str = "127.0.0.1",
            timeout: float = 10.0) -> tuple[int, bytes] | str:
    """``(status, body)`` of one HTTPS GET, or the text of the error that
    stopped it (a refused certificate, a connection closed without answer)."""
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=timeout)
    if host != "127.0.0.1":
        connection = _with_server_name(connection, host)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    except (ssl.SSLError, ssl.CertificateError, ConnectionError, http.client.HTTPException, socket.timeout) as e:
        return f"{type(e).__name__}: {e}"
    finally:
        connection.close()


def _with_server_name(connection: http.client.HTTPSConnection, host: str):
    """Dial 127.0.0.1 but check the certificate against ``host``."""
    context = connection._context

    def connect():
        raw = socket.create_connection(("127.0.0.1", connection.port), connection.timeout)
        connection.sock = context.wrap_socket(raw, server_hostname=host)

    connection.connect = connect
    return connection


def peer_certificate_cn(port: int, ca: str, pair: Pair | None = None) -> str:
    """The common name in the certificate a TLS server on ``port`` presents."""
    context = client_context(ca, pair)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            subject = dict(item[0] for item in tls.getpeercert()["subject"])
            return subject["commonName"]
