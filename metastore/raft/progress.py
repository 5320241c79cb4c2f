"""What a leader knows about each follower, and the quorum arithmetic."""

from __future__ import annotations

import enum
from collections import deque

from metastore.raft.types import ConfState


class ProgressState(enum.IntEnum):
    """How the leader is replicating to one follower (etcd's names)."""

    StateProbe = 0
    StateReplicate = 1
    StateSnapshot = 2


class VoteResult(enum.IntEnum):
    """The outcome of counting votes (or acknowledgements) among voters."""

    VotePending = 0
    VoteLost = 1
    VoteWon = 2


class Inflights:
    """A bounded window of in-flight append messages, by their last index."""

    __slots__ = ("capacity", "_last_indexes")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._last_indexes: deque[int] = deque()

    def add(self, last_index: int) -> None:
        """Record an append message whose last entry is ``last_index``."""
        self._last_indexes.append(last_index)

    def free_le(self, index: int) -> None:
        """Forget messages acknowledged by a response for ``index``."""
        window = self._last_indexes
        while window and window[0] <= index:
            window.popleft()

    def free_first_one(self) -> None:
        """Free one slot (a heartbeat response proves the follower is alive)."""
        if self._last_indexes:
            self._last_indexes.popleft()

    def full(self) -> bool:
        """True when no more append messages may be sent."""
        return len(self._last_indexes) >= self.capacity

    def count(self) -> int:
        """The number of messages in flight."""
        return len(self._last_indexes)

    def reset(self) -> None:
        """Forget everything in flight."""
        self._last_indexes.clear()


class Progress:
    """The leader's view of one peer.

    Invariants: ``match < next``; in StateSnapshot ``pending_snapshot`` is the
    index of the snapshot sent.
    """

    __slots__ = (
        "match",
        "next",
        "state",
        "pending_snapshot",
        "recent_active",
        "probe_sent",
        "inflights",
        "is_learner",
    )

    def __init__(self, next_index: int, max_inflight: int, is_learner: bool = False) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.StateProbe
        self.pending_snapshot = 0
        self.recent_active = False
        self.probe_sent = False
        self.inflights = Inflights(max_inflight)
        self.is_learner = is_learner

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        """Send one append at a time until the follower's log position is known."""
        if self.state == ProgressState.StateSnapshot:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.StateProbe)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.StateProbe)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        """Stream appends optimistically within the in-flight window."""
        self._reset_state(ProgressState.StateReplicate)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        """Stop appending until the snapshot at ``snapshot_index`` is reported."""
        self._reset_state(ProgressState.StateSnapshot)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, index: int) -> bool:
        """The follower acknowledged ``index``; True if its match advanced."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.probe_sent = False
        if self.next < index + 1:
            self.next = index + 1
        return updated

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """An append at ``rejected`` was refused; back ``next`` off.

        Returns False when the rejection is stale (out of order).
        """
        if self.state == ProgressState.StateReplicate:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        """True when no append may be sent to this peer now."""
        state = self.state
        if state == ProgressState.StateReplicate:
            return len(self.inflights._last_indexes) >= self.inflights.capacity
        if state == ProgressState.StateProbe:
            return self.probe_sent
        return True


class ProgressTracker:
    """The membership (voters, learners) and one ``Progress`` per member.

    Invariant: ``voters`` and ``learners`` are disjoint and each member has
    exactly one entry in ``progress``.
    """

    __slots__ = ("voters", "learners", "progress", "votes", "max_inflight", "peer_ids")

    def __init__(self, max_inflight: int) -> None:
        self.voters: set[int] = set()
        self.learners: set[int] = set()
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.max_inflight = max_inflight
        self.peer_ids: tuple[int, ...] = ()

    def _refresh_ids(self) -> None:
        self.peer_ids = tuple(sorted(self.progress))

    def add(self, node_id: int, next_index: int, learner: bool) -> None:
        """Add a member (no-op for an existing one of the same kind)."""
        if learner:
            self.learners.add(node_id)
        else:
            self.voters.add(node_id)
        progress = Progress(next_index, self.max_inflight, learner)
        # A new member counts as active so CheckQuorum gives it time to answer.
        progress.recent_active = True
        self.progress[node_id] = progress
        self._refresh_ids()

    def promote(self, node_id: int) -> None:
        """Turn a learner into a voter, keeping its progress."""
        self.learners.discard(node_id)
        self.voters.add(node_id)
        self.progress[node_id].is_learner = False

    def remove(self, node_id: int) -> None:
        """Remove a member."""
        self.voters.discard(node_id)
        self.learners.discard(node_id)
        self.progress.pop(node_id, None)
        self.votes.pop(node_id, None)
        self._refresh_ids()

    def reset_membership(self, conf_state: ConfState, next_index: int) -> None:
        """Replace the membership by ``conf_state`` with fresh progress."""
        self.voters = set()
        self.learners = set()
        self.progress = {}
        for voter in conf_state.voters:
            self.add(voter, next_index, learner=False)
        for learner in conf_state.learners:
            self.add(learner, next_index, learner=True)

    def conf_state(self) -> ConfState:
        """The membership as a ``ConfState``."""
        return ConfState(voters=tuple(sorted(self.voters)), learners=tuple(sorted(self.learners)))

    def quorum(self) -> int:
        """How many voters make a majority."""
        return len(self.voters) // 2 + 1

    def committed_index(self) -> int:
        """The largest index a majority of voters has matched (0 without voters)."""
        if not self.voters:
            return 0
        progress = self.progress
        matches = sorted([progress[voter].match for voter in self.voters], reverse=True)
        return matches[len(matches) // 2]

    def vote_result(self, votes: dict[int, bool]) -> VoteResult:
        """Count ``votes`` (True granted, False rejected) among voters."""
        granted = rejected = 0
        for voter in self.voters:
            vote = votes.get(voter)
            if vote is True:
                granted += 1
            elif vote is False:
                rejected += 1
        quorum = len(self.voters) // 2 + 1
        if granted >= quorum:
            return VoteResult.VoteWon
        if len(self.voters) - rejected < quorum:
            return VoteResult.VoteLost
        return VoteResult.VotePending

    def record_vote(self, node_id: int, granted: bool) -> VoteResult:
        """Record ``node_id``'s first vote and return the tally."""
        self.votes.setdefault(node_id, granted)
        return self.vote_result(self.votes)

    def quorum_active(self, self_id: int) -> bool:
        """True when a majority of voters (self included) was heard from recently."""
        active = 0
        for voter in self.voters:
            if voter == self_id or self.progress[voter].recent_active:
                active += 1
        return active >= len(self.voters) // 2 + 1
