"""Leases in the state machine, the same on every engine (etcd 3.4's rules).

``LeaseStateBehaviour`` is mixed into one ``SynchronousTestCase`` per engine.
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from metastore.kv.errors import LeaseExistsError, LeaseNotFoundError, LeaseTTLTooLargeError
from metastore.kv.messages import (
    MAX_LEASE_TTL,
    DeleteRangeRequest,
    LeaseCheckpointRequest,
    LeaseGrantRequest,
    LeaseKeepAliveRequest,
    LeaseRevokeRequest,
    PutRequest,
    RangeRequest,
    TxnRequest,
)
from metastore.kv.store import KeyValueStore
from metastore.snapshots.format import SnapshotHeader, read_snapshot, write_snapshot
from metastore.storage.engine import ClusterState, Lease
from metastore.storage.rocksdb import RocksDBEngine
from tests.engines import OnMemoryEngine, OnRocksDBEngine


class LeaseStateBehaviour:
    """What every engine shows of leases under ``KeyValueStore``."""

    def make_engine(self):
        raise NotImplementedError

    def setUp(self):
        self.engine = self.make_engine()
        self.addCleanup(self.engine.close)
        self.store = KeyValueStore(self.engine)
        self.index = 0
        self.changes = []
        self.store.listeners.append(self.changes.append)

    def apply(self, *commands):
        """Apply ``commands`` as one batch at the next index; their results."""
        self.index += 1
        return self.store.apply(self.index, list(commands))

    def test_grant_records_the_lease_without_a_revision(self):
        """A grant answers id and TTL and, as in etcd, takes no revision."""
        [granted] = self.apply(LeaseGrantRequest(30, 7))
        self.assertEqual((granted.id, granted.ttl, granted.header.revision), (7, 30, 1))
        self.assertEqual(self.store.leases(), [Lease(7, 30)])
        [again] = self.apply(LeaseGrantRequest(10, 7))
        self.assertIsInstance(again, LeaseExistsError)
        [huge] = self.apply(LeaseGrantRequest(MAX_LEASE_TTL + 1, 8))
        self.assertIsInstance(huge, LeaseTTLTooLargeError)
        self.assertEqual(self.store.leases(), [Lease(7, 30)])

    def test_put_with_an_unknown_lease_is_refused(self):
        """etcd's "requested lease not found" (gRPC 5, HTTP 404), for a put
        alone and inside a txn; nothing changes."""
        [alone] = self.apply(PutRequest(b"k", b"v", lease=99))
        [in_txn] = self.apply(TxnRequest((), (PutRequest(b"a"), PutRequest(b"k", lease=99))))
        for refused in (alone, in_txn):
            self.assertIsInstance(refused, LeaseNotFoundError)
            self.assertEqual((refused.message, refused.grpc_code, refused.http_status),
                             ("etcdserver: requested lease not found", 5, 404))
        self.assertEqual((self.store.revision, self.store.get(b"a")), (1, None))

    def test_attach_detach_follow_puts_and_deletes(self):
        """A put attaches its key to its lease; a put with another lease
        moves it; a put without one or a delete detaches it."""
        self.apply(LeaseGrantRequest(30, 1), LeaseGrantRequest(30, 2))
        self.apply(PutRequest(b"a", lease=1), PutRequest(b"b", lease=1), PutRequest(b"c", lease=1))
        self.assertEqual(self.store.lease_keys(1), [b"a", b"b", b"c"])
        self.apply(PutRequest(b"a", lease=2), PutRequest(b"b"), DeleteRangeRequest(b"c"))
        self.assertEqual((self.store.lease_keys(1), self.store.lease_keys(2)), ([], [b"a"]))
        self.apply(PutRequest(b"a", b"new", ignore_lease=True))
        self.assertEqual(self.store.lease_keys(2), [b"a"])

    def test_revoke_deletes_every_attached_key_in_one_revision(self):
        """Revoke deletes the lease's keys at one new revision (sub-revisions
        in key order) and then the lease; a second revoke is not found."""
        self.apply(LeaseGrantRequest(30, 5), PutRequest(b"z", lease=5), PutRequest(b"m", lease=5), PutRequest(b"free"))
        [revoked] = self.apply(LeaseRevokeRequest(5))
        self.assertEqual((revoked.header.revision, revoked.deleted, self.store.revision), (5, 2, 5))
        events = list(self.store.history(5))
        self.assertEqual([(e.kv.key, e.revision, e.deleted) for e in events],
                         [(b"m", (5, 0), True), (b"z", (5, 1), True)])
        self.assertEqual([kv.key for kv in self.store.range(RangeRequest(b"", b"\0")).kvs], [b"free"])
        self.assertEqual((self.store.lease(5), self.store.lease_keys(5)), (None, []))
        [again] = self.apply(LeaseRevokeRequest(5))
        self.assertIsInstance(again, LeaseNotFoundError)

    def test_revoke_sees_keys_attached_earlier_in_the_same_batch(self):
        """Grant, attach and revoke in one apply batch delete the key."""
        results = self.apply(LeaseGrantRequest(30, 3), PutRequest(b"k", lease=3), LeaseRevokeRequest(3))
        self.assertEqual(results[2].deleted, 1)
        self.assertIsNone(self.store.get(b"k"))

    def test_keepalive_and_checkpoint_record_the_remaining_ttl(self):
        """A checkpoint records remaining TTLs (of known leases only); a
        keepalive answers the TTL and resets the remaining TTL to it."""
        self.apply(LeaseGrantRequest(30, 1), LeaseGrantRequest(60, 2))
        self.apply(LeaseCheckpointRequest(((1, 12), (2, 40), (404, 3))))
        self.assertEqual(self.store.leases(), [Lease(1, 30, 12), Lease(2, 60, 40)])
        [kept] = self.apply(LeaseKeepAliveRequest(1))
        self.assertEqual((kept.id, kept.ttl), (1, 30))
        self.assertEqual(self.store.lease(1), Lease(1, 30, 0))
        [missing] = self.apply(LeaseKeepAliveRequest(404))
        self.assertIsInstance(missing, LeaseNotFoundError)

    def test_listeners_hear_events_with_prev_kvs_and_lease_commands(self):
        """Each apply hands its events (with the previous versions) and the
        lease commands that took effect to the listeners."""
        self.apply(LeaseGrantRequest(30, 4), PutRequest(b"k", b"1", lease=4))
        self.apply(PutRequest(b"k", b"2", lease=4), LeaseKeepAliveRequest(4), LeaseRevokeRequest(4))
        first, second = self.changes
        self.assertEqual([e.kind for e in first.lease_events], ["grant"])
        self.assertEqual((first.previous_revision, first.revision, first.prev_kvs), (1, 2, (None,)))
        self.assertEqual([e.kind for e in second.lease_events], ["keepalive", "revoke"])
        self.assertEqual([(e.kv.mod_revision, e.deleted) for e in second.events], [(3, False), (4, True)])
        self.assertEqual([kv.value for kv in second.prev_kvs], [b"1", b"2"])

    def test_snapshot_round_trip_keeps_leases_and_attachments(self):
        """A snapshot (format 3) carries the leases; restoring it on a
        fresh engine gives the same leases, and attachments from the keys."""
        self.apply(LeaseGrantRequest(30, 1), LeaseGrantRequest(20, 2), PutRequest(b"a", lease=1), PutRequest(b"b", lease=2))
        self.apply(LeaseCheckpointRequest(((2, 9),)))
        header = SnapshotHeader(self.index, 1, self.store.revision, ClusterState(), leases=tuple(self.engine.leases()))
        path = write_snapshot(self.mktemp(), header, self.engine.snapshot_items())
        read_header, items = read_snapshot(path)
        other = self.make_engine()
        self.addCleanup(other.close)
        other.restore(items, read_header.revision, read_header.index, ClusterState(), leases=read_header.leases)
        self.assertEqual(other.leases(), [Lease(1, 30), Lease(2, 20, 9)])
        self.assertEqual((other.lease_keys(1), other.lease_keys(2)), ([b"a"], [b"b"]))
        [revoked] = KeyValueStore(other).apply(99, [LeaseRevokeRequest(1)])
        self.assertEqual(revoked.deleted, 1)


class MemoryEngineLeaseTests(OnMemoryEngine, LeaseStateBehaviour, SynchronousTestCase):
    """Leases on the memory engine."""


class RocksDBEngineLeaseTests(OnRocksDBEngine, LeaseStateBehaviour, SynchronousTestCase):
    """Leases on the RocksDB engine, which also keeps them across a reopen."""

    def test_leases_survive_a_reopen(self):
        """Leases and attachments are in the database, not in memory."""
        path = os.path.join(self.mktemp(), "db")
        engine = RocksDBEngine.open(path)
        KeyValueStore(engine).apply(1, [LeaseGrantRequest(30, 6), PutRequest(b"k", lease=6)])
        engine.close()
        reopened = RocksDBEngine.open(path)
        self.addCleanup(reopened.close)
        self.assertEqual((reopened.leases(), reopened.lease_keys(6)), ([Lease(6, 30)], [b"k"]))
