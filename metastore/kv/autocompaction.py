"""When to compact: etcd's ``--auto-compaction-mode`` policies, pure.

A policy is asked, now and then, with the time (seconds on any monotonic
clock), the store's revision and its compacted revision, and answers the
revision to compact to, or None.  It keeps no reference to a store, a
clock or a reactor, so tests drive it with plain numbers.

- ``revision`` mode keeps the newest ``retention`` revisions: once the
  revision is a tenth of the retention (at least one) past
  ``compacted + retention``, it compacts to ``revision - retention``.  The
  history then never holds much more than ``1.1 * retention`` versions
  besides each key's newest, whatever the write rate: this is the default
  (10,000 revisions), because memory stays bounded however fast clients
  write, which a time-based retention cannot promise.
- ``periodic`` mode keeps ``retention`` seconds of history, as etcd's
  periodic compactor does: it samples the revision every tenth of the
  retention (at most every hour) and compacts to the newest sample at least
  ``retention`` old.

A retention of 0 turns auto-compaction off (``parse_auto_compaction``
answers None).
"""

from __future__ import annotations

import re
from collections import deque
from typing import Protocol

MODES = ("periodic", "revision")
DEFAULT_MODE = "revision"
DEFAULT_RETENTION = "10000"

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


class AutoCompactionPolicy(Protocol):
    """Decides when to propose a compaction."""

    def decide(self, now: float, revision: int, compacted_revision: int) -> int | None:
        """The revision to compact to now, or None."""


class RevisionRetention:
    """Keep the newest ``retention`` revisions (``revision`` mode)."""

    def __init__(self, retention: int) -> None:
        if retention < 1:
            raise ValueError("a revision retention must be at least 1")
        self.retention = retention
        self.slack = max(1, retention // 10)

    def decide(self, now: float, revision: int, compacted_revision: int) -> int | None:
        """``revision - retention`` once that is ``slack`` past the compacted revision."""
        target = revision - self.retention
        if target - compacted_revision >= self.slack:
            return target
        return None


class PeriodicRetention:
    """Keep ``retention`` seconds of history (``periodic`` mode)."""

    def __init__(self, retention_seconds: float) -> None:
        if retention_seconds <= 0:
            raise ValueError("a periodic retention must be positive")
        self.retention = retention_seconds
        self.interval = min(retention_seconds / 10, 3600.0)
        self._samples: deque[tuple[float, int]] = deque()

    def decide(self, now: float, revision: int, compacted_revision: int) -> int | None:
        """The newest revision sampled at least ``retention`` ago, if above
        the compacted revision."""
        if not self._samples or now - self._samples[-1][0] >= self.interval:
            self._samples.append((now, revision))
        samples = self._samples
        # Keep the newest sample that is old enough as the first one.
        while len(samples) >= 2 and now - samples[1][0] >= self.retention:
            samples.popleft()
        sampled_at, target = samples[0]
        if now - sampled_at >= self.retention and target > compacted_revision:
            return target
        return None


def parse_duration(text: str) -> float:
    """Seconds in a duration like ``"5m"``, ``"1h30m"`` or ``"90s"``; a bare
    number is hours, as etcd reads ``--auto-compaction-retention``."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text) * 3600.0
    if not text or _DURATION_PART.sub("", text):
        raise ValueError(f"{text!r} is not a duration such as 5m, 1h or 90s")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text))


def parse_auto_compaction(mode: str, retention: str) -> AutoCompactionPolicy | None:
    """The policy for etcd-style flags, or None when ``retention`` is 0
    (auto-compaction off); raises ``ValueError`` naming what is wrong."""
    if mode not in MODES:
        raise ValueError(f"--auto-compaction-mode must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "revision":
        if not retention.strip().isdigit():
            raise ValueError(f"--auto-compaction-retention in revision mode is a number of revisions, not {retention!r}")
        revisions = int(retention)
        return RevisionRetention(revisions) if revisions else None
    seconds = parse_duration(retention)
    return PeriodicRetention(seconds) if seconds else None
