"""Tests that restate the Raft paper, section by section.

Each test's docstring cites the sentence (or rule) of "In Search of an
Understandable Consensus Algorithm" (Ongaro & Ousterhout) it checks; §-numbers
refer to that paper, "thesis" to Ongaro's dissertation.
"""

from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from metastore.raft import (
    Config,
    ConfChange,
    ConfChangeType,
    Entry,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    ProposalDropped,
    RawNode,
    StateType,
)
from tests.raft.harness import Cluster

M = MessageType


def of_type(messages, kind):
    """The messages of one type."""
    return [m for m in messages if m.type == kind]


class ElectionTests(SynchronousTestCase):
    """§5.2 Leader election."""

    def test_follower_starts_election_after_timeout(self) -> None:
        """§5.2: "If a follower receives no communication over a period of time
        called the election timeout, then it ... begins an election": it
        increments its term, votes for itself and asks every other server."""
        cluster = Cluster(pre_vote=False)
        cluster.tick(1, 20)
        raft = cluster.nodes[1].raft
        self.assertEqual(raft.state, StateType.StateCandidate)
        self.assertEqual((raft.term, raft.vote), (2, 1))
        votes = of_type(cluster.outbox(1), M.MsgVote)
        self.assertEqual(sorted(m.to for m in votes), [2, 3])
        self.assertTrue(all(m.term == 2 for m in votes))

    def test_candidate_wins_with_majority(self) -> None:
        """§5.2: "A candidate wins an election if it receives votes from a
        majority of the servers in the full cluster for the same term"; it then
        sends heartbeats (appends) to establish its authority."""
        cluster = Cluster(ids=(1, 2, 3, 4, 5), pre_vote=False)
        cluster.cut(1, 4)
        cluster.cut(1, 5)
        cluster.elect(1)
        self.assertEqual(cluster.state(1), StateType.StateLeader)
        self.assertEqual(cluster.nodes[2].raft.lead, 1)

    def test_candidate_without_majority_does_not_lead(self) -> None:
        """§5.2: with only a minority of votes a candidate stays a candidate."""
        cluster = Cluster(ids=(1, 2, 3, 4, 5), pre_vote=False)
        cluster.cut(1, 3)
        cluster.cut(1, 4)
        cluster.cut(1, 5)
        cluster.elect(1)
        self.assertEqual(cluster.state(1), StateType.StateCandidate)

    def test_votes_at_most_once_per_term(self) -> None:
        """§5.2: "Each server will vote for at most one candidate in a given
        term, on a first-come-first-served basis"."""
        cluster = Cluster(pre_vote=False, check_quorum=False)
        node = cluster.nodes[3]
        node.step(Message(M.MsgVote, to=3, from_=1, term=5, index=3, log_term=1))
        node.step(Message(M.MsgVote, to=3, from_=2, term=5, index=3, log_term=1))
        responses = of_type(cluster.outbox(3), M.MsgVoteResp)
        self.assertEqual([(m.to, m.reject) for m in responses], [(1, False), (2, True)])
        self.assertEqual(node.raft.vote, 1)

    def test_candidate_steps_down_for_leader_of_same_term(self) -> None:
        """§5.2: "If the leader's term ... is at least as large as the
        candidate's current term, then the candidate ... returns to follower
        state"."""
        cluster = Cluster(pre_vote=False)
        cluster.cut(1, 2)
        cluster.cut(1, 3)
        cluster.elect(1)
        term = cluster.nodes[1].raft.term
        cluster.nodes[1].step(Message(M.MsgApp, to=1, from_=2, term=term, index=3, log_term=1))
        self.assertEqual(cluster.state(1), StateType.StateFollower)
        self.assertEqual(cluster.nodes[1].raft.lead, 2)

    def test_rejected_vote_request_does_not_restart_timer(self) -> None:
        """§5.2: a follower restarts its election timer only on hearing from
        the leader or granting a vote; a newer term from a candidate whose
        log is stale (and so is refused) does not hold it back, otherwise
        such candidates could keep up-to-date nodes from ever campaigning."""
        cluster = Cluster(pre_vote=False, check_quorum=False)
        cluster.elect(1)
        cluster.propose(1, b"x")
        node = cluster.nodes[2]
        cluster.tick(2, 5)
        node.step(Message(M.MsgVote, to=2, from_=3, term=9, index=3, log_term=1))
        self.assertTrue(of_type(cluster.outbox(2), M.MsgVoteResp)[0].reject)
        self.assertEqual((node.raft.term, node.raft.election_elapsed), (9, 5))
        node.step(Message(M.MsgVote, to=2, from_=3, term=10, index=9, log_term=9))
        self.assertFalse(of_type(cluster.outbox(2), M.MsgVoteResp)[0].reject)
        self.assertEqual(node.raft.election_elapsed, 0)

    def test_election_timeout_is_randomized(self) -> None:
        """§5.2: "election timeouts are chosen randomly from a fixed interval";
        here [election_tick, 2 * election_tick), drawn from the injected rng."""
        timeouts = set()
        for seed in range(50):
            node = RawNode(Config(id=1, storage=MemoryStorage(), rng=random.Random(seed)))
            node.bootstrap([1, 2, 3])
            timeouts.add(node.raft.randomized_election_timeout)
        self.assertTrue(timeouts <= set(range(10, 20)))
        self.assertGreater(len(timeouts), 5)

    def test_same_seed_same_behaviour(self) -> None:
        """Determinism: the same rng seed and inputs give the same messages."""
        runs = []
        for _ in range(2):
            cluster = Cluster(seed=7)
            cluster.tick_all(40)
            runs.append([(m.type, m.to, m.from_, m.term) for m in cluster.sent])
        self.assertEqual(runs[0], runs[1])

    def test_vote_is_persisted_before_it_is_granted(self) -> None:
        """§5.2 / Figure 2 ("persistent state ... updated on stable storage
        before responding to RPCs"): the Ready holding a vote grant also holds
        the hard state with that vote, and must be synced."""
        cluster = Cluster(pre_vote=False)
        node = cluster.nodes[2]
        node.step(Message(M.MsgVote, to=2, from_=1, term=2, index=3, log_term=1))
        rd = node.ready()
        self.assertEqual(of_type(rd.messages, M.MsgVoteResp)[0].reject, False)
        self.assertEqual(rd.hard_state, HardState(term=2, vote=1, commit=3))
        self.assertTrue(rd.must_sync)

    def test_restart_keeps_term_and_vote(self) -> None:
        """§5.2 / Figure 2: currentTerm and votedFor survive a crash, so a
        restarted node cannot vote twice in one term."""
        cluster = Cluster(pre_vote=False, check_quorum=False)
        cluster.nodes[3].step(Message(M.MsgVote, to=3, from_=1, term=5, index=3, log_term=1))
        cluster.outbox(3)
        node = cluster.restart(3)
        self.assertEqual((node.raft.term, node.raft.vote), (5, 1))
        node.step(Message(M.MsgVote, to=3, from_=2, term=5, index=3, log_term=1))
        self.assertTrue(of_type(cluster.outbox(3), M.MsgVoteResp)[0].reject)


