"""Property test: any valid sequence of WAL writes replays to the state of a simple model."""

from __future__ import annotations

import shutil

from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from metastore.raft.types import ConfState, Entry, HardState, SnapshotMetadata
from metastore.storage.wal import WAL, WALState


def _no_fsync(fd: int) -> None:
    """Skip fsync: these tests check logical state, not durability."""


class LogModel:
    """The meaning of a WAL, as plainly as possible: a list of entries after a snapshot."""

    def __init__(self, metadata: bytes) -> None:
        """The state of a new WAL storing ``metadata``."""
        self.metadata = metadata
        self.hard_state = HardState()
        self.snapshot: SnapshotMetadata | None = None
        self.log: list[Entry] = []
        self.synced_snap_index = 0

    @property
    def snap_index(self) -> int:
        """Index of the newest snapshot, 0 when none."""
        return self.snapshot.index if self.snapshot else 0

    @property
    def last(self) -> int:
        """Index of the last entry, or of the snapshot when the log is empty."""
        return self.log[-1].index if self.log else self.snap_index

    def save(self, hard_state: HardState | None, entries: list[Entry]) -> None:
        """Entries overwrite from their first index on; the hard state replaces the old one."""
        if entries:
            self.log = [e for e in self.log if e.index < entries[0].index] + entries
        if hard_state is not None:
            self.hard_state = hard_state

    def save_snapshot(self, meta: SnapshotMetadata) -> None:
        """Keep the entries after the snapshot only if the log leads up to it."""
        if meta.index != self.snap_index:
            at = [e for e in self.log if e.index == meta.index]
            if at and at[0].term == meta.term:
                self.log = [e for e in self.log if e.index > meta.index]
            else:
                self.log = []
        self.snapshot = meta

    def state(self) -> WALState:
        """What replay must return."""
        return WALState(self.metadata, self.hard_state, self.snapshot, list(self.log))


@st.composite
def _step(draw, model: LogModel) -> tuple:
    """One valid operation for the current ``model``."""
    kind = draw(st.sampled_from(["save", "save", "save", "snapshot", "sync", "release", "reopen"]))
    if kind == "save":
        first = draw(st.integers(model.snap_index + 1, model.last + 1))
        count = draw(st.integers(0, 6))
        terms = sorted(draw(st.lists(st.integers(1, 4), min_size=count, max_size=count)))
        data = draw(st.binary(max_size=40))
        ents = [Entry(t, first + k, data=data) for k, t in enumerate(terms)]
        hard_states = st.builds(HardState, st.integers(0, 5), st.integers(0, 3), st.integers(0, 50))
        hs = draw(st.none() | hard_states)
        return ("save", hs, ents)
    if kind == "snapshot":
        index = draw(st.integers(max(model.snap_index, 1), model.last + 3))
        if model.snapshot is not None and index == model.snap_index:
            term = model.snapshot.term
        else:
            term = draw(st.integers(1, 4))
        voters = tuple(draw(st.lists(st.integers(1, 5), max_size=3, unique=True)))
        return ("snapshot", SnapshotMetadata(index, term, ConfState(voters, ())))
    if kind == "release":
        return ("release", draw(st.integers(0, model.synced_snap_index + 1)))
    return (kind,)


class ReplayPropertyTests(SynchronousTestCase):
    """Replay agrees with LogModel after any valid sequence of operations."""

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.data(), st.sampled_from([180, 400, 64 * 2**20]), st.binary(max_size=16))
    def test_replay_matches_model(self, data, segment_bytes: int, metadata: bytes) -> None:
        """Saves (with conflicts and hard states), snapshot markers, syncs, releases and
        reopens in any valid order replay to the model's state, and the WAL accepts
        every operation the model allows, before and after a reopen."""
        directory = self.mktemp()
        self.addCleanup(shutil.rmtree, directory, True)
        model = LogModel(metadata)
        wal, state = WAL.open(directory, metadata, segment_bytes, fsync=_no_fsync)
        try:
            self.assertEqual(state, model.state())
            for _ in range(data.draw(st.integers(1, 40))):
                op = data.draw(_step(model))
                if op[0] == "save":
                    wal.save(op[1], op[2])
                    model.save(op[1], op[2])
                elif op[0] == "snapshot":
                    wal.save_snapshot(op[1])
                    model.save_snapshot(op[1])
                elif op[0] == "sync":
                    wal.sync()
                    model.synced_snap_index = model.snap_index
                elif op[0] == "release":
                    wal.release_to(op[1])
                else:
                    wal.close()
                    wal, state = WAL.open(directory, b"other", segment_bytes, fsync=_no_fsync)
                    self.assertEqual(state, model.state())
                    model.synced_snap_index = model.snap_index
            wal.close()
            wal, state = WAL.open(directory, b"", segment_bytes, fsync=_no_fsync)
            self.assertEqual(state, model.state())
        finally:
            wal.close()
