"""The Lessor: lease expiry decided by the leader's clock, extended on a
leader change, checkpointed across a whole-cluster restart.

Time passes with ``task.Clock``; proposals are applied to the store at once,
as if committed, so each test reads like a timeline.
"""

from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from metastore.kv.messages import LeaseCheckpointRequest, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, PutRequest
from metastore.kv.store import KeyValueStore
from metastore.leases import Lessor
from metastore.storage.engine import Lease
from metastore.storage.memory import MemoryEngine


class Cluster:
    """One replicated store, and the proposals made to it, applied at once."""

    def __init__(self, engine=None) -> None:
        self.store = KeyValueStore(MemoryEngine() if engine is None else engine)
        self.proposed = []
        self.index = 0

    def propose(self, command):
        """Apply ``command`` as the next committed entry."""
        self.proposed.append(command)
        self.index += 1
        return defer.succeed(self.store.apply(self.index, [command])[0])


class QueuedCluster(Cluster):
    """A store whose proposals wait in the log until ``commit()`` applies
    them in order, as a real cluster's commit latency makes them wait."""

    def __init__(self) -> None:
        super().__init__()
        self.pending = []

    def propose(self, command):
        """Append ``command``; its Deferred fires when ``commit`` applies it."""
        self.proposed.append(command)
        d = defer.Deferred()
        self.pending.append((command, d))
        return d

    def commit(self) -> None:
        """Apply every pending entry in log order (and what they propose meanwhile)."""
        for _ in range(100):
            if not self.pending:
                return
            command, d = self.pending.pop(0)
            self.index += 1
            d.callback(self.store.apply(self.index, [command])[0])


