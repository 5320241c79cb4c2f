"""``metastore-chaos --tls``: members with client HTTPS, mutual peer TLS
and a peer token, and HTTP clients that trust the run's CA.

The certificates are made for the run under ``WORKDIR/tls``: a CA and one
member certificate for 127.0.0.1 that every member presents (the peer
proxies are on 127.0.0.1 too, so the dialed host matches).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from twisted.internet import ssl
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool

from metastore.security.selfsigned import CertificateAuthority


@dataclass(frozen=True)
class ChaosTLS:
    """The run's CA and the flags that put every member behind TLS."""

    ca_file: str
    member_args: tuple[str, ...]

    def policy(self) -> BrowserLikePolicyForHTTPS:
        """A client policy that trusts the run's CA (and checks the host)."""
        with open(self.ca_file, "rb") as f:
            return BrowserLikePolicyForHTTPS(trustRoot=ssl.Certificate.loadPEM(f.read()))

    def agent(self, reactor, pool: HTTPConnectionPool | None = None) -> Agent:
        """An ``Agent`` for the members' HTTPS URLs."""
        return Agent(reactor, contextFactory=self.policy(), pool=pool)


def chaos_tls(workdir: str) -> ChaosTLS:
    """Make the run's CA, member certificate and peer token under ``workdir/tls``."""
    directory = os.path.abspath(os.path.join(workdir, "tls"))
    ca = CertificateAuthority("metastore-chaos CA")
    ca_file = ca.write_ca(directory)
    cert, key = ca.issue("metastore-chaos-member", ("127.0.0.1", "localhost")).write(directory, "member")
    token = os.path.join(directory, "peer-token")
    with open(os.open(token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    args = ("--cert-file", cert, "--key-file", key, "--trusted-ca-file", ca_file,
            "--peer-cert-file", cert, "--peer-key-file", key, "--peer-trusted-ca-file", ca_file,
            "--peer-token-file", token)
    return ChaosTLS(ca_file, args)
