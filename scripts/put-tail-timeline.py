"""Where the slowest puts' time goes: a timeline of one member under load.

Starts one member in this process (memory engine unless ``--storage``,
the collector tuned as ``twistd metastore`` tunes it unless
``--default-gc``), runs a load command against it (``{url}`` replaced by
its client URL) and records, on the reactor thread:

- every hot request's time in the member (taken off the wire to answer written);
- every Ready cycle: its start, the WAL write, the fsync's hand-back, its end,
  and how many entries it applied;
- every collection of the garbage collector and how long it took;
- every snapshot (its pause on the reactor thread and its time in the
  worker thread) and every WAL compaction cycle;
- the reactor's lateness (a ``LoopingCall`` every ``--probe-ms``).

Then prints the member-side latency percentiles and, for the slowest 1 %
of requests, what overlapped them.  With ``--census`` it also counts what
the collector's young and middle passes walk, by type, and what holds
them (``Census``; it slows those passes).  A diagnostic, not a benchmark::

    PYTHONPATH=. python scripts/put-tail-timeline.py -- \\
        python -m metastore.bench put --url {url} --duration 8 -c 64
"""

from __future__ import annotations

import argparse
from array import array
import gc
import json
import os
import sys
import tempfile
import time

from twisted.internet import defer, task, utils

from metastore.api.site import MetaStoreChannel
from metastore.bench.reactor_lag import start_led_member
from metastore.config import Config
from metastore.gctuning import tune_for_server
from metastore.node import Node
from metastore.snapshots.compaction import Compaction
from metastore.snapshots.snapshotter import Snapshotter
from metastore.storage.wal import WAL

now = time.perf_counter


class Timeline:
    """Intervals by kind: (start, end, detail)."""

    def __init__(self) -> None:
        self.spans: dict[str, list[tuple[float, float, object]]] = {}
        self.requests: list[tuple[float, float]] = []
        self.request_times = array("d")
        """Each request's start and end, flat: floats in an array are no
        objects for the garbage collector to walk, so recording them does
        not change what is measured (``requests`` is made from it at the end)."""

    def add(self, kind: str, start: float, end: float, detail: object = None) -> None:
        """Record one interval of ``kind``."""
        self.spans.setdefault(kind, []).append((start, end, detail))

    def overlapping(self, kind: str, start: float, end: float) -> list[tuple[float, float, object]]:
        """The intervals of ``kind`` that overlap [start, end]."""
        return [s for s in self.spans.get(kind, ()) if s[0] < end and s[1] > start]


def instrument(timeline: Timeline) -> None:
    """Wrap the member's classes so that they report into ``timeline``."""
    answered = MetaStoreChannel.hot_answered

    def hot_answered(self, request, answer):
        timeline.request_times.extend((request.received_at, now()))
        return answered(self, request, answer)

    MetaStoreChannel.hot_answered = hot_answered

    persist, finish, end = Node._persist_and_send, Node._finish_cycle, Node._end_cycle
    cycle: dict = {}

    def persist_and_send(self, rd):
        cycle.update(start=now(), entries=len(rd.entries), committed=len(rd.committed_entries))
        result = persist(self, rd)
        cycle["persisted"] = now()
        return result

    def finish_cycle(self, rd, late, rest):
        cycle["synced"] = now()
        cycle.setdefault("persisted", cycle["synced"])
        return finish(self, rd, late, rest)

    def end_cycle(self, _=None):
        if "start" in cycle:
            t = now()
            timeline.add("cycle", cycle["start"], t, dict(cycle))
            timeline.add("write", cycle["start"], cycle["persisted"], cycle["entries"])
            if "synced" in cycle:
                timeline.add("fsync", cycle["persisted"], cycle["synced"], cycle["entries"])
                timeline.add("apply+answer", cycle["synced"], t, cycle["committed"])
            cycle.clear()
        return end(self, _)

    Node._persist_and_send, Node._finish_cycle, Node._end_cycle = persist_and_send, finish_cycle, end_cycle
    apply = Node._apply

    def timed_apply(self, entries):
        started = now()
        try:
            return apply(self, entries)
        finally:
            if entries:
                timeline.add("apply", started, now(), len(entries))

    Node._apply = timed_apply
    save = WAL.save

    def timed_save(self, *args):
        started = now()
        try:
            return save(self, *args)
        finally:
            timeline.add("wal.save", started, now())

    WAL.save = timed_save

    take = Snapshotter.take

    def take_snapshot(self, *args, **kwargs):
        started = now()
        d = take(self, *args, **kwargs)
        timeline.add("snapshot pause", started, now())
        return d.addBoth(lambda r: (timeline.add("snapshot thread", started, now()), r)[1])

    Snapshotter.take = take_snapshot
    compact_wal = Compaction.compact_wal

    def compact(self):
        started = now()
        return compact_wal(self).addBoth(lambda r: (timeline.add("wal compaction", started, now()), r)[1])

    Compaction.compact_wal = compact

    gc_started = [0.0, 0.0]

    def gc_callback(phase: str, info: dict) -> None:
        if phase == "start":
            gc_started[0], gc_started[1] = now(), time.thread_time()
        else:
            timeline.add(f"gc{info.get('generation')}", gc_started[0], now(), info.get("collected"))
            timeline.add(f"gc{info.get('generation')} cpu", gc_started[0],
                         gc_started[0] + time.thread_time() - gc_started[1])

    gc.callbacks.append(gc_callback)


