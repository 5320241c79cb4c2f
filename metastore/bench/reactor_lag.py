"""How late the reactor runs while a load generator writes to one member.

Starts one member in this process (RocksDB by default), probes the reactor
with a 10 ms ``LoopingCall`` (lateness = how much later than due each call
runs), runs a load command against the member's URL, then prints the
lateness maximum, p99 and p50, and how long the disk operations that can
stall took and on which thread::

    python -m metastore.bench.reactor_lag -- \\
        python -m metastore.bench put --url {url} --total 20000 -c 64 --random-values

``{url}`` in the command is replaced by the member's client URL.  A
diagnostic: it wraps the engine's and the WAL's methods to time them.
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import threading
import time

from twisted.internet import defer, task, utils

from metastore.config import Config
from metastore.gctuning import tune_for_server
from metastore.service import open_member

PROBE_SECONDS = 0.01


class Timings:
    """Durations of one kind of call, and whether each ran on the reactor thread."""

    def __init__(self, reactor_thread: int) -> None:
        self._reactor_thread = reactor_thread
        self.calls: list[tuple[float, bool]] = []

    def wrap(self, f):
        """``f``, timed into this record."""

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return f(*args, **kwargs)
            finally:
                self.calls.append((time.perf_counter() - started, threading.get_ident() == self._reactor_thread))

        return timed

    def summary(self) -> str:
        """Count, how many on the reactor thread, the total, mean and maximum in ms."""
        longest = max((d for d, _ in self.calls), default=0.0)
        total = sum(d for d, _ in self.calls)
        mean = total / len(self.calls) if self.calls else 0.0
        on_reactor = sum(r for _, r in self.calls)
        return (f"{len(self.calls)} calls ({on_reactor} on the reactor thread), total {total * 1000:.0f} ms, "
                f"mean {mean * 1000:.2f} ms, max {longest * 1000:.1f} ms")


def _ms(values: list[float], fraction: float) -> str:
    return f"{values[min(len(values) - 1, int(len(values) * fraction))] * 1000:.1f} ms"


async def start_led_member(reactor, config: Config):
    """Open and start a one-member cluster of ``config`` in this process;
    ``(member, client URL)`` once it leads (or after about 10 s)."""
    member = open_member(config, reactor)
    member.startService()
    port = await member.http.listening
    for _ in range(500):
        if member.node.is_leader:
            break
        await task.deferLater(reactor, 0.02, lambda: None)
    return member, f"http://127.0.0.1:{port.getHost().port}"


async def measure(reactor, command: list[str], storage: str = "rocksdb", tune_gc: bool = False) -> None:
    """Run ``command`` against a fresh member (with ``tune_gc``, the
    collector set as ``twistd metastore`` sets it) and print the figures."""
    config = Config(cluster=("http://127.0.0.1:0",), port=0, data_dir=tempfile.mkdtemp(), storage=storage,
                    snapshot_count=5000, snapshot_catchup_entries=1000).validate()
    member, url = await start_led_member(reactor, config)
    if tune_gc:
        tune_for_server()
    reactor_thread = threading.get_ident()
    engine, wal = member.node.store.engine, member.node.wal
    timed = {name: Timings(reactor_thread) for name in ("engine.commit", "engine.sync", "wal.save", "wal.release_to")}
    engine.commit = timed["engine.commit"].wrap(engine.commit)
    engine.sync = timed["engine.sync"].wrap(engine.sync)
    wal.save = timed["wal.save"].wrap(wal.save)
    wal.release_to = timed["wal.release_to"].wrap(wal.release_to)
    pauses: list[float] = []
    all_pauses: list[float] = []
    gc_started = [0.0]

    def gc_callback(phase: str, info: dict) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
            return
        all_pauses.append(time.perf_counter() - gc_started[0])
        if info.get("generation") == 2:
            pauses.append(all_pauses[-1])

    gc.callbacks.append(gc_callback)
    lateness: list[float] = []
    last = [time.perf_counter()]

    def probe() -> None:
        now = time.perf_counter()
        lateness.append(max(0.0, now - last[0] - PROBE_SECONDS))
        last[0] = now

    probe_call = task.LoopingCall(probe)
    probe_call.clock = reactor
    probe_call.start(PROBE_SECONDS, now=False)
    argv = [part.replace("{url}", url) for part in command]
    output = await utils.getProcessOutput(argv[0], argv[1:], env=os.environ, errortoo=True, reactor=reactor)
    probe_call.stop()
    gc.callbacks.remove(gc_callback)
    print(output.decode(errors="replace").rstrip())
    lateness.sort()
    print(f"reactor lateness: {len(lateness)} probes, max {_ms(lateness, 1)}, p99 {_ms(lateness, 0.99)}, "
          f"p50 {_ms(lateness, 0.5)}")
    for name, timing in timed.items():
        print(f"{name}: {timing.summary()}")
    print(f"gc generation-2 pauses: {len(pauses)}, max {max(pauses, default=0.0) * 1000:.1f} ms; "
          f"all collections: {len(all_pauses)}, total {sum(all_pauses) * 1000:.0f} ms")
    await member.stopService()


def main(argv: list[str] | None = None) -> None:
    """``python -m metastore.bench.reactor_lag [--memory] [--tune-gc] -- COMMAND...``."""
    args = list(sys.argv[1:] if argv is None else argv)
    options = args[: args.index("--")]
    storage = "memory" if "--memory" in options else "rocksdb"
    command = args[args.index("--") + 1:]
    task.react(lambda reactor: defer.ensureDeferred(measure(reactor, command, storage, "--tune-gc" in options)))


if __name__ == "__main__":
    main()
