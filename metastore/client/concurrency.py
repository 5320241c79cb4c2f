"""The rules of the lock and election recipes, as etcd's ``concurrency``
package has them (sans-IO; shared by both flavours and by the older
``metastore.recipes`` over the seed REST API).

Every contender owns one key under the recipe's prefix, created with its
lease.  Contenders queue in the order their keys were created
(``create_revision``): the first holds the lock (leads the election);
every other waits for the deletion of the key just ahead of its own,
then looks again.  Waiting on the predecessor alone wakes one contender
per release.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generator, Sequence, TypeVar

from metastore.client import wire

Candidate = TypeVar("Candidate")


def contender_key(prefix: bytes | str, lease_id: int) -> bytes:
    """The key a contender holding ``lease_id`` owns: ``<prefix>/<lease hex>``."""
    return wire.as_bytes(prefix).rstrip(b"/") + b"/" + format(lease_id, "x").encode()


def queue_prefix(prefix: bytes | str) -> bytes:
    """The prefix every contender's key is under."""
    return wire.as_bytes(prefix).rstrip(b"/") + b"/"


def claim_request(key: bytes, value: bytes | str, lease_id: int) -> wire.Call:
    """Create ``key`` with the lease if it is missing, else read it (a
    contender that claims again finds its own key)."""
    return wire.txn_request(
        compare=[wire.Compare(key, "CREATE", "EQUAL", 0)],
        success=[wire.op_put(key, value, lease=lease_id)],
        failure=[wire.op_range(key)],
    )


def claimed_revision(answer: wire.TxnResult) -> int:
    """The create revision of the contender's key from ``claim_request``'s answer."""
    if answer.succeeded:
        return answer.header.revision
    kvs = answer.responses[0].kvs
    if not kvs:
        raise wire.ClientError(404, 5, "the contender's key vanished at once (its lease expired?)")
    return kvs[0].create_revision


def first_in_line(candidates: Sequence[Candidate]) -> Candidate | None:
    """The holder: the candidate created first (anything with ``create_revision``)."""
    return min(candidates, key=lambda c: c.create_revision, default=None)


def predecessor(candidates: Sequence[Candidate], my_revision: int) -> Candidate | None:
    """The candidate just ahead of the one created at ``my_revision``
    (None: it is first in line)."""
    ahead = [c for c in candidates if c.create_revision < my_revision]
    return max(ahead, key=lambda c: c.create_revision, default=None)


def proclaim_request(key: bytes, my_revision: int, value: bytes | str, lease_id: int) -> wire.Call:
    """A leader's new value, written only while its key is still its own."""
    return wire.txn_request(
        compare=[wire.Compare(key, "CREATE", "EQUAL", my_revision)],
        success=[wire.op_put(key, value, lease=lease_id)],
    )


def resign_request(key: bytes, my_revision: int) -> wire.Call:
    """Delete the contender's key if it is still its own."""
    return wire.txn_request(compare=[wire.Compare(key, "CREATE", "EQUAL", my_revision)], success=[wire.op_delete(key)])


class NotLeader(Exception):
    """The contender's key is gone (resigned, or its lease expired)."""


@dataclass(frozen=True, slots=True)
class Send:
    """A step of ``join_queue``: send ``call``, answer with ``parse`` of its reply."""

    call: wire.Call
    parse: Callable[[dict], object]


@dataclass(frozen=True, slots=True)
class WaitDeleted:
    """A step of ``join_queue``: answer once ``key`` is deleted at or after
    ``from_revision`` (a watch from there)."""

    key: bytes
    from_revision: int


def join_queue(prefix: bytes, value: bytes | str, lease_id: int) -> Generator[Send | WaitDeleted, object, tuple[bytes, int]]:
    """The lock / campaign algorithm as steps for a flavour to carry out:
    claim the contender's key, then until it is first in line wait for the
    deletion of the key just ahead.  Returns ``(key, create_revision)``;
    raises ``NotLeader`` if the key vanishes meanwhile."""
    key = contender_key(prefix, lease_id)
    revision = claimed_revision((yield Send(claim_request(key, value, lease_id), wire.parse_txn)))
    while True:
        queue = yield Send(wire.range_request(prefix, prefix=True, keys_only=True), wire.parse_range)
        if not any(kv.key == key for kv in queue.kvs):
            raise NotLeader(f"{key!r} is gone (its lease expired?)")
        ahead = predecessor(queue.kvs, revision)
        if ahead is None:
            return key, revision
        yield WaitDeleted(ahead.key, queue.header.revision + 1)


class QueueRun:
    """``join_queue`` for a driver loop: ``next(reply)`` is the next step,
    or None once ``result`` (``(key, create_revision)``) is known."""

    def __init__(self, prefix: bytes, value: bytes | str, lease_id: int) -> None:
        self._steps = join_queue(prefix, value, lease_id)
        self.result: tuple[bytes, int] | None = None

    def next(self, reply: object = None) -> Send | WaitDeleted | None:
        """The step after ``reply`` (the answer to the previous one)."""
        try:
            return self._steps.send(reply)
        except StopIteration as done:
            self.result = done.value
            return None


class LeaderView:
    """An election's queue as seen through a watch of its prefix: ``leader``
    is the first in line (its key and value), or None."""

    def __init__(self, kvs) -> None:
        self._queue = {kv.key: kv for kv in kvs}
        self.leader = first_in_line(list(self._queue.values()))

    def apply(self, event: wire.Event) -> bool:
        """Take ``event`` in; whether the leader (or its value) changed."""
        if event.type == "DELETE":
            self._queue.pop(event.kv.key, None)
        else:
            self._queue[event.kv.key] = event.kv
        leader = first_in_line(list(self._queue.values()))
        changed, self.leader = leader != self.leader, leader
        return changed
