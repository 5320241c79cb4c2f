"""Whether a lease that was kept alive ever expired.

Pure: no I/O, no clock.  A keeper renews its lease every few seconds and
notes, for each renewal the cluster acknowledged (and for the grant), the
moment it *sent* it.  A renewal acknowledged with a TTL was applied while
the lease existed, no earlier than it was sent; from then on the leader,
this one or any later one, owes the lease at least ``ttl`` seconds (a new
leader restarts the remaining TTL, it never shortens it).  So the lease may
not be gone before ``sent + ttl`` for any acknowledged renewal sent before
the loss was seen.

When a keeper sees its lease gone (a keepalive answered without a TTL, a
time-to-live of -1, or the delete of its key reaching a watcher), that
moment bounds the revoke from above.  Gone earlier than a promise allows is
a violation.  Gone later is *excused*: no renewal got through for a whole
TTL (the cluster was unavailable that long), and etcd would expire it too.

Leases granted and never renewed are the control: they must be gone by the
end, or expiry does not work at all (and, like any lease, not before their
grant's TTL ran out).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LeaseRecord:
    """What one keeper knows of its lease: ``acknowledged`` the send times
    of the grant and of every renewal answered with a TTL; ``lost_at`` the
    first moment it was seen gone (None: never), and how."""

    name: str
    lease_id: int
    ttl: int
    kept: bool
    key: bytes = b""
    acknowledged: list[float] = field(default_factory=list)
    lost_at: float | None = None
    lost_how: str = ""
    renewals_failed: int = 0

    def lost(self, when: float, how: str) -> None:
        """Note that the lease was seen gone at ``when`` (the earliest sighting counts)."""
        if self.lost_at is None or when < self.lost_at:
            self.lost_at, self.lost_how = when, how

    def longest_gap(self, end: float) -> float:
        """The longest time between acknowledged sends (up to ``end``)."""
        times = sorted(t for t in self.acknowledged if t <= end) + [end]
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)


@dataclass(frozen=True, slots=True)
class LeaseVerdict:
    """The verdict on one lease: ``violation`` says why it breaks the rules
    ("" when it does not); ``excused`` a kept lease that was lost after a
    whole TTL without an acknowledged renewal."""

    name: str
    kept: bool
    lost: bool
    violation: str = ""
    excused: str = ""

    @property
    def ok(self) -> bool:
        """No violation."""
        return not self.violation


def check_lease(record: LeaseRecord) -> LeaseVerdict:
    """Apply the rules of the module docstring to one lease."""
    lost = record.lost_at is not None
    if not lost:
        if record.kept:
            return LeaseVerdict(record.name, True, False)
        return LeaseVerdict(record.name, False, False,
                            violation=f"{record.name}: never renewed, yet never expired (ttl {record.ttl}s)")
    before = [t for t in record.acknowledged if t < record.lost_at]
    if not before:
        return LeaseVerdict(record.name, record.kept, True,
                            violation=f"{record.name}: gone ({record.lost_how}) before its grant was acknowledged")
    promised = max(before) + record.ttl
    if record.lost_at < promised:
        return LeaseVerdict(
            record.name, record.kept, True,
            violation=(f"{record.name} (id {record.lease_id:x}, ttl {record.ttl}s): seen gone at "
                       f"{record.lost_at:.3f} ({record.lost_how}), but a renewal sent at {max(before):.3f} was "
                       f"acknowledged, which promised it until {promised:.3f}"))
    if not record.kept:
        return LeaseVerdict(record.name, False, True)
    return LeaseVerdict(record.name, True, True,
                        excused=(f"{record.name}: gone at {record.lost_at:.3f} ({record.lost_how}), "
                                 f"{record.lost_at - max(before):.1f}s after its last acknowledged renewal"))


@dataclass(frozen=True, slots=True)
class LeasesResult:
    """Every lease's verdict."""

    verdicts: tuple[LeaseVerdict, ...]

    @property
    def violations(self) -> list[str]:
        """What broke the rules."""
        return [v.violation for v in self.verdicts if v.violation]

    @property
    def excused(self) -> list[str]:
        """Kept leases lost after a whole TTL without a renewal."""
        return [v.excused for v in self.verdicts if v.excused]

    @property
    def kept(self) -> int:
        """How many leases were kept alive."""
        return sum(v.kept for v in self.verdicts)

    @property
    def kept_lost(self) -> int:
        """How many kept leases were lost (with or without an excuse)."""
        return sum(v.kept and v.lost for v in self.verdicts)

    @property
    def controls_expired(self) -> int:
        """How many never-renewed leases expired (all of them should)."""
        return sum(not v.kept and v.lost for v in self.verdicts)


def check_leases(records: list[LeaseRecord]) -> LeasesResult:
    """Check every lease."""
    return LeasesResult(tuple(check_lease(r) for r in records))
