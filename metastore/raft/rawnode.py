"""``RawNode``: the driver-facing API of the Raft core, and its value types.

The driver's cycle, one ``Ready`` at a time::

    if node.has_ready():
        rd = node.ready()
        # 1. leader only: MsgApp / MsgHeartbeat / MsgSnap may be sent now
        # 2. persist rd.hard_state, rd.entries, rd.snapshot; fsync if must_sync
        # 3. append them to the Storage raft reads (e.g. MemoryStorage)
        # 4. send the other messages; apply rd.committed_entries in order
        #    (an EntryConfChange through apply_conf_change_entry: one that
        #    cannot be applied is a no-op that raft still counts as applied)
        node.advance(rd)

Between ``ready()`` and ``advance()`` the driver may keep calling ``tick``,
``step`` and ``propose``: what they produce goes into the next ``Ready``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from metastore.raft.confchange import (
    ConfChangeRejection,
    apply_to_conf_state,
    decode_and_validate_conf_change,
    encode_conf_change,
    validate_conf_change,
)
from metastore.raft.core import Raft, RandomSource
from metastore.raft.errors import InvalidMessage, ProposalDropped
from metastore.raft.progress import ProgressState
from metastore.raft.storage import Storage
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

LOCAL_MESSAGE_TYPES = frozenset(
    {
        MessageType.MsgHup,
        MessageType.MsgBeat,
        MessageType.MsgUnreachable,
        MessageType.MsgSnapStatus,
        MessageType.MsgCheckQuorum,
    }
)
"""Message types a node only ever gives itself: ``step`` refuses them, and
the transport drops a connection that carries one (a peer sending one is
broken or hostile: it could start elections on us)."""

MESSAGES_SENT_BEFORE_PERSIST = frozenset(
    {MessageType.MsgApp, MessageType.MsgHeartbeat, MessageType.MsgSnap}
)
"""Leader messages the driver may send before its own fsync (thesis §10.2.1).

Only a leader ever emits these types; every other message must wait for the
Ready's hard state and entries to be durable.
"""


def _no_log(_message: str) -> None:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Everything a ``RawNode`` needs; validated on construction.

    ``election_tick`` must exceed ``heartbeat_tick``; the real timeout is
    drawn from ``[election_tick, 2 * election_tick)`` with ``rng``.
    ``applied`` is the last index the application has already applied (on a
    restart); it must not exceed the persisted commit index.
    ``applied_conf_state`` is the membership as of ``applied``, for an
    application that keeps it durably with its applied index: raft then
    takes it instead of replaying the conf change entries between the
    snapshot and ``applied`` by raft's own rules (which would redo a change
    the application skipped with ``skip_conf_change_entry``).
    """

    id: int
    storage: Storage
    rng: RandomSource
    election_tick: int = 10
    heartbeat_tick: int = 1
    applied: int = 0
    applied_conf_state: ConfState | None = None
    max_size_per_msg: int = 1024 * 1024
    max_inflight_msgs: int = 256
    check_quorum: bool = True
    pre_vote: bool = True
    logger: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, int) or self.id <= 0:
            raise ValueError(f"id must be a positive integer, not {self.id!r}")
        if self.heartbeat_tick <= 0:
            raise ValueError("heartbeat_tick must be positive")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError("election_tick must be greater than heartbeat_tick")
        if self.applied < 0:
            raise ValueError("applied must not be negative")
        if self.max_size_per_msg <= 0:
            raise ValueError("max_size_per_msg must be positive")
        if self.max_inflight_msgs <= 0:
            raise ValueError("max_inflight_msgs must be positive")
        if self.storage is None:
            raise ValueError("storage is required")
        if self.applied_conf_state is not None and not isinstance(self.applied_conf_state, ConfState):
            raise ValueError("applied_conf_state must be a ConfState or None")
        if not callable(getattr(self.rng, "randrange", None)):
            raise ValueError("rng must have a randrange method (e.g. random.Random(seed))")
        if self.logger is not None and not (
            callable(self.logger) or callable(getattr(self.logger, "info", None))
        ):
            raise ValueError("logger must be a callable or have an info method")


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state worth observing: who leads and what role we play."""

    lead: int
    raft_state: StateType


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read may be served once ``applied >= index``."""

    index: int
    request_ctx: bytes


@dataclass(frozen=True, slots=True)
class PeerProgress:
    """The leader's view of one peer, for ``status()``."""

    match: int
    next: int
    state: ProgressState
    is_learner: bool


