"""Proof that a peer knows the cluster secret, without sending it.

Both sides of a peer connection hold the secret from ``--peer-token-file``.
The accepting side sends a random challenge ``a``; the dialer answers with
its own random nonce ``d`` and ``HMAC(secret, "dialer" | a | d | handshake)``;
the acceptor checks it (constant-time) and answers
``HMAC(secret, "acceptor" | a | d | handshake)``, which the dialer checks
before it sends any Raft message.  Fresh nonces on both sides make a
recorded exchange useless on another connection; the handshake bytes in the
MAC bind the proof to the member ids and cluster it claims.
"""

from __future__ import annotations

import hashlib
import hmac
import os

NONCE_BYTES = 32
MIN_SECRET_BYTES = 16


class PeerTokenError(ValueError):
    """The token file cannot be used; the message names it."""


def read_secret(path: str) -> bytes:
    """The secret in ``path`` (surrounding whitespace removed); at least
    ``MIN_SECRET_BYTES`` bytes, else ``PeerTokenError``."""
    try:
        with open(path, "rb") as f:
            secret = f.read().strip()
    except OSError as e:
        raise PeerTokenError(f"--peer-token-file {path!r}: {e.strerror or e}") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise PeerTokenError(f"--peer-token-file {path!r}: the secret must be at least {MIN_SECRET_BYTES} bytes")
    return secret


def new_nonce() -> bytes:
    """A fresh random nonce."""
    return os.urandom(NONCE_BYTES)


def proof(secret: bytes, role: bytes, challenge: bytes, nonce: bytes, handshake: bytes) -> bytes:
    """The MAC a side of ``role`` (b"dialer" or b"acceptor") sends."""
    message = b"metastore-peer-v1\0" + role + b"\0" + challenge + nonce + handshake
    return hmac.new(secret, message, hashlib.sha256).digest()


def proof_matches(secret: bytes, role: bytes, challenge: bytes, nonce: bytes, handshake: bytes,
                  received: bytes) -> bool:
    """True when ``received`` is the right proof (compared in constant time)."""
    return hmac.compare_digest(proof(secret, role, challenge, nonce, handshake), received)
