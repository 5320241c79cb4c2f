"""A deterministic, seeded cluster simulator for the Raft core.

One ``Simulation(seed).run()`` plays a whole schedule: random proposals,
reads, membership changes and leader transfers, under a network that drops,
duplicates, delays and reorders messages, with symmetric and one-way
partitions, and nodes that crash and restart from what they had persisted.
Then every fault heals and the cluster must make progress within a bound.

Some proposals are poison: garbage bytes in normal entries, and conf change
entries that are malformed or invalid against the membership at their
index.  The simulated state machine applies them as no-ops (conf changes
through ``RawNode.apply_conf_change_entry``); every member must decide the
same at the same index, and still apply up to the commit index.  The
application also refuses some valid changes itself
(``skip_conf_change_entry``), and a durable state machine restarts with
``Config.applied_conf_state``.

The driver model is the real one: a ``Ready`` is taken, a leader's MsgApp /
MsgHeartbeat / MsgSnap leave at once, and everything else (storage writes,
other messages, applying, ``advance``) happens only when that node's
simulated fsync completes, which may take a while or never happen (crash).
A restarted node gets exactly its ``MemoryStorage``: what earlier fsyncs
wrote.

After every event the simulator checks the safety properties (one leader
per term, log matching, leader completeness, state machine safety,
linearizable ReadIndex); a breach raises ``Violation`` naming the seed and
the command that replays it.
"""

from __future__ import annotations

import random
import zlib
from collections import deque
from dataclasses import dataclass

import msgpack

from metastore.raft import (
    MESSAGES_SENT_BEFORE_PERSIST,
    CompactedError,
    Config,
    ConfChange,
    ConfChangeRejection,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    MemoryStorage,
    Message,
    MessageType,
    ProposalDropped,
    RawNode,
    Ready,
    StateType,
    encode_conf_change,
)

REPLAY_COMMAND = "RAFT_SIM_SEED={seed} .venv/bin/python -m twisted.trial tests.raft.test_simulation"


REFUSED_BY_APPLICATION = b"refused by the application"
"""A conf change context the simulated application refuses to apply."""


class Violation(AssertionError):
    """A safety or liveness property failed during a simulated schedule."""


@dataclass(frozen=True, slots=True)
class SimConfig:
    """The shape of a schedule: its length and how hostile the world is.

    Probabilities are per simulated tick unless noted; delays are counted
    in micro-steps (``micro_steps`` of them per tick).  One seed in
    ``long_every`` (those divisible by it) has ``fault_ticks`` of faults,
    for histories with many leader changes; the others, cheaper, have
    ``short_fault_ticks``.
    """

    initial_voters: int = 3
    max_nodes: int = 8
    fault_ticks: int = 100
    short_fault_ticks: int = 50
    long_every: int = 3
    liveness_ticks: int = 150
    micro_steps: int = 3
    heal_micro_steps: int = 10
    election_tick: int = 10
    drop: float = 0.08
    duplicate: float = 0.04
    max_delay: int = 4
    slow_fsync: float = 0.4
    crash: float = 0.03
    crash_new_leader: float = 0.2
    restart: float = 0.15
    partition: float = 0.07
    partition_heal: float = 0.08
    proposals: float = 0.9
    reads: float = 0.6
    conf_changes: float = 0.05
    poison: float = 0.06
    application_refuses: float = 0.25
    transfers: float = 0.02
    snapshot_every: int = 12
    log_tail: int = 4
    max_inflight_msgs: int = 4
    max_size_per_msg: int = 64


class SimNode:
    """One simulated process: durable storage, and (when up) its RawNode and
    in-memory application state."""

    __slots__ = (
        "id",
        "storage",
        "raw",
        "outstanding",
        "held",
        "fsync_due",
        "applied_index",
        "digest",
        "conf_state",
        "applied_ids",
        "incarnation",
        "tick_rate",
        "durable_app",
    )

    def __init__(self, node_id: int) -> None:
        self.id = node_id
        self.storage = MemoryStorage()
        self.raw: RawNode | None = None
        self.outstanding: Ready | None = None
        self.held: list[Message] = []
        self.fsync_due = 0
        self.applied_index = 0
        self.digest = 0
        self.conf_state = ConfState()
        self.applied_ids: set[bytes] = set()
        self.incarnation = 0
        self.tick_rate = 1.0
        self.durable_app: tuple[int, int, ConfState] | None = None