class ReplicationTests(SynchronousTestCase):
    """§5.3 Log replication."""

    def test_leader_replicates_and_commits(self) -> None:
        """§5.3: the leader appends the command, replicates it, and once it is
        safely replicated applies it; followers apply it too."""
        cluster = Cluster()
        cluster.elect(1)
        cluster.propose(1, b"a")
        cluster.propose(1, b"b")
        for node_id in (1, 2, 3):
            self.assertEqual(cluster.applied_data(node_id), [b"a", b"b"])

    def test_follower_rejects_append_without_matching_previous_entry(self) -> None:
        """§5.3: "If the follower does not find an entry in its log with the
        same index and term, then it refuses the new entries"."""
        cluster = Cluster()
        node = cluster.nodes[2]
        node.step(Message(M.MsgApp, to=2, from_=1, term=2, index=7, log_term=2,
                          entries=(Entry(2, 8, data=b"x"),)))
        response = of_type(cluster.outbox(2), M.MsgAppResp)[0]
        self.assertTrue(response.reject)
        self.assertEqual(response.reject_hint, 3)
        self.assertEqual(node.raft.log.last_index(), 3)

    def test_follower_overwrites_conflicting_entries(self) -> None:
        """§5.3: "If an existing entry conflicts with a new one (same index but
        different terms), delete the existing entry and all that follow it"."""
        cluster = Cluster(check_quorum=False)
        node = cluster.nodes[2]
        node.step(Message(M.MsgApp, to=2, from_=1, term=2, index=3, log_term=1,
                          entries=(Entry(2, 4, data=b"a"), Entry(2, 5, data=b"b"))))
        cluster.outbox(2)
        node.step(Message(M.MsgApp, to=2, from_=3, term=3, index=3, log_term=1,
                          entries=(Entry(3, 4, data=b"c"),)))
        cluster.outbox(2)
        log = node.raft.log
        self.assertEqual(log.last_index(), 4)
        self.assertEqual(log.slice(4, 5)[0].data, b"c")
        self.assertEqual(cluster.storages[2].last_index(), 4)

    def test_leader_backs_up_over_whole_terms(self) -> None:
        """§5.3 (optimization): "the follower can include the term of the
        conflicting entry and the first index it stores for that term", so a
        long divergent tail costs a few round trips, not one per entry."""
        cluster = Cluster(check_quorum=False, pre_vote=False)
        cluster.elect(1)
        cluster.isolate(1)
        for index in range(30):
            cluster.nodes[1].propose(b"stale-%d" % index)
        cluster.stabilize()
        cluster.heal()
        cluster.isolate(1)
        cluster.cut_links.discard((2, 3))
        cluster.cut_links.discard((3, 2))
        cluster.elect(2)
        for index in range(30):
            cluster.nodes[2].propose(b"new-%d" % index)
        cluster.stabilize()
        cluster.heal()
        cluster.sent.clear()
        cluster.tick(2, 1)
        cluster.stabilize()
        rejections = [m for m in cluster.sent if m.type == M.MsgAppResp and m.reject and m.from_ == 1]
        self.assertLessEqual(len(rejections), 2)
        self.assertEqual(cluster.applied_data(1), cluster.applied_data(2))
        self.assertEqual(len(cluster.applied_data(1)), 30)

    def test_heartbeat_carries_commit(self) -> None:
        """§5.3: the leader's commit index is included in future
        AppendEntries, including heartbeats, so followers learn it."""
        cluster = Cluster()
        cluster.elect(1)
        cluster.dropped_types.add(M.MsgApp)
        # Followers already hold the entry; only the commit news was lost.
        cluster.nodes[1].propose(b"x")
        cluster.dropped_types.clear()
        leader_msgs = cluster.outbox(1)
        for message in leader_msgs:
            cluster.deliver(message)
        for node_id in (2, 3):
            cluster.send(cluster.outbox(node_id))
        while cluster.queue:
            cluster.deliver(cluster.queue.pop(0))
        cluster.outbox(1)
        self.assertEqual(cluster.nodes[2].raft.log.committed, 4)
        cluster.tick(1, 1)
        heartbeats = of_type(cluster.outbox(1), M.MsgHeartbeat)
        self.assertTrue(all(m.commit == 5 for m in heartbeats))
        for message in heartbeats:
            cluster.deliver(message)
        self.assertEqual(cluster.nodes[2].raft.log.committed, 5)

    def test_inflight_window_bounds_unacknowledged_appends(self) -> None:
        """Flow control: a replicating follower has at most max_inflight_msgs
        unacknowledged appends."""
        cluster = Cluster(max_inflight_msgs=2)
        cluster.elect(1)
        cluster.dropped_types.add(M.MsgAppResp)
        cluster.sent.clear()
        for index in range(5):
            cluster.nodes[1].propose(b"%d" % index)
            appends = of_type(cluster.outbox(1), M.MsgApp)
            cluster.send(appends)
        to_two = [m for m in cluster.sent if m.type == M.MsgApp and m.to == 2 and m.entries]
        self.assertEqual(len(to_two), 2)

    def test_max_size_per_message(self) -> None:
        """Flow control: an append carries at most max_size_per_msg bytes of
        entries (but always at least one entry)."""
        cluster = Cluster(max_size_per_msg=1000)
        cluster.elect(1)
        cluster.sent.clear()
        for _ in range(10):
            cluster.nodes[1].propose(b"x" * 400)
        cluster.stabilize()
        appends = [m for m in cluster.sent if m.type == M.MsgApp and m.entries]
        self.assertTrue(all(len(m.entries) <= 2 for m in appends))
        self.assertEqual(len(cluster.applied_data(2)), 10)

    def test_proposal_on_follower_is_forwarded(self) -> None:
        """Proposals on a follower go to the leader as MsgProp and commit."""
        cluster = Cluster()
        cluster.elect(1)
        cluster.nodes[2].propose(b"via-follower")
        forwarded = of_type(cluster.outbox(2), M.MsgProp)
        self.assertEqual([m.to for m in forwarded], [1])
        cluster.send(forwarded)
        cluster.stabilize()
        self.assertEqual(cluster.applied_data(3), [b"via-follower"])

    def test_proposal_without_leader_is_refused(self) -> None:
        """With no known leader a proposal raises ProposalDropped."""
        cluster = Cluster()
        with self.assertRaises(ProposalDropped) as raised:
            cluster.nodes[1].propose(b"x")
        self.assertIn("no leader", raised.exception.reason)


