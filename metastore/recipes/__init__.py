"""Coordination recipes over the seed REST API, modelled on etcd's
``concurrency`` package: ``Lock``, ``Election`` and ``ServiceRegistry``,
built on ``RestClient`` (a small client that fails over between members).

Every recipe keeps its keys alive with a lease (``PUT ?ttl`` then
``PUT ?refresh``), so what a dead process held is released when its TTL
runs out, and waits with blocking reads (``GET ?index=N``) rather than
polling.

New code should use ``metastore.client`` (etcd's v3 API, both a blocking
and a Twisted flavour, with the same recipes); these stay for programs
written against the seed REST API, and share its queueing rule
(``metastore.client.concurrency``).
"""
