"""Membership changes that cannot be applied are applied as no-ops.

``validate_conf_change`` and ``decode_and_validate_conf_change`` decide, as
pure functions of an entry and the membership, whether a conf change can be
applied; ``RawNode.apply_conf_change_entry`` and ``skip_conf_change_entry``
apply a poison entry as a no-op that raft still counts as applied.
"""

from __future__ import annotations

import random

import msgpack
from twisted.trial.unittest import SynchronousTestCase

from metastore.raft import (
    MAX_NODE_ID,
    Config,
    ConfChange,
    ConfChangeRejection,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    ProposalDropped,
    RawNode,
    Snapshot,
    SnapshotMetadata,
    StateType,
    decode_and_validate_conf_change,
    encode_conf_change,
    validate_conf_change,
)
from tests.raft.harness import Cluster

ADD = ConfChangeType.ConfChangeAddNode
ADD_LEARNER = ConfChangeType.ConfChangeAddLearnerNode
REMOVE = ConfChangeType.ConfChangeRemoveNode
THREE = ConfState(voters=(1, 2, 3), learners=(4,))


def raw_conf_change(change_type, node_id, context=b"", version=1) -> bytes:
    """An EntryConfChange payload with any fields, bypassing ConfChange."""
    return msgpack.packb([version, change_type, node_id, context], use_bin_type=True)


class ValidateConfChangeTests(SynchronousTestCase):
    """Each rule of ``validate_conf_change``, against voters 1-3 and learner 4."""

    def assertRejected(self, change: ConfChange, conf_state: ConfState, words: str) -> None:
        rejection = validate_conf_change(change, conf_state)
        self.assertIsInstance(rejection, ConfChangeRejection)
        self.assertIn(words, rejection.reason)

    def test_valid_changes(self) -> None:
        """Adding a new voter or learner, promoting a learner, and removing a
        voter or a learner are valid."""
        for change in (
            ConfChange(ADD, 5),
            ConfChange(ADD, 4),
            ConfChange(ADD_LEARNER, 5),
            ConfChange(REMOVE, 2),
            ConfChange(REMOVE, 4),
            ConfChange(ADD, MAX_NODE_ID, b"http://127.0.0.1:1"),
        ):
            self.assertIsNone(validate_conf_change(change, THREE), change)

    def test_add_existing_voter(self) -> None:
        """Adding a node that is already a voter is refused."""
        self.assertRejected(ConfChange(ADD, 2), THREE, "already a voter")

    def test_add_existing_learner(self) -> None:
        """Adding a learner that is already a learner is refused."""
        self.assertRejected(ConfChange(ADD_LEARNER, 4), THREE, "already a learner")

    def test_demote_voter(self) -> None:
        """Turning a voter into a learner is refused (remove, then add)."""
        self.assertRejected(ConfChange(ADD_LEARNER, 1), THREE, "demoting")

    def test_remove_non_member(self) -> None:
        """Removing a node that is not a member is refused."""
        self.assertRejected(ConfChange(REMOVE, 9), THREE, "not a member")

    def test_remove_last_voter(self) -> None:
        """Removing the last voter is refused; removing a learner beside it is not."""
        alone = ConfState(voters=(1,), learners=(2,))
        self.assertRejected(ConfChange(REMOVE, 1), alone, "last voter")
        self.assertIsNone(validate_conf_change(ConfChange(REMOVE, 2), alone))

    def test_node_id_range(self) -> None:
        """Node ids are uint64 without 0: 0, negatives, 2**64 and non-integers
        are refused."""
        for node_id in (0, -1, MAX_NODE_ID + 1, True, 2.0, "3", None):
            self.assertRejected(ConfChange(ADD, node_id), THREE, "node id")

    def test_unknown_type(self) -> None:
        """A change type outside ConfChangeType is refused."""
        for change_type in (3, -1, 99, "add", None):
            self.assertRejected(ConfChange(change_type, 5), THREE, "unknown conf change type")

    def test_context_must_be_bytes(self) -> None:
        """A context that is not bytes is refused."""
        self.assertRejected(ConfChange(ADD, 5, "http://x"), THREE, "context")


