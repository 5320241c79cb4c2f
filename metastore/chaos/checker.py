"""Linearizability of per-key registers, and loss of acknowledged writes.

Pure: no I/O, no clock, no reactor.  A history is a list of ``Operation``;
each key is an independent register, so every key is checked on its own.

The register search follows Wing and Gong's algorithm with the memoization
that Lowe, Knossos and Porcupine add: the history becomes a time-ordered
list of call and return events; a depth-first search repeatedly picks an
operation whose call comes before every pending return, applies it to the
register model, and lifts its two events out of the list.  Reaching a return
event whose operation is not yet linearized means the last choice was wrong,
so the search backtracks.  A (set of linearized operations, register value)
pair that was already explored is never explored again.

Outcomes:

- ``ok``: the operation took effect exactly once, between its invoke and its
  complete time, and (for reads) observed ``value``.
- ``fail``: it certainly did not take effect (it is dropped), except a
  compare-and-swap that failed its precondition (HTTP 412): that one is a
  read that saw something other than ``expected`` and stays in the history
  as ``kind="cas"``, ``outcome="fail"``.
- ``unknown``: it may have taken effect at any point after its invoke, or
  never.  An unknown read tells nothing and is dropped.  An unknown write or
  compare-and-swap never *has* to be linearized: the search succeeds once
  every ``ok`` operation is placed, which is the same as putting the unknown
  ones at the end of time or leaving them out.

The register's initial value is ``None`` ("absent", a GET answering 404).
Values written should be unique per key, so a revision seen by a client
names one write and a CAS on a revision is a CAS on a value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

READ = "read"
WRITE = "write"
CAS = "cas"
KINDS = (READ, WRITE, CAS)

OK = "ok"
FAIL = "fail"
UNKNOWN = "unknown"
OUTCOMES = (OK, FAIL, UNKNOWN)

DEFAULT_MAX_STATES = 2_000_000
"""How many distinct (linearized set, value) pairs one key may explore
before the checker gives up and says so."""


@dataclass(frozen=True, slots=True)
class Operation:
    """One client operation on one key, as the client saw it.

    ``value`` is what a read observed (``None``: absent), what a write
    wrote, or what a compare-and-swap would write; ``expected`` is the value
    a compare-and-swap required (``None``: the key must be absent).
    ``complete`` is ``None`` when the outcome is unknown.
    """

    op_id: int
    process: int
    kind: str
    key: str
    invoke: float
    complete: float | None
    outcome: str
    value: str | None = None
    expected: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {self.kind!r}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, not {self.outcome!r}")
        if self.outcome != UNKNOWN and self.complete is None:
            raise ValueError(f"operation {self.op_id}: a known outcome needs a complete time")
        if self.complete is not None and self.complete < self.invoke:
            raise ValueError(f"operation {self.op_id} completes before it is invoked")

    def describe(self) -> str:
        """A one-line human rendering, e.g. ``#12 p3 cas k1 'a'->'b' ok [1.20, 1.31]``."""
        if self.kind == READ:
            what = f"read {self.key} -> {self.value!r}"
        elif self.kind == WRITE:
            what = f"write {self.key} := {self.value!r}"
        else:
            what = f"cas {self.key} {self.expected!r} -> {self.value!r}"
        end = "?" if self.complete is None else f"{self.complete:.3f}"
        return f"#{self.op_id} p{self.process} {what} {self.outcome} [{self.invoke:.3f}, {end}]"

    def to_json(self) -> dict:
        """A JSON-ready dict (the history file's line format)."""
        return {
            "op_id": self.op_id, "process": self.process, "kind": self.kind, "key": self.key,
            "invoke": self.invoke, "complete": self.complete, "outcome": self.outcome,
            "value": self.value, "expected": self.expected,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Operation":
        """The operation ``to_json`` rendered."""
        return cls(**data)


@dataclass(frozen=True, slots=True)
class KeyResult:
    """The verdict on one key.

    ``linearizable`` is True, False, or None when the search exceeded its
    bound (then nothing is claimed).  When False, ``linearized_prefix`` is the
    longest order the search could build and ``stuck_on`` the operation that
    had to come next and could not (its return was reached with no valid
    place for it); ``candidates`` the operations concurrent with it that were
    tried.
    """

    key: str
    linearizable: bool | None
    operations: int
    states_explored: int
    linearized_prefix: tuple[Operation, ...] = ()
    stuck_on: Operation | None = None
    candidates: tuple[Operation, ...] = ()


@dataclass(frozen=True, slots=True)
class HistoryResult:
    """The verdict on a whole history: every key's result."""

    keys: tuple[KeyResult, ...]

    @property
    def linearizable(self) -> bool | None:
        """False if any key is not; None if none is False but some were too big; else True."""
        verdicts = [k.linearizable for k in self.keys]
        if False in verdicts:
            return False
        if None in verdicts:
            return None
        return True

    @property
    def violations(self) -> tuple[KeyResult, ...]:
        """The keys that are certainly not linearizable."""
        return tuple(k for k in self.keys if k.linearizable is False)

    @property
    def undecided(self) -> tuple[KeyResult, ...]:
        """The keys whose search exceeded the bound."""
        return tuple(k for k in self.keys if k.linearizable is None)

    @property
    def operations_checked(self) -> int:
        """How many operations took part in the search (after dropping the uninformative)."""
        return sum(k.operations for k in self.keys)


def _relevant(op: Operation) -> bool:
    """Whether the operation constrains the register at all."""
    if op.outcome == UNKNOWN:
        return op.kind != READ
    if op.outcome == FAIL:
        return op.kind == CAS
    return True


def _step(op: Operation, state: str | None) -> tuple[bool, str | None]:
    """Apply ``op`` (with its observed outcome) to the register value ``state``:
    (whether that is consistent, the value after)."""
    if op.kind == READ:
        return op.value == state, state
    if op.kind == WRITE:
        return True, op.value
    if op.outcome == FAIL:
        return op.expected != state, state
    # ok or unknown CAS: when it takes effect, its precondition held.
    if op.expected == state:
        return True, op.value
    return False, state


@dataclass(slots=True)
class _Event:
    """A node of the doubly linked event list."""

    op_index: int
    is_call: bool
    time: float
    prev: "_Event | None" = None
    next: "_Event | None" = None
    match: "_Event | None" = None
    """For a call: its return event, or None for an unknown operation."""


def _lift(call: _Event) -> None:
    call.prev.next = call.next
    if call.next is not None:
        call.next.prev = call.prev
    ret = call.match
    if ret is not None:
        ret.prev.next = ret.next
        if ret.next is not None:
            ret.next.prev = ret.prev


def _unlift(call: _Event) -> None:
    ret = call.match
    if ret is not None:
        ret.prev.next = ret
        if ret.next is not None:
            ret.next.prev = ret
    call.prev.next = call
    if call.next is not None:
        call.next.prev = call


def check_key(key: str, operations: Sequence[Operation], max_states: int = DEFAULT_MAX_STATES) -> KeyResult:
    """Whether the operations on one register are linearizable (see the module docstring)."""
    ops = [op for op in operations if _relevant(op)]
    must = sum(1 for op in ops if op.outcome != UNKNOWN)
    events: list[_Event] = []
    for i, op in enumerate(ops):
        call = _Event(i, True, op.invoke)
        events.append(call)
        if op.outcome != UNKNOWN:
            ret = _Event(i, False, op.complete)
            call.match = ret
            events.append(ret)
    # At equal times a call sorts before a return: the two operations are then
    # treated as concurrent, which can only make the checker more lenient.
    events.sort(key=lambda e: (e.time, not e.is_call, e.op_index))
    head = _Event(-1, True, -math.inf)
    previous = head
    for event in events:
        previous.next = event
        event.prev = previous
        previous = event

    explored: set[tuple[int, str | None]] = set()
    stack: list[tuple[_Event, str | None]] = []
    linearized = 0
    placed = 0
    state: str | None = None
    best_depth = -1
    best: tuple[tuple[int, ...], int, int] = ((), -1, 0)
    entry = head.next
    while placed < must:
        if entry is None:  # only unknown calls remain after the cursor; retreat
            if not stack:
                break
            entry, state, linearized, placed = _backtrack(stack, ops, linearized, placed)
            continue
        op = ops[entry.op_index]
        if entry.is_call:
            consistent, after = _step(op, state)
            if consistent:
                candidate = linearized | (1 << entry.op_index)
                if (candidate, after) not in explored:
                    if len(explored) >= max_states:
                        return KeyResult(key, None, len(ops), len(explored))
                    explored.add((candidate, after))
                    stack.append((entry, state))
                    linearized, state = candidate, after
                    if op.outcome != UNKNOWN:
                        placed += 1
                    _lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:
            if placed > best_depth:
                best_depth = placed
                pending = _pending_calls(head, entry)
                best = (tuple(e.op_index for e, _ in stack), entry.op_index, pending)
            if not stack:
                break
            entry, state, linearized, placed = _backtrack(stack, ops, linearized, placed)
    if placed >= must:
        return KeyResult(key, True, len(ops), len(explored))
    prefix, stuck, pending = best
    return KeyResult(
        key, False, len(ops), len(explored),
        linearized_prefix=tuple(ops[i] for i in prefix),
        stuck_on=ops[stuck] if stuck >= 0 else None,
        candidates=tuple(ops[i] for i in pending),
    )


def _backtrack(stack, ops, linearized, placed):
    """Undo the most recent choice; the cursor moves past that call."""
    call, state = stack.pop()
    linearized &= ~(1 << call.op_index)
    if ops[call.op_index].outcome != UNKNOWN:
        placed -= 1
    _unlift(call)
    return call.next, state, linearized, placed


def _pending_calls(head: _Event, stop: _Event) -> tuple[int, ...]:
    """The operations whose calls are still in the list before ``stop``."""
    found = []
    event = head.next
    while event is not None and event is not stop:
        if event.is_call:
            found.append(event.op_index)
        event = event.next
    return tuple(found)


def check_history(operations: Iterable[Operation], max_states: int = DEFAULT_MAX_STATES) -> HistoryResult:
    """Check every key of the history independently."""
    by_key: dict[str, list[Operation]] = {}
    for op in operations:
        by_key.setdefault(op.key, []).append(op)
    return HistoryResult(tuple(check_key(k, by_key[k], max_states) for k in sorted(by_key)))


@dataclass(frozen=True, slots=True)
class SetResult:
    """Acknowledged writes of the append/set workload that are missing at the end."""

    acknowledged: int
    unknown: int
    lost: tuple[str, ...]
    unknown_present: int = 0

    @property
    def ok(self) -> bool:
        """True when no acknowledged write is missing."""
        return not self.lost


def check_set(acknowledged: Iterable[str], unknown: Iterable[str], present: Iterable[str]) -> SetResult:
    """Every acknowledged unique key must be ``present`` after healing; keys
    whose write has an unknown outcome may or may not be."""
    acknowledged = set(acknowledged)
    unknown = set(unknown)
    present = set(present)
    return SetResult(
        acknowledged=len(acknowledged),
        unknown=len(unknown),
        lost=tuple(sorted(acknowledged - present)),
        unknown_present=len(unknown & present),
    )


@dataclass
class HistoryRecorder:
    """Collects operations as a workload runs; assigns operation ids.

    Not thread-safe and needs none: the runner is single-threaded (Twisted).
    """

    operations: list[Operation] = field(default_factory=list)

    def record(self, **fields) -> Operation:
        """Append an operation built from ``fields`` (all but ``op_id``)."""
        op = Operation(op_id=len(self.operations), **fields)
        self.operations.append(op)
        return op
