"""Peer URLs: ``host:port`` in the spellings the command line accepts.

``http://host:port`` is accepted because the seed's command lines use it,
and ``https://host:port`` for a cluster with peer TLS (as etcd's peer URLs
are written); the peer protocol itself is framed TCP (inside TLS when peer
TLS is configured), never HTTP: the scheme does not switch TLS on or off.  ``tcp://host:port`` and
a bare ``host:port`` mean the same.  IPv6 literals go in brackets:
``[::1]:2380``.  Anything else (another scheme, a path, credentials, a
missing or out-of-range port) is a ``ValueError`` that names the URL.
"""

from __future__ import annotations

import ipaddress

_SCHEMES = ("http://", "https://", "tcp://")


def parse_peer_url(url: str, *, allow_port_zero: bool = False) -> tuple[str, int]:
    """Return ``(host, port)`` of a peer URL; the host has no brackets.

    Port 0 ("any free port") is only accepted with ``allow_port_zero``, which
    makes sense for a listening address and never for one to dial.
    """
    if not isinstance(url, str):
        raise ValueError(f"peer URL must be a string, got {type(url).__name__}")
    rest = url.strip()
    lowered = rest.lower()
    for scheme in _SCHEMES:
        if lowered.startswith(scheme):
            rest = rest[len(scheme) :]
            break
    else:
        if "://" in rest:
            raise ValueError(
                f"peer URL {url!r}: unsupported scheme (use http://, https://, tcp:// or none)"
            )
    if rest.endswith("/"):
        rest = rest[:-1]
    if any(c in rest for c in "/?#@"):
        raise ValueError(
            f"peer URL {url!r}: only host:port is allowed (no path, query or user)"
        )
    host, port_text = _split_host_port(url, rest)
    if not port_text.isdigit() or not port_text.isascii():
        raise ValueError(f"peer URL {url!r}: port {port_text!r} is not a number")
    port = int(port_text)
    lowest = 0 if allow_port_zero else 1
    if not lowest <= port <= 65535:
        raise ValueError(f"peer URL {url!r}: port {port} is out of range")
    return host, port


def is_ipv6_literal(host: str) -> bool:
    """True when ``host`` is an IPv6 address (as returned by parse_peer_url)."""
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def is_ip_literal(host: str) -> bool:
    """True when ``host`` is an IPv4 or IPv6 address, not a name to resolve."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _split_host_port(url: str, rest: str) -> tuple[str, str]:
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0 or rest[close + 1 : close + 2] != ":":
            raise ValueError(f"peer URL {url!r}: expected [ipv6-address]:port")
        host = rest[1:close]
        if not is_ipv6_literal(host):
            raise ValueError(f"peer URL {url!r}: {host!r} is not an IPv6 address")
        return host, rest[close + 2 :]
    host, sep, port_text = rest.rpartition(":")
    if not sep:
        raise ValueError(f"peer URL {url!r}: missing :port")
    if not host:
        raise ValueError(f"peer URL {url!r}: missing host")
    if ":" in host:
        raise ValueError(f"peer URL {url!r}: put an IPv6 address in brackets")
    if any(c.isspace() for c in host):
        raise ValueError(f"peer URL {url!r}: the host contains whitespace")
    return host, port_text
