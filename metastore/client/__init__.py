"""A Python client for MetaStore (and etcd) over etcd's v3 JSON API.

Two flavours share one sans-IO core (``wire``, ``failover``, ``stream``,
``concurrency``): ``metastore.client.sync.Client`` (blocking, urllib3)
and ``metastore.client.tx.TxClient`` (Twisted, treq).  See docs/client.md.
"""

from metastore.client.failover import Endpoints
from metastore.client.stream import WatchCanceled, WatchCompacted
from metastore.client.wire import ClientError, NoMemberAvailable, Compare

__all__ = ["ClientError", "Compare", "Endpoints", "NoMemberAvailable", "WatchCanceled", "WatchCompacted"]
