"""Errors a client request can meet on its way through the node.

Each is an expected outcome with a specific type; the HTTP layer maps them
to status codes in one place (``metastore.api.errors``).
"""


class MetaStoreError(Exception):
    """Base of every expected request failure."""


class Unavailable(MetaStoreError):
    """The cluster cannot answer now; the client may retry (HTTP 503)."""


class NoLeader(Unavailable):
    """No leader is known, so a proposal or a linearizable read cannot go on."""


class ChangeRefused(Unavailable):
    """Raft refused a membership change for now (another change is still
    being applied, or a new leader has not applied an entry of its term)."""


class RequestTimedOut(Unavailable):
    """No answer within the request timeout.  For a write the outcome is
    unknown: it may still be applied."""


class StorageFailed(Unavailable):
    """The member's disk failed; it acknowledges nothing more until restarted."""


class Stopping(Unavailable):
    """The member is shutting down."""


class Refused(MetaStoreError):
    """The cluster refused the request for a reason retrying alone will not
    fix; ``status`` is its HTTP status, ``code`` the JSON ``error`` code."""

    status = 409
    code = "refused"


class EntryRejected(Refused):
    """The request's entry was committed but applied as a no-op: every
    member judged it invalid at its index (malformed bytes, or a membership
    change invalid against the membership as it stood there)."""

    code = "entry_rejected"


class UnhealthyCluster(Refused):
    """etcd's strict reconfiguration check refused a membership change:
    too few started members would remain to form a quorum."""

    status = 412
    code = "unhealthy_cluster"


class StartupError(Exception):
    """The member cannot start; the message says why, for the operator."""
