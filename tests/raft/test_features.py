"""PreVote, CheckQuorum, leader transfer, learners, and the driver-facing API."""

from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from metastore.raft import (
    CompactedError,
    Config,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    InvalidMessage,
    MemoryStorage,
    Message,
    MessageType,
    ProgressState,
    ProposalDropped,
    RaftError,
    RawNode,
    Snapshot,
    SnapshotMetadata,
    SnapshotOutOfDateError,
    StateType,
    UnavailableError,
    decode_conf_change,
    encode_conf_change,
)
from tests.raft.harness import Cluster

M = MessageType


class PreVoteTests(SynchronousTestCase):
    """PreVote (thesis §9.6): a node that cannot win does not bump terms."""

    def test_partitioned_node_does_not_inflate_its_term(self) -> None:
        """An isolated node keeps pre-campaigning without changing its term."""
        cluster = Cluster()
        cluster.elect(1)
        cluster.isolate(3)
        term = cluster.nodes[3].raft.term
        for _ in range(100):
            cluster.tick(3)
            cluster.stabilize()
        self.assertEqual(cluster.nodes[3].raft.term, term)
        self.assertEqual(cluster.state(3), StateType.StatePreCandidate)

    def test_rejoining_node_does_not_disrupt_leader(self) -> None:
        """When the partition heals the leader keeps leading in its term."""
        cluster = Cluster()
        cluster.elect(1)
        term = cluster.nodes[1].raft.term
        cluster.isolate(3)
        for _ in range(100):
            cluster.tick(3)
            cluster.stabilize()
        cluster.heal()
        cluster.tick_all(5)
        self.assertEqual(cluster.leader(), 1)
        self.assertEqual(cluster.nodes[1].raft.term, term)
        self.assertEqual(cluster.state(3), StateType.StateFollower)

    def test_without_prevote_the_term_grows(self) -> None:
        """Contrast: without PreVote an isolated node's term keeps growing."""
        cluster = Cluster(pre_vote=False)
        cluster.elect(1)
        cluster.isolate(3)
        term = cluster.nodes[3].raft.term
        for _ in range(100):
            cluster.tick(3)
            cluster.stabilize()
        self.assertGreater(cluster.nodes[3].raft.term, term + 2)


class CheckQuorumTests(SynchronousTestCase):
    """CheckQuorum (thesis §6.2): leaders step down without a quorum."""

    def test_isolated_leader_steps_down(self) -> None:
        """A leader that hears from no quorum for an election timeout becomes
        a follower; meanwhile the majority elects a new leader."""
        cluster = Cluster()
        cluster.elect(1)
        cluster.isolate(1)
        cluster.tick_all(25)
        self.assertEqual(cluster.state(1), StateType.StateFollower)
        self.assertIn(cluster.leader(), (2, 3))

    def test_leader_with_quorum_stays(self) -> None:
        """A leader that keeps hearing from a majority keeps leading."""
        cluster = Cluster()
        cluster.elect(1)
        cluster.isolate(3)
        cluster.tick_all(50)
        self.assertEqual(cluster.leader(), 1)

    def test_vote_ignored_within_lease(self) -> None:
        """A follower that heard from the leader within the election timeout
        ignores a (non-transfer) vote request of a higher term."""
        cluster = Cluster(pre_vote=False)
        cluster.elect(1)
        node = cluster.nodes[2]
        node.step(Message(M.MsgVote, to=2, from_=3, term=9, index=99, log_term=9))
        self.assertEqual(node.raft.term, 2)
        self.assertEqual(cluster.outbox(2), [])


