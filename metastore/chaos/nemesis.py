"""Faults against a ``ProxiedCluster``: what can be broken, and how it is healed.

Each nemesis kind is a coroutine function ``inject(cluster, rng) -> Fault``
that breaks something; every fault knows how to undo itself (``heal``).
The runner alternates inject / hold / heal / quiet, and logs every fault
with its start and end times.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from metastore.chaos.cluster import ProxiedCluster
from metastore.chaos.proxy import BLACKHOLE, DROP


@dataclass
class Fault:
    """One injected fault: what it was, when, and how to undo it."""

    kind: str
    description: str
    start: float = 0.0
    end: float | None = None
    heal: Callable[[], Awaitable[None]] | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        """A JSON-ready summary for the report."""
        return {"kind": self.kind, "description": self.description, "start": round(self.start, 3),
                "end": None if self.end is None else round(self.end, 3)}


def _minority(cluster: ProxiedCluster, rng: random.Random) -> list[int]:
    size = rng.randint(1, (cluster.size - 1) // 2)
    return sorted(rng.sample(cluster.ids, size))


async def kill(cluster: ProxiedCluster, rng: random.Random) -> Fault:
    """SIGKILL a minority of members; healing restarts them."""
    victims = _minority(cluster, rng)
    for i in victims:
        cluster.members[i].kill()

    async def heal():
        for i in victims:
            cluster.members[i].start()

    return Fault("kill", f"SIGKILL members {victims}", heal=heal)


async def kill_leader(cluster: ProxiedCluster, rng: random.Random) -> Fault:
    """SIGKILL whoever leads now (a random member when none does)."""
    leader = await cluster.leader()
    victim = leader if leader in cluster.members else rng.choice(cluster.ids)
    cluster.members[victim].kill()

    async def heal():
        cluster.members[victim].start()

    return Fault("leader-kill", f"SIGKILL leader {victim}" if victim == leader else f"SIGKILL {victim} (no leader)",
                 heal=heal)


async def pause(cluster: ProxiedCluster, rng: random.Random) -> Fault:
    """SIGSTOP a minority (sometimes the leader); healing sends SIGCONT."""
    leader = await cluster.leader()
    if leader in cluster.members and rng.random() < 0.5:
        victims = [leader]
    else:
        victims = _minority(cluster, rng)
    for i in victims:
        cluster.members[i].pause()

    async def heal():
        for i in victims:
            cluster.members[i].resume()

    return Fault("pause", f"SIGSTOP members {victims}", heal=heal)


async def restart_all(cluster: ProxiedCluster, rng: random.Random) -> Fault:
    """SIGKILL every member, then start them all again at once."""
    for member in cluster.members.values():
        member.kill()
    for member in cluster.members.values():
        member.start()

    async def heal():
        return None

    return Fault("restart-all", "SIGKILL and restart every member", heal=heal)


def _cut(cluster: ProxiedCluster, links: list[tuple[int, int]], mode: str) -> None:
    for source, target in links:
        cluster.set_link(source, target, mode)


def _between(side_a, side_b) -> list[tuple[int, int]]:
    return [(a, b) for a in side_a for b in side_b] + [(b, a) for a in side_a for b in side_b]


async def partition(cluster: ProxiedCluster, rng: random.Random) -> Fault:
    """One of: a majority/minority split, the leader isolated, a one-way cut,
    or a bridge (two sides that only one member can talk to)."""
    mode = rng.choice([DROP, BLACKHOLE])
    ids = cluster.ids
    shape = rng.choice(["split", "isolate-leader", "one-way", "bridge"])
    if shape == "isolate-leader":
        leader = await cluster.leader()
        alone = [leader if leader in cluster.members else rng.choice(ids)]
        links = _between(alone, [i for i in ids if i not in alone])
        what = f"isolate leader {alone[0]}"
    elif shape == "one-way":
        # Everything *from* a minority is lost; what it receives still arrives.
        side = _minority(cluster, rng)
        links = [(a, b) for a in side for b in ids if b not in side]
        what = f"one-way: {side} cannot send to the others"
        if rng.random() < 0.5:
            links = [(b, a) for a, b in links]
            what = f"one-way: {side} cannot receive from the others"
    elif shape == "bridge":
        shuffled = rng.sample(ids, len(ids))
        bridge = shuffled[0]
        rest = shuffled[1:]
        half = len(rest) // 2
        left, right = rest[:half], rest[half:]
        links = _between(left, right)
        what = f"bridge {bridge} between {sorted(left)} and {sorted(right)}"
    else:
        minority = _minority(cluster, rng)
        links = _between(minority, [i for i in ids if i not in minority])
        what = f"split {minority} from {[i for i in ids if i not in minority]}"
    _cut(cluster, links, mode)

    async def heal():
        _cut(cluster, links, "pass")

    return Fault("partition", f"{what} ({mode})", heal=heal)


NEMESES: dict[str, Callable[[ProxiedCluster, random.Random], Awaitable[Fault]]] = {
    "kill": kill,
    "pause": pause,
    "partition": partition,
    "leader-kill": kill_leader,
    "restart-all": restart_all,
}
"""Every nemesis the runner knows, by its command-line name."""