class Simulation:
    """One seeded schedule; ``run()`` returns statistics or raises Violation."""

    def __init__(self, seed: int, config: SimConfig = SimConfig()) -> None:
        self.seed = seed
        self.config = config
        self.rng = random.Random(seed)
        # Each schedule also draws its own Raft options.
        self.check_quorum = self.rng.random() < 0.7
        self.pre_vote = self.rng.random() < 0.7
        # One entry per append (size 1) makes old-term entries travel alone,
        # which Figure 8 style histories need.
        # (One entry per message *and* one message in flight is too slow for
        # the liveness bound, so that pair is left out.)
        self.max_size_per_msg, self.max_inflight_msgs = self.rng.choice(
            (
                (1, config.max_inflight_msgs),
                (1, 256),
                (config.max_size_per_msg, 1),
                (config.max_size_per_msg, config.max_inflight_msgs),
                (1 << 20, 1),
                (1 << 20, 256),
            )
        )
        self.initial_voters = self.rng.choice((config.initial_voters, 5))
        # Like the RocksDB engine, the state machine may be durable by itself:
        # then a restart resumes from its applied index, past the snapshot.
        self.durable_state_machine = self.rng.random() < 0.5
        self.now = 0  # in micro-steps
        self.nodes: dict[int, SimNode] = {}
        self.next_id = 1
        # Messages in flight, by the micro-step at which they arrive.
        self.network: dict[int, list[Message]] = {}
        self.blocked: set[tuple[int, int]] = set()
        self.healed = False
        self.trace: deque = deque(maxlen=60)
        # Safety bookkeeping.
        self.leader_of_term: dict[int, int] = {}
        self.checked_leaders: set[tuple[int, int]] = set()
        self.log_entries: dict[tuple[int, int], tuple[int, bytes, int]] = {}
        self.commit_term: list[int] = [0]
        self.commit_entry_term: list[int] = [0]
        self.applied_entries: dict[int, tuple[int, bytes]] = {}
        self.digest_at: dict[int, int] = {}
        # Client bookkeeping.
        self.proposal_counter = 0
        self.accepted: dict[bytes, tuple[int, int]] = {}
        self.committed_ids: set[bytes] = set()
        self.max_acked_index = 0
        self.read_counter = 0
        self.retried_with: tuple[int, int] | None = None
        self.liveness_reads: set[bytes] | None = None
        self.new_leaders: list[SimNode] = []
        self.reads: dict[bytes, int] = {}
        # Poison entries, and what applying each conf change entry did.
        self.poison_counter = 0
        self.poison_conf: set[bytes] = set()
        self.conf_outcome_at: dict[int, ConfChange | ConfChangeRejection] = {}
        self.stats = {
            "delivered": 0,
            "dropped": 0,
            "crashes": 0,
            "reads_served": 0,
            "acked_writes": 0,
            "conf_changes": 0,
            "poison_proposed": 0,
            "poison_normal_applied": 0,
            "conf_rejected": 0,
            "conf_skipped": 0,
            "snapshots_sent": 0,
            "elections": 0,
            "ticks_to_recover": 0,
        }

    # ------------------------------------------------------------ failures

    def fail(self, what: str) -> None:
        """Raise a Violation that names the seed, the replay command and the
        last events."""
        events = "\n".join("  " + " ".join(str(part) for part in event) for event in self.trace)
        raise Violation(
            f"seed {self.seed}: {what}\nreplay with: {REPLAY_COMMAND.format(seed=self.seed)}\n"
            f"last events:\n{events}"
        )

    # ------------------------------------------------------------ nodes

    def _new_raw(self, node: SimNode, applied: int, applied_conf_state: ConfState | None = None) -> RawNode:
        config = self.config
        return RawNode(
            Config(
                id=node.id,
                storage=node.storage,
                rng=random.Random(self.rng.getrandbits(32)),
                applied=applied,
                applied_conf_state=applied_conf_state,
                election_tick=config.election_tick,
                check_quorum=self.check_quorum,
                pre_vote=self.pre_vote,
                max_inflight_msgs=self.max_inflight_msgs,
                max_size_per_msg=self.max_size_per_msg,
            )
        )

    def add_node(self) -> SimNode:
        """Create a node with empty storage and start it (it does not bootstrap)."""
        node = SimNode(self.next_id)
        self.next_id += 1
        # Clocks drift: some nodes tick slower than others until healing.
        node.tick_rate = self.rng.choice((1.0, 1.0, 0.8, 0.5))
        self.nodes[node.id] = node
        node.raw = self._new_raw(node, 0)
        return node

    def crash(self, node: SimNode) -> None:
        """Lose everything not fsynced: the RawNode, the Ready in flight, the
        held messages and the in-memory application."""
        self.trace.append((self.now, "crash", node.id))
        self.stats["crashes"] += 1
        node.raw = None
        node.outstanding = None
        node.held = []
        node.applied_ids = set()
        node.incarnation += 1

    def restart(self, node: SimNode) -> None:
        """Start again from the node's storage alone."""
        snapshot = node.storage.snapshot()
        node.applied_index = snapshot.metadata.index
        node.digest = self._snapshot_digest(snapshot.data)
        node.conf_state = snapshot.metadata.conf_state
        durable = node.durable_app
        applied_conf_state = None
        if durable is not None and durable[0] > node.applied_index:
            node.applied_index, node.digest, node.conf_state = durable
            # The application skipped some changes raft would apply: raft
            # must take its membership rather than replay the log.
            applied_conf_state = node.conf_state
        node.raw = self._new_raw(node, node.applied_index, applied_conf_state)
        if node.id <= self.initial_voters and self._persisted_nothing(node):
            # An initial member that crashed before persisting its bootstrap
            # must bootstrap again: learning the bootstrap entries one by one
            # from a leader could make it believe it is the only voter.
            node.raw.bootstrap(list(range(1, self.initial_voters + 1)))
        self.trace.append((self.now, "restart", node.id, "from", node.applied_index))
        if node.applied_index > 0 and node.raw.status().conf_state != node.conf_state:
            self.fail(
                f"node {node.id} restarted at {node.applied_index} with membership "
                f"{node.raw.status().conf_state}, applied state says {node.conf_state}"
            )
        self._check_node(node)

    @staticmethod
    def _persisted_nothing(node: SimNode) -> bool:
        storage = node.storage
        return storage.last_index() == 0 and storage.hard_state.is_empty()

    @staticmethod
    def _snapshot_digest(data: bytes) -> int:
        return msgpack.unpackb(data) if data else 0

    # ------------------------------------------------------------ network

    def send(self, sender: SimNode, messages) -> None:
        """Put messages on the wire, with drops, duplicates and delays."""
        config = self.config
        rng = self.rng
        for message in messages:
            if message.to == message.from_:
                self.fail(f"message to self: {message}")
            copies = 1
            if not self.healed:
                if rng.random() < config.drop:
                    self.stats["dropped"] += 1
                    self._report_lost(message)
                    continue
                if rng.random() < config.duplicate:
                    copies = 2
            for _ in range(copies):
                delay = rng.randrange(config.max_delay + 1) if not self.healed else 0
                due = self.now + delay
                in_flight = self.network.get(due)
                if in_flight is None:
                    self.network[due] = [message]
                else:
                    in_flight.append(message)

    def _report_lost(self, message: Message) -> None:
        sender = self.nodes.get(message.from_)
        if sender is None or sender.raw is None:
            return
        if message.type == MessageType.MsgSnap:
            sender.raw.report_snapshot(message.to, ok=False)
            self._check_node(sender)
        elif message.type == MessageType.MsgApp and self.rng.random() < 0.3:
            sender.raw.report_unreachable(message.to)

    def deliver_due(self) -> None:
        """Deliver every message whose delay has elapsed: in random order,
        or in the order sent once the network has healed."""
        network = self.network
        if not network:
            return
        due = []
        for arrival in [arrival for arrival in network if arrival <= self.now]:
            due += network.pop(arrival)
        if not due:
            return
        if not self.healed:
            # Reordering is a fault too; a healed network is in order (TCP).
            self.rng.shuffle(due)
        for message in due:
            recipient = self.nodes.get(message.to)
            if (
                recipient is None
                or recipient.raw is None
                or (message.from_, message.to) in self.blocked
            ):
                self.stats["dropped"] += 1
                self._report_lost(message)
                continue
            self.stats["delivered"] += 1
            recipient.raw.step(message)
            self._check_node(recipient)
            if message.type == MessageType.MsgSnap:
                self.stats["snapshots_sent"] += 1
                sender = self.nodes.get(message.from_)
                if sender is not None and sender.raw is not None:
                    sender.raw.report_snapshot(message.to, ok=True)
                    self._check_node(sender)

    # ------------------------------------------------------------ the driver

    def take_ready(self, node: SimNode) -> None:
        """Take a Ready: leader appends/heartbeats/snapshots go out now."""
        raw = node.raw
        rd = raw.ready()
        log = raw.raft.log
        for entry in rd.entries:
            try:
                previous_term = log.term(entry.index - 1)
            except CompactedError:
                previous_term = -1
            key = (entry.index, entry.term)
            identity = (int(entry.type), entry.data, previous_term)
            known = self.log_entries.setdefault(key, identity)
            if known != identity and -1 not in (known[2], previous_term):
                self.fail(f"log matching: node {node.id} has {identity} at {key}, seen {known}")
        early = [m for m in rd.messages if m.type in MESSAGES_SENT_BEFORE_PERSIST]
        node.held = [m for m in rd.messages if m.type not in MESSAGES_SENT_BEFORE_PERSIST]
        self.send(node, early)
        node.outstanding = rd
        node.fsync_due = self.now
        if not self.healed and self.rng.random() < self.config.slow_fsync:
            node.fsync_due = self.now + 1 + self.rng.randrange(2 * self.config.micro_steps)
        self.trace.append((self.now, "ready", node.id, len(rd.entries), len(rd.committed_entries), len(rd.messages)))

    def complete_fsync(self, node: SimNode) -> None:
        """The Ready is durable: write storage, send, apply, advance."""
        rd = node.outstanding
        raw = node.raw
        storage = node.storage
        if rd.snapshot is not None:
            storage.apply_snapshot(rd.snapshot)
            meta = rd.snapshot.metadata
            node.applied_index = meta.index
            node.digest = self._snapshot_digest(rd.snapshot.data)
            node.conf_state = meta.conf_state
            expected = self.digest_at.get(meta.index)
            if expected is not None and expected != node.digest:
                self.fail(f"node {node.id} installed a snapshot at {meta.index} with a wrong state")
        storage.append(rd.entries)
        if rd.hard_state is not None:
            storage.set_hard_state(rd.hard_state)
        self.send(node, node.held)
        node.held = []
        for entry in rd.committed_entries:
            self._apply(node, entry)
        for read in rd.read_states:
            required = self.reads.pop(read.request_ctx, None)
            if required is None:
                continue
            if read.index < required:
                self.fail(
                    f"stale read on node {node.id}: read index {read.index} misses a write "
                    f"acknowledged at {required}"
                )
            self.stats["reads_served"] += 1
        node.outstanding = None
        if self.durable_state_machine:
            node.durable_app = (node.applied_index, node.digest, node.conf_state)
        raw.advance(rd)
        self._maybe_snapshot(node)
        self.trace.append((self.now, "fsync", node.id, "applied", node.applied_index))
        self._check_node(node)

    def _apply(self, node: SimNode, entry) -> None:
        if entry.index != node.applied_index + 1:
            self.fail(f"node {node.id} applies {entry.index} after {node.applied_index}")
        known = self.applied_entries.setdefault(entry.index, (entry.term, entry.data))
        if known != (entry.term, entry.data):
            self.fail(
                f"state machine safety: node {node.id} applies {(entry.term, entry.data)} at "
                f"{entry.index}, another node applied {known}"
            )
        node.applied_index = entry.index
        node.digest = zlib.crc32(entry.data, zlib.crc32(entry.term.to_bytes(8, "big"), node.digest))
        self.digest_at.setdefault(entry.index, node.digest)
        if entry.type == EntryType.EntryConfChange:
            self._apply_conf_change(node, entry)
        elif entry.data and not entry.data.startswith(b"w"):
            self.stats["poison_normal_applied"] += 1  # the state machine's no-op
        elif entry.data:
            self.committed_ids.add(entry.data)
            node.applied_ids.add(entry.data)
            origin = self.accepted.get(entry.data)
            if origin == (node.id, node.incarnation) and entry.index > self.max_acked_index:
                self.max_acked_index = entry.index
                self.stats["acked_writes"] += 1

    def _apply_conf_change(self, node: SimNode, entry: Entry) -> None:
        """Apply a conf change entry as a driver would: raft's rules first
        (a rejection is already a no-op), then the application's own (it
        refuses changes whose context asks it to)."""
        raw = node.raw
        before = node.conf_state
        outcome = raw.check_conf_change_entry(entry)
        if isinstance(outcome, ConfChange) and outcome.context == REFUSED_BY_APPLICATION:
            node.conf_state = raw.skip_conf_change_entry(entry)
            outcome = ConfChangeRejection("refused by the application")
            self.stats["conf_skipped"] += 1
        else:
            if raw.apply_conf_change_entry(entry) != outcome:
                self.fail(f"node {node.id}: apply_conf_change_entry disagrees with check at {entry.index}")
            node.conf_state = raw.applied_conf_state()
        if isinstance(outcome, ConfChangeRejection):
            self.stats["conf_rejected"] += 1
            if node.conf_state != before:
                self.fail(f"node {node.id}: rejected conf change at {entry.index} changed {before} to {node.conf_state}")
        else:
            self.stats["conf_changes"] += 1
            if entry.data in self.poison_conf:
                self.fail(f"node {node.id} applied poison conf change {outcome} at {entry.index}")
        known = self.conf_outcome_at.setdefault(entry.index, outcome)
        if known != outcome:
            self.fail(f"node {node.id} decided {outcome} at {entry.index}, another node decided {known}")

    def _maybe_snapshot(self, node: SimNode) -> None:
        storage = node.storage
        config = self.config
        snapshot_index = storage.snapshot().metadata.index
        if node.applied_index - snapshot_index < config.snapshot_every:
            return
        data = msgpack.packb(node.digest)
        storage.create_snapshot(node.applied_index, node.conf_state, data)
        compact_to = node.applied_index - config.log_tail
        if compact_to > storage.first_index():
            storage.compact(compact_to)

    # ------------------------------------------------------------ checks

    def _check_node(self, node: SimNode) -> None:
        raft = node.raw.raft
        if raft.state == StateType.StateLeader:
            first = self.leader_of_term.setdefault(raft.term, node.id)
            if first != node.id:
                self.fail(f"two leaders in term {raft.term}: {first} and {node.id}")
            if (node.id, raft.term) not in self.checked_leaders:
                self.checked_leaders.add((node.id, raft.term))
                self.stats["elections"] += 1
                self.new_leaders.append(node)
                self.trace.append((self.now, "leader", node.id, "term", raft.term))
                self._check_leader_completeness(node)
        committed = raft.log.committed
        known = len(self.commit_term) - 1
        if committed > known:
            log = raft.log
            for index in range(known + 1, committed + 1):
                try:
                    entry_term = log.term(index)
                except CompactedError:
                    entry_term = -1
                self.commit_term.append(raft.term)
                self.commit_entry_term.append(entry_term)

    def _check_leader_completeness(self, node: SimNode) -> None:
        raft = node.raw.raft
        log = raft.log
        start = max(1, log.first_index())
        for index in range(start, len(self.commit_term)):
            if self.commit_term[index] >= raft.term or self.commit_entry_term[index] < 0:
                continue
            if log.term(index) != self.commit_entry_term[index]:
                self.fail(
                    f"leader completeness: leader {node.id} of term {raft.term} lacks entry "
                    f"{index} committed in term {self.commit_term[index]}"
                )

    # ------------------------------------------------------------ clients

    def _live_nodes(self) -> list[SimNode]:
        return [node for node in self.nodes.values() if node.raw is not None]

    def _leader(self) -> SimNode | None:
        best = None
        for node in self._live_nodes():
            raft = node.raw.raft
            if raft.state == StateType.StateLeader and (best is None or raft.term > best.raw.raft.term):
                best = node
        return best

    def propose(self, node: SimNode, data: bytes | None = None) -> bool:
        """A client proposes unique data on ``node``; False if refused."""
        if data is None:
            self.proposal_counter += 1
            data = b"w%d" % self.proposal_counter
        try:
            node.raw.propose(data)
        except ProposalDropped:
            return False
        self.accepted[data] = (node.id, node.incarnation)
        self._check_node(node)
        return True

    def read(self, node: SimNode) -> bytes:
        """A client starts a linearizable read on ``node``; returns its context."""
        self.read_counter += 1
        context = b"r%d" % self.read_counter
        self.reads[context] = self.max_acked_index
        node.raw.read_index(context)
        self._check_node(node)
        return context

    def change_membership(self, node: SimNode) -> None:
        """Propose a random single-step membership change on ``node``."""
        rng = self.rng
        conf = node.conf_state
        choices = []
        if len(conf.voters) < 5 and len(self.nodes) < self.config.max_nodes:
            choices += ["add", "add_learner"]
        if conf.learners:
            choices += ["promote", "remove_learner"]
        if len(conf.voters) > 2:
            choices.append("remove")
        if not choices:
            return
        choice = rng.choice(choices)
        if choice in ("add", "add_learner"):
            target = self.next_id
            kind = ConfChangeType.ConfChangeAddNode if choice == "add" else ConfChangeType.ConfChangeAddLearnerNode
        elif choice == "promote":
            target = rng.choice(conf.learners)
            kind = ConfChangeType.ConfChangeAddNode
        elif choice == "remove_learner":
            target = rng.choice(conf.learners)
            kind = ConfChangeType.ConfChangeRemoveNode
        else:
            target = rng.choice(conf.voters)
            kind = ConfChangeType.ConfChangeRemoveNode
        context = b""
        if choice not in ("add", "add_learner") and rng.random() < self.config.application_refuses:
            context = REFUSED_BY_APPLICATION
        try:
            node.raw.propose_conf_change(ConfChange(kind, target, context))
        except ProposalDropped:
            return
        self.trace.append((self.now, "conf", node.id, kind.name, target))
        if target == self.next_id:
            self.add_node()
        self._check_node(node)

    def propose_poison(self, node: SimNode) -> None:
        """A buggy or hostile client gets an entry into the log that the
        state machine cannot apply: garbage in a normal entry, or a conf
        change entry that is malformed or invalid at any index it lands at
        (it bypasses ``propose_conf_change``, as a bug past the API would)."""
        rng = self.rng
        self.poison_counter += 1
        if rng.random() < 0.4:
            data = b"\xc1%d:" % self.poison_counter + rng.randbytes(rng.randrange(8))
            self._propose_entry(node, EntryType.EntryNormal, data)
            return
        data = self._poison_conf_data(node)
        if data is not None:
            self.poison_conf.add(data)
            self._propose_entry(node, EntryType.EntryConfChange, data)

    def _poison_conf_data(self, node: SimNode) -> bytes | None:
        rng = self.rng
        unique = b"poison %d" % self.poison_counter
        malformed = (
            b"\xc1" + unique,
            encode_conf_change(ConfChange(ConfChangeType.ConfChangeAddNode, 9, unique))[:-1],
            msgpack.packb([2, 0, 9, unique]),
            msgpack.packb([1, 7, 9, unique]),
            msgpack.packb([1, 0, 0, unique]),
            msgpack.packb([1, 1, -5, unique]),
            msgpack.packb([1, 0, 9, unique.decode()]),
        )
        raft = node.raw.raft
        if rng.random() < 0.5 or raft.state != StateType.StateLeader:
            return rng.choice(malformed)
        # A leader that accepts a conf change has applied every earlier one,
        # so its membership now is the membership at the entry's index.
        conf = raft.tracker.conf_state()
        invalid = [ConfChange(ConfChangeType.ConfChangeRemoveNode, 10_000 + self.poison_counter, unique)]
        for voter in conf.voters:
            invalid.append(ConfChange(ConfChangeType.ConfChangeAddNode, voter, unique))
            invalid.append(ConfChange(ConfChangeType.ConfChangeAddLearnerNode, voter, unique))
        for learner in conf.learners:
            invalid.append(ConfChange(ConfChangeType.ConfChangeAddLearnerNode, learner, unique))
        if len(conf.voters) == 1:
            invalid.append(ConfChange(ConfChangeType.ConfChangeRemoveNode, conf.voters[0], unique))
        return encode_conf_change(rng.choice(invalid))

    def _propose_entry(self, node: SimNode, entry_type: EntryType, data: bytes) -> None:
        try:
            node.raw.raft.step(Message(type=MessageType.MsgProp, entries=(Entry(0, 0, entry_type, data),)))
        except ProposalDropped:
            return
        self.stats["poison_proposed"] += 1
        self.trace.append((self.now, "poison", node.id, entry_type.name, data[:24]))
        self._check_node(node)

    def client_ops(self) -> None:
        """Random client traffic for one tick."""
        config = self.config
        rng = self.rng
        live = self._live_nodes()
        if not live:
            return
        if rng.random() < config.proposals:
            for _ in range(rng.randrange(1, 4)):
                self.propose(rng.choice(live))
        if rng.random() < config.reads:
            self.read(rng.choice(live))
        if rng.random() < config.conf_changes:
            self.change_membership(rng.choice(live))
        if rng.random() < config.poison:
            self.propose_poison(rng.choice(live))
        if rng.random() < config.transfers:
            node = rng.choice(live)
            voters = node.conf_state.voters
            if voters:
                node.raw.transfer_leader(rng.choice(voters))
                self._check_node(node)

    def inject_faults(self) -> None:
        """Random crashes, restarts and partitions for one tick."""
        config = self.config
        rng = self.rng
        for node in list(self.nodes.values()):
            if node.raw is not None:
                if rng.random() < config.crash:
                    self.crash(node)
            elif rng.random() < config.restart:
                self.restart(node)
        if rng.random() < config.partition:
            ids = sorted(self.nodes)
            if rng.random() < 0.5:
                # Symmetric: split the nodes in two sides.
                side = {node_id for node_id in ids if rng.random() < 0.5}
                for a in ids:
                    for b in ids:
                        if (a in side) != (b in side):
                            self.blocked.add((a, b))
                self.trace.append((self.now, "partition", sorted(side)))
            else:
                a, b = rng.sample(ids, 2) if len(ids) > 1 else (ids[0], ids[0])
                self.blocked.add((a, b))
                self.trace.append((self.now, "one-way cut", a, b))
        if self.blocked and rng.random() < config.partition_heal:
            self.blocked.clear()
            self.trace.append((self.now, "partition healed"))

    def heal(self) -> None:
        """End of the fault phase: restart everyone, reconnect, stop losing."""
        self.healed = True
        self.blocked.clear()
        for node in self.nodes.values():
            if node.raw is None:
                self.restart(node)
        self.trace.append((self.now, "heal"))

    # ------------------------------------------------------------ the loop

    def micro_step(self) -> None:
        """Let every node make progress once, then deliver due messages."""
        rng = self.rng
        if self.new_leaders:
            # Leaders that die young leave old-term entries behind (Figure 8).
            if not self.healed:
                for node in self.new_leaders:
                    if node.raw is not None and rng.random() < self.config.crash_new_leader:
                        self.crash(node)
            self.new_leaders = []
        order = list(self.nodes.values())
        rng.shuffle(order)
        for node in order:
            if node.raw is None:
                continue
            if node.outstanding is not None:
                if node.fsync_due <= self.now:
                    self.complete_fsync(node)
            elif node.raw.has_ready():
                self.take_ready(node)
        self.deliver_due()
        self.now += 1

    def tick(self) -> None:
        """One tick of every live node's clock."""
        for node in self._live_nodes():
            if self.healed or node.tick_rate == 1.0 or self.rng.random() < node.tick_rate:
                node.raw.tick()
                self._check_node(node)

    def converged(self) -> bool:
        """Liveness target: a leader, every accepted proposal committed,
        every member applied up to the leader's commit index (poison entries
        included, as no-ops), and a read started on every member after
        healing answered."""
        leader = self._leader()
        if leader is None:
            return False
        raft = leader.raw.raft
        if raft.log.term(raft.log.committed) != raft.term:
            return False
        if len(self.committed_ids) < len(self.accepted) or any(
            data not in self.committed_ids for data in self.accepted
        ):
            return False
        members = set(leader.conf_state.voters) | set(leader.conf_state.learners)
        for member in members:
            node = self.nodes.get(member)
            if node is None or node.raw is None or node.applied_index < raft.log.committed:
                return False
        if self.liveness_reads is None:
            return False
        return not any(context in self.reads for context in self.liveness_reads)

    def retry_lost_proposals(self) -> None:
        """Clients retry proposals that were accepted but never committed,
        once per new leader (after healing, only a leader change loses one)."""
        leader = self._leader()
        if leader is None:
            return
        if self.liveness_reads is None or any(context in self.reads for context in self.liveness_reads):
            # Reads must be served again too: one on every member.  A read
            # made where no leader is known yet is dropped; ask again.
            self._read_on_every_member(leader)
        if self.retried_with == (leader.id, leader.raw.raft.term):
            return
        for data in sorted(self.accepted):
            if data not in self.committed_ids and not self.propose(leader, data):
                return  # refused (e.g. a transfer is under way): retry later
        self.retried_with = (leader.id, leader.raw.raft.term)

    def _read_on_every_member(self, leader: SimNode) -> None:
        members = set(leader.conf_state.voters) | set(leader.conf_state.learners)
        self.liveness_reads = {
            self.read(self.nodes[member])
            for member in sorted(members)
            if member in self.nodes and self.nodes[member].raw is not None
        }

    def bootstrap(self) -> None:
        """Create the initial voters, each bootstrapped with the same peers."""
        peers = list(range(1, self.initial_voters + 1))
        for _ in peers:
            node = self.add_node()
            node.raw.bootstrap(peers)

    def run(self) -> dict[str, int]:
        """Play the schedule; return statistics, or raise Violation."""
        config = self.config
        self.bootstrap()
        try:
            long_schedule = self.seed % config.long_every == 0
            for _ in range(config.fault_ticks if long_schedule else config.short_fault_ticks):
                self.inject_faults()
                self.client_ops()
                self.tick()
                for _ in range(config.micro_steps):
                    self.micro_step()
            self.heal()
            for ticks in range(config.liveness_ticks):
                if ticks % (2 * config.election_tick) == config.election_tick:
                    self.retry_lost_proposals()
                self.tick()
                # A healthy network's round trip is much shorter than a tick.
                for _ in range(config.heal_micro_steps):
                    self.micro_step()
                if self.converged():
                    self.stats["ticks_to_recover"] = ticks + 1
                    return self.stats
        except Violation:
            raise
        except Exception as error:  # a crash inside raft is a finding too
            self.fail(f"unexpected {type(error).__name__}: {error}")
        self.fail(
            f"liveness: not converged {config.liveness_ticks} ticks after healing "
            f"(leader {getattr(self._leader(), 'id', None)}, "
            f"{len([d for d in self.accepted if d not in self.committed_ids])} proposals uncommitted)"
        )
