"""Live keys and lease totals followed from applies: metastore.metrics.keyspace."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from metastore.kv.messages import (
    DeleteRangeRequest, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, PutRequest,
)
from metastore.kv.store import KeyValueStore
from metastore.metrics.keyspace import KeyspaceCounts
from metastore.storage.memory import MemoryEngine


class KeyspaceCountsTests(SynchronousTestCase):
    """The counts match the store after every kind of change."""

    def setUp(self) -> None:
        self.store = KeyValueStore(MemoryEngine())
        self.index = 0

    def apply(self, *commands) -> None:
        self.index += 1
        self.store.apply(self.index, list(commands))

    def test_keys_counted_at_first_then_followed(self) -> None:
        self.apply(PutRequest(b"a", b"1"), PutRequest(b"b", b"1"))
        counts = KeyspaceCounts(self.store)
        self.assertEqual(counts.keys(), 2)
        self.apply(PutRequest(b"a", b"2"), PutRequest(b"c", b"1"))  # an update and a create
        self.assertEqual(counts.keys(), 3)
        self.apply(DeleteRangeRequest(b"a", b"c"))  # deletes a and b
        self.assertEqual(counts.keys(), 1)
        self.apply(DeleteRangeRequest(b"zz"))  # nothing there
        self.apply(PutRequest(b"a", b"again"))  # re-created: version 1 again
        self.assertEqual(counts.keys(), 2)
        self.assertEqual(counts.keys(), self.store.engine.count(b"\0", b"\0"))

    def test_a_state_replaced_under_it_is_recounted(self) -> None:
        counts = KeyspaceCounts(self.store)
        self.assertEqual(counts.keys(), 0)
        other = KeyValueStore(MemoryEngine())
        other.apply(1, [PutRequest(b"x", b"1"), PutRequest(b"y", b"1")])
        self.store.engine.restore(other.engine.snapshot_items(), other.engine.revision, 1, None)
        self.assertEqual(counts.keys(), 2)

    def test_lease_totals(self) -> None:
        counts = KeyspaceCounts(self.store)
        self.apply(LeaseGrantRequest(60, 7), LeaseGrantRequest(60, 8))
        self.apply(PutRequest(b"leased", b"v", lease=7))
        self.apply(LeaseKeepAliveRequest(7), LeaseKeepAliveRequest(7), LeaseKeepAliveRequest(99))
        self.apply(LeaseRevokeRequest(7))
        self.assertEqual((counts.leases_granted, counts.leases_renewed, counts.leases_revoked), (2, 2, 1))
        self.assertEqual(counts.keys(), 0)  # the revoke deleted the leased key