class SafetyTests(SynchronousTestCase):
    """§5.4 Safety."""

    def test_voter_refuses_candidate_with_older_log(self) -> None:
        """§5.4.1: "the voter denies its vote if its own log is more up-to-date
        than that of the candidate"."""
        cluster = Cluster(pre_vote=False, check_quorum=False)
        cluster.elect(1)
        cluster.propose(1, b"x")
        node = cluster.nodes[2]
        node.step(Message(M.MsgVote, to=2, from_=3, term=9, index=4, log_term=2))
        response = of_type(cluster.outbox(2), M.MsgVoteResp)[0]
        self.assertTrue(response.reject)

    def _figure_8_until_c(self):
        """Figure 8 (a)-(c): returns the cluster with S1 leading term 4.

        Five bootstrap entries and the term-2 no-op occupy indexes 1-6, so
        the figure's index 2 is index 7 here.
        """
        cluster = Cluster(ids=(1, 2, 3, 4, 5), pre_vote=False, check_quorum=False)
        cluster.elect(1)
        # (a) S1 leads term 2 and replicates index 7 to S2 only.
        cluster.isolate(1)
        cluster.cut_links -= {(1, 2), (2, 1)}
        cluster.nodes[1].propose(b"term2")
        cluster.stabilize()
        # (b) S5 is elected for term 3 by S3, S4; its entry reaches nobody.
        cluster.heal()
        cluster.restart(1)
        cluster.isolate(1)
        cluster.isolate(2)
        cluster.dropped_types.add(M.MsgApp)
        cluster.elect(5)
        self.assertEqual(cluster.state(5), StateType.StateLeader)
        self.assertEqual(cluster.nodes[5].raft.log.term(7), 3)
        # (c) S5 crashes; S1 is elected for term 4 by S2, S3, S4.
        cluster.heal()
        cluster.restart(5)
        cluster.isolate(5)
        cluster.dropped_types.add(M.MsgApp)
        for _ in range(3):
            if cluster.state(1) != StateType.StateLeader:
                cluster.elect(1)
        self.assertEqual(cluster.state(1), StateType.StateLeader)
        self.assertEqual(cluster.nodes[1].raft.term, 4)
        return cluster

    def test_figure_8_no_commit_by_counting_old_term_replicas(self) -> None:
        """§5.4.2 / Figure 8 (c): "Raft never commits log entries from previous
        terms by counting replicas": the term-2 entry on a majority (S1, S2,
        S3) is not committed until an entry of term 4 is also on a majority."""
        cluster = self._figure_8_until_c()
        raft = cluster.nodes[1].raft
        self.assertEqual(raft.log.term(7), 2)
        self.assertEqual(raft.log.term(8), 4)
        raft.tracker.progress[2].maybe_update(7)
        raft.tracker.progress[3].maybe_update(7)
        self.assertFalse(raft.maybe_commit())
        self.assertEqual(raft.log.committed, 6)
        raft.tracker.progress[2].maybe_update(8)
        raft.tracker.progress[3].maybe_update(8)
        self.assertTrue(raft.maybe_commit())
        self.assertEqual(raft.log.committed, 8)

    def test_figure_8_old_term_entry_may_be_overwritten(self) -> None:
        """§5.4.2 / Figure 8 (d): S1 crashes again; S5 is elected (its last
        term 3 beats term 2) and overwrites index 7 everywhere.  Nobody ever
        applied the term-2 entry, so nothing applied is lost."""
        cluster = self._figure_8_until_c()
        cluster.heal()
        cluster.isolate(1)
        for _ in range(3):
            if cluster.state(5) != StateType.StateLeader:
                cluster.elect(5)
        self.assertEqual(cluster.state(5), StateType.StateLeader)
        cluster.propose(5, b"term-d")
        for node_id in (2, 3, 4, 5):
            entries = {e.index: (e.term, e.data) for e in cluster.applied[node_id]}
            self.assertEqual(entries[7], (3, b""))
        for node_id in cluster.nodes:
            self.assertNotIn(b"term2", cluster.applied_data(node_id))

    def test_leader_counts_itself_only_after_persisting(self) -> None:
        """Thesis §10.2.1: the leader may send appends before its own fsync,
        so it counts its own entry toward commit only once ``advance`` reports
        it durable: with one follower acking, a 3-node entry is not committed
        while the leader's write is outstanding, and is right after."""
        cluster = Cluster()
        cluster.elect(1)
        cluster.isolate(3)
        leader = cluster.nodes[1]
        leader.propose(b"x")
        rd = leader.ready()
        self.assertEqual(len(rd.entries), 1)
        cluster.send(rd.messages)  # sent before the leader's own persist
        while cluster.queue:
            cluster.deliver(cluster.queue.pop(0))
        cluster.send(cluster.outbox(2))
        while cluster.queue:
            cluster.deliver(cluster.queue.pop(0))
        # Follower 2 acked; its match + leader's un-persisted log is not enough?
        # A majority of 3 is 2: follower 2 alone plus nobody else.
        self.assertEqual(leader.raft.log.committed, 4)
        cluster.persist(1, rd)
        leader.advance(rd)
        self.assertEqual(leader.raft.log.committed, 5)

    def test_leader_crash_before_own_fsync_loses_nothing_committed(self) -> None:
        """Thesis §10.2.1: appends sent before the leader's own fsync are
        safe.  The followers persist and ack an entry the leader never made
        durable; it commits on the followers' majority; the leader crashes,
        restarts without it, and gets it back from the new leader."""
        cluster = Cluster()
        cluster.elect(1)
        leader = cluster.nodes[1]
        leader.propose(b"early")
        rd = leader.ready()
        cluster.send(rd.messages)  # sent before persisting; then the crash
        cluster.restart(1)
        self.assertEqual(cluster.nodes[1].raft.log.last_index(), 4)
        cluster.isolate(1)
        while cluster.queue:
            cluster.deliver(cluster.queue.pop(0))
        cluster.stabilize()
        cluster.heal()
        cluster.tick_all(30)
        new_leader = cluster.leader()
        self.assertIn(new_leader, (2, 3))
        for node_id in (1, 2, 3):
            self.assertEqual(cluster.applied_data(node_id), [b"early"])

    def test_single_node_commits_only_after_persisting(self) -> None:
        """Thesis §10.2.1 on one node: a proposal appears first as an entry
        to persist, and as committed only in the Ready after ``advance``."""
        cluster = Cluster(ids=(1,))
        cluster.elect(1)
        node = cluster.nodes[1]
        node.propose(b"x")
        first = node.ready()
        self.assertEqual([e.data for e in first.entries], [b"x"])
        self.assertEqual(first.committed_entries, ())
        cluster.persist(1, first)
        node.advance(first)
        second = node.ready()
        self.assertEqual([e.data for e in second.committed_entries], [b"x"])

    def test_leader_never_overwrites_its_log(self) -> None:
        """§5.3 / Figure 3 (Leader Append-Only): a leader only appends."""
        cluster = Cluster()
        cluster.elect(1)
        before = cluster.nodes[1].raft.log.slice(1, 5)
        cluster.nodes[1].step(Message(M.MsgApp, to=1, from_=2, term=2, index=3, log_term=1,
                                      entries=(Entry(2, 4, data=b"evil"),)))
        self.assertEqual(cluster.nodes[1].raft.log.slice(1, 5), before)


