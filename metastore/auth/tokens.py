"""Auth tokens, etcd's two kinds (``--auth-token``):

- ``simple``: a random token this member keeps with its user and an expiry
  ``ttl`` seconds after its last use (etcd's ``--auth-token-ttl``, 300 by
  default); an expired token is forgotten, and presenting it again is an
  invalid token.
- ``jwt``: a token signed with a configured key (RS256 with a private and
  public key, or HS256 with a shared secret), carrying the user name, the
  auth revision and an expiry; any member with the key accepts it.

Time comes from an injected ``IReactorTime``, so tests pass it with ``task.Clock``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Protocol

import jwt

from metastore.auth.errors import InvalidAuthToken

DEFAULT_TTL_SECONDS = 300


class TokenProvider(Protocol):
    """Issues tokens and names the user a token stands for."""

    def issue(self, user: str, auth_revision: int) -> str:
        """A new token for ``user``."""

    def user_of(self, token: str) -> str:
        """The user ``token`` stands for; ``InvalidAuthToken`` when it is
        unknown, malformed or expired."""

    def forget_user(self, user: str) -> None:
        """Invalidate every token issued to ``user`` that can be (its
        password changed, or it was deleted)."""


@dataclass
class _Issued:
    user: str
    expires_at: float


class SimpleTokens:
    """Random tokens kept by this member, each valid ``ttl`` seconds after
    its last use."""

    def __init__(self, clock, ttl: float = DEFAULT_TTL_SECONDS) -> None:
        self._clock = clock
        self._ttl = ttl
        self._issued: dict[str, _Issued] = {}
        self._counter = 0

    def issue(self, user: str, auth_revision: int) -> str:
        """A fresh random token (``<random>.<n>``, as etcd's look)."""
        self._forget_expired()
        self._counter += 1
        token = f"{secrets.token_urlsafe(12)}.{self._counter}"
        self._issued[token] = _Issued(user, self._clock.seconds() + self._ttl)
        return token

    def user_of(self, token: str) -> str:
        """The token's user; using it extends its life by ``ttl``."""
        issued = self._issued.get(token)
        now = self._clock.seconds()
        if issued is None or issued.expires_at <= now:
            self._issued.pop(token, None)
            raise InvalidAuthToken()
        issued.expires_at = now + self._ttl
        return issued.user

    def forget_user(self, user: str) -> None:
        """Invalidate every token of ``user``."""
        for token in [t for t, i in self._issued.items() if i.user == user]:
            del self._issued[token]

    def _forget_expired(self) -> None:
        now = self._clock.seconds()
        for token in [t for t, i in self._issued.items() if i.expires_at <= now]:
            del self._issued[token]


class JwtTokens:
    """Signed tokens any member holding the key can check (etcd's ``jwt`` tokens)."""

    def __init__(self, clock, sign_method: str, sign_key, verify_key, ttl: float = DEFAULT_TTL_SECONDS) -> None:
        self._clock = clock
        self._method = sign_method
        self._sign_key = sign_key
        self._verify_key = verify_key
        self._ttl = ttl

    def issue(self, user: str, auth_revision: int) -> str:
        """A token for ``user`` expiring ``ttl`` seconds from now."""
        expires = int(self._clock.seconds() + self._ttl)
        return jwt.encode({"username": user, "revision": auth_revision, "exp": expires}, self._sign_key,
                          algorithm=self._method)

    def user_of(self, token: str) -> str:
        """The user the token names, once its signature and expiry check out."""
        try:
            claims = jwt.decode(token, self._verify_key, algorithms=[self._method],
                                options={"verify_exp": False, "require": ["username", "exp"]})
        except jwt.PyJWTError:
            raise InvalidAuthToken() from None
        if not isinstance(claims.get("username"), str) or not isinstance(claims["exp"], (int, float)):
            raise InvalidAuthToken()
        if claims["exp"] <= self._clock.seconds():
            raise InvalidAuthToken()
        return claims["username"]

    def forget_user(self, user: str) -> None:
        """Nothing to forget: a signed token is valid until it expires (as in etcd)."""


class TokenOptionError(ValueError):
    """An ``--auth-token`` value that names no usable token provider."""


def parse_duration(text: str) -> float:
    """Seconds from etcd's durations (``300s``, ``5m``, ``1h``) or a bare number."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * units[suffix]
    return float(text)


def token_provider(option: str, clock, ttl: float = DEFAULT_TTL_SECONDS) -> TokenProvider:
    """The provider ``--auth-token`` names: ``simple``, or
    ``jwt,pub-key=PATH,priv-key=PATH,sign-method=RS256|HS256,ttl=5m`` (for
    HS256, ``priv-key`` is the file holding the shared secret)."""
    kind, *params = [part.strip() for part in option.split(",")]
    if kind == "simple" and not params:
        return SimpleTokens(clock, ttl)
    if kind != "jwt":
        raise TokenOptionError(f"unknown --auth-token {option!r}: expected simple or jwt,...")
    fields = {}
    for param in params:
        name, sep, value = param.partition("=")
        if not sep or name not in ("pub-key", "priv-key", "sign-method", "ttl"):
            raise TokenOptionError(f"unknown --auth-token parameter {param!r}")
        fields[name] = value
    method = fields.get("sign-method", "RS256")
    if method not in ("RS256", "RS384", "RS512", "HS256", "HS384", "HS512"):
        raise TokenOptionError(f"unsupported sign-method {method!r}")
    if "priv-key" not in fields:
        raise TokenOptionError("--auth-token jwt needs priv-key=PATH")
    try:
        with open(fields["priv-key"], "rb") as f:
            sign_key = f.read()
        verify_key = sign_key
        if method.startswith("RS"):
            from cryptography.hazmat.primitives.serialization import load_pem_private_key

            private = load_pem_private_key(sign_key, password=None)
            verify_key = private.public_key()
            sign_key = private
            if "pub-key" in fields:
                from cryptography.hazmat.primitives.serialization import load_pem_public_key

                with open(fields["pub-key"], "rb") as f:
                    verify_key = load_pem_public_key(f.read())
        jwt_ttl = parse_duration(fields["ttl"]) if "ttl" in fields else ttl
    except (OSError, ValueError, TypeError) as e:
        raise TokenOptionError(f"--auth-token jwt: {e}") from None
    return JwtTokens(clock, method, sign_key, verify_key, jwt_ttl)
