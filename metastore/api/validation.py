"""Validation at the edge: every field a request puts into a command is
checked here, so nothing the state machine or raft cannot apply is ever
proposed.  Each check raises ``HTTPError`` (400 or 409) with a reason.

The integer limits are etcd's: member ids are uint64 and 0 means "none";
revisions are int64.
"""

from __future__ import annotations

from metastore.api.errors import HTTPError

MAX_MEMBER_ID = 2**64 - 1
"""etcd member ids are uint64; 0 is not an id."""
MAX_REVISION = 2**63 - 1
"""etcd revisions are int64."""
MAX_PEER_URL_BYTES = 512

_PEER_SCHEMES = ("http://",)


def member_id(text: str | bytes) -> int:
    """The member id in a path segment: decimal digits, 1 to 2**64-1."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    if not (text.isascii() and text.isdigit()):
        raise HTTPError(400, "bad_member_id", f"a member id is a decimal number, got {text[:40]!r}")
    value = int(text)
    if not 1 <= value <= MAX_MEMBER_ID:
        raise HTTPError(400, "bad_member_id", f"a member id is between 1 and {MAX_MEMBER_ID}, got {text[:40]}")
    return value


def revision(text: bytes, what: str) -> int:
    """A revision named by a client (``what`` says where): 0 to 2**63-1."""
    if not (text.isascii() and text.isdigit()):
        raise HTTPError(400, "bad_precondition", f"{what} wants a revision like \"12\", got {text[:40]!r}")
    value = int(text)
    if value > MAX_REVISION:
        raise HTTPError(400, "bad_precondition", f"{what}: a revision is at most {MAX_REVISION}, got {text[:40].decode()}")
    return value


def peer_url(body: bytes) -> str:
    """The new member's peer URL from a request body: ASCII, ``http://``,
    at most ``MAX_PEER_URL_BYTES``; surrounding whitespace is ignored.  Its
    host and port are checked by the membership (``Membership.add_change``)."""
    if len(body) > MAX_PEER_URL_BYTES:
        raise HTTPError(400, "bad_peer_url", f"a peer URL is at most {MAX_PEER_URL_BYTES} bytes")
    try:
        url = body.strip().decode("ascii")
    except UnicodeDecodeError:
        raise HTTPError(400, "bad_peer_url", "the body must be the new member's peer URL, in ASCII") from None
    lowered = url.lower()
    if lowered.startswith("https://"):
        raise HTTPError(400, "bad_peer_url", f"peer URL {url!r}: https is not supported; peers speak plain TCP (use http://)")
    if not lowered.startswith(_PEER_SCHEMES):
        raise HTTPError(400, "bad_peer_url", f"the body must be the new member's peer URL, like http://10.0.0.4:2380; got {url[:80]!r}")
    return url
