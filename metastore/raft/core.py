"""The Raft state machine: roles, elections, replication, reads, membership.

``Raft`` is driven through ``RawNode``; it never does I/O.  Outgoing messages
are appended to ``msgs``; ``RawNode.ready`` hands them out.

Design notes that differ from a literal reading of the paper:

* The leader counts its own log toward commit only for entries the driver has
  confirmed durable (``on_persisted``), so appends may go to followers before
  the leader's own fsync (Raft thesis §10.2.1).
* Appends and ReadIndex heartbeats triggered by local calls are coalesced and
  sent when the driver next asks for a ``Ready`` (``flush``): a batch of
  proposals becomes one message per follower, a batch of reads one heartbeat
  round.
"""

from __future__ import annotations

import enum
from typing import Callable, Protocol

from metastore.raft.confchange import decode_and_validate_conf_change, validate_conf_change
from metastore.raft.errors import (
    CompactedError,
    ProposalDropped,
    SnapshotTemporarilyUnavailable,
    UnavailableError,
)
from metastore.raft.log import RaftLog
from metastore.raft.progress import ProgressState, ProgressTracker, VoteResult
from metastore.raft.readonly import ReadOnlyQueue
from metastore.raft.types import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Snapshot,
    StateType,
)

TRANSFER_CONTEXT = b"CampaignTransfer"
"""The context of a vote request sent on the leader's behalf (TimeoutNow)."""

_M = MessageType
_LEADER = StateType.StateLeader
_FOLLOWER = StateType.StateFollower
_CANDIDATE = StateType.StateCandidate
_PRE_CANDIDATE = StateType.StatePreCandidate
_REPLICATE = ProgressState.StateReplicate
_PROBE = ProgressState.StateProbe
_SNAPSHOT = ProgressState.StateSnapshot
_CONF = EntryType.EntryConfChange


class RandomSource(Protocol):
    """The only thing Raft needs from an injected random generator."""

    def randrange(self, stop: int) -> int:
        """A uniform integer in ``[0, stop)``."""


class CampaignType(enum.Enum):
    """Why a node starts an election."""

    PRE_ELECTION = "pre-election"
    ELECTION = "election"
    TRANSFER = "transfer"


