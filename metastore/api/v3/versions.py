"""The versions MetaStore reports to etcd clients.

Clients pick their API from ``GET /version``'s ``etcdserver`` (etcd3gw and
Patroni parse it as plain ``X.Y.Z`` digits; 3.4 or later selects ``/v3/``),
so MetaStore reports the etcd release whose API it serves, and its own
version beside it.
"""

ETCD_SERVER_VERSION = "3.4.23"
"""The etcd release whose v3 API MetaStore answers like."""

ETCD_CLUSTER_VERSION = "3.4.0"
"""etcd's cluster version for that release (major.minor.0)."""


def version_document(metastore_version: str) -> dict:
    """The body of ``GET /version``."""
    return {"etcdserver": ETCD_SERVER_VERSION, "etcdcluster": ETCD_CLUSTER_VERSION, "metastore": metastore_version}