@dataclass(frozen=True, slots=True)
class Status:
    """A snapshot of a node's Raft state for observability.

    ``progress`` is empty unless the node is the leader.
    """

    id: int
    term: int
    vote: int
    commit: int
    applied: int
    lead: int
    raft_state: StateType
    conf_state: ConfState
    progress: Mapping[int, PeerProgress] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Ready:
    """What the driver must persist, send and apply before ``advance``.

    ``hard_state`` and ``soft_state`` are None when unchanged; ``snapshot``
    is None unless one arrived to install; ``must_sync`` says whether the
    write needs an fsync (term, vote or entries changed).
    """

    soft_state: SoftState | None
    hard_state: HardState | None
    entries: tuple[Entry, ...]
    snapshot: Snapshot | None
    committed_entries: tuple[Entry, ...]
    messages: tuple[Message, ...]
    read_states: tuple[ReadState, ...]
    must_sync: bool


class RawNode:
    """A Raft node driven entirely from outside (no I/O, no clock, no threads).

    Starting a node, three cases:

    * Fresh cluster: every initial member builds a RawNode over empty
      storage and calls ``bootstrap(peers)`` with the same peer ids.  An
      initial member that finds its storage still empty on a later start
      (it crashed before its first Ready was durable) must bootstrap again:
      it would otherwise learn the bootstrap entries one at a time and could
      believe itself the only voter.
    * Restart: build a RawNode over the storage holding what earlier Readys
      persisted (hard state, snapshot, entries after it), with
      ``Config.applied`` = what the application has already applied.
      ``initial_state()`` returns the snapshot's membership; the membership
      changes in the log between the snapshot and ``applied`` are replayed
      by Raft itself (invalid ones skipped by the same rules), unless
      ``Config.applied_conf_state`` gives the membership at ``applied``
      (needed when the application skipped a change of its own accord),
      and those after ``applied`` come out again as committed
      entries, to be applied (``apply_conf_change_entry``) as usual.
    * Joining member: empty storage, no bootstrap.  It is not a member, so
      it never campaigns and refuses proposals; once the leader adds it, it
      learns the log (and the membership) from appends or a snapshot.
    """

    def __init__(self, config: Config) -> None:
        logger = config.logger
        if logger is None:
            log = _no_log
        elif callable(logger):
            log = logger
        else:
            log = logger.info
        self.raft = Raft(
            node_id=config.id,
            storage=config.storage,
            election_tick=config.election_tick,
            heartbeat_tick=config.heartbeat_tick,
            applied=config.applied,
            applied_conf_state=config.applied_conf_state,
            max_size_per_msg=config.max_size_per_msg,
            max_inflight_msgs=config.max_inflight_msgs,
            check_quorum=config.check_quorum,
            pre_vote=config.pre_vote,
            rng=config.rng,
            log=log,
        )
        self._prev_soft = SoftState(self.raft.lead, self.raft.state)
        hard = self.raft.hard_state()
        self._prev_hard = (hard.term, hard.vote, hard.commit)
        self._ready_outstanding = False
        # The membership as of the application's applied index: conf change
        # entries are judged against it.  Raft's own membership runs ahead of
        # it after bootstrap (which applies its entries at once) and after a
        # snapshot is restored, until the Ready carrying it is advanced.
        self._applied_conf_state = self.raft.tracker.conf_state()

    def bootstrap(self, peers: list[int] | tuple[int, ...]) -> None:
        """Start a brand-new cluster whose initial voters are ``peers``.

        Appends one ConfChangeAddNode entry per peer at term 1, committed, so
        every initial member (and any later joiner, through the log) agrees on
        the membership.  The entries come out in the first Ready, to persist
        and to apply (applying them again is harmless).
        """
        raft = self.raft
        if not peers:
            raise ValueError("bootstrap needs at least one peer")
        if raft.log.last_index() != 0 or raft.term != 0:
            raise ValueError("bootstrap needs empty storage")
        raft.become_follower(1, NONE)
        entries = [
            Entry(
                1,
                position + 1,
                EntryType.EntryConfChange,
                encode_conf_change(ConfChange(ConfChangeType.ConfChangeAddNode, peer)),
            )
            for position, peer in enumerate(peers)
        ]
        raft.log.append(entries)
        raft.log.committed = len(entries)
        for peer in peers:
            raft.apply_conf_change(ConfChange(ConfChangeType.ConfChangeAddNode, peer))

    # ------------------------------------------------------------- inputs

    def tick(self) -> None:
        """Advance logical time by one tick."""
        self.raft.tick()

    def campaign(self) -> None:
        """Start an election now (a pre-election first when PreVote is on)."""
        self.raft.step(Message(type=MessageType.MsgHup, from_=self.raft.id))

    def step(self, message: Message) -> None:
        """Feed a message received from a peer.

        Local-only message types, or a message without another node as
        sender, raise ``InvalidMessage`` (a RaftError and a ValueError); a
        forwarded proposal the leader cannot take is dropped silently (the
        proposer times out).
        """
        if message.type in LOCAL_MESSAGE_TYPES:
            raise InvalidMessage(f"{message.type.name} is not a network message")
        if message.from_ == NONE or message.from_ == self.raft.id:
            raise InvalidMessage("a network message must name another sender")
        try:
            self.raft.step(message)
        except ProposalDropped:
            pass

    def _check_member(self) -> None:
        if self.raft.id not in self.raft.tracker.progress:
            raise ProposalDropped("this node is not a member")

    def propose(self, data: bytes) -> None:
        """Propose ``data`` for the log; ProposalDropped if it cannot be taken.

        Acceptance does not promise commitment: a proposal may still be lost
        in a leader change, so the driver must time out and retry.
        """
        raft = self.raft
        self._check_member()
        if raft.state == StateType.StateLeader:
            raft.propose_data(data)
        else:
            raft.step(Message(type=MessageType.MsgProp, entries=(Entry(0, 0, EntryType.EntryNormal, data),)))

    def propose_conf_change(self, change: ConfChange) -> None:
        """Propose a single-step membership change; ProposalDropped if refused
        (including while another change is not yet applied, on the leader)."""
        self._check_member()
        entry = Entry(0, 0, EntryType.EntryConfChange, encode_conf_change(change))
        self.raft.step(Message(type=MessageType.MsgProp, entries=(entry,)))

    def apply_conf_change(self, change: ConfChange) -> ConfState:
        """Apply a committed membership change; returns the new membership.

        A change ``validate_conf_change`` refuses leaves it unchanged.
        Prefer ``apply_conf_change_entry``, which also says why."""
        if validate_conf_change(change, self._applied_conf_state) is None:
            self._applied_conf_state = apply_to_conf_state(change, self._applied_conf_state)
            if self.raft.log.unstable.snapshot is None:
                # Otherwise raft restored a snapshot past this entry already.
                self.raft.apply_conf_change(change)
        return self._applied_conf_state

    def applied_conf_state(self) -> ConfState:
        """The membership as of the last entry the application applied (or
        snapshot it installed): what to store with the applied index, and
        to give back as ``Config.applied_conf_state`` on a restart."""
        return self._applied_conf_state

    def _check_committed_conf_entry(self, entry: Entry) -> None:
        if entry.type != EntryType.EntryConfChange:
            raise ValueError(f"entry {entry.index} is not a conf change entry")
        log = self.raft.log
        if not log.applied < entry.index <= log.committed:
            raise ValueError(
                f"entry {entry.index} is not committed and unapplied "
                f"(applied {log.applied}, committed {log.committed})"
            )

    def check_conf_change_entry(self, entry: Entry) -> ConfChange | ConfChangeRejection:
        """What applying the committed EntryConfChange ``entry`` would do:
        the change it carries if it can be applied to the membership as of
        the last applied entry, else a ``ConfChangeRejection`` with the
        reason.  Changes nothing.

        Committed entries applied in log order make that the membership at
        ``entry.index - 1`` on every member, so every member decides alike.
        ValueError if ``entry`` is not a committed, unapplied conf change
        entry (a driver bug, not a poison entry).
        """
        self._check_committed_conf_entry(entry)
        return decode_and_validate_conf_change(entry.data, self._applied_conf_state)

    def apply_conf_change_entry(self, entry: Entry) -> ConfChange | ConfChangeRejection:
        """Apply the committed EntryConfChange ``entry``: the change it
        carries if valid (``check_conf_change_entry``), else nothing at all,
        as ``skip_conf_change_entry`` does.  Returns the applied change, or
        the rejection the driver should report to the entry's proposer; the
        membership after it is ``applied_conf_state()``.  Never raises for
        the entry's contents."""
        outcome = self.check_conf_change_entry(entry)
        if isinstance(outcome, ConfChange):
            self.apply_conf_change(outcome)
        return outcome

    def skip_conf_change_entry(self, entry: Entry) -> ConfState:
        """Apply the committed EntryConfChange ``entry`` as a no-op, whatever
        it carries (for a change the application itself refuses); returns
        the unchanged membership.

        Raft counts the entry as applied once ``advance`` covers it, exactly
        as for an applied change: the next membership change may then be
        proposed, and a campaign waiting on unapplied changes may start.
        A driver that skips a change raft would apply must restart with
        ``Config.applied_conf_state``.  ValueError as for
        ``check_conf_change_entry``.
        """
        self._check_committed_conf_entry(entry)
        return self._applied_conf_state

    def read_index(self, context: bytes) -> None:
        """Request a linearizable read; the answer is a ``ReadState`` with the
        same context in a later Ready.  Without a leader the request is
        dropped silently; the driver times it out.  Contexts must be unique
        cluster-wide among outstanding reads."""
        self.raft.step(Message(type=MessageType.MsgReadIndex, context=context))

    def transfer_leader(self, to: int) -> None:
        """Ask the leader to hand leadership to ``to`` (§3.10 of the thesis).

        Unlike etcd, a MsgTransferLeader names its target in ``index`` and its
        sender in ``from_``, so a forwarded request is an ordinary message.
        """
        self.raft.step(Message(type=MessageType.MsgTransferLeader, index=to))

    def report_unreachable(self, node_id: int) -> None:
        """The transport failed to reach ``node_id``: stop streaming to it."""
        self.raft.step(Message(type=MessageType.MsgUnreachable, from_=node_id))

    def report_snapshot(self, node_id: int, ok: bool) -> None:
        """The transport finished (or failed) sending a snapshot to ``node_id``."""
        self.raft.step(Message(type=MessageType.MsgSnapStatus, from_=node_id, reject=not ok))

    # ------------------------------------------------------------ outputs

    def has_ready(self) -> bool:
        """True when ``ready()`` would return something to do."""
        raft = self.raft
        if (raft.append_flush_pending or raft.read_flush_pending) and (
            raft.state == StateType.StateLeader
        ):
            return True
        unstable = raft.log.unstable
        if unstable.entries or unstable.snapshot is not None:
            return True
        if raft.msgs or raft.read_states:
            return True
        if raft.log.has_next_committed_entries():
            return True
        if (raft.term, raft.vote, raft.log.committed) != self._prev_hard:
            return True
        prev = self._prev_soft
        return raft.lead != prev.lead or raft.state != prev.raft_state

    def ready(self) -> Ready:
        """Take the next batch of work; call ``advance`` with it when done."""
        if self._ready_outstanding:
            raise AssertionError("ready() called again before advance()")
        raft = self.raft
        raft.flush()
        log = raft.log
        soft = None
        prev = self._prev_soft
        if raft.lead != prev.lead or raft.state != prev.raft_state:
            soft = SoftState(raft.lead, raft.state)
        hard = None
        must_sync = False
        current = (raft.term, raft.vote, log.committed)
        if current != self._prev_hard:
            hard = HardState(term=current[0], vote=current[1], commit=current[2])
            must_sync = current[0] != self._prev_hard[0] or current[1] != self._prev_hard[1]
        entries = tuple(log.unstable.entries)
        if entries:
            must_sync = True
        messages = tuple(raft.msgs)
        raft.msgs = []
        read_states = tuple(ReadState(index, context) for index, context in raft.read_states)
        raft.read_states = []
        self._ready_outstanding = True
        return Ready(
            soft_state=soft,
            hard_state=hard,
            entries=entries,
            snapshot=log.unstable.snapshot,
            committed_entries=tuple(log.next_committed_entries()),
            messages=messages,
            read_states=read_states,
            must_sync=must_sync,
        )

    def advance(self, rd: Ready) -> None:
        """The driver persisted, sent and applied everything ``rd`` held."""
        if not self._ready_outstanding:
            raise AssertionError("advance() without an outstanding ready()")
        self._ready_outstanding = False
        raft = self.raft
        log = raft.log
        if rd.soft_state is not None:
            self._prev_soft = rd.soft_state
        if rd.hard_state is not None:
            hard = rd.hard_state
            self._prev_hard = (hard.term, hard.vote, hard.commit)
        if rd.entries:
            last = rd.entries[-1]
            raft.on_persisted(last.index, last.term)
            log.stable_to(last.index, last.term)
        if rd.snapshot is not None:
            self._applied_conf_state = rd.snapshot.metadata.conf_state
            index = rd.snapshot.metadata.index
            log.stable_snap_to(index)
            if index > log.applied:
                log.applied = index
        if rd.committed_entries:
            log.applied_to(rd.committed_entries[-1].index)
            if raft.transfer_campaign_deferred:
                raft.on_applied()

    @property
    def commit_index(self) -> int:
        """The highest log index known committed (``status().commit``,
        without building the rest of the status)."""
        return self.raft.log.committed

    def status(self) -> Status:
        """The node's current state, with per-peer progress on a leader."""
        raft = self.raft
        progress: dict[int, PeerProgress] = {}
        if raft.state == StateType.StateLeader:
            for node_id, peer in sorted(raft.tracker.progress.items()):
                progress[node_id] = PeerProgress(peer.match, peer.next, peer.state, peer.is_learner)
        return Status(
            id=raft.id,
            term=raft.term,
            vote=raft.vote,
            commit=raft.log.committed,
            applied=raft.log.applied,
            lead=raft.lead,
            raft_state=raft.state,
            conf_state=raft.tracker.conf_state(),
            progress=progress,
        )