class Raft:
    """One Raft participant's full state.

    Invariants: a leader's ``lead`` is its own id; ``vote`` is NONE or the
    node voted for in ``term``; the leader's own ``Progress.match`` never
    exceeds what the driver has persisted.
    """

    def __init__(
        self,
        *,
        node_id: int,
        storage,
        election_tick: int,
        heartbeat_tick: int,
        applied: int,
        applied_conf_state: ConfState | None = None,
        max_size_per_msg: int,
        max_inflight_msgs: int,
        check_quorum: bool,
        pre_vote: bool,
        rng: RandomSource,
        log: Callable[[str], None],
    ) -> None:
        self.id = node_id
        self.log = RaftLog(storage)
        self.max_msg_size = max_size_per_msg
        self.election_timeout = election_tick
        self.heartbeat_timeout = heartbeat_tick
        self.check_quorum = check_quorum
        self.pre_vote = pre_vote
        self.rng = rng
        self._log_event = log

        self.term = 0
        self.vote = NONE
        self.lead = NONE
        self.state = _FOLLOWER
        self.msgs: list[Message] = []
        self.read_states: list[tuple[int, bytes]] = []
        self.tracker = ProgressTracker(max_inflight_msgs)
        self.read_only = ReadOnlyQueue()
        self.held_reads: list[Message] = []
        self.pending_conf_index = 0
        self.lead_transferee = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = election_tick
        self.append_flush_pending = False
        self.read_flush_pending = False
        self.transfer_campaign_deferred = False
        self.removed_but_needed = False

        hard_state, conf_state = storage.initial_state()
        next_index = self.log.last_index() + 1
        self.tracker.reset_membership(conf_state, next_index)
        if not hard_state.is_empty():
            self._load_hard_state(hard_state)
        if applied > 0:
            if applied > self.log.committed:
                raise ValueError(f"applied {applied} is beyond the commit index {self.log.committed}")
            if applied_conf_state is not None and applied > self.log.applied:
                self.tracker.reset_membership(applied_conf_state, next_index)
            else:
                self._replay_applied_membership(applied)
            self.log.applied = max(applied, self.log.applied)
        self.become_follower(self.term, NONE)

    def _replay_applied_membership(self, applied: int) -> None:
        """Rebuild the membership from conf changes the application applied
        after the snapshot (storage's ConfState is the snapshot's): they will
        not be handed out again, so nobody else would apply them."""
        log = self.log
        # Storage may keep entries behind its snapshot (a log tail for slow
        # followers): the snapshot's membership already includes them.
        snapshot_index = log.storage.snapshot().metadata.index
        first = max(log.applied + 1, log.first_index(), snapshot_index + 1)
        if applied < first:
            return
        for entry in log.slice(first, applied + 1):
            if entry.type == _CONF:
                # An invalid change was applied as a no-op: it is skipped again.
                self.apply_conf_change_entry_data(entry.data)

    # ----------------------------------------------------------------- state

    def _load_hard_state(self, hard_state: HardState) -> None:
        if not self.log.committed <= hard_state.commit <= self.log.last_index():
            raise ValueError(
                f"persisted commit {hard_state.commit} is outside "
                f"[{self.log.committed}, {self.log.last_index()}]"
            )
        self.log.committed = hard_state.commit
        self.term = hard_state.term
        self.vote = hard_state.vote

    def hard_state(self) -> HardState:
        """The state that must be durable before this node's messages go out."""
        return HardState(term=self.term, vote=self.vote, commit=self.log.committed)

    def promotable(self) -> bool:
        """True when this node may campaign: a voter without a pending snapshot."""
        return self.id in self.tracker.voters and self.log.unstable.snapshot is None

    def may_campaign(self) -> bool:
        """True when this node may campaign now.

        Besides a voter, a node that is no longer a member at all may, once a
        candidate that still counts it has been refused for a log older than
        ours: the others may not know our removal committed (so they need our
        vote) while we hold entries they lack (so we refuse it).  We then
        campaign among the voters of our own, committed membership, and as a
        leader outside it we only catch a voter up and hand leadership over.
        """
        if self.promotable():
            return True
        tracker = self.tracker
        return (
            self.removed_but_needed
            and self.id not in tracker.learners
            and bool(tracker.voters)
            and self.log.unstable.snapshot is None
        )

    def _send(self, message: Message) -> None:
        if message.to == self.id:
            raise AssertionError(f"message to self: {message.type.name}")
        self.msgs.append(message)

    # ------------------------------------------------------------ transitions

    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.election_timeout + self.rng.randrange(
            self.election_timeout
        )
        self.lead_transferee = NONE
        self.tracker.votes = {}
        next_index = self.log.last_index() + 1
        for node_id, progress in self.tracker.progress.items():
            learner = progress.is_learner
            progress.__init__(next_index, self.tracker.max_inflight, learner)
            if node_id == self.id:
                # Only entries already durable count for the leader itself.
                unstable = self.log.unstable
                progress.match = unstable.offset - 1 if unstable.snapshot is None else 0
        self.pending_conf_index = 0
        self.transfer_campaign_deferred = False
        self.read_only = ReadOnlyQueue()
        self.held_reads = []
        self.append_flush_pending = False
        self.read_flush_pending = False

    def become_follower(self, term: int, lead: int) -> None:
        """Follow ``lead`` (or nobody) in ``term``."""
        self._reset(term)
        self.lead = lead
        self.state = _FOLLOWER

    def become_pre_candidate(self) -> None:
        """Ask for pre-votes without touching term or vote (PreVote, thesis §9.6)."""
        if self.state == _LEADER:
            raise AssertionError("leader cannot become a pre-candidate")
        self.tracker.votes = {}
        self.lead = NONE
        self.state = _PRE_CANDIDATE

    def become_candidate(self) -> None:
        """Start a real election: new term, vote for self (§5.2)."""
        if self.state == _LEADER:
            raise AssertionError("leader cannot become a candidate")
        self._reset(self.term + 1)
        self.vote = self.id
        self.state = _CANDIDATE

    def become_leader(self) -> None:
        """Lead ``term``: append an empty entry of this term to commit soon."""
        if self.state == _FOLLOWER:
            raise AssertionError("follower cannot become leader directly")
        self._reset(self.term)
        self.lead = self.id
        self.state = _LEADER
        own = self.tracker.progress.get(self.id)
        if own is not None:
            match = own.match
            own.become_replicate()
            own.match = match
            own.next = max(own.next, self.log.last_index() + 1)
            own.recent_active = True
        index = self.log.last_index() + 1
        self.log.append([Entry(self.term, index)])
        # No membership change until this term's first entry is applied: a
        # conf change still in the log may be uncommitted, and a new leader
        # must commit in its own term before changing the membership (the
        # single-server change fix, Ongaro, raft-dev 2015).
        self.pending_conf_index = index
        self.append_flush_pending = True
        self._log_event(f"node {self.id} became leader at term {self.term}")
        if self.id not in self.tracker.voters:
            self._hand_off_leadership()

    # ------------------------------------------------------------------ ticks

    def tick(self) -> None:
        """Advance logical time by one tick."""
        if self.state == _LEADER:
            self._tick_heartbeat()
        else:
            self._tick_election()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.election_elapsed >= self.randomized_election_timeout and self.may_campaign():
            self.election_elapsed = 0
            self.step(Message(type=_M.MsgHup, from_=self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            removed = self.id not in self.tracker.voters
            if self.check_quorum and not removed:
                self.step(Message(type=_M.MsgCheckQuorum, from_=self.id))
            if self.state == _LEADER and self.lead_transferee != NONE:
                self.abort_leader_transfer()
            if self.state == _LEADER and removed:
                self._hand_off_leadership()
        if self.state != _LEADER:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self.step(Message(type=_M.MsgBeat, from_=self.id))

    # ------------------------------------------------------------- elections

    def _has_unapplied_conf_change(self) -> bool:
        log = self.log
        if log.committed <= log.applied:
            return False
        try:
            pending = log.slice(max(log.applied + 1, log.first_index()), log.committed + 1)
        except CompactedError:
            return False
        return any(entry.type == _CONF for entry in pending)

    def hup(self, campaign_type: CampaignType) -> None:
        """Start an election if this node may (§5.2)."""
        if self.state == _LEADER:
            return
        if not self.may_campaign():
            return
        if self._has_unapplied_conf_change():
            # Our idea of the membership may be stale until we apply it.  A
            # transfer is not lost for that: we campaign once it is applied.
            if campaign_type == CampaignType.TRANSFER:
                self.transfer_campaign_deferred = True
            return
        self._campaign(campaign_type)

    def on_applied(self) -> None:
        """The driver applied more entries: run a deferred transfer campaign."""
        if self.transfer_campaign_deferred and not self._has_unapplied_conf_change():
            self.transfer_campaign_deferred = False
            self.hup(CampaignType.TRANSFER)

    def _campaign(self, campaign_type: CampaignType) -> None:
        self.removed_but_needed = False
        if campaign_type == CampaignType.PRE_ELECTION:
            self.become_pre_candidate()
            vote_type = _M.MsgPreVote
            term = self.term + 1
        else:
            self.become_candidate()
            vote_type = _M.MsgVote
            term = self.term
        if self.tracker.record_vote(self.id, True) == VoteResult.VoteWon:
            if campaign_type == CampaignType.PRE_ELECTION:
                self._campaign(CampaignType.ELECTION)
            else:
                self.become_leader()
            return
        last_index = self.log.last_index()
        last_term = self.log.term(last_index)
        context = TRANSFER_CONTEXT if campaign_type == CampaignType.TRANSFER else b""
        for voter in sorted(self.tracker.voters):
            if voter == self.id:
                continue
            self._send(
                Message(
                    type=vote_type,
                    to=voter,
                    from_=self.id,
                    term=term,
                    index=last_index,
                    log_term=last_term,
                    context=context,
                )
            )

    # ------------------------------------------------------------------- step

    def step(self, m: Message) -> None:
        """Handle one message (or local event); raises ProposalDropped for a
        refused proposal."""
        if m.term == 0:
            pass
        elif m.term > self.term:
            if m.type == _M.MsgVote or m.type == _M.MsgPreVote:
                forced = m.context == TRANSFER_CONTEXT
                in_lease = (
                    self.check_quorum
                    and self.lead != NONE
                    and self.election_elapsed < self.election_timeout
                )
                if in_lease and not forced:
                    # We heard from a leader recently: ignore a disruptive node.
                    return
            if m.type == _M.MsgPreVote:
                pass  # a pre-vote never changes our term
            elif m.type == _M.MsgPreVoteResp and not m.reject:
                pass  # granted pre-votes carry the future term
            elif m.type in (_M.MsgApp, _M.MsgHeartbeat, _M.MsgSnap):
                self.become_follower(m.term, m.from_)
            elif self.state == _LEADER:
                self.become_follower(m.term, NONE)
            else:
                # §5.2: only a leader's message or a granted vote restarts the
                # election timer.  Restarting it for every newer term lets
                # candidates with stale logs, which can never win, keep the
                # up-to-date nodes from ever campaigning.
                elapsed = self.election_elapsed
                timeout = self.randomized_election_timeout
                self.become_follower(m.term, NONE)
                self.election_elapsed = elapsed
                self.randomized_election_timeout = timeout
        elif m.term < self.term:
            if (self.check_quorum or self.pre_vote) and m.type in (_M.MsgHeartbeat, _M.MsgApp):
                # Tell a stale leader about the newer term so it steps down;
                # with CheckQuorum/PreVote it would otherwise never learn it.
                self._send(Message(type=_M.MsgAppResp, to=m.from_, from_=self.id, term=self.term))
            elif m.type == _M.MsgPreVote:
                self._send(
                    Message(
                        type=_M.MsgPreVoteResp, to=m.from_, from_=self.id, term=self.term, reject=True
                    )
                )
            return

        kind = m.type
        if kind == _M.MsgHup:
            if self.pre_vote:
                self.hup(CampaignType.PRE_ELECTION)
            else:
                self.hup(CampaignType.ELECTION)
        elif kind == _M.MsgVote or kind == _M.MsgPreVote:
            self._handle_vote_request(m)
        elif self.state == _LEADER:
            self._step_leader(m)
        elif self.state == _FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    def _handle_vote_request(self, m: Message) -> None:
        can_vote = (
            self.vote == m.from_
            or (self.vote == NONE and self.lead == NONE)
            or (m.type == _M.MsgPreVote and m.term > self.term)
        )
        response_type = _M.MsgVoteResp if m.type == _M.MsgVote else _M.MsgPreVoteResp
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            # Granting: the response goes out only after this vote is durable.
            self._send(Message(type=response_type, to=m.from_, from_=self.id, term=m.term))
            if m.type == _M.MsgVote:
                self.election_elapsed = 0
                self.vote = m.from_
        else:
            if can_vote and self.id not in self.tracker.voters and self.state != _LEADER:
                self.removed_but_needed = True
            self._send(
                Message(type=response_type, to=m.from_, from_=self.id, term=self.term, reject=True)
            )

    # ------------------------------------------------------------ follower

    def _step_follower(self, m: Message) -> None:
        kind = m.type
        if kind == _M.MsgApp:
            self.election_elapsed = 0
            self.lead = m.from_
            self.removed_but_needed = False
            self._handle_append(m)
        elif kind == _M.MsgHeartbeat:
            self.election_elapsed = 0
            self.lead = m.from_
            self.removed_but_needed = False
            self._handle_heartbeat(m)
        elif kind == _M.MsgSnap:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_snapshot(m)
        elif kind == _M.MsgProp:
            if self.lead == NONE:
                raise ProposalDropped("no leader")
            self._send(Message(type=_M.MsgProp, to=self.lead, from_=self.id, entries=m.entries))
        elif kind == _M.MsgTransferLeader:
            # The transferee travels in ``index``: ``from_`` is always the sender.
            if self.lead != NONE and m.index != self.lead:
                self._send(Message(type=_M.MsgTransferLeader, to=self.lead, from_=self.id, index=m.index))
        elif kind == _M.MsgTimeoutNow:
            self.hup(CampaignType.TRANSFER)
        elif kind == _M.MsgReadIndex:
            if self.lead != NONE:
                self._send(
                    Message(type=_M.MsgReadIndex, to=self.lead, from_=self.id, context=m.context)
                )
        elif kind == _M.MsgReadIndexResp:
            self.read_states.append((m.index, m.context))

    def _step_candidate(self, m: Message) -> None:
        kind = m.type
        own_response = _M.MsgPreVoteResp if self.state == _PRE_CANDIDATE else _M.MsgVoteResp
        if kind == _M.MsgProp:
            raise ProposalDropped("no leader")
        if kind == _M.MsgApp:
            self.become_follower(m.term, m.from_)
            self._handle_append(m)
        elif kind == _M.MsgHeartbeat:
            self.become_follower(m.term, m.from_)
            self._handle_heartbeat(m)
        elif kind == _M.MsgSnap:
            self.become_follower(m.term, m.from_)
            self._handle_snapshot(m)
        elif kind == own_response:
            result = self.tracker.record_vote(m.from_, not m.reject)
            if result == VoteResult.VoteWon:
                if self.state == _PRE_CANDIDATE:
                    self._campaign(CampaignType.ELECTION)
                else:
                    self.become_leader()
            elif result == VoteResult.VoteLost:
                self.become_follower(self.term, NONE)

    def _handle_append(self, m: Message) -> None:
        log = self.log
        if m.index < log.committed:
            self._send(
                Message(type=_M.MsgAppResp, to=m.from_, from_=self.id, term=self.term, index=log.committed)
            )
            return
        last_new = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._send(
                Message(type=_M.MsgAppResp, to=m.from_, from_=self.id, term=self.term, index=last_new)
            )
            return
        # Rejected: hint the largest index whose term is <= the leader's term
        # at m.index, so the leader can skip whole terms (§5.3, fast backup).
        hint_index, hint_term = log.find_conflict_by_term(min(m.index, log.last_index()), m.log_term)
        self._send(
            Message(
                type=_M.MsgAppResp,
                to=m.from_,
                from_=self.id,
                term=self.term,
                index=m.index,
                reject=True,
                reject_hint=hint_index,
                log_term=hint_term,
            )
        )

    def _handle_heartbeat(self, m: Message) -> None:
        self.log.commit_to(m.commit)
        self._send(
            Message(type=_M.MsgHeartbeatResp, to=m.from_, from_=self.id, term=self.term, context=m.context)
        )

    def _handle_snapshot(self, m: Message) -> None:
        snapshot = m.snapshot
        if snapshot is not None and self.restore(snapshot):
            index = self.log.last_index()
        else:
            index = self.log.committed
        self._send(Message(type=_M.MsgAppResp, to=m.from_, from_=self.id, term=self.term, index=index))

    def restore(self, snapshot: Snapshot) -> bool:
        """Adopt a leader's snapshot if it is news (§7); True if adopted."""
        meta = snapshot.metadata
        if meta.index <= self.log.committed:
            return False
        if self.state != _FOLLOWER:
            raise AssertionError("only a follower restores a snapshot")
        if self.log.match_term(meta.index, meta.term):
            # We already have the snapshot's last entry: just fast-forward.
            self.log.commit_to(meta.index)
            return False
        self.log.restore(snapshot)
        self.tracker.reset_membership(meta.conf_state, self.log.last_index() + 1)
        return True

    # -------------------------------------------------------------- leader

    def _step_leader(self, m: Message) -> None:
        kind = m.type
        if kind == _M.MsgBeat:
            self._bcast_heartbeat(self.read_only.last_context())
            return
        if kind == _M.MsgCheckQuorum:
            if not self.tracker.quorum_active(self.id):
                self._log_event(f"node {self.id} lost quorum, stepping down at term {self.term}")
                self.become_follower(self.term, NONE)
            for node_id, progress in self.tracker.progress.items():
                if node_id != self.id:
                    progress.recent_active = False
            return
        if kind == _M.MsgProp:
            self.append_proposals(m.entries)
            return
        if kind == _M.MsgReadIndex:
            self._leader_read_index(m)
            return
        if kind == _M.MsgTransferLeader:
            transferee = self.tracker.progress.get(m.index)
            if transferee is not None:
                self._handle_transfer_request(m.index, transferee)
            return

        progress = self.tracker.progress.get(m.from_)
        if progress is None:
            return
        if kind == _M.MsgAppResp:
            self._handle_append_response(m, progress)
        elif kind == _M.MsgHeartbeatResp:
            self._handle_heartbeat_response(m, progress)
        elif kind == _M.MsgSnapStatus:
            if progress.state != _SNAPSHOT:
                return
            if m.reject:
                progress.pending_snapshot = 0
            progress.become_probe()
            # Wait for a heartbeat response before probing again.
            progress.probe_sent = True
        elif kind == _M.MsgUnreachable:
            if progress.state == _REPLICATE:
                progress.become_probe()

    def append_proposals(self, entries) -> None:
        """Append proposed entries as leader (§5.3); ProposalDropped if refused."""
        if self.id not in self.tracker.progress:
            raise ProposalDropped("this node is not a member")
        if self.lead_transferee != NONE:
            raise ProposalDropped(f"leader transfer to {self.lead_transferee} in progress")
        log = self.log
        index = log.last_index()
        term = self.term
        new_entries = []
        conf_index = 0
        for entry in entries:
            index += 1
            if entry.type == _CONF:
                if self.pending_conf_index > log.applied or conf_index:
                    raise ProposalDropped("a membership change is already pending")
                conf_index = index
            new_entries.append(Entry(term, index, entry.type, entry.data))
        if conf_index:
            self.pending_conf_index = conf_index
        log.append(new_entries)
        self.append_flush_pending = True

    def propose_data(self, data: bytes) -> None:
        """Fast path for one normal proposal on a leader."""
        if self.lead_transferee != NONE or self.id not in self.tracker.progress:
            self.append_proposals((Entry(0, 0, EntryType.EntryNormal, data),))
            return
        unstable = self.log.unstable
        if unstable.entries:
            index = unstable.offset + len(unstable.entries)
            unstable.entries.append(Entry(self.term, index, EntryType.EntryNormal, data))
        else:
            self.log.append([Entry(self.term, self.log.last_index() + 1, EntryType.EntryNormal, data)])
        self.append_flush_pending = True

    def _handle_append_response(self, m: Message, progress) -> None:
        progress.recent_active = True
        if m.reject:
            next_probe = m.reject_hint
            if m.log_term > 0:
                next_probe, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if progress.maybe_decr_to(m.index, next_probe):
                if progress.state == _REPLICATE:
                    progress.become_probe()
                self._maybe_send_append(m.from_, progress, True)
            return
        was_paused = progress.is_paused()
        if not progress.maybe_update(m.index):
            return
        if progress.state == _PROBE:
            progress.become_replicate()
        elif progress.state == _SNAPSHOT:
            if progress.match + 1 >= self.log.first_index():
                progress.become_probe()
                progress.become_replicate()
        else:
            progress.inflights.free_le(m.index)
        if self.maybe_commit():
            self.append_flush_pending = True
        elif was_paused:
            self._maybe_send_append(m.from_, progress, True)
        while self._maybe_send_append(m.from_, progress, False):
            pass
        if m.from_ == self.lead_transferee and progress.match == self.log.last_index():
            self._send_timeout_now(m.from_)

    def _handle_heartbeat_response(self, m: Message, progress) -> None:
        progress.recent_active = True
        progress.probe_sent = False
        if progress.state == _REPLICATE and progress.inflights.full():
            progress.inflights.free_first_one()
        if progress.match < self.log.last_index():
            self._maybe_send_append(m.from_, progress, True)
        if not m.context:
            return
        acks = self.read_only.ack(m.from_, m.context)
        if acks is None:
            return
        if self.tracker.vote_result(dict.fromkeys(acks, True)) != VoteResult.VoteWon:
            return
        for pending in self.read_only.release_through(m.context):
            self._answer_read(pending.request, pending.index)

    def maybe_commit(self) -> bool:
        """Advance the commit index to what a majority holds, if that entry is
        from this term (§5.4.2: never count replicas of older terms)."""
        candidate = self.tracker.committed_index()
        log = self.log
        if candidate > log.committed and log.term(candidate) == self.term:
            log.commit_to(candidate)
            if self.held_reads:
                held, self.held_reads = self.held_reads, []
                for request in held:
                    self._leader_read_index(request)
            return True
        return False

    def on_persisted(self, index: int, term: int) -> None:
        """The driver made our log durable through (index, term)."""
        if self.state != _LEADER or not self.log.match_term(index, term):
            return
        own = self.tracker.progress.get(self.id)
        if own is not None and own.maybe_update(index) and self.maybe_commit():
            self.append_flush_pending = True

    def _maybe_send_append(self, to: int, progress, send_if_empty: bool) -> bool:
        if progress.is_paused():
            return False
        log = self.log
        prev_index = progress.next - 1
        try:
            prev_term = log.term(prev_index)
            entries = log.entries_from(progress.next, self.max_msg_size)
        except (CompactedError, UnavailableError):
            return self._maybe_send_snapshot(to, progress)
        if not entries:
            if not send_if_empty:
                return False
        elif progress.state == _REPLICATE:
            last = entries[-1].index
            progress.next = last + 1
            progress.inflights.add(last)
        if progress.state == _PROBE:
            progress.probe_sent = True
        self.msgs.append(
            Message(
                _M.MsgApp, to, self.id, self.term, prev_term, prev_index, tuple(entries), log.committed
            )
        )
        return True

    def _maybe_send_snapshot(self, to: int, progress) -> bool:
        if not progress.recent_active:
            return False
        try:
            snapshot = self.log.snapshot()
        except SnapshotTemporarilyUnavailable:
            return False
        if snapshot.is_empty():
            raise AssertionError("need a non-empty snapshot to catch up a follower")
        progress.become_snapshot(snapshot.metadata.index)
        self._send(Message(type=_M.MsgSnap, to=to, from_=self.id, term=self.term, snapshot=snapshot))
        return True

    def bcast_append(self) -> None:
        """Send every peer whatever it is missing (or an empty probe)."""
        progress_of = self.tracker.progress
        for peer in self.tracker.peer_ids:
            if peer == self.id:
                continue
            progress = progress_of[peer]
            if self._maybe_send_append(peer, progress, True):
                while self._maybe_send_append(peer, progress, False):
                    pass

    def _bcast_heartbeat(self, context: bytes | None) -> None:
        committed = self.log.committed
        progress_of = self.tracker.progress
        for peer in self.tracker.peer_ids:
            if peer == self.id:
                continue
            self._send(
                Message(
                    type=_M.MsgHeartbeat,
                    to=peer,
                    from_=self.id,
                    term=self.term,
                    commit=min(progress_of[peer].match, committed),
                    context=context or b"",
                )
            )

    def flush(self) -> None:
        """Send the appends and read heartbeats that local calls queued."""
        if self.state != _LEADER:
            self.append_flush_pending = False
            self.read_flush_pending = False
            return
        if self.append_flush_pending:
            self.append_flush_pending = False
            self.bcast_append()
        if self.read_flush_pending:
            self.read_flush_pending = False
            context = self.read_only.last_context()
            if context is not None:
                self._bcast_heartbeat(context)

    # ------------------------------------------------------------- reads

    def _committed_in_term(self) -> bool:
        return self.log.term(self.log.committed) == self.term

    def _leader_read_index(self, m: Message) -> None:
        tracker = self.tracker
        if len(tracker.voters) == 1 and self.id in tracker.voters:
            if self._committed_in_term():
                self._answer_read(m, self.log.committed)
            else:
                self.held_reads.append(m)
            return
        if not self._committed_in_term():
            # §8: a new leader does not know the commit index until it has
            # committed an entry of its own term.
            self.held_reads.append(m)
            return
        self.read_only.add(self.log.committed, m, self.id)
        self.read_flush_pending = True

    def _answer_read(self, request: Message, index: int) -> None:
        if request.from_ == NONE or request.from_ == self.id:
            self.read_states.append((index, request.context))
        else:
            self._send(
                Message(
                    type=_M.MsgReadIndexResp,
                    to=request.from_,
                    from_=self.id,
                    term=self.term,
                    index=index,
                    context=request.context,
                )
            )

    # ---------------------------------------------------------- transfer

    def _handle_transfer_request(self, transferee: int, progress) -> None:
        if progress.is_learner:
            return
        if self.lead_transferee != NONE:
            if self.lead_transferee == transferee:
                return
            self.abort_leader_transfer()
        if transferee == self.id:
            return
        # The transfer must finish within one election timeout.
        self.election_elapsed = 0
        self.lead_transferee = transferee
        if progress.match == self.log.last_index():
            self._send_timeout_now(transferee)
        else:
            self._maybe_send_append(transferee, progress, True)

    def _hand_off_leadership(self) -> None:
        """Step down after removing ourselves, by transferring leadership.

        Stepping down at once can deadlock: the remaining voters may not know
        the removal is committed (so they still need our vote) while our log
        holds entries they lack (so we refuse it), and we may not campaign.
        Instead we keep leading without counting ourselves, refuse proposals,
        bring the most advanced voter up to date and send it TimeoutNow; we
        retry every election timeout until a newer term appears.
        """
        progress_of = self.tracker.progress
        voters = sorted(self.tracker.voters, key=lambda voter: (-progress_of[voter].match, voter))
        if not voters:
            return
        target = voters[0]
        if self.lead_transferee == target:
            return
        self._handle_transfer_request(target, progress_of[target])

    def _send_timeout_now(self, to: int) -> None:
        self._send(Message(type=_M.MsgTimeoutNow, to=to, from_=self.id, term=self.term))

    def abort_leader_transfer(self) -> None:
        """Give up a leader transfer; proposals are accepted again."""
        self.lead_transferee = NONE

    # -------------------------------------------------------- membership

    def apply_conf_change(self, change: ConfChange) -> ConfState:
        """Apply a committed single-step membership change (§6 / thesis §4.1).

        A change ``validate_conf_change`` refuses against the current
        membership (re-adding a voter, removing the last voter, demoting a
        voter...) leaves it unchanged, identically on every node, so apply
        stays deterministic.
        """
        tracker = self.tracker
        if validate_conf_change(change, tracker.conf_state()) is not None:
            return tracker.conf_state()
        node_id = change.node_id
        if change.type == ConfChangeType.ConfChangeAddNode:
            if node_id in tracker.learners:
                tracker.promote(node_id)
            else:
                tracker.add(node_id, self.log.last_index() + 1, learner=False)
        elif change.type == ConfChangeType.ConfChangeAddLearnerNode:
            tracker.add(node_id, self.log.last_index() + 1, learner=True)
        else:
            tracker.remove(node_id)
        self._after_membership_change()
        return tracker.conf_state()

    def apply_conf_change_entry_data(self, data: bytes) -> ConfState:
        """Apply the change an EntryConfChange entry carries, or nothing if
        it is malformed or invalid against the current membership."""
        change = decode_and_validate_conf_change(data, self.tracker.conf_state())
        if isinstance(change, ConfChange):
            return self.apply_conf_change(change)
        return self.tracker.conf_state()

    def _after_membership_change(self) -> None:
        if self.state != _LEADER:
            return
        if self.id not in self.tracker.voters:
            self._log_event(f"node {self.id} is no longer a voter: handing off leadership")
            self._hand_off_leadership()
            return
        if self.lead_transferee != NONE and self.lead_transferee not in self.tracker.voters:
            self.abort_leader_transfer()
        # A smaller quorum may commit more; new members need their first append.
        self.maybe_commit()
        self.append_flush_pending = True