class MembershipTests(SynchronousTestCase):
    """§6 Cluster membership changes (single-server changes, thesis §4.1)."""

    def test_add_voter_joins_with_empty_storage(self) -> None:
        """§6: a new server is added by a committed configuration entry; it
        starts with empty storage and learns the log and membership."""
        cluster = Cluster()
        cluster.elect(1)
        cluster.propose(1, b"before")
        cluster.add_node(4)
        cluster.change(1, ConfChange(ConfChangeType.ConfChangeAddNode, 4))
        cluster.propose(1, b"after")
        self.assertEqual(cluster.applied_data(4), [b"before", b"after"])
        self.assertEqual(cluster.nodes[4].status().conf_state.voters, (1, 2, 3, 4))
        self.assertEqual(cluster.nodes[1].status().conf_state.voters, (1, 2, 3, 4))

    def test_remove_voter_shrinks_quorum(self) -> None:
        """§6: after removing a server, the remaining majority commits alone."""
        cluster = Cluster()
        cluster.elect(1)
        cluster.change(1, ConfChange(ConfChangeType.ConfChangeRemoveNode, 3))
        cluster.isolate(3)
        cluster.propose(1, b"x")
        self.assertEqual(cluster.applied_data(2), [b"x"])
        self.assertEqual(cluster.nodes[1].status().conf_state.voters, (1, 2))

    def test_leader_removing_itself_steps_down(self) -> None:
        """§6: "the leader steps down once the configuration entry that
        removes it is committed".  It does so by handing leadership to an
        up-to-date voter (TimeoutNow), so no election timeout is lost."""
        cluster = Cluster()
        cluster.elect(1)
        cluster.change(1, ConfChange(ConfChangeType.ConfChangeRemoveNode, 1))
        self.assertIn(cluster.leader(), (2, 3))
        # The next heartbeat tells the old leader about the newer term.
        cluster.tick_all(1)
        self.assertEqual(cluster.state(1), StateType.StateFollower)
        self.assertEqual(cluster.nodes[2].status().conf_state.voters, (2, 3))
        with self.assertRaises(ProposalDropped):
            cluster.nodes[1].propose(b"x")
        cluster.isolate(1)
        cluster.propose(cluster.leader(), b"after")
        self.assertEqual(cluster.applied_data(2), [b"after"])

    def test_removed_leader_keeps_leading_until_handoff_succeeds(self) -> None:
        """§6: while its hand-off target is unreachable, the removed leader
        keeps replicating (without counting itself) and refuses proposals,
        so the remaining voters still learn every commit; the hand-off is
        retried and completes once the target is reachable."""
        cluster = Cluster()
        cluster.elect(1)
        cluster.dropped_types.add(M.MsgTimeoutNow)
        cluster.change(1, ConfChange(ConfChangeType.ConfChangeRemoveNode, 1))
        self.assertEqual(cluster.state(1), StateType.StateLeader)
        with self.assertRaises(ProposalDropped):
            cluster.nodes[1].propose(b"x")
        self.assertEqual(cluster.nodes[2].status().conf_state.voters, (2, 3))
        cluster.heal()
        cluster.tick_all(25)
        self.assertIn(cluster.leader(), (2, 3))
        self.assertEqual(cluster.state(1), StateType.StateFollower)

    def test_removed_node_with_newer_log_does_not_block_election(self) -> None:
        """§6: a removed server must not make the cluster unavailable.  Here
        leader 1 of {1, 2} commits its own removal, but node 2 never hears
        of the commit, and node 1 crashes holding an entry node 2 lacks.  Node
        2 still needs node 1's vote, which node 1 refuses (newer log), and
        node 1 is no member.  Node 1 then campaigns among the voters of its
        own membership ({2}), catches node 2 up and hands leadership over."""
        cluster = Cluster(ids=(1, 2), max_size_per_msg=1, max_inflight_msgs=1)
        cluster.elect(1)
        leader = cluster.nodes[1]
        leader.propose_conf_change(ConfChange(ConfChangeType.ConfChangeRemoveNode, 1))
        leader.propose(b"tail")
        for message in cluster.outbox(1):  # the removal entry only (size 1)
            cluster.deliver(message)
        for message in cluster.outbox(2):
            cluster.deliver(message)
        cluster.cut_links.add((1, 2))
        cluster.stabilize()
        self.assertEqual(cluster.nodes[1].status().conf_state.voters, (2,))
        self.assertEqual(cluster.nodes[2].status().conf_state.voters, (1, 2))
        cluster.restart(1)
        cluster.stabilize()
        self.assertGreater(cluster.nodes[1].raft.log.last_index(), cluster.nodes[2].raft.log.last_index())
        cluster.heal()
        cluster.tick_all(80)
        self.assertEqual(cluster.leader(), 2)
        self.assertEqual(cluster.nodes[2].status().conf_state.voters, (2,))
        self.assertIn(b"tail", cluster.applied_data(2))

    def test_one_change_at_a_time(self) -> None:
        """Thesis §4.1: a new change may start only once the previous one is
        applied; the leader refuses a second one meanwhile."""
        cluster = Cluster()
        cluster.elect(1)
        cluster.isolate(1)
        cluster.nodes[1].propose_conf_change(ConfChange(ConfChangeType.ConfChangeAddNode, 4))
        with self.assertRaises(ProposalDropped):
            cluster.nodes[1].propose_conf_change(ConfChange(ConfChangeType.ConfChangeAddNode, 5))
        cluster.heal()
        cluster.stabilize()
        cluster.change(1, ConfChange(ConfChangeType.ConfChangeAddNode, 5))
        self.assertEqual(cluster.nodes[1].status().conf_state.voters, (1, 2, 3, 4, 5))

    def test_new_leader_changes_membership_only_after_committing_in_its_term(self) -> None:
        """§6 (single-server change fix): a new leader refuses a membership
        change until an entry of its own term is committed and applied."""
        cluster = Cluster()
        cluster.dropped_types.add(M.MsgAppResp)
        cluster.elect(1)
        with self.assertRaises(ProposalDropped):
            cluster.nodes[1].propose_conf_change(ConfChange(ConfChangeType.ConfChangeAddNode, 4))
        cluster.heal()
        cluster.tick_all(2)
        cluster.change(1, ConfChange(ConfChangeType.ConfChangeAddNode, 4))
        self.assertEqual(cluster.nodes[1].status().conf_state.voters, (1, 2, 3, 4))

    def test_learner_never_votes_nor_counts(self) -> None:
        """Learners (thesis §4.2.1) receive the log but neither campaign nor
        count toward the commit quorum."""
        cluster = Cluster(ids=(1, 2))
        cluster.elect(1)
        cluster.add_node(3)
        cluster.change(1, ConfChange(ConfChangeType.ConfChangeAddLearnerNode, 3))
        cluster.propose(1, b"x")
        self.assertEqual(cluster.applied_data(3), [b"x"])
        self.assertEqual(cluster.nodes[1].status().conf_state.learners, (3,))
        # Learner never campaigns.
        cluster.isolate(3)
        cluster.tick(3, 100)
        self.assertEqual(cluster.state(3), StateType.StateFollower)
        self.assertEqual(of_type(cluster.outbox(3), M.MsgPreVote), [])
        # The leader with only the learner cannot commit.
        cluster.heal()
        cluster.isolate(2)
        cluster.nodes[1].propose(b"y")
        cluster.stabilize()
        self.assertEqual(cluster.applied_data(1), [b"x"])

    def test_promote_learner(self) -> None:
        """Adding a learner as a voter promotes it; it then counts."""
        cluster = Cluster(ids=(1, 2))
        cluster.elect(1)
        cluster.add_node(3)
        cluster.change(1, ConfChange(ConfChangeType.ConfChangeAddLearnerNode, 3))
        cluster.change(1, ConfChange(ConfChangeType.ConfChangeAddNode, 3))
        self.assertEqual(cluster.nodes[3].status().conf_state.voters, (1, 2, 3))
        cluster.isolate(2)
        cluster.propose(1, b"y")
        self.assertEqual(cluster.applied_data(1), [b"y"])