class TransferTests(SynchronousTestCase):
    """Leadership transfer (thesis §3.10)."""

    def test_transfer_to_up_to_date_follower(self) -> None:
        """The target receives TimeoutNow at once and wins without waiting for
        an election timeout (its vote request forces past the lease)."""
        cluster = Cluster()
        cluster.elect(1)
        cluster.nodes[1].transfer_leader(2)
        cluster.stabilize()
        self.assertEqual(cluster.leader(), 2)
        self.assertEqual(cluster.state(1), StateType.StateFollower)

    def test_transfer_catches_up_lagging_target_first(self) -> None:
        """A lagging target is first sent the missing entries; TimeoutNow
        follows once it has matched the leader's last index."""
        cluster = Cluster()
        cluster.elect(1)
        cluster.isolate(3)
        for index in range(5):
            cluster.propose(1, b"%d" % index)
        cluster.nodes[1].transfer_leader(3)
        with self.assertRaises(ProposalDropped) as raised:
            cluster.nodes[1].propose(b"during")
        self.assertIn("transfer", raised.exception.reason)
        cluster.heal()
        cluster.stabilize()
        self.assertEqual(cluster.leader(), 3)
        self.assertEqual(cluster.applied_data(3)[:5], [b"0", b"1", b"2", b"3", b"4"])

    def test_transfer_forwarded_from_follower(self) -> None:
        """A transfer request made on a follower is forwarded to the leader."""
        cluster = Cluster()
        cluster.elect(1)
        cluster.nodes[2].transfer_leader(3)
        cluster.stabilize()
        self.assertEqual(cluster.leader(), 3)

    def test_unreachable_target_transfer_is_aborted(self) -> None:
        """A transfer that does not finish within an election timeout is
        abandoned and proposals are accepted again."""
        cluster = Cluster()
        cluster.elect(1)
        cluster.isolate(3)
        cluster.nodes[1].transfer_leader(3)
        with self.assertRaises(ProposalDropped):
            cluster.nodes[1].propose(b"x")
        for _ in range(20):
            cluster.tick(1)
            cluster.stabilize()
        self.assertEqual(cluster.leader(), 1)
        cluster.propose(1, b"x")
        self.assertEqual(cluster.applied_data(2), [b"x"])

    def test_transfer_to_learner_is_ignored(self) -> None:
        """A learner cannot become leader, so a transfer to one is ignored."""
        cluster = Cluster(ids=(1, 2))
        cluster.elect(1)
        cluster.add_node(3)
        cluster.change(1, ConfChange(ConfChangeType.ConfChangeAddLearnerNode, 3))
        cluster.nodes[1].transfer_leader(3)
        cluster.stabilize()
        self.assertEqual(cluster.leader(), 1)
        cluster.propose(1, b"ok")