class DecodeAndValidateTests(SynchronousTestCase):
    """``decode_and_validate_conf_change`` is total: a change or a reason."""

    def test_valid_entry(self) -> None:
        """A well-formed, valid entry gives back its change."""
        change = ConfChange(ADD, 5, b"http://127.0.0.1:5")
        self.assertEqual(decode_and_validate_conf_change(encode_conf_change(change), THREE), change)

    def test_malformed_bytes(self) -> None:
        """Undecodable bytes, a wrong shape, another version or mistyped
        fields give a rejection that says so."""
        cases = {
            b"": "malformed",
            b"\xc1": "malformed",
            b"garbage": "malformed",
            encode_conf_change(ConfChange(ADD, 5))[:-1]: "malformed",
            msgpack.packb([1, 0, 5]): "malformed",
            msgpack.packb({"type": 0}): "malformed",
            msgpack.packb(5): "malformed",
            raw_conf_change(0, 5, version=2): "version",
            raw_conf_change(0, 5, version=True): "version",
            raw_conf_change(0, 0): "node id",
            raw_conf_change(0, -7): "node id",
            raw_conf_change(0, -(2 ** 63)): "node id",
            raw_conf_change(0, "5"): "node id",
            raw_conf_change(7, 5): "unknown conf change type",
            raw_conf_change(False, 5): "unknown conf change type",
            raw_conf_change(0, 5, "text"): "context",
        }
        for data, words in cases.items():
            outcome = decode_and_validate_conf_change(data, THREE)
            self.assertIsInstance(outcome, ConfChangeRejection, data)
            self.assertIn(words, outcome.reason, data)

    def test_semantically_invalid_entry(self) -> None:
        """A well-formed change invalid against the membership is rejected."""
        outcome = decode_and_validate_conf_change(encode_conf_change(ConfChange(REMOVE, 8)), THREE)
        self.assertEqual(outcome, ConfChangeRejection("node 8 is not a member"))

    def test_never_raises(self) -> None:
        """Random bytes and mutations of valid entries never raise."""
        rng = random.Random(10)
        valid = encode_conf_change(ConfChange(ADD, 5, b"http://127.0.0.1:5"))
        for _ in range(3000):
            if rng.random() < 0.5:
                data = rng.randbytes(rng.randrange(24))
            else:
                mutated = bytearray(valid)
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
                data = bytes(mutated)
            outcome = decode_and_validate_conf_change(data, THREE)
            self.assertIsInstance(outcome, (ConfChange, ConfChangeRejection))


def propose_raw_conf_entry(node: RawNode, data: bytes) -> None:
    """Put an EntryConfChange with ``data`` in the log as a proposal would,
    bypassing ``propose_conf_change`` (which only encodes ConfChanges)."""
    node.raft.step(
        Message(type=MessageType.MsgProp, entries=(Entry(0, 0, EntryType.EntryConfChange, data),))
    )


