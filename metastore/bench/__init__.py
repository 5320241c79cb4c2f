"""Benchmarks: load generators run by hand, never as timed tests.

``metastore-bench`` (:mod:`metastore.bench.cli`) drives a member, or etcd,
over HTTP; ``metastore.bench.raft`` and ``metastore.bench.snapshot``
measure the Raft core and snapshots in process.
"""