class DriverContractTests(SynchronousTestCase):
    """The RawNode API as the driver uses it."""

    def test_messages_to_self_never_appear(self) -> None:
        """No Ready ever carries a message addressed to its own node."""
        cluster = Cluster(ids=(1, 2, 3, 4, 5), seed=3)
        cluster.tick_all(40)
        cluster.propose(cluster.leader(), b"x")
        cluster.nodes[2].read_index(b"r")
        cluster.stabilize()
        self.assertTrue(cluster.sent)
        self.assertEqual([m for m in cluster.sent if m.to == m.from_], [])

    def test_status_reports_leader_progress(self) -> None:
        """status() gives term, commit, applied, role and per-peer progress."""
        cluster = Cluster()
        cluster.elect(1)
        cluster.propose(1, b"x")
        status = cluster.nodes[1].status()
        self.assertEqual((status.id, status.lead, status.raft_state), (1, 1, StateType.StateLeader))
        self.assertEqual((status.commit, status.applied), (5, 5))
        self.assertEqual(status.progress[2].match, 5)
        self.assertEqual(status.progress[2].state, ProgressState.StateReplicate)
        self.assertEqual(cluster.nodes[2].status().progress, {})

    def test_report_unreachable_sends_follower_to_probe(self) -> None:
        """report_unreachable stops optimistic streaming to that follower."""
        cluster = Cluster()
        cluster.elect(1)
        cluster.nodes[1].report_unreachable(2)
        self.assertEqual(cluster.nodes[1].status().progress[2].state, ProgressState.StateProbe)

    def test_local_message_types_refused_from_network(self) -> None:
        """step() refuses message types that only the node itself may create."""
        cluster = Cluster()
        with self.assertRaises(InvalidMessage):
            cluster.nodes[1].step(Message(M.MsgHup, from_=2))
        with self.assertRaises(RaftError):
            cluster.nodes[1].step(Message(M.MsgApp, from_=0, term=5))

    def test_config_validation(self) -> None:
        """Nonsense configuration raises ValueError."""
        storage = MemoryStorage()
        rng = random.Random(1)
        for bad in (
            dict(id=0),
            dict(id=1, election_tick=1, heartbeat_tick=1),
            dict(id=1, heartbeat_tick=0),
            dict(id=1, max_inflight_msgs=0),
            dict(id=1, max_size_per_msg=0),
            dict(id=1, applied=-1),
        ):
            with self.assertRaises(ValueError):
                Config(storage=storage, rng=rng, **bad)
        with self.assertRaises(ValueError):
            Config(id=1, storage=storage, rng=object())

    def test_applied_beyond_commit_is_refused(self) -> None:
        """Restarting with an applied index past the persisted commit fails."""
        with self.assertRaises(ValueError):
            RawNode(Config(id=1, storage=MemoryStorage(), rng=random.Random(0), applied=5))

    def test_single_member_from_conf_state_in_storage(self) -> None:
        """A one-member cluster may also be seeded with an index-0 snapshot
        holding ConfState(voters=(1,)); it elects itself and commits."""
        storage = MemoryStorage()
        storage.apply_snapshot(Snapshot(metadata=SnapshotMetadata(conf_state=ConfState(voters=(1,)))))
        node = RawNode(Config(id=1, storage=storage, rng=random.Random(0)))
        for _ in range(20):
            node.tick()
        self.assertEqual(node.raft.state, StateType.StateLeader)
        node.propose(b"solo")
        committed = []
        for _ in range(5):
            if not node.has_ready():
                continue
            rd = node.ready()
            storage.append(rd.entries)
            if rd.hard_state:
                storage.set_hard_state(rd.hard_state)
            committed.extend(rd.committed_entries)
            node.advance(rd)
        self.assertEqual([e.data for e in committed], [b"", b"solo"])

    def test_restart_reapplies_committed_entries(self) -> None:
        """Restart from storage with applied = snapshot index: the committed
        log comes back as committed entries, and the node rejoins."""
        cluster = Cluster()
        cluster.elect(1)
        cluster.propose(1, b"a")
        cluster.restart(2)
        cluster.stabilize()
        self.assertEqual(cluster.applied_data(2), [b"a"])
        self.assertEqual(cluster.nodes[2].status().conf_state.voters, (1, 2, 3))
        cluster.propose(1, b"b")
        self.assertEqual(cluster.applied_data(2), [b"a", b"b"])

    def test_restart_with_applied_beyond_snapshot_restores_membership(self) -> None:
        """A driver whose state machine is durable past the snapshot restarts
        with applied > snapshot index; the membership changes in between are
        not handed out again, so Raft replays them itself."""
        cluster = Cluster()
        cluster.elect(1)
        cluster.add_node(4)
        cluster.change(1, ConfChange(ConfChangeType.ConfChangeAddLearnerNode, 4))
        cluster.propose(1, b"x")
        storage = cluster.storages[2]
        applied = cluster.nodes[2].raft.log.applied
        node = cluster.add_node(2, storage, applied)
        self.assertEqual(node.status().conf_state, ConfState(voters=(1, 2, 3), learners=(4,)))
        self.assertFalse(node.has_ready())

    def test_restarted_node_does_not_campaign_before_applying_membership(self) -> None:
        """A restarted node with committed but unapplied membership entries
        does not campaign (its idea of the membership may be stale)."""
        storage = MemoryStorage()
        node = RawNode(Config(id=1, storage=storage, rng=random.Random(0)))
        node.bootstrap([1])
        rd = node.ready()
        storage.append(rd.entries)
        storage.set_hard_state(rd.hard_state)
        restarted = RawNode(Config(id=1, storage=storage, rng=random.Random(0)))
        self.assertEqual(restarted.status().conf_state.voters, ())
        restarted.campaign()
        self.assertEqual(restarted.raft.state, StateType.StateFollower)
        rd = restarted.ready()
        for entry in rd.committed_entries:
            restarted.apply_conf_change(decode_conf_change(entry.data))
        restarted.advance(rd)
        restarted.campaign()
        self.assertEqual(restarted.raft.state, StateType.StateLeader)

    def test_joining_member_learns_membership_from_snapshot(self) -> None:
        """A member added after compaction gets a snapshot carrying the
        membership, then the log after it."""
        cluster = Cluster()
        cluster.elect(1)
        cluster.propose(1, b"a")
        storage = cluster.storages[1]
        applied = cluster.nodes[1].raft.log.applied
        storage.create_snapshot(applied, cluster.nodes[1].status().conf_state, b"snap")
        storage.compact(applied)
        cluster.add_node(4)
        cluster.change(1, ConfChange(ConfChangeType.ConfChangeAddNode, 4))
        cluster.nodes[1].report_snapshot(4, ok=True)
        cluster.tick_all(3)
        cluster.propose(1, b"b")
        self.assertEqual(cluster.storages[4].snapshot().data, b"snap")
        self.assertEqual(cluster.nodes[4].status().conf_state.voters, (1, 2, 3, 4))
        self.assertEqual(cluster.applied_data(4), [b"b"])

    def test_non_member_cannot_propose(self) -> None:
        """A node outside the membership refuses proposals."""
        node = RawNode(Config(id=9, storage=MemoryStorage(), rng=random.Random(0)))
        with self.assertRaises(ProposalDropped) as raised:
            node.propose(b"x")
        self.assertIn("not a member", raised.exception.reason)

    def test_ready_must_be_advanced_before_the_next(self) -> None:
        """One Ready at a time: a second ready() before advance() is a bug."""
        cluster = Cluster()
        cluster.nodes[1].campaign()
        cluster.nodes[1].ready()
        with self.assertRaises(AssertionError):
            cluster.nodes[1].ready()

    def test_work_during_outstanding_ready_lands_in_next(self) -> None:
        """Proposals made while a Ready is being persisted come in the next
        Ready, and the first advance() does not mark them durable."""
        cluster = Cluster(ids=(1,))
        cluster.elect(1)
        node = cluster.nodes[1]
        node.propose(b"a")
        first = node.ready()
        node.propose(b"b")
        cluster.persist(1, first)
        node.advance(first)
        second = node.ready()
        self.assertEqual([e.data for e in second.entries], [b"b"])
        self.assertEqual([e.data for e in second.committed_entries], [b"a"])


