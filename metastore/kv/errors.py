"""etcd's KV errors, with etcd's messages and gRPC status codes.

An API turns one into its wire form: ``message`` is etcd's gRPC error text
(``etcdserver: ...``) and ``grpc_code`` its gRPC status code, from which
etcd's gateway derives the HTTP status (``http_status``).
"""

from __future__ import annotations

INVALID_ARGUMENT = 3
NOT_FOUND = 5
RESOURCE_EXHAUSTED = 8
FAILED_PRECONDITION = 9
OUT_OF_RANGE = 11


class KVError(Exception):
    """A KV request etcd would refuse; nothing was changed."""

    message = "etcdserver: request is invalid"
    grpc_code = INVALID_ARGUMENT
    http_status = 400

    def __init__(self) -> None:
        super().__init__(self.message)


class CompactedError(KVError):
    """The revision asked for is below the compacted revision."""

    message = "etcdserver: mvcc: required revision has been compacted"
    grpc_code = OUT_OF_RANGE


class FutureRevisionError(KVError):
    """The revision asked for is above the store's revision."""

    message = "etcdserver: mvcc: required revision is a future revision"
    grpc_code = OUT_OF_RANGE


class KeyNotFoundError(KVError):
    """A put with ``ignore_value`` or ``ignore_lease`` names an absent key."""

    message = "etcdserver: key not found"


class EmptyKeyError(KVError):
    """A request (or a compare) has an empty key."""

    message = "etcdserver: key is not provided"


class ValueProvidedError(KVError):
    """A put has both ``ignore_value`` and a value."""

    message = "etcdserver: value is provided"


class LeaseProvidedError(KVError):
    """A put has both ``ignore_lease`` and a lease."""

    message = "etcdserver: lease is provided"


class DuplicateKeyError(KVError):
    """A txn branch writes one key twice (etcd's interval rule)."""

    message = "etcdserver: duplicate key given in txn request"


class TooManyOpsError(KVError):
    """A txn has more compares or operations in a branch than allowed."""

    message = "etcdserver: too many operations in txn request"


class LeaseNotFoundError(KVError):
    """A request names a lease that was never granted or is gone."""

    message = "etcdserver: requested lease not found"
    grpc_code = NOT_FOUND
    http_status = 404


class NoSpaceError(KVError):
    """A NOSPACE alarm is raised: writes that add data are refused until
    it is disarmed."""

    message = "etcdserver: mvcc: database space exceeded"
    grpc_code = RESOURCE_EXHAUSTED
    http_status = 429


class LeaseExistsError(KVError):
    """A grant asks for the id of a lease that exists."""

    message = "etcdserver: lease already exists"
    grpc_code = FAILED_PRECONDITION


class LeaseTTLTooLargeError(KVError):
    """A grant asks for more than ``MAX_LEASE_TTL`` seconds."""

    message = "etcdserver: too large lease TTL"
    grpc_code = OUT_OF_RANGE
