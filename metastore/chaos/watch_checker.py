"""Whether watchers got exactly the history: no gap, no duplicate, same order.

Pure: no I/O, no clock.  The *history* of a key range is every event in it,
in revision order (within a revision, in the order the member reports
them), as a watch from revision 1 reads it back after the run.  A watcher
that started at revision ``start`` and has reached revision ``end`` must
have received exactly ``history[start..end]``: the same events, each once,
in the same order, whatever member it was connected to and however often it
had to resume.

The history itself is cross-checked against what no watch produced:

- every member's history must be equal (a watch on a follower sees what one
  on the leader sees);
- every acknowledged put must be in it, at the revision its answer named;
- the keyspace that replaying the history gives at a revision must equal a
  range of the key range read at that revision.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from metastore.chaos.v3client import DELETE, PUT, SeenEvent


@dataclass(frozen=True, slots=True)
class WatcherVerdict:
    """The comparison of one watcher's events with the history over
    ``[start, end]``: ``missing`` events of the history it never got,
    ``duplicated`` ones it got more than once, ``unexpected`` ones not in
    the history, and ``first_difference`` (index, expected, received) where
    the two lists first differ (the order is checked there too)."""

    name: str
    start: int
    end: int
    expected: int
    received: int
    missing: tuple[SeenEvent, ...] = ()
    duplicated: tuple[SeenEvent, ...] = ()
    unexpected: tuple[SeenEvent, ...] = ()
    first_difference: tuple[int, SeenEvent | None, SeenEvent | None] | None = None

    @property
    def ok(self) -> bool:
        """Exactly the history, in order."""
        return self.first_difference is None

    def describe(self) -> str:
        """A few lines saying what differs."""
        head = f"{self.name} [{self.start}, {self.end}]: expected {self.expected} events, received {self.received}"
        if self.ok:
            return head + ": equal"
        index, expected, received = self.first_difference
        lines = [head, f"  first difference at #{index}: expected "
                       f"{expected.describe() if expected else 'nothing'}, received "
                       f"{received.describe() if received else 'nothing'}"]
        for label, events in (("missing", self.missing), ("duplicated", self.duplicated),
                              ("unexpected", self.unexpected)):
            if events:
                lines.append(f"  {label} ({len(events)}): " + "; ".join(e.describe() for e in events[:5]))
        return "\n".join(lines)


def history_between(history: Sequence[SeenEvent], start: int, end: int) -> list[SeenEvent]:
    """The events of ``history`` with ``start <= revision <= end``."""
    return [e for e in history if start <= e.revision <= end]


def compare_watcher(name: str, received: Sequence[SeenEvent], history: Sequence[SeenEvent],
                    start: int, end: int) -> WatcherVerdict:
    """Compare what a watcher from ``start`` received up to revision ``end``
    (later events are ignored) with the history (see ``WatcherVerdict``)."""
    expected = history_between(history, start, end)
    got = [e for e in received if e.revision <= end]
    verdict = WatcherVerdict(name, start, end, len(expected), len(got))
    if got == expected:
        return verdict
    index = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), min(len(expected), len(got)))
    want, have = Counter(expected), Counter(got)
    return WatcherVerdict(
        name, start, end, len(expected), len(got),
        missing=tuple(e for e in expected if have[e] < want[e]),
        duplicated=tuple(e for e, n in have.items() if n > 1 and n > want[e]),
        unexpected=tuple(e for e in have if e not in want),
        first_difference=(index, expected[index] if index < len(expected) else None,
                          got[index] if index < len(got) else None),
    )


def compare_histories(histories: Mapping[int, Sequence[SeenEvent]], end: int) -> list[WatcherVerdict]:
    """Every member's history up to ``end`` compared with the first one's;
    the verdicts that differ (empty: all equal)."""
    if not histories:
        return []
    reference_member = min(histories)
    reference = histories[reference_member]
    return [
        v for member, events in sorted(histories.items()) if member != reference_member
        for v in [compare_watcher(f"history on member {member} (against member {reference_member})",
                                  events, reference, 1, end)]
        if not v.ok
    ]


def missing_acknowledged(history: Sequence[SeenEvent], acknowledged: Iterable[SeenEvent]) -> list[SeenEvent]:
    """The acknowledged puts (each with the revision its answer named) that
    the history does not hold."""
    present = set(history)
    return [e for e in acknowledged if e not in present]


def replay(history: Sequence[SeenEvent], revision: int) -> dict[bytes, tuple[bytes, int]]:
    """The key range as of ``revision``: key -> (value, mod_revision), from
    a history that starts at revision 1."""
    state: dict[bytes, tuple[bytes, int]] = {}
    for event in history:
        if event.revision > revision:
            break
        if event.type == PUT:
            state[event.key] = (event.value, event.revision)
        elif event.type == DELETE:
            state.pop(event.key, None)
    return state


def compare_with_range(history: Sequence[SeenEvent], revision: int,
                       ranged: Mapping[bytes, tuple[bytes, int]]) -> str:
    """"" when replaying the history to ``revision`` gives ``ranged`` (what a
    range at that revision answered), else what differs."""
    replayed = replay(history, revision)
    if replayed == dict(ranged):
        return ""
    only_history = sorted(set(replayed) - set(ranged))
    only_range = sorted(set(ranged) - set(replayed))
    different = sorted(k for k in set(replayed) & set(ranged) if replayed[k] != ranged[k])
    return (f"at revision {revision}: keys only in the history {only_history[:5]}, only in the range "
            f"{only_range[:5]}, different {[(k, replayed[k], ranged[k]) for k in different[:5]]}")


def is_revision_ordered(history: Sequence[SeenEvent]) -> bool:
    """Whether revisions never go down along the history."""
    return all(a.revision <= b.revision for a, b in zip(history, history[1:]))