class StorageAndCodecTests(SynchronousTestCase):
    """MemoryStorage and the conf change codec."""

    def _storage(self) -> MemoryStorage:
        storage = MemoryStorage()
        storage.append([Entry(1, index, data=b"%d" % index) for index in range(1, 11)])
        return storage

    def test_typed_errors(self) -> None:
        """Reading compacted or missing entries raises the typed errors."""
        storage = self._storage()
        storage.compact(5)
        self.assertEqual(storage.first_index(), 6)
        self.assertEqual(storage.term(5), 1)
        with self.assertRaises(CompactedError):
            storage.entries(5, 7)
        with self.assertRaises(CompactedError):
            storage.term(4)
        with self.assertRaises(UnavailableError):
            storage.term(11)
        with self.assertRaises(UnavailableError):
            storage.entries(6, 12)

    def test_entries_limited_by_size_but_never_empty(self) -> None:
        """max_size bounds the bytes returned, always at least one entry."""
        storage = self._storage()
        self.assertEqual(len(storage.entries(1, 11, max_size=1)), 1)
        self.assertEqual(len(storage.entries(1, 11, max_size=40)), 2)

    def test_append_overwrites_conflicts(self) -> None:
        """Appending at an existing index replaces that entry and the rest."""
        storage = self._storage()
        storage.append([Entry(2, 4, data=b"new")])
        self.assertEqual(storage.last_index(), 4)
        self.assertEqual(storage.entries(4, 5)[0].data, b"new")
        with self.assertRaises(ValueError):
            storage.append([Entry(2, 9)])

    def test_snapshots(self) -> None:
        """create_snapshot records metadata; older snapshots are refused."""
        storage = self._storage()
        snapshot = storage.create_snapshot(8, ConfState(voters=(1,)), b"d")
        self.assertEqual((snapshot.metadata.index, snapshot.metadata.term), (8, 1))
        with self.assertRaises(SnapshotOutOfDateError):
            storage.create_snapshot(7, ConfState(), b"")
        storage.apply_snapshot(Snapshot(SnapshotMetadata(index=20, term=3, conf_state=ConfState(voters=(1,)))))
        self.assertEqual((storage.first_index(), storage.last_index()), (21, 20))

    def test_conf_change_round_trip(self) -> None:
        """encode/decode_conf_change round-trip; garbage raises ValueError."""
        change = ConfChange(ConfChangeType.ConfChangeAddLearnerNode, 7, b"http://x")
        self.assertEqual(decode_conf_change(encode_conf_change(change)), change)
        for garbage in (b"", b"\x93\x01\x02\x03", b"\xc1"):
            with self.assertRaises(ValueError):
                decode_conf_change(garbage)

    def test_bootstrap_entries_are_conf_changes(self) -> None:
        """bootstrap() writes committed AddNode entries at term 1."""
        node = RawNode(Config(id=1, storage=MemoryStorage(), rng=random.Random(0)))
        node.bootstrap([1, 2])
        rd = node.ready()
        self.assertEqual([(e.term, e.index, e.type) for e in rd.entries],
                         [(1, 1, EntryType.EntryConfChange), (1, 2, EntryType.EntryConfChange)])
        self.assertEqual(rd.committed_entries, rd.entries)
        self.assertEqual(rd.hard_state.commit, 2)
        with self.assertRaises(ValueError):
            node.bootstrap([1])
