"""A small synchronous cluster for Raft unit tests: no time, no sockets.

Every node is a ``RawNode`` over a ``MemoryStorage``.  ``ready_cycle``
does what a driver does with one Ready (persist, apply, advance) and returns
the messages; ``stabilize`` delivers messages until the cluster is quiet.
Links can be cut one way or both ways, and message types dropped.
"""

from __future__ import annotations

import random

from metastore.raft import (
    Config,
    ConfChange,
    EntryType,
    MemoryStorage,
    Message,
    MessageType,
    RawNode,
    Ready,
    StateType,
)


class Cluster:
    """A set of RawNodes wired by an in-memory, synchronous network."""

    def __init__(
        self,
        ids=(1, 2, 3),
        *,
        seed: int = 0,
        bootstrap: bool = True,
        pre_vote: bool = True,
        check_quorum: bool = True,
        election_tick: int = 10,
        heartbeat_tick: int = 1,
        max_inflight_msgs: int = 256,
        max_size_per_msg: int = 1024 * 1024,
    ) -> None:
        self.seed = seed
        self.options = dict(
            pre_vote=pre_vote,
            check_quorum=check_quorum,
            election_tick=election_tick,
            heartbeat_tick=heartbeat_tick,
            max_inflight_msgs=max_inflight_msgs,
            max_size_per_msg=max_size_per_msg,
        )
        self.nodes: dict[int, RawNode] = {}
        self.storages: dict[int, MemoryStorage] = {}
        self.applied: dict[int, list] = {}
        self.read_states: dict[int, list] = {}
        self.conf_outcomes: dict[int, list] = {}
        self.cut_links: set[tuple[int, int]] = set()
        self.dropped_types: set[MessageType] = set()
        self.queue: list[Message] = []
        self.sent: list[Message] = []
        for node_id in ids:
            self.add_node(node_id)
            if bootstrap:
                self.nodes[node_id].bootstrap(list(ids))
        self.stabilize()

    def add_node(self, node_id: int, storage: MemoryStorage | None = None, applied: int = 0) -> RawNode:
        """Start (or restart, given its storage) node ``node_id``."""
        storage = storage if storage is not None else MemoryStorage()
        config = Config(
            id=node_id,
            storage=storage,
            rng=random.Random(self.seed * 1000 + node_id),
            applied=applied,
            **self.options,
        )
        node = RawNode(config)
        self.nodes[node_id] = node
        self.storages[node_id] = storage
        self.applied.setdefault(node_id, [])
        self.read_states.setdefault(node_id, [])
        self.conf_outcomes.setdefault(node_id, [])
        return node

    def restart(self, node_id: int) -> RawNode:
        """Crash ``node_id`` and restart it from its storage alone."""
        storage = self.storages[node_id]
        applied = storage.snapshot().metadata.index
        del self.applied[node_id][:]
        return self.add_node(node_id, storage, applied)

    # --------------------------------------------------------- the driver

    def persist(self, node_id: int, rd: Ready) -> None:
        """Write a Ready's durable parts to the node's storage."""
        storage = self.storages[node_id]
        if rd.snapshot is not None:
            storage.apply_snapshot(rd.snapshot)
        storage.append(rd.entries)
        if rd.hard_state is not None:
            storage.set_hard_state(rd.hard_state)

    def apply(self, node_id: int, rd: Ready) -> None:
        """Apply committed entries; a membership change goes through
        ``apply_conf_change_entry``, its outcome recorded in ``conf_outcomes``
        (an invalid one is a no-op)."""
        node = self.nodes[node_id]
        for entry in rd.committed_entries:
            if entry.type == EntryType.EntryConfChange:
                self.conf_outcomes[node_id].append((entry.index, node.apply_conf_change_entry(entry)))
            self.applied[node_id].append(entry)
        self.read_states[node_id].extend(rd.read_states)

    def ready_cycle(self, node_id: int) -> list[Message]:
        """Run one full Ready cycle on a node; return the messages to send."""
        node = self.nodes[node_id]
        if not node.has_ready():
            return []
        rd = node.ready()
        self.persist(node_id, rd)
        self.apply(node_id, rd)
        node.advance(rd)
        return list(rd.messages)

    def outbox(self, node_id: int) -> list[Message]:
        """Ready cycles on a node until it is quiet; all messages, undelivered."""
        messages: list[Message] = []
        for _ in range(100):
            if not self.nodes[node_id].has_ready():
                break
            messages.extend(self.ready_cycle(node_id))
        return messages

    # --------------------------------------------------------- the network

    def send(self, messages) -> None:
        """Queue messages, dropping those on cut links or of dropped types."""
        for message in messages:
            if message.type in self.dropped_types:
                continue
            if (message.from_, message.to) in self.cut_links:
                continue
            self.sent.append(message)
            self.queue.append(message)

    def deliver(self, message: Message) -> None:
        """Hand one message to its recipient (if it exists)."""
        node = self.nodes.get(message.to)
        if node is not None:
            node.step(message)

    def stabilize(self, max_rounds: int = 2000) -> None:
        """Run ready cycles and deliver messages until nothing is left to do."""
        for _ in range(max_rounds):
            progressed = False
            for node_id in sorted(self.nodes):
                if self.nodes[node_id].has_ready():
                    self.send(self.ready_cycle(node_id))
                    progressed = True
            while self.queue:
                progressed = True
                self.deliver(self.queue.pop(0))
            if not progressed:
                return
        raise AssertionError("cluster did not stabilize")

    def cut(self, a: int, b: int) -> None:
        """Drop all messages between a and b, both ways."""
        self.cut_links.update({(a, b), (b, a)})

    def isolate(self, node_id: int) -> None:
        """Cut a node off from every other node."""
        for other in self.nodes:
            if other != node_id:
                self.cut(node_id, other)

    def heal(self) -> None:
        """Restore every link and stop dropping message types."""
        self.cut_links.clear()
        self.dropped_types.clear()

    # --------------------------------------------------------- helpers

    def tick(self, node_id: int, ticks: int = 1) -> None:
        """Tick one node ``ticks`` times."""
        for _ in range(ticks):
            self.nodes[node_id].tick()

    def tick_all(self, ticks: int = 1) -> None:
        """Tick every node ``ticks`` times, stabilizing after each round."""
        for _ in range(ticks):
            for node_id in sorted(self.nodes):
                self.nodes[node_id].tick()
            self.stabilize()

    def elect(self, node_id: int) -> None:
        """Make ``node_id`` campaign and run the election to completion."""
        self.nodes[node_id].campaign()
        self.stabilize()

    def leader(self) -> int | None:
        """The id of the node that thinks it leads the highest term, if any."""
        leaders = [
            (node.raft.term, node_id)
            for node_id, node in self.nodes.items()
            if node.raft.state == StateType.StateLeader
        ]
        return max(leaders)[1] if leaders else None

    def state(self, node_id: int) -> StateType:
        """The role of ``node_id``."""
        return self.nodes[node_id].raft.state

    def applied_data(self, node_id: int) -> list[bytes]:
        """The data of the normal, non-empty entries ``node_id`` applied."""
        return [
            entry.data
            for entry in self.applied[node_id]
            if entry.type == EntryType.EntryNormal and entry.data
        ]

    def propose(self, node_id: int, data: bytes) -> None:
        """Propose on a node and run to quiet."""
        self.nodes[node_id].propose(data)
        self.stabilize()

    def change(self, node_id: int, change: ConfChange) -> None:
        """Propose a membership change on a node and run to quiet."""
        self.nodes[node_id].propose_conf_change(change)
        self.stabilize()
