"""Interpreter settings for a member run as a server (``twistd metastore``):
the garbage collector's and the threads' switch interval; an embedding
program keeps its own.

Under load a member allocates and frees many small objects per request.
With CPython's default thresholds the collector then runs hundreds of
times a second, and every full pass walks every object the process still
holds (modules, classes, the keyspace) while the reactor waits: 4–6 % of
the reactor thread and its longest stalls (57–135 ms) in
``metastore.bench.reactor_lag`` runs.  Objects that live from start-up on
are frozen out of the collector's walks, and young objects are collected
less often; reference cycles are still collected.

The reactor thread shares the interpreter with worker threads, the
snapshot writer's above all: for 60-250 ms every ``--snapshot-count``
entries it encodes the whole keyspace in Python.  With CPython's 5 ms
switch interval, each time the reactor thread gives the interpreter up
(every socket call does) it may wait up to 5 ms to get it back; at 1 ms
its waits are a fifth as long, while the snapshot takes as much CPU as
before.
"""

from __future__ import annotations

import gc
import sys

YOUNG_THRESHOLD = 20_000
"""Net allocations of tracked objects between two young collections
(CPython's default: 700)."""
SWITCH_INTERVAL_SECONDS = 0.001
"""How long a thread may keep the interpreter while another waits for it
(CPython's default: 0.005)."""


def tune_for_server() -> None:
    """Freeze every object alive now (never walked again), raise the
    young generation's threshold and shorten the switch interval; call
    once, after start-up."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