class SnapshotTests(SynchronousTestCase):
    """§7 Log compaction."""

    def _compacted_cluster(self):
        cluster = Cluster()
        cluster.elect(1)
        cluster.isolate(3)
        for index in range(10):
            cluster.propose(1, b"%d" % index)
        storage = cluster.storages[1]
        applied = cluster.nodes[1].raft.log.applied
        storage.create_snapshot(applied, cluster.nodes[1].status().conf_state, b"state")
        storage.compact(applied)
        return cluster

    def test_follower_behind_compacted_log_gets_snapshot(self) -> None:
        """§7: "the leader must occasionally send snapshots to followers that
        lag behind" when the entries it needs were discarded."""
        cluster = self._compacted_cluster()
        cluster.heal()
        cluster.tick(1, 1)
        cluster.dropped_types.add(M.MsgSnap)
        cluster.stabilize()
        self.assertEqual(cluster.nodes[1].status().progress[3].state.name, "StateSnapshot")
        cluster.heal()
        cluster.nodes[1].report_snapshot(3, ok=False)
        cluster.tick_all(2)
        snaps = of_type(cluster.sent, M.MsgSnap)
        self.assertEqual([m.to for m in snaps], [3])
        self.assertEqual(snaps[0].snapshot.metadata.index, 14)
        self.assertEqual(cluster.storages[3].snapshot().data, b"state")
        cluster.nodes[1].report_snapshot(3, ok=True)
        cluster.tick_all(3)
        cluster.propose(1, b"after")
        self.assertEqual(cluster.applied_data(3), [b"after"])
        self.assertEqual(cluster.nodes[3].raft.log.committed, cluster.nodes[1].raft.log.committed)

    def test_failed_snapshot_is_retried(self) -> None:
        """§7: a failed snapshot transfer (reported by the transport) sends the
        follower back to probing, and a new snapshot is sent."""
        cluster = self._compacted_cluster()
        cluster.heal()
        cluster.dropped_types.add(M.MsgSnap)
        cluster.tick(1, 1)
        cluster.stabilize()
        cluster.nodes[1].report_snapshot(3, ok=False)
        self.assertEqual(cluster.nodes[1].status().progress[3].state.name, "StateProbe")
        cluster.heal()
        cluster.tick_all(2)
        self.assertEqual(cluster.storages[3].snapshot().data, b"state")

    def test_snapshot_installed_survives_restart(self) -> None:
        """§7: an installed snapshot replaces the follower's log durably."""
        cluster = self._compacted_cluster()
        cluster.heal()
        cluster.tick(1, 1)
        cluster.stabilize()
        node = cluster.restart(3)
        self.assertEqual(node.raft.log.first_index(), 15)
        self.assertEqual(node.status().conf_state.voters, (1, 2, 3))


