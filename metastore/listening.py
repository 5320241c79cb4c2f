"""From the configuration to what listens: TLS contexts, client endpoints,
gRPC credentials, and the limits on clients.

The one place where a member's listening code meets transport security and
client limits (``service.open_member`` calls it), so that the APIs
themselves know nothing of TLS:

- :func:`member_security` reads and checks the TLS files and the peer
  token at start-up (``StartupError`` naming the bad file);
- :func:`client_endpoint` is the client HTTP port: TCP, then a
  connection cap, inside TLS when configured;
- :func:`client_root` puts a request rate per client in front of the HTTP
  tree, :func:`grpc_interceptors` in front of gRPC;
- :func:`grpc_credentials` / :func:`grpc_options` give the gRPC server the
  same certificate (reloaded on change) and its stream limit;
- :meth:`MemberSecurity.reload` (SIGHUP) rebuilds every TLS context from its files.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

from twisted.internet import endpoints
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from metastore.config import Config
from metastore.errors import StartupError
from metastore.security.limits import ConnectionCap, RateLimitedRoot, TokenBuckets
from metastore.security.peer_token import PeerTokenError, read_secret
from metastore.security.selfsigned import auto_tls_files
from metastore.security.tls import ReloadingTLS, TLSConfigError, TLSFiles, file_stamps

log = Logger()


@dataclass
class MemberSecurity:
    """A member's TLS identities and peer secret, as configured."""

    client: ReloadingTLS | None = None
    """Serves the client HTTP APIs and gRPC (None: plain TCP)."""
    peer: ReloadingTLS | None = None
    """Mutual TLS on the peer port (None: plain TCP)."""
    peer_secret: bytes | None = None
    """The cluster secret peers prove they know (None: no proof asked)."""
    client_cert_auth: bool = False

    @property
    def client_scheme(self) -> str:
        """``https`` or ``http``: how clients reach the APIs."""
        return "https" if self.client is not None else "http"

    def reload(self) -> None:
        """Rebuild every TLS context from its files now (connections
        already open keep theirs); a bad file keeps the old context."""
        for tls in (self.client, self.peer):
            if tls is not None:
                tls.reload()


def member_security(config: Config) -> MemberSecurity:
    """Load the TLS files and the peer token of ``config``; ``StartupError``
    naming the file that cannot be used."""
    try:
        client = None
        if config.auto_tls:
            cert, key = auto_tls_files(os.path.join(config.data_dir, "fixtures", "client"),
                                       (config.listen_host, "127.0.0.1", "localhost"))
            client = ReloadingTLS(TLSFiles(cert, key))
        elif config.cert_file:
            client = ReloadingTLS(TLSFiles(config.cert_file, config.key_file, config.trusted_ca_file,
                                           require_peer_cert=config.client_cert_auth))
        peer = None
        if config.peer_tls:
            peer = ReloadingTLS(TLSFiles(
                config.peer_cert_file, config.peer_key_file, config.peer_trusted_ca_file, require_peer_cert=True,
                allowed_cn=config.peer_cert_allowed_cn, allowed_hostname=config.peer_cert_allowed_hostname,
            ))  # fmt: skip
        secret = read_secret(config.peer_token_file) if config.peer_token_file else None
    except (TLSConfigError, PeerTokenError, OSError) as e:
        raise StartupError(str(e)) from None
    return MemberSecurity(client, peer, secret, config.client_cert_auth)


@implementer(IStreamServerEndpoint)
@dataclass(frozen=True)
class _WrappedEndpoint:
    """Listens on ``endpoint`` with the factory passed through ``wrap``."""

    endpoint: IStreamServerEndpoint
    wrap: object

    def listen(self, factory):
        """Listen with the wrapped factory."""
        return self.endpoint.listen(self.wrap(factory))


def client_endpoint(config: Config, reactor, security: MemberSecurity) -> IStreamServerEndpoint:
    """The client HTTP port: TCP on ``--listen-host:--port``, at most
    ``--max-client-connections`` open (503 beyond, inside TLS), in TLS when
    configured."""
    endpoint = endpoints.TCP4ServerEndpoint(reactor, config.port, interface=config.listen_host)

    def wrap(factory):
        if config.max_client_connections:
            factory = ConnectionCap(factory, config.max_client_connections)
        if security.client is not None:
            factory = TLSMemoryBIOFactory(security.client, False, factory)
        return factory

    return _WrappedEndpoint(endpoint, wrap)


def client_buckets(config: Config, reactor) -> TokenBuckets | None:
    """The per-client token buckets of ``--client-request-rate`` (None when 0)."""
    if not config.client_request_rate:
        return None
    burst = config.client_request_burst or max(1, round(config.client_request_rate))
    return TokenBuckets(reactor, config.client_request_rate, burst)


def client_root(config: Config, reactor, root):
    """The HTTP tree behind ``--client-request-rate`` (unchanged when 0)."""
    buckets = client_buckets(config, reactor)
    return root if buckets is None else RateLimitedRoot(root, buckets)


def grpc_interceptors(config: Config, reactor) -> tuple:
    """gRPC interceptors from the limits: ``--client-request-rate``."""
    buckets = client_buckets(config, reactor)
    if buckets is None:
        return ()
    from metastore.api.grpc.ratelimit import RateLimitInterceptor

    return (RateLimitInterceptor(buckets),)


def grpc_options(config: Config) -> tuple[tuple[str, object], ...]:
    """gRPC server options from the limits (``--max-streams-per-connection``)."""
    if config.max_streams_per_connection:
        return (("grpc.max_concurrent_streams", config.max_streams_per_connection),)
    return ()


def grpc_credentials(security: MemberSecurity):
    """``grpc.ServerCredentials`` with the client certificate, reloaded
    when its files change (checked at each new connection's handshake);
    None for plain gRPC."""
    if security.client is None:
        return None
    import grpc

    files = security.client.files
    stamps = [None]

    def configuration():
        with open(files.key_file, "rb") as f:
            key = f.read()
        with open(files.cert_file, "rb") as f:
            chain = f.read()
        roots = None
        if files.trusted_ca_file:
            with open(files.trusted_ca_file, "rb") as f:
                roots = f.read()
        stamps[0] = file_stamps(files.paths())
        return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=roots)

    def fetch():
        if file_stamps(files.paths()) == stamps[0]:
            return None
        try:
            return configuration()
        except OSError as e:
            log.warn("gRPC certificate not reloaded: {e}", e=e)
            return None

    return grpc.dynamic_ssl_server_credentials(configuration(), fetch,
                                               require_client_authentication=security.client_cert_auth)


def reload_on_sighup(reactor, security: MemberSecurity) -> None:
    """SIGHUP rebuilds the TLS contexts (from the reactor thread)."""
    if security.client is None and security.peer is None:
        return
    signal.signal(signal.SIGHUP, lambda signum, frame: reactor.callFromThread(security.reload))
