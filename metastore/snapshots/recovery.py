"""Restart: the newest usable snapshot file plus the WAL entries after it.

A snapshot file is usable when the WAL still holds every entry after it
(or it is newer than the whole WAL: its contents are committed state).  A
damaged newest file falls back to an older one when the WAL covers the
gap; when nothing covers the log's compacted start, the member refuses to
start and says what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from twisted.logger import Logger

from metastore.errors import StartupError
from metastore.raft.types import ConfState, Entry, HardState, SnapshotMetadata
from metastore.storage.engine import Engine
from metastore.snapshots.format import SnapshotCorruptionError, SnapshotDirectory, restore_from_snapshot
from metastore.storage.wal import WAL, WALState

log = Logger()


@dataclass(frozen=True, slots=True)
class RecoveredLog:
    """What raft's storage starts from after a restart."""

    snapshot: SnapshotMetadata | None
    hard_state: HardState
    entries: list[Entry]
    applied_index: int


def _entries_after(available: list[Entry], index: int, term: int) -> list[Entry] | None:
    """The entries after ``index`` if the log agrees with the snapshot at
    ``index``; None when it cannot supply them (a gap)."""
    if not available:
        return []
    first, last = available[0].index, available[-1].index
    if index + 1 < first:
        return None
    if index > last:
        return []
    if index >= first and available[index - first].term != term:
        return []  # the log diverged from the snapshot: what follows is stale
    return available[index + 1 - first:]


def recover(state: WALState, snapshots: SnapshotDirectory, engine: Engine, wal_dir: str) -> RecoveredLog:
    """Restore ``engine`` from the newest usable snapshot and return the
    log to replay after it.  Raises ``StartupError`` when no snapshot covers
    the WAL's compacted start."""
    available = state.covered_entries + state.entries
    first_available = available[0].index if available else (state.snapshot.index + 1 if state.snapshot else 1)
    problems: list[str] = []
    for index, term, path in reversed(snapshots.snapshots()):
        entries = _entries_after(available, index, term)
        if entries is None:
            problems.append(f"{path} is older than the WAL's first entry {first_available}")
            continue
        try:
            header = restore_from_snapshot(engine, path, index)
        except (SnapshotCorruptionError, OSError) as e:
            log.error("snapshot {path} is unusable, trying an older one: {e}", path=path, e=e)
            problems.append(str(e))
            continue
        cluster = header.cluster_state
        log.info("restored snapshot {path} (index {index})", path=path, index=index)
        hard_state = state.hard_state
        if hard_state.commit < index:
            hard_state = replace(hard_state, commit=index)  # a snapshot holds only committed state
        meta = SnapshotMetadata(index, term, ConfState(cluster.voters, cluster.learners))
        return RecoveredLog(meta, hard_state, list(entries), index)
    if first_available > 1:
        why = "; ".join(problems) or f"no snapshot files in {snapshots.directory}"
        raise StartupError(
            f"the WAL in {wal_dir} starts at entry {first_available} (older entries were compacted into "
            f"snapshots) but no valid snapshot covers entry {first_available - 1}: {why}. "
            "Restore the snapshot directory, or remove this member's data and add it to the cluster again."
        )
    return RecoveredLog(None, state.hard_state, available, 0)


def _term_at(state: WALState, available: list[Entry], snapshots: SnapshotDirectory, index: int) -> int | None:
    """The term of entry ``index``, from the log, the WAL's marker or a snapshot file's name."""
    if available and available[0].index <= index <= available[-1].index:
        return available[index - available[0].index].term
    if state.snapshot is not None and state.snapshot.index == index:
        return state.snapshot.term
    for snapshot_index, term, _ in snapshots.snapshots():
        if snapshot_index == index:
            return term
    return None


def recover_durable_engine(state: WALState, snapshots: SnapshotDirectory, engine: Engine, wal_dir: str) -> RecoveredLog:
    """Restart an engine that keeps its applied state on disk (RocksDB).

    When the WAL holds every entry after the engine's applied index, raft
    starts right there, with the membership the engine stored: nothing
    already applied is applied again.  Otherwise (the engine is behind the
    WAL's compacted start) it is restored from a snapshot file like the
    memory engine."""
    applied = engine.applied_index
    cluster = engine.cluster_state
    available = state.covered_entries + state.entries
    first_available = available[0].index if available else (state.snapshot.index + 1 if state.snapshot else 1)
    term = _term_at(state, available, snapshots, applied) if applied else None
    if applied == 0 or cluster is None or first_available > applied + 1 or term is None:
        return recover(state, snapshots, engine, wal_dir)
    entries = [e for e in available if e.index > applied]
    if available and available[0].index <= applied and available[applied - available[0].index].term != term:
        entries = []
    hard_state = state.hard_state
    if hard_state.commit < applied:
        hard_state = replace(hard_state, commit=applied)
    log.info(
        "starting from the engine's applied index {applied}; {n} log entries after it",
        applied=applied, n=len(entries),
    )
    meta = SnapshotMetadata(applied, term, ConfState(cluster.voters, cluster.learners))
    return RecoveredLog(meta, hard_state, entries, applied)


def align_wal(wal: WAL, state: WALState, recovered: RecoveredLog) -> None:
    """Make the WAL continue where raft's recovered log does.

    A snapshot received from the leader is durable as a file before the
    WAL's marker for it is; after a crash in between, recovery starts from
    the file, beyond the last index the WAL holds, and the WAL would refuse
    the next entries.  Write (and sync) the missing marker then."""
    if recovered.snapshot is None:
        return
    available = state.covered_entries + state.entries
    wal_last = max(available[-1].index if available else 0, state.snapshot.index if state.snapshot else 0)
    if recovered.snapshot.index > wal_last:
        log.info("marking the recovered snapshot at {i} in the WAL (its marker was lost)", i=recovered.snapshot.index)
        wal.save_snapshot(recovered.snapshot)
        wal.sync()
