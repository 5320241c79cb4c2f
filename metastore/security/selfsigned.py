"""Certificates made on the spot: ``--auto-tls`` and test fixtures.

``auto_tls_files`` writes (once) a self-signed certificate and key for the
member's addresses, as etcd's ``--auto-tls`` does: the link is encrypted but
nobody is authenticated, so it suits tests, not production.  ``CertificateAuthority``
issues leaf certificates signed by a throw-away CA (tests use it to make
wrong-CA, expired and wrong-hostname certificates).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

AUTO_TLS_DAYS = 365


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "MetaStore"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _alt_names(hosts) -> x509.SubjectAlternativeName:
    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, as PEM bytes."""

    cert_pem: bytes
    key_pem: bytes

    def write(self, directory: str, stem: str) -> tuple[str, str]:
        """Write ``stem.crt`` and ``stem.key`` (mode 0600) under ``directory``;
        return their paths."""
        os.makedirs(directory, exist_ok=True)
        cert_path = os.path.join(directory, f"{stem}.crt")
        key_path = os.path.join(directory, f"{stem}.key")
        for path, data, mode in ((cert_path, self.cert_pem, 0o644), (key_path, self.key_pem, 0o600)):
            temporary = path + ".tmp"
            with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, path)
        return cert_path, key_path


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class CertificateAuthority:
    """A CA with a fresh key that issues leaf certificates."""

    def __init__(self, cn: str = "MetaStore test CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate, PEM."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write_ca(self, directory: str, stem: str = "ca") -> str:
        """Write the CA certificate to ``directory/stem.crt``; return its path."""
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, f"{stem}.crt")
        with open(path, "wb") as f:
            f.write(self.cert_pem)
        return path

    def issue(self, cn: str, hosts=("127.0.0.1", "localhost"), *, days: float = 365,
              expired: bool = False) -> KeyPair:
        """A leaf certificate for ``hosts`` (server and client use), valid
        ``days`` from now, or one that expired yesterday."""
        return _leaf(cn, hosts, self.cert.subject, self.key, days=days, expired=expired)


def _leaf(cn, hosts, issuer, issuer_key, *, days: float, expired: bool, key=None) -> KeyPair:
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = (now - datetime.timedelta(days=30), now - datetime.timedelta(days=1)) if expired else (
        now - datetime.timedelta(hours=1), now + datetime.timedelta(days=days))
    cert = (
        x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(issuer)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(_alt_names(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .sign(issuer_key or key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def self_signed(cn: str, hosts, days: float = AUTO_TLS_DAYS) -> KeyPair:
    """A self-signed certificate for ``hosts`` (``--auto-tls``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return _leaf(cn, hosts, _name(cn), key, days=days, expired=False, key=key)


def auto_tls_files(directory: str, hosts) -> tuple[str, str]:
    """``(cert, key)`` paths of the ``--auto-tls`` certificate under
    ``directory``, made on first use and kept across restarts."""
    cert_path = os.path.join(directory, "cert.pem")
    key_path = os.path.join(directory, "key.pem")
    if not (os.path.exists(cert_path) and os.path.exists(key_path)):
        pair = self_signed("metastore auto-tls", hosts)
        made_cert, made_key = pair.write(directory, "auto")
        os.replace(made_key, key_path)
        os.replace(made_cert, cert_path)
    return cert_path, key_path