class ReadIndexTests(SynchronousTestCase):
    """§8 Client interaction: linearizable read-only queries."""

    def test_leader_serves_read_after_heartbeat_round(self) -> None:
        """§8: the leader records its commit index, then "exchange[s]
        heartbeat messages with a majority" before answering."""
        cluster = Cluster()
        cluster.elect(1)
        cluster.propose(1, b"x")
        leader = cluster.nodes[1]
        leader.read_index(b"r1")
        messages = cluster.outbox(1)
        self.assertEqual(cluster.read_states[1], [])
        beats = of_type(messages, M.MsgHeartbeat)
        self.assertEqual({m.context for m in beats}, {b"r1"})
        cluster.send(messages)
        cluster.stabilize()
        self.assertEqual([(r.index, r.request_ctx) for r in cluster.read_states[1]], [(5, b"r1")])

    def test_batch_of_reads_shares_one_round(self) -> None:
        """§8 (batching, thesis §6.4): reads issued together are confirmed by
        one heartbeat round."""
        cluster = Cluster()
        cluster.elect(1)
        cluster.sent.clear()
        for index in range(5):
            cluster.nodes[1].read_index(b"r%d" % index)
        cluster.stabilize()
        beats = [m for m in cluster.sent if m.type == M.MsgHeartbeat]
        self.assertEqual(len(beats), 2)
        self.assertEqual(len(cluster.read_states[1]), 5)

    def test_follower_read_through_leader(self) -> None:
        """§8: a follower asks the leader for the read index."""
        cluster = Cluster()
        cluster.elect(1)
        cluster.propose(1, b"x")
        cluster.nodes[3].read_index(b"f")
        cluster.stabilize()
        self.assertEqual([(r.index, r.request_ctx) for r in cluster.read_states[3]], [(5, b"f")])

    def test_new_leader_waits_for_commit_in_its_term(self) -> None:
        """§8: "a leader must have the latest information on which entries are
        committed ... at the start of its term" by committing a no-op first."""
        cluster = Cluster()
        cluster.dropped_types.add(M.MsgAppResp)
        cluster.elect(1)
        self.assertEqual(cluster.state(1), StateType.StateLeader)
        cluster.nodes[1].read_index(b"early")
        cluster.stabilize()
        self.assertEqual(cluster.read_states[1], [])
        cluster.heal()
        cluster.tick_all(2)
        self.assertEqual([r.request_ctx for r in cluster.read_states[1]], [b"early"])

    def test_read_without_quorum_is_not_answered(self) -> None:
        """§8: a deposed (isolated) leader cannot confirm, so never answers."""
        cluster = Cluster()
        cluster.elect(1)
        cluster.isolate(1)
        cluster.nodes[1].read_index(b"stale")
        cluster.tick(1, 5)
        cluster.stabilize()
        self.assertEqual(cluster.read_states[1], [])

    def test_read_without_leader_is_dropped(self) -> None:
        """Without a leader a read is dropped (the driver times it out)."""
        cluster = Cluster()
        cluster.nodes[2].read_index(b"x")
        cluster.stabilize()
        self.assertEqual(cluster.read_states[2], [])
