"""Credentials an HTTP request carries in its ``Authorization`` header.

etcd's JSON gateway takes the token as the whole header value; MetaStore
also accepts ``Bearer <token>``, and (``basic_credentials``) HTTP Basic's
user name and password for the REST API.  Anything malformed is no
credential at all, never an error here: the auth check then answers.
"""

from __future__ import annotations

import base64
import binascii

MAX_HEADER_CHARS = 8192
"""Longer Authorization values are ignored (no token is that long)."""


def _authorization(request) -> str:
    raw = request.getHeader(b"authorization")
    if raw is None:
        return ""
    if isinstance(raw, bytes):
        raw = raw.decode("latin-1")
    return raw.strip() if len(raw) <= MAX_HEADER_CHARS else ""


def request_token(request) -> str | None:
    """The token of ``Authorization: <token>`` or ``Authorization: Bearer
    <token>``; None when there is none (or the header is Basic)."""
    value = _authorization(request)
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip() or None
    if scheme.lower() == "basic" or not value or " " in value:
        return None
    return value


def basic_credentials(request) -> tuple[str, str] | None:
    """``(user, password)`` of ``Authorization: Basic ...``, or None."""
    scheme, _, encoded = _authorization(request).partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


async def caller_token(member, request) -> str | None:
    """The auth token a REST or admin request carries: its Bearer (or bare)
    token, or, for HTTP Basic while auth is enabled, a token for the
    credentials (checked with the password's slow hash off the reactor
    thread, so each Basic request costs one hash)."""
    basic = basic_credentials(request)
    if basic is not None and member.auth_state().enabled:
        return await member.authenticate(*basic)
    return request_token(request)
