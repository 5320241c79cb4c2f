"""Garbage collector settings for a member run as a server (``twistd
metastore``); an embedding program keeps its own.

Under load a member allocates and frees many small objects per request.
With CPython's default thresholds the collector then runs hundreds of
times a second, and every full pass walks every object the process still
holds (modules, classes, the keyspace) while the reactor waits: 4–6 % of
the reactor thread and its longest stalls (57–135 ms) in
``metastore.bench.reactor_lag`` runs.  Objects that live from start-up on
are frozen out of the collector's walks, and young objects are collected
less often; reference cycles are still collected.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000
"""Net allocations of tracked objects between two young collections
(CPython's default: 700)."""


def tune_for_server() -> None:
    """Freeze every object alive now (never walked again) and raise the
    young generation's threshold; call once, after start-up."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
