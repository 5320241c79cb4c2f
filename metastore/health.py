"""What ``/health``, ``/readyz`` and ``/livez`` check, one function per check.

A check takes the member's ``MemberStatus`` and returns ``""`` when fine,
else the reason.  ``HEALTH_CHECKS`` decide ``/health``; ``READY_CHECKS``
decide ``/readyz``.  A new check is one more function in a tuple.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    from metastore.facade import MemberStatus

Check = Callable[["MemberStatus"], str]


def storage_failed(status: MemberStatus) -> str:
    """The disk failed: the member acknowledges nothing more."""
    return "" if status.storage_failure is None else f"storage failed: {status.storage_failure}"


def apply_failed(status: MemberStatus) -> str:
    """Applying committed entries failed: the member stopped."""
    return "" if status.apply_failure is None else f"applying committed entries failed: {status.apply_failure}"


APPLY_STALL_ELECTIONS = 2
"""How many election timeouts applying may sit still behind commit before
the member calls itself unhealthy."""


def apply_stalled(status: MemberStatus) -> str:
    """The applied index is behind the commit index and has not moved for
    ``APPLY_STALL_ELECTIONS`` election timeouts: reads here are stale and
    writes through here are not answered."""
    if status.apply_stalled_ticks < APPLY_STALL_ELECTIONS * status.election_ticks:
        return ""
    return (
        f"applied index {status.applied_index} is behind commit index {status.commit_index} "
        f"and has not moved for {status.apply_stalled_ticks} ticks"
    )


def no_leader(status: MemberStatus) -> str:
    """No leader known: nothing can commit through this member."""
    return "no leader" if status.leader == 0 else ""


def applied_behind_commit(status: MemberStatus) -> str:
    """Entries known committed are not yet applied here, so a read here
    may not see every acknowledged write yet."""
    if status.applied_index < status.commit_index:
        return f"applied index {status.applied_index} is behind commit index {status.commit_index}"
    return ""


HEALTH_CHECKS: tuple[Check, ...] = (storage_failed, apply_failed, apply_stalled, no_leader)
READY_CHECKS: tuple[Check, ...] = HEALTH_CHECKS + (applied_behind_commit,)


def problems(status: MemberStatus, checks: Sequence[Check]) -> list[str]:
    """The reasons of every failing check, in order; empty when all pass."""
    return [reason for reason in (check(status) for check in checks) if reason]