class Census:
    """What the collector's passes walk: at the start of each young or
    middle pass, the objects of the generation it collects (``gc.get_objects``),
    counted by type; and, for one pass, what holds a sample of each of the
    commonest types (``gc.get_referrers``).  Slows every pass down, so
    its runs measure objects, not time."""

    def __init__(self, skip_until: float) -> None:
        self.skip_until = skip_until
        self.passes: dict[int, list[dict[str, int]]] = {0: [], 1: []}
        self.holders: dict[str, dict[str, int]] = {}
        self.largest: list[str] = []
        self.lists: dict[str, int] = {}

    def __call__(self, phase: str, info: dict) -> None:
        generation = info.get("generation")
        if phase != "start" or generation not in (0, 1) or now() < self.skip_until:
            return
        objects = gc.get_objects(generation)
        counts: dict[str, int] = {}
        for o in objects:
            name = type(o).__qualname__
            if name == "tuple":
                name = "tuple(" + ",".join(type(x).__name__ for x in o[:4]) + ")"
            counts[name] = counts.get(name, 0) + 1
        counts["(all)"] = len(objects)
        counts["(referents)"] = sum(len(gc.get_referents(o)) for o in objects)
        largest = max(objects, key=lambda o: len(o) if isinstance(o, (list, dict, set)) else 0, default=None)
        if isinstance(largest, (list, dict, set)):
            first = type(next(iter(largest), None)).__name__
            held_by = sorted({type(r).__qualname__ for r in gc.get_referrers(largest) if r is not objects})
            self.largest.append(f"gen{generation}: {type(largest).__name__}[{len(largest)}] of {first}, held by {held_by}")
        young_lists = [o for o in objects if type(o) is list]
        for o in young_lists[::max(1, len(young_lists) // 30)]:  # a sample: get_referrers walks everything
            shape = f"list of {type(o[0]).__name__ if o else '-'} held by " + ",".join(
                sorted({type(r).__qualname__ for r in gc.get_referrers(o) if r is not objects and r is not young_lists}))
            self.lists[shape] = self.lists.get(shape, 0) + 1
        self.passes[generation].append(counts)
        if generation == 0 and not self.holders and len(self.passes[0]) >= 2:
            self._sample_holders(objects, counts)
        del objects

    def _sample_holders(self, objects: list, counts: dict[str, int]) -> None:
        commonest = [n for n, _ in sorted(counts.items(), key=lambda kv: -kv[1]) if n != "(all)"][:8]
        for name in commonest:
            sample = [o for o in objects if type(o).__qualname__ == name.split("(")[0]][::max(1, counts[name] // 20)][:20]
            held: dict[str, int] = {}
            for o in sample:
                for r in gc.get_referrers(o):
                    if r is objects or r is sample:
                        continue
                    label = type(r).__qualname__
                    if isinstance(r, dict) and len(r) > 100:
                        label = f"dict[{len(r)}]"
                    elif isinstance(r, list) and len(r) > 100:
                        label = f"list[{len(r)}]"
                    held[label] = held.get(label, 0) + 1
            self.holders[f"{name} (sample of {len(sample)})"] = held

    def report(self, puts: int) -> dict:
        """Mean count per pass by type, and per put (``puts`` in the census period)."""
        out: dict = {}
        for generation, passes in self.passes.items():
            if not passes:
                continue
            totals: dict[str, int] = {}
            for counts in passes:
                for name, n in counts.items():
                    totals[name] = totals.get(name, 0) + n
            top = sorted(totals.items(), key=lambda kv: -kv[1])[:25]
            out[f"gen{generation} passes"] = len(passes)
            out[f"gen{generation} objects per pass, by type"] = {n: round(t / len(passes)) for n, t in top}
            if generation == 0 and puts:
                out["young objects walked per put"] = {n: round(t / puts, 3) for n, t in top}
        out["largest container per pass"] = self.largest
        out["young lists"] = dict(sorted(self.lists.items(), key=lambda kv: -kv[1])[:15])
        out["holders of samples"] = self.holders
        print(json.dumps(out, indent=1))
        return out


def _pct(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(len(values) * fraction))] * 1000


def report(timeline: Timeline, lateness: list[tuple[float, float]], began: float) -> dict:
    """Print and return the figures: latency, stalls, what the slowest requests overlapped."""
    durations = sorted(e - s for s, e in timeline.requests)
    out: dict = {"requests": len(durations)}
    if not durations:
        return out
    out["member latency ms"] = {p: round(_pct(durations, f), 2) for p, f in
                                (("p50", .5), ("p90", .9), ("p99", .99), ("p99.9", .999), ("max", 1))}
    out["mean ms"] = round(sum(durations) / len(durations) * 1000, 2)
    lat = sorted(d for _, d in lateness)
    out["reactor lateness ms"] = {"p50": round(_pct(lat, .5), 2), "p99": round(_pct(lat, .99), 2),
                                  "max": round(_pct(lat, 1), 2), "over 5 ms": sum(d > .005 for d in lat)}
    snapshots = timeline.spans.get("snapshot thread", [])
    inside = sorted(d for t, d in lateness if any(a <= t <= b for a, b, _ in snapshots))
    outside = sorted(d for t, d in lateness if not any(a <= t <= b for a, b, _ in snapshots))
    for name, values in (("lateness during snapshots ms", inside), ("lateness otherwise ms", outside)):
        if values:
            out[name] = {"probes": len(values), "mean": round(sum(values) / len(values) * 1000, 2),
                         "p99": round(_pct(values, .99), 2), "max": round(_pct(values, 1), 2)}
    out["gc collected"] = {kind: sum(d or 0 for _, _, d in spans)
                           for kind, spans in timeline.spans.items() if kind.startswith("gc")}
    for kind, spans in sorted(timeline.spans.items()):
        lengths = sorted(e - s for s, e, _ in spans)
        out[kind] = {"count": len(spans), "total ms": round(sum(lengths) * 1000, 1),
                     "p50 ms": round(_pct(lengths, .5), 2), "p99 ms": round(_pct(lengths, .99), 2),
                     "max ms": round(_pct(lengths, 1), 2)}
    cycles = timeline.spans.get("cycle", [])
    if cycles:
        sizes = sorted(d["committed"] for _, _, d in cycles)
        out["batch entries"] = {"p50": sizes[len(sizes) // 2], "max": sizes[-1]}
    threshold = durations[int(len(durations) * 0.99)]
    for name, chosen in (("all requests", timeline.requests),
                         ("slowest 1 %", [(s, e) for s, e in timeline.requests if e - s >= threshold])):
        parts: dict[str, float] = {}
        for s, e in chosen:
            for kind in ("fsync", "write", "wal.save", "apply", "gc0", "gc1", "gc2", "snapshot thread"):
                parts[kind] = parts.get(kind, 0.0) + sum(min(e, b) - max(s, a)
                                                         for a, b, _ in timeline.overlapping(kind, s, e))
            parts["total"] = parts.get("total", 0.0) + (e - s)
        out[f"{name}: mean ms in"] = {k: round(v / len(chosen) * 1000, 2) for k, v in parts.items()}
    slow = [(s, e) for s, e in timeline.requests if e - s >= threshold]
    blame: dict[str, int] = {}
    for s, e in slow:
        for kind in timeline.spans:
            if kind in ("cycle", "write", "fsync", "apply+answer"):
                continue
            if timeline.overlapping(kind, s, e):
                blame[kind] = blame.get(kind, 0) + 1
        waited = [c for c in cycles if c[0] < e and c[1] > s]
        blame[f"spans {len(waited)} cycles"] = blame.get(f"spans {len(waited)} cycles", 0) + 1
    out[f"slowest 1 % (>= {threshold * 1000:.1f} ms): overlapped"] = dict(sorted(blame.items()))
    # When in the run did the slow ones finish (1 s buckets)?
    buckets: dict[int, int] = {}
    for _, e in slow:
        buckets[int(e - began)] = buckets.get(int(e - began), 0) + 1
    out["slow requests by second"] = dict(sorted(buckets.items()))
    print(json.dumps(out, indent=1))
    return out


async def measure(reactor, arguments) -> None:
    """Run the load against a fresh member and report."""
    config = Config(cluster=("http://127.0.0.1:0",), port=0, data_dir=tempfile.mkdtemp(),
                    storage=arguments.storage, snapshot_count=arguments.snapshot_count).validate()
    if arguments.switch_interval:
        sys.setswitchinterval(arguments.switch_interval / 1000)
    member, url = await start_led_member(reactor, config)
    if not arguments.default_gc:
        tune_for_server()
    timeline = Timeline()
    instrument(timeline)
    census = Census(now() + arguments.skip) if arguments.census else None
    if census is not None:
        gc.callbacks.insert(0, census)
    lateness: list[tuple[float, float]] = []
    probe_seconds = arguments.probe_ms / 1000
    last = [now()]

    def probe() -> None:
        t = now()
        lateness.append((t, max(0.0, t - last[0] - probe_seconds)))
        last[0] = t

    probe_call = task.LoopingCall(probe)
    probe_call.clock = reactor
    probe_call.start(probe_seconds, now=False)
    began = now() + arguments.skip
    argv = [part.replace("{url}", url) for part in arguments.command]
    try:
        output = await utils.getProcessOutput(argv[0], argv[1:], env=os.environ, errortoo=True, reactor=reactor)
        ended = now()
        if census is not None:
            gc.callbacks.remove(census)
        probe_call.stop()
        print(output.decode(errors="replace").rstrip()[-3000:])
        times = timeline.request_times
        timeline.requests = [(times[i], times[i + 1]) for i in range(0, len(times), 2) if times[i] >= began]
        timeline.spans = {kind: [s for s in spans if began <= s[0] <= ended] for kind, spans in timeline.spans.items()}
        timeline.spans = {kind: spans for kind, spans in timeline.spans.items() if spans}
        report(timeline, [p for p in lateness if p[0] >= began], began)
        if census is not None:
            census.report(len(timeline.requests))
    finally:
        await member.stopService()  # its snapshot thread would otherwise keep the process alive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--storage", default="memory")
    parser.add_argument("--default-gc", action="store_true", help="leave the collector as CPython sets it")
    parser.add_argument("--snapshot-count", type=int, default=10_000)
    parser.add_argument("--switch-interval", type=float, default=0.0, help="ms (default: CPython's 5)")
    parser.add_argument("--skip", type=float, default=0.0,
                        help="seconds of load not reported (give the load command the same --warmup)")
    parser.add_argument("--probe-ms", type=float, default=2.0)
    parser.add_argument("--census", action="store_true",
                        help="count what each young and middle pass walks, by type (slows the passes)")
    parser.add_argument("command", nargs="+")
    arguments = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(measure(reactor, arguments)))


if __name__ == "__main__":
    main()
