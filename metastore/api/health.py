"""What ``/health``, ``/readyz`` and ``/livez`` check, one function per check.

A check takes the node and returns ``""`` when fine, else the reason.
``HEALTH_CHECKS`` decide ``/health``; ``READY_CHECKS`` decide ``/readyz``.
Hook: the apply-lag check of issue 10 (apply behind commit without
progress, or the apply loop failed) is one more function appended to
``HEALTH_CHECKS``; ``/health``, ``/readyz`` and ``/admin/status`` then
report it with no other change.
"""

from __future__ import annotations

from typing import Callable, Sequence

Check = Callable[[object], str]


def storage_failed(node) -> str:
    """The disk failed: the member acknowledges nothing more."""
    return "" if node.failure is None else f"storage failed: {node.failure}"


def no_leader(node) -> str:
    """No leader known: nothing can commit through this member."""
    return "no leader" if node.leader_id == 0 else ""


def applied_behind_commit(node) -> str:
    """Entries known committed are not yet applied here, so a read here
    may not see every acknowledged write yet."""
    commit = node.rawnode.status().commit
    applied = node.applied_index
    return f"applied index {applied} is behind commit index {commit}" if applied < commit else ""


HEALTH_CHECKS: tuple[Check, ...] = (storage_failed, no_leader)
READY_CHECKS: tuple[Check, ...] = HEALTH_CHECKS + (applied_behind_commit,)


def problems(node, checks: Sequence[Check]) -> list[str]:
    """The reasons of every failing check, in order; empty when all pass."""
    return [reason for reason in (check(node) for check in checks) if reason]