class LessorTests(SynchronousTestCase):
    """Expiry happens only on the leader, on its clock, as a replicated revoke."""

    def setUp(self):
        self.clock = task.Clock()
        self.cluster = Cluster()
        self.leading = {"a": True, "b": False}

    def lessor(self, name: str, cluster=None, **kwargs) -> Lessor:
        """A started lessor named ``name``, leading while ``self.leading[name]``."""
        cluster = cluster or self.cluster
        lessor = Lessor(cluster.store, cluster.propose, self.clock, lambda: self.leading[name], check_interval=0.5, **kwargs)
        lessor.startService()
        self.addCleanup(lessor.stopService)
        return lessor

    def revokes(self, cluster=None):
        return [c.id for c in (cluster or self.cluster).proposed if isinstance(c, LeaseRevokeRequest)]

    def test_only_the_leader_expires_a_lease(self):
        """A follower never proposes a revoke; the leader does once the TTL
        has passed on its clock, and the revoke deletes the key."""
        self.leading = {"a": False, "b": True}
        self.lessor("a")
        self.clock.advance(0.5)
        self.lessor("b")
        self.clock.advance(0.5)  # b notices it leads
        self.cluster.propose(LeaseGrantRequest(10, 7))
        self.cluster.propose(PutRequest(b"k", lease=7))
        self.clock.pump([0.5] * 19)
        self.assertEqual(self.revokes(), [])
        self.clock.advance(0.5)
        self.assertEqual(self.revokes(), [7])
        self.assertIsNone(self.cluster.store.get(b"k"))

    def test_keepalive_restarts_the_clock(self):
        """A keepalive applied on the leader counts the whole TTL again."""
        lessor = self.lessor("a")
        self.clock.advance(0.5)
        self.cluster.propose(LeaseGrantRequest(10, 1))
        self.clock.pump([0.5] * 16)  # 8 seconds
        self.cluster.propose(LeaseKeepAliveRequest(1))
        self.clock.pump([0.5] * 18)  # 9 more
        self.assertEqual(self.revokes(), [])
        self.assertEqual(lessor.status(1).ttl, 1)
        self.clock.pump([0.5] * 2)
        self.assertEqual(self.revokes(), [1])

    def test_a_new_leader_extends_every_lease(self):
        """After a leader change the new leader counts each lease's TTL from
        the moment it leads: a lease about to expire under the old leader
        lives on (etcd's Promote)."""
        self.lessor("a")
        b = self.lessor("b")
        self.clock.advance(0.5)
        self.cluster.propose(LeaseGrantRequest(10, 3))
        self.clock.pump([0.5] * 18)  # 9 s: a would revoke at 10 s
        self.leading = {"a": False, "b": True}
        self.clock.advance(0.5)
        self.assertEqual(b.status(3).ttl, 10)
        self.clock.pump([0.5] * 19)
        self.assertEqual(self.revokes(), [])
        self.clock.advance(0.5)
        self.assertEqual(self.revokes(), [3])

    def test_checkpoint_survives_a_whole_cluster_restart(self):
        """The leader checkpoints remaining TTLs; a cluster restarted from
        the same state counts from them, not from the whole TTL."""
        engine = MemoryEngine()
        before = Cluster(engine)
        old = self.lessor("a", before, checkpoint_interval=30)
        self.clock.advance(0.5)
        before.propose(LeaseGrantRequest(100, 9))
        self.clock.pump([0.5] * 60)  # 30 s: a checkpoint is due
        checkpoints = [c for c in before.proposed if isinstance(c, LeaseCheckpointRequest)]
        self.assertEqual(checkpoints, [LeaseCheckpointRequest(((9, 70),))])
        self.assertEqual(engine.lease(9), Lease(9, 100, 70))
        old.stopService()  # every member stops: no deadline survives
        self.clock.advance(1000)
        after = Cluster(engine)
        self.lessor("a", after, checkpoint_interval=10_000)
        self.clock.pump([0.5] * 140)  # 70 s after the restart, minus the first check
        self.assertEqual(self.revokes(after), [])
        self.clock.pump([0.5] * 2)
        self.assertEqual(self.revokes(after), [9])

    def test_a_checkpoint_overtaken_by_a_keepalive_is_corrected(self):
        """A checkpoint the leader computed while a keepalive was in the log
        but not yet applied lands after it, with the old remaining TTL.  The
        leader sees that and proposes the right one at once, so a new
        leader never counts from the stale one: the lease lives the whole
        TTL after the keepalive."""
        cluster = QueuedCluster()
        self.lessor("a", cluster, checkpoint_interval=9)
        self.lessor("b", cluster, checkpoint_interval=1000)
        self.clock.advance(0.5)  # a leads
        cluster.propose(LeaseGrantRequest(10, 5))
        cluster.commit()  # deadline on a: 10.5
        self.clock.pump([0.5] * 17)  # t = 9.0
        cluster.propose(LeaseKeepAliveRequest(5))  # in the log, not yet applied
        self.clock.advance(0.5)  # t = 9.5: a checkpoints 1 s left
        self.assertEqual(cluster.proposed[-1], LeaseCheckpointRequest(((5, 1),)))
        cluster.commit()  # the keepalive (deadline 19.5), then the stale checkpoint, then the correction
        self.assertEqual(cluster.proposed[-1], LeaseCheckpointRequest(((5, 10),)))
        self.assertEqual(cluster.store.lease(5), Lease(5, 10, 10))
        self.leading = {"a": False, "b": True}
        self.clock.pump([0.5] * 19)  # t = 19.0: b leads since 10.0
        cluster.commit()
        self.assertEqual(self.revokes(cluster), [])
        self.clock.pump([0.5] * 2)
        self.assertEqual(self.revokes(cluster), [5])

    def test_revoke_is_retried_until_it_applies(self):
        """A revoke that fails (no quorum) is proposed again later, not lost."""
        failing = []

        def propose(command):
            failing.append(command)
            return defer.fail(RuntimeError("no leader"))

        self.cluster.propose(LeaseGrantRequest(2, 5))
        lessor = Lessor(self.cluster.store, propose, self.clock, lambda: True, check_interval=0.5, revoke_retry=5)
        lessor.startService()
        self.addCleanup(lessor.stopService)
        self.clock.pump([0.5] * 5)
        self.assertEqual([type(c) for c in failing], [LeaseRevokeRequest])
        self.clock.pump([0.5] * 10)
        self.assertEqual(len(failing), 2)
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    def test_status_rounds_down_as_etcd(self):
        """The TTL shown is whole seconds rounded down (etcd: 29 right after
        a grant of 30); checkpoints round up."""
        lessor = self.lessor("a")
        self.clock.advance(0.5)
        self.cluster.propose(LeaseGrantRequest(30, 3))
        self.clock.advance(0.25)
        self.assertEqual(lessor.status(3).ttl, 29)
        self.assertEqual(lessor.remaining_ttl(self.cluster.store.lease(3)), 30)

    def test_a_follower_counts_down_from_what_it_applied(self):
        """A follower's TTL counts down from the grant, keepalive or
        checkpoint it applied; a member that applied none shows the
        checkpointed or whole TTL; a revoke ends it."""
        self.lessor("a")
        follower = self.lessor("b")
        self.clock.advance(0.5)
        self.cluster.propose(LeaseGrantRequest(30, 4))
        self.clock.pump([0.5] * 20)  # 10 s
        self.assertEqual(follower.status(4).ttl, 20)
        self.cluster.propose(LeaseKeepAliveRequest(4))
        self.clock.advance(0.5)
        self.assertEqual(follower.status(4).ttl, 29)
        # A checkpoint of 12 s while "a" leads with 29.5 s left would be
        # corrected by "a" at once (test_a_checkpoint_overtaken_by_a_keepalive_is_corrected):
        # let "a" step down first, as if the checkpoint came from a leader that had 12 s.
        self.leading["a"] = False
        self.clock.advance(0.5)
        self.cluster.propose(LeaseCheckpointRequest(((4, 12),)))
        self.assertEqual(follower.status(4).ttl, 12)
        restarted = Lessor(self.cluster.store, self.cluster.propose, self.clock, lambda: False)
        self.assertEqual(restarted.status(4).ttl, 12)
        self.cluster.propose(LeaseRevokeRequest(4))
        self.assertEqual(follower.status(4).ttl, -1)

    def test_status_of_an_unknown_lease(self):
        """TimeToLive of a lease that does not exist: TTL -1, as etcd answers."""
        lessor = self.lessor("a")
        self.assertEqual((lessor.status(404).ttl, lessor.status(404).granted_ttl), (-1, 0))

    def test_grant_ttl_and_ids(self):
        """A grant gets at least the minimum TTL; generated ids are positive
        63-bit integers."""
        lessor = self.lessor("a", min_ttl=2)
        self.assertEqual((lessor.grant_ttl(1), lessor.grant_ttl(60)), (2, 60))
        ids = {lessor.new_id() for _ in range(100)}
        self.assertTrue(all(0 < i < 2**63 for i in ids))
        self.assertEqual(len(ids), 100)
