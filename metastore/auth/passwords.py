"""Password hashes: scrypt (``hashlib``), salted, slow by design.

Both functions are blocking and CPU-bound: call them off the reactor
thread (``deferToThread``).  The stored form names its parameters, so they
can be raised later without invalidating existing hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import os

import msgpack

SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 14, 8, 1
"""scrypt's cost parameters (about 16 MiB and tens of milliseconds a hash)."""

SALT_BYTES = 16
HASH_BYTES = 32


def hash_password(password: str, salt: bytes | None = None) -> bytes:
    """The stored hash of ``password`` with a new random salt (or ``salt``)."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=HASH_BYTES, maxmem=64 * 1024 * 1024
    )
    return msgpack.packb(["scrypt", SCRYPT_N, SCRYPT_R, SCRYPT_P, salt, digest])


_DUMMY = None


def verify_password(password: str, stored: bytes) -> bool:
    """Whether ``password`` matches ``stored``; an empty or unreadable
    ``stored`` never matches, after the same work as a real check (so the
    time taken does not tell whether a user exists)."""
    global _DUMMY
    try:
        kind, n, r, p, salt, digest = msgpack.unpackb(stored) if stored else (None,) * 6
    except Exception:
        kind = None
    if kind != "scrypt":
        if _DUMMY is None:
            _DUMMY = hash_password("", b"\0" * SALT_BYTES)
        verify_password(password, _DUMMY)
        return False
    computed = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(digest), maxmem=64 * 1024 * 1024)
    return hmac.compare_digest(computed, digest)