class PoisonConfEntryTests(SynchronousTestCase):
    """A committed conf change entry that cannot be applied is applied as a
    no-op on every member, and raft moves on as if it had been applied."""

    def test_poison_entry_is_a_no_op_everywhere(self) -> None:
        """Every member rejects the entry at the same index with the same
        reason, keeps its membership, and applies up to the commit index; the
        next membership change is then accepted and applied."""
        cluster = Cluster()
        cluster.elect(1)
        propose_raw_conf_entry(cluster.nodes[1], b"\x93garbage")
        cluster.stabilize()
        outcomes = {node_id: cluster.conf_outcomes[node_id][-1] for node_id in (1, 2, 3)}
        index, rejection = outcomes[1]
        self.assertIsInstance(rejection, ConfChangeRejection)
        self.assertEqual(set(outcomes.values()), {(index, rejection)})
        for node_id, node in cluster.nodes.items():
            status = node.status()
            self.assertEqual(status.applied, status.commit, node_id)
            self.assertEqual(status.conf_state, ConfState(voters=(1, 2, 3)))
        cluster.add_node(4)
        cluster.change(1, ConfChange(ADD_LEARNER, 4))
        self.assertEqual(cluster.nodes[2].status().conf_state, ConfState(voters=(1, 2, 3), learners=(4,)))

    def test_semantically_invalid_entry_is_a_no_op(self) -> None:
        """Removing the last voter, committed, leaves the membership as it was."""
        cluster = Cluster(ids=(1,))
        cluster.elect(1)
        propose_raw_conf_entry(cluster.nodes[1], encode_conf_change(ConfChange(REMOVE, 1)))
        cluster.stabilize()
        index, outcome = cluster.conf_outcomes[1][-1]
        self.assertEqual(outcome, ConfChangeRejection("node 1 is the last voter"))
        self.assertEqual(cluster.nodes[1].status().conf_state, ConfState(voters=(1,)))
        self.assertEqual(cluster.nodes[1].raft.state, StateType.StateLeader)

    def test_skip_counts_as_applied(self) -> None:
        """A valid change skipped with ``skip_conf_change_entry`` changes no
        membership, and once advanced the next change may be proposed."""
        storage = MemoryStorage()
        node = RawNode(Config(id=1, storage=storage, rng=random.Random(0)))
        node.bootstrap([1])
        conf_states = []

        def cycle() -> None:
            for _ in range(5):
                if not node.has_ready():
                    return
                rd = node.ready()
                storage.append(rd.entries)
                if rd.hard_state is not None:
                    storage.set_hard_state(rd.hard_state)
                for entry in rd.committed_entries:
                    if entry.type == EntryType.EntryConfChange and entry.index == 1:
                        node.apply_conf_change_entry(entry)  # the bootstrap entry
                    elif entry.type == EntryType.EntryConfChange:
                        conf_states.append(node.skip_conf_change_entry(entry))
                node.advance(rd)

        cycle()
        node.campaign()
        cycle()
        node.propose_conf_change(ConfChange(ADD, 2))
        with self.assertRaises(ProposalDropped):
            node.propose_conf_change(ConfChange(ADD, 3))
        cycle()
        self.assertEqual(conf_states, [ConfState(voters=(1,))])
        self.assertEqual(node.status().applied, node.status().commit)
        node.propose_conf_change(ConfChange(ADD, 3))

    def test_entry_must_be_committed_conf_change(self) -> None:
        """Skipping or checking anything but a committed, unapplied conf
        change entry is a driver bug: ValueError."""
        node = RawNode(Config(id=1, storage=MemoryStorage(), rng=random.Random(0)))
        node.bootstrap([1])
        entry = node.ready().entries[0]
        normal = Entry(1, 1, EntryType.EntryNormal, b"")
        beyond = Entry(1, 5, EntryType.EntryConfChange, entry.data)
        for method in (node.skip_conf_change_entry, node.check_conf_change_entry, node.apply_conf_change_entry):
            for bad in (normal, beyond):
                with self.assertRaises(ValueError):
                    method(bad)

    def test_bootstrap_entries_apply_again(self) -> None:
        """The entries bootstrap wrote (and applied) are not rejected when
        the driver applies them from the first Ready."""
        node = RawNode(Config(id=1, storage=MemoryStorage(), rng=random.Random(0)))
        node.bootstrap([1, 2, 3])
        rd = node.ready()
        outcomes = [node.apply_conf_change_entry(entry) for entry in rd.committed_entries]
        self.assertEqual(outcomes, [ConfChange(ADD, 1), ConfChange(ADD, 2), ConfChange(ADD, 3)])
        self.assertEqual(node.status().conf_state, ConfState(voters=(1, 2, 3)))

    def _persisted_poison(self) -> MemoryStorage:
        """A one-voter log: bootstrap, a poison conf entry, a learner added."""
        cluster = Cluster(ids=(1,))
        cluster.elect(1)
        propose_raw_conf_entry(cluster.nodes[1], raw_conf_change(0, 0))
        cluster.stabilize()
        cluster.add_node(2)
        cluster.change(1, ConfChange(ADD_LEARNER, 2))
        return cluster.storages[1]

    def test_unapplied_poison_entry_delays_campaign(self) -> None:
        """A restarted node with a committed, unapplied poison conf entry
        does not campaign until it has applied it (as a no-op)."""
        storage = self._persisted_poison()
        node = RawNode(Config(id=1, storage=storage, rng=random.Random(0), applied=1))
        node.campaign()
        self.assertEqual(node.raft.state, StateType.StateFollower)
        rd = node.ready()
        outcomes = [
            node.apply_conf_change_entry(entry)
            for entry in rd.committed_entries
            if entry.type == EntryType.EntryConfChange
        ]
        self.assertIsInstance(outcomes[0], ConfChangeRejection)
        self.assertEqual(outcomes[1], ConfChange(ADD_LEARNER, 2))
        node.advance(rd)
        node.campaign()
        self.assertEqual(node.raft.state, StateType.StateLeader)

    def test_restart_replays_poison_entry_as_no_op(self) -> None:
        """A node restarted with ``applied`` past a poison entry rebuilds the
        membership by skipping it again, or takes ``applied_conf_state``."""
        storage = self._persisted_poison()
        commit = storage.hard_state.commit
        replayed = RawNode(Config(id=1, storage=storage, rng=random.Random(0), applied=commit))
        self.assertEqual(replayed.status().conf_state, ConfState(voters=(1,), learners=(2,)))
        given = RawNode(
            Config(
                id=1,
                storage=storage,
                rng=random.Random(0),
                applied=commit,
                applied_conf_state=ConfState(voters=(1,)),
            )
        )
        self.assertEqual(given.status().conf_state, ConfState(voters=(1,)))

    def test_restart_does_not_replay_entries_inside_the_snapshot(self) -> None:
        """Entries storage keeps behind its snapshot (a log tail) are already
        in the snapshot's membership; a restart must not apply them again
        (here the application skipped entry 3, which raft would apply)."""
        storage = MemoryStorage()
        storage.append(
            [
                Entry(1, 1, EntryType.EntryConfChange, encode_conf_change(ConfChange(ADD, 1))),
                Entry(1, 2, EntryType.EntryConfChange, encode_conf_change(ConfChange(ADD_LEARNER, 2))),
                Entry(1, 3, EntryType.EntryConfChange, encode_conf_change(ConfChange(REMOVE, 2))),
            ]
        )
        storage.set_hard_state(HardState(term=1, vote=1, commit=3))
        kept = ConfState(voters=(1,), learners=(2,))
        storage.create_snapshot(3, kept, b"")
        storage.compact(1)
        node = RawNode(Config(id=1, storage=storage, rng=random.Random(0), applied=3))
        self.assertEqual(node.status().conf_state, kept)
        self.assertEqual(node.applied_conf_state(), kept)

    def test_entry_judged_against_applied_membership_while_snapshot_pending(self) -> None:
        """A conf change entry handed out before a snapshot arrived is judged
        against the membership as applied, not the snapshot's (raft's own
        runs ahead until the Ready carrying the snapshot is advanced)."""
        storage = MemoryStorage()
        node = RawNode(Config(id=2, storage=storage, rng=random.Random(0)))
        node.bootstrap([1, 2])
        rd = node.ready()
        storage.append(rd.entries)
        for entry in rd.committed_entries:
            node.apply_conf_change_entry(entry)
        node.advance(rd)
        add_learner = Entry(1, 3, EntryType.EntryConfChange, encode_conf_change(ConfChange(ADD_LEARNER, 3)))
        node.step(Message(MessageType.MsgApp, 2, 1, 1, 1, 2, (add_learner,), 3))
        rd = node.ready()
        self.assertEqual(rd.committed_entries, (add_learner,))
        with_learner = ConfState(voters=(1, 2), learners=(3,))
        snapshot = Snapshot(SnapshotMetadata(index=10, term=1, conf_state=with_learner), b"")
        node.step(Message(MessageType.MsgSnap, 2, 1, 1, snapshot=snapshot))
        self.assertEqual(node.apply_conf_change_entry(add_learner), ConfChange(ADD_LEARNER, 3))
        self.assertEqual(node.applied_conf_state(), with_learner)
        storage.append(rd.entries)
        node.advance(rd)
        rd = node.ready()
        self.assertEqual(rd.snapshot, snapshot)
        storage.apply_snapshot(snapshot)
        node.advance(rd)
        self.assertEqual(node.applied_conf_state(), with_learner)
        self.assertEqual(node.status().conf_state, with_learner)

    def test_applied_conf_state_must_be_a_conf_state(self) -> None:
        """Config refuses an applied_conf_state that is not a ConfState."""
        with self.assertRaises(ValueError):
            Config(id=1, storage=MemoryStorage(), rng=random.Random(0), applied_conf_state=(1, 2))
