"""TLS contexts built from certificate files, rebuilt when the files change.

A :class:`ReloadingTLS` is both Twisted's server and client connection
creator (``IOpenSSLServerConnectionCreator`` / ``IOpenSSLClientConnectionCreator``):
every new connection first checks the files' modification times (one
``stat`` each) and rebuilds the ``SSL.Context`` when one changed, or after
:meth:`ReloadingTLS.reload` (SIGHUP).  Connections already open keep the
certificate they started with.  A rebuild that fails (a half-written file)
keeps the previous context and logs why.

Verification of the other side's certificate:

- ``trusted_ca`` set: the chain must lead to it; with ``require_peer_cert``
  a side that presents no certificate is refused;
- ``allowed_cn`` / ``allowed_hostname``: the leaf certificate's common name,
  or one of its DNS/IP subject alternative names, must be that value
  (etcd's ``--peer-cert-allowed-cn`` / ``--peer-cert-allowed-hostname``);
- as a client, ``expected_host`` (the host of the URL dialed) must be among
  the server certificate's subject alternative names (or its CN when it has
  none).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from zope.interface import implementer

log = Logger()


class TLSConfigError(ValueError):
    """A TLS file that cannot be used; the message names the file."""


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """The files of one TLS identity and what it demands of the other side."""

    cert_file: str
    key_file: str
    trusted_ca_file: str = ""
    require_peer_cert: bool = False
    """Refuse a handshake whose other side presents no valid certificate."""
    allowed_cn: str = ""
    allowed_hostname: str = ""

    def paths(self) -> tuple[str, ...]:
        """The files whose change triggers a rebuild."""
        return tuple(p for p in (self.cert_file, self.key_file, self.trusted_ca_file) if p)


def certificate_names(cert: x509.Certificate) -> tuple[str, frozenset[str]]:
    """``(common name, subject alternative names)`` of a certificate; IP
    addresses are written in their canonical text form."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(cns[0].value) if cns else ""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return cn, frozenset()
    names = set(san.get_values_for_type(x509.DNSName))
    names.update(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    return cn, frozenset(n.lower() for n in names)


def _canonical_host(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.lower()


def identity_refusal(cert: x509.Certificate, files: TLSFiles, expected_host: str = "") -> str | None:
    """Why the leaf certificate ``cert`` is not acceptable, or None."""
    cn, names = certificate_names(cert)
    if files.allowed_cn and cn != files.allowed_cn:
        return f"certificate common name {cn!r} is not the allowed {files.allowed_cn!r}"
    if files.allowed_hostname and _canonical_host(files.allowed_hostname) not in names:
        return f"certificate names {sorted(names)} do not include the allowed {files.allowed_hostname!r}"
    if expected_host:
        host = _canonical_host(expected_host)
        if host not in (names or {cn.lower()}):
            return f"certificate names {sorted(names) or [cn]} do not include {expected_host!r}"
    return None


def _load_context(files: TLSFiles, method_side: str, expected_host: str = "") -> SSL.Context:
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE)
    # Needed by OpenSSL to resume sessions of clients whose certificate it verified.
    context.set_session_id(b"metastore")
    try:
        context.use_certificate_chain_file(files.cert_file)
        context.use_privatekey_file(files.key_file)
        context.check_privatekey()
    except (SSL.Error, OSError) as e:
        raise TLSConfigError(f"cannot use certificate {files.cert_file!r} with key {files.key_file!r}: {e}") from None
    if files.trusted_ca_file:
        try:
            context.load_verify_locations(files.trusted_ca_file)
        except (SSL.Error, OSError) as e:
            raise TLSConfigError(f"cannot use trusted CA file {files.trusted_ca_file!r}: {e}") from None
    verify_other = files.require_peer_cert or method_side == "client"
    if verify_other and files.trusted_ca_file:
        mode = SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT
        context.set_verify(mode, _verifier(files, expected_host))
    return context


def _verifier(files: TLSFiles, expected_host: str):
    def verify(connection, x509_cert, errno, depth, preverify_ok) -> bool:
        if not preverify_ok:
            return False
        if depth != 0:
            return True
        refusal = identity_refusal(x509_cert.to_cryptography(), files, expected_host)
        if refusal is not None:
            log.debug("TLS peer refused: {refusal}", refusal=refusal)
            return False
        return True

    return verify


def file_stamps(paths: tuple[str, ...]) -> tuple:
    """What changes when one of ``paths`` is rewritten or replaced
    (modification time, size, inode; None for a missing file)."""
    stamps = []
    for path in paths:
        try:
            st = os.stat(path)
            stamps.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            stamps.append(None)
    return tuple(stamps)


@implementer(IOpenSSLServerConnectionCreator, IOpenSSLClientConnectionCreator)
@dataclass(eq=False)
class ReloadingTLS:
    """Makes TLS connections from ``files``, rebuilding the context when
    they change (see the module docstring).  Raises ``TLSConfigError`` at
    construction when the files cannot be used, so a member refuses to
    start on bad files but survives a bad reload."""

    files: TLSFiles
    expected_host: str = ""
    """As a client: the host the certificate must name (empty: no check)."""
    _contexts: dict = field(default_factory=dict, init=False)
    _stamps: tuple = field(default=(), init=False)
    reloads: int = field(default=0, init=False)
    """How many times the context was rebuilt after the first."""

    def __post_init__(self) -> None:
        self._stamps = file_stamps(self.files.paths())
        self._contexts = {"server": _load_context(self.files, "server")}

    def reload(self) -> bool:
        """Rebuild now (SIGHUP); False, keeping the old context, when the
        files cannot be used."""
        try:
            contexts = {"server": _load_context(self.files, "server")}
        except TLSConfigError as e:
            log.warn("TLS files not reloaded, keeping the previous certificate: {e}", e=e)
            return False
        self._stamps = file_stamps(self.files.paths())
        self._contexts = contexts  # client contexts are rebuilt on first use
        self.reloads += 1
        log.info("TLS certificate reloaded from {cert}", cert=self.files.cert_file)
        return True

    def _context(self, side: str, expected_host: str = "") -> SSL.Context:
        stamps = file_stamps(self.files.paths())
        if stamps != self._stamps:
            self.reload()
            self._stamps = stamps
        key = side if side == "server" else f"client:{expected_host}"
        context = self._contexts.get(key)
        if context is None:
            context = self._contexts[key] = _load_context(self.files, side, expected_host)
        return context

    def serverConnectionForTLS(self, tlsProtocol) -> SSL.Connection:
        """A server-side connection with the current certificate."""
        return SSL.Connection(self._context("server"), None)

    def clientConnectionForTLS(self, tlsProtocol) -> SSL.Connection:
        """A client-side connection with the current certificate, checking
        the server's against the CA and ``expected_host``."""
        return self._client_connection(self.expected_host)

    def _client_connection(self, host: str) -> SSL.Connection:
        connection = SSL.Connection(self._context("client", host), None)
        if host and not _is_ip(host):
            connection.set_tlsext_host_name(host.encode("idna"))
        connection.set_connect_state()
        return connection

    def for_host(self, host: str) -> "HostTLS":
        """A client creator for dialing ``host``, sharing these files."""
        return HostTLS(self, host)


@implementer(IOpenSSLClientConnectionCreator)
@dataclass(frozen=True, slots=True)
class HostTLS:
    """Dials ``host`` with a :class:`ReloadingTLS`'s files and checks."""

    tls: ReloadingTLS
    host: str

    def clientConnectionForTLS(self, tlsProtocol) -> SSL.Connection:
        """A client-side connection that expects ``host`` in the certificate."""
        return self.tls._client_connection(self.host)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
