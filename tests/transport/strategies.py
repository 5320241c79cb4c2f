"""Hypothesis strategies and fixed examples of Raft messages for transport tests."""

from __future__ import annotations

from hypothesis import strategies as st

from metastore.raft.types import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)

uint64 = st.integers(min_value=0, max_value=2**64 - 1)
small_bytes = st.binary(max_size=64)

entries = st.builds(
    Entry,
    term=uint64,
    index=uint64,
    type=st.sampled_from(EntryType),
    data=small_bytes,
)

snapshots = st.builds(
    Snapshot,
    metadata=st.builds(
        SnapshotMetadata,
        index=uint64,
        term=uint64,
        conf_state=st.builds(
            ConfState,
            voters=st.lists(uint64, max_size=5).map(tuple),
            learners=st.lists(uint64, max_size=3).map(tuple),
        ),
    ),
    data=small_bytes,
)

messages = st.builds(
    Message,
    type=st.sampled_from(MessageType),
    to=uint64,
    from_=uint64,
    term=uint64,
    log_term=uint64,
    index=uint64,
    entries=st.lists(entries, max_size=5).map(tuple),
    commit=uint64,
    snapshot=st.none() | snapshots,
    reject=st.booleans(),
    reject_hint=uint64,
    context=small_bytes,
)


def sample_messages(to: int = 2, from_: int = 1) -> list[Message]:
    """One message of every type, from ``from_`` to ``to``, each with
    entries and, for MsgSnap, a snapshot with a membership."""
    out = []
    for i, mtype in enumerate(MessageType):
        out.append(
            Message(
                type=mtype,
                to=to,
                from_=from_,
                term=7 + i,
                log_term=6,
                index=100 + i,
                entries=(
                    Entry(6, 101, EntryType.EntryNormal, b"put k v"),
                    Entry(7, 102, EntryType.EntryConfChange, b"\x00\xff" * 10),
                    Entry(7, 103),
                ),
                commit=99,
                snapshot=(
                    Snapshot(
                        SnapshotMetadata(90, 5, ConfState((1, 2, 3), (4,))),
                        data=b"snapshot bytes",
                    )
                    if mtype == MessageType.MsgSnap
                    else None
                ),
                reject=i % 2 == 0,
                reject_hint=i,
                context=b"ctx-%d" % i,
            )
        )
    return out
