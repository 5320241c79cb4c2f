"""Where one put's time goes across a three-member cluster: a per-hop timeline.

Starts three real ``twistd metastore`` members (memory engine, this
checkout), each wrapped so that it records, with ``time.perf_counter``
(CLOCK_MONOTONIC, one clock for every process on the machine):

- the leader's hot requests (taken off the wire, answer written) and proposals;
- every Ready cycle: its start, the entries it writes and the entries it
  applies, the WAL write, the early (pre-fsync) send, the fsync hand-off,
  the fsync in the disk thread, the hand-back to the reactor, the late send,
  the apply and the cycle's end;
- every peer message sent and received (type, index, entries, commit);
- the commit index raft knows after each step of peer messages and each cycle.

Then it runs a closed-loop put load at the leader, stops the members and
matches each put's raft index across the members: for every hop the median
time since the request was taken off the wire.  A diagnostic, not a benchmark::

    PYTHONPATH=. python scripts/put-replication-timeline.py --clients 1 --duration 5
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

now = time.perf_counter


def instrument(out_path: str) -> None:
    """Wrap this member's classes so that they record events into ``out_path`` at exit."""
    from metastore.api.site import MetaStoreChannel
    from metastore.diskworker import DiskWorker
    from metastore.node import Node
    from metastore.raft.types import MessageType
    from metastore.requests import Requests
    from metastore.storage.wal import WAL

    events: list = []
    add = events.append

    def message_summary(m):
        entries = (m.entries[0].index, m.entries[-1].index) if m.entries else None
        return (MessageType(m.type).name, m.to, m.from_, m.index, entries, m.commit, m.reject)

    answered = MetaStoreChannel.hot_answered

    def hot_answered(self, request, answer):
        add(("request", request.received_at, now()))
        return answered(self, request, answer)

    MetaStoreChannel.hot_answered = hot_answered
    propose = Requests.propose

    def timed_propose(self, command, auth=None, again=True):
        t = now()
        d = propose(self, command, auth, again)
        add(("propose", t, now(), self._node.rawnode.raft.log.last_index()))
        return d

    Requests.propose = timed_propose
    persist, finish, end, apply_ = Node._persist_and_send, Node._finish_cycle, Node._end_cycle, Node._apply
    send_messages = Node._send

    def persist_and_send(self, rd):
        entries = (rd.entries[0].index, rd.entries[-1].index) if rd.entries else None
        committed = (rd.committed_entries[0].index, rd.committed_entries[-1].index) if rd.committed_entries else None
        add(("cycle", now(), entries, committed, rd.must_sync, self.is_leader))
        return persist(self, rd)

    def finish_cycle(self, rd, late, rest):
        add(("fsync back", now()))
        return finish(self, rd, late, rest)

    def end_cycle(self, _=None):
        add(("cycle end", now(), self.rawnode.commit_index))
        return end(self, _)

    def timed_apply(self, entries):
        t = now()
        try:
            return apply_(self, entries)
        finally:
            if entries:
                add(("apply", t, now(), entries[0].index, entries[-1].index))

    def timed_send(self, messages):
        if messages:
            add(("send", now(), [message_summary(m) for m in messages]))
        return send_messages(self, messages)

    receive = Node.receive

    def timed_receive(self, messages):
        t = now()
        receive(self, messages)
        add(("receive", t, now(), [message_summary(m) for m in messages], self.rawnode.commit_index))

    Node._persist_and_send, Node._finish_cycle, Node._end_cycle = persist_and_send, finish_cycle, end_cycle
    Node._apply, Node._send, Node.receive = timed_apply, timed_send, timed_receive
    save = WAL.save

    def timed_save(self, *args):
        t = now()
        try:
            return save(self, *args)
        finally:
            add(("wal.save", t, now()))

    WAL.save = timed_save
    sync_wal = DiskWorker.sync_wal

    def timed_sync(self):
        t = now()
        try:
            return sync_wal(self)
        finally:
            add(("fsync", t, now()))  # list.append is atomic: safe from the disk thread

    DiskWorker.sync_wal = timed_sync
    from twisted.internet import tcp

    from metastore.transport.protocol import InboundPeerProtocol, OutboundPeerProtocol

    write_some = tcp.Connection.writeSomeData

    def timed_write_some(self, data):
        t = now()
        result = write_some(self, data)
        protocol = getattr(self.protocol, "_wrappedProtocol", self.protocol)  # the endpoint's wrapper
        protocol = getattr(protocol, "_protocol", protocol)  # ClientService's proxy
        if isinstance(protocol, OutboundPeerProtocol):
            add(("peer socket write", t, now(), len(data)))
        return result

    tcp.Connection.writeSomeData = timed_write_some
    data_received = InboundPeerProtocol.dataReceived

    def timed_data_received(self, data):
        add(("peer data in", now(), len(data)))
        return data_received(self, data)

    InboundPeerProtocol.dataReceived = timed_data_received

    def dump() -> None:
        with open(out_path, "w") as f:
            json.dump(events, f)

    start = Node.startService

    def start_service(self):
        # twistd re-raises SIGTERM after the reactor stops, so atexit never runs.
        self.reactor.addSystemEventTrigger("after", "shutdown", dump)
        return start(self)

    Node.startService = start_service


def run_member(out_path: str, argv: list[str]) -> None:
    """Instrument, then run twistd with ``argv``."""
    instrument(out_path)
    from twisted.scripts.twistd import run

    sys.argv = ["twistd"] + argv
    run()


# ---------------------------------------------------------------- analysis


def _first(items, predicate):
    for item in items:
        if predicate(item):
            return item
    return None


def _after(events: list, times: list[float], t: float) -> list:
    """The events from a little before ``t`` on (events are nearly in time order)."""
    return events[bisect.bisect_left(times, t - 0.05):]


def hops_for(prop: list, all_leader: list, followers: dict[int, list], times: dict) -> dict[str, float] | None:
    """Absolute times of each hop of the put proposed by ``prop``."""
    t: dict[str, float] = {}
    index = prop[3]
    leader = _after(all_leader, times[0], prop[1])
    req = _first(_after(all_leader, times[0], prop[1] - 0.2), lambda e: e[0] == "request" and e[1] <= prop[1] <= e[2])
    if req is None:
        return None
    t["L request in"] = req[1]
    t["L proposed"] = prop[2]
    cycle_i = next((i for i, e in enumerate(leader) if e[0] == "cycle" and e[2] and e[2][0] <= index <= e[2][1]), None)
    if cycle_i is None:
        return None
    t["L cycle start"] = leader[cycle_i][1]
    rest = leader[cycle_i:]
    save = _first(rest, lambda e: e[0] == "wal.save")
    t["L WAL written"] = save[2]
    sent = _first(rest, lambda e: e[0] == "send" and any(m[0] == "MsgApp" and m[4] and m[4][0] <= index <= m[4][1]
                                                        for m in e[2]))
    if sent is not None:
        t["L MsgApp sent"] = sent[1]
        wrote = _first(rest, lambda e: e[0] == "peer socket write" and e[1] >= sent[1])
        if wrote is not None:
            t["L MsgApp socket write"] = wrote[1]
    fs = _first(rest, lambda e: e[0] == "fsync")
    t["L fsync start"], t["L fsync end"] = fs[1], fs[2]
    back = _first(rest, lambda e: e[0] == "fsync back")
    t["L fsync back on reactor"] = back[1]
    for fid, all_events in sorted(followers.items()):
        events = _after(all_events, times[fid], prop[1])
        recv = _first(events, lambda e: e[0] == "receive" and any(
            m[0] == "MsgApp" and m[4] and m[4][0] <= index <= m[4][1] for m in e[3]))
        if recv is None:
            continue
        t[f"F{fid} MsgApp received"] = recv[1]
        data_in = _first(reversed(events[:events.index(recv)]), lambda e: e[0] == "peer data in")
        if data_in is not None:
            t[f"F{fid} MsgApp bytes in"] = data_in[1]
        ci = next((i for i, e in enumerate(events) if e[0] == "cycle" and e[2] and e[2][0] <= index <= e[2][1]), None)
        if ci is None:
            continue
        frest = events[ci:]
        t[f"F{fid} cycle start"] = events[ci][1]
        t[f"F{fid} WAL written"] = _first(frest, lambda e: e[0] == "wal.save")[2]
        ffs = _first(frest, lambda e: e[0] == "fsync")
        t[f"F{fid} fsync start"], t[f"F{fid} fsync end"] = ffs[1], ffs[2]
        t[f"F{fid} fsync back on reactor"] = _first(frest, lambda e: e[0] == "fsync back")[1]
        resp = _first(frest, lambda e: e[0] == "send" and any(m[0] == "MsgAppResp" and m[3] >= index for m in e[2]))
        if resp is not None:
            t[f"F{fid} MsgAppResp sent"] = resp[1]
            wrote = _first(frest, lambda e: e[0] == "peer socket write" and e[1] >= resp[1])
            if wrote is not None:
                t[f"F{fid} MsgAppResp socket write"] = wrote[1]
        lr = _first(leader, lambda e: e[0] == "receive" and e[1] >= t["L cycle start"] and any(
            m[0] == "MsgAppResp" and m[2] == fid and m[3] >= index and not m[6] for m in e[3]))
        if lr is not None:
            t[f"L MsgAppResp from F{fid} received"] = lr[1]
            data_in = _first(reversed(leader[:leader.index(lr)]), lambda e: e[0] == "peer data in")
            if data_in is not None:
                t[f"L MsgAppResp from F{fid} bytes in"] = data_in[1]
    known = [e for e in leader if e[1] >= t["L cycle start"] and (
        (e[0] == "receive" and e[4] >= index) or (e[0] == "cycle end" and e[2] >= index))]
    if known:
        e = min(known, key=lambda e: e[2] if e[0] == "receive" else e[1])
        t["L commit known" + (" (peer ack)" if e[0] == "receive" else " (own fsync)")] = (
            e[2] if e[0] == "receive" else e[1])
    app = _first(leader, lambda e: e[0] == "apply" and e[3] <= index <= e[4])
    if app is None:
        return None
    acycle = _first(reversed(leader), lambda e: e[0] == "cycle" and e[1] <= app[1])
    t["L apply cycle start"] = acycle[1]
    t["L applied"] = app[2]
    t["L answer written"] = req[2]
    return t


def analyse(paths: dict[int, str], leader_id: int, skip: float) -> dict:
    """Median of each hop, in ms since the request was taken off the wire."""
    members = {}
    for mid, path in paths.items():
        with open(path) as f:
            members[mid] = json.load(f)
    leader = members.pop(leader_id)
    times = {mid: [e[1] for e in events] for mid, events in members.items()}
    times[0] = [e[1] for e in leader]
    start = min((e[1] for e in leader if e[0] == "request"), default=0) + skip
    rows = []
    for prop in (e for e in leader if e[0] == "propose"):
        hops = hops_for(prop, leader, members, times)
        if hops and hops["L request in"] >= start:
            rows.append({k: (v - hops["L request in"]) * 1000 for k, v in hops.items()})
    out: dict = {"puts": len(rows)}
    if not rows:
        return out
    keys: list[str] = []
    for row in rows:
        for k in row:
            if k not in keys:
                keys.append(k)
    keys.sort(key=lambda k: statistics.median(r[k] for r in rows if k in r))
    out["median ms since request in"] = {
        k: round(statistics.median(r[k] for r in rows if k in r), 3) for k in keys}
    out["p90 ms since request in"] = {
        k: round(sorted(r[k] for r in rows if k in r)[int(0.9 * sum(k in r for r in rows))], 3) for k in keys}
    fsyncs = {mid: [e[2] - e[1] for e in events if e[0] == "fsync"] for mid, events in
              {**members, leader_id: leader}.items()}
    out["fsync ms (median, p90)"] = {
        mid: (round(statistics.median(v) * 1000, 3), round(sorted(v)[int(0.9 * len(v))] * 1000, 3))
        for mid, v in fsyncs.items() if v}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode")
    member = sub.add_parser("member", help="(internal) run one instrumented member")
    member.add_argument("--out", required=True)
    member.add_argument("twistd", nargs=argparse.REMAINDER)
    again = sub.add_parser("analyse", help="analyse the events kept by an earlier --keep run")
    again.add_argument("dir")
    again.add_argument("--leader", type=int, required=True)
    again.add_argument("--skip", type=float, default=1.0)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--api", default="seed")
    parser.add_argument("--keep", help="keep the raw events in this directory")
    arguments = parser.parse_args()
    if arguments.mode == "analyse":
        paths = {i: os.path.join(arguments.dir, f"events-{i}.json") for i in (1, 2, 3)}
        print(json.dumps(analyse(paths, arguments.leader, arguments.skip), indent=1))
        return
    if arguments.mode == "member":
        argv = arguments.twistd[1:] if arguments.twistd[:1] == ["--"] else arguments.twistd
        run_member(arguments.out, argv)
        return
    from metastore.bench.servers import free_port, wait_for

    workdir = arguments.keep or tempfile.mkdtemp(prefix="repl-timeline-")
    os.makedirs(workdir, exist_ok=True)
    peers = [f"http://127.0.0.1:{free_port()}" for _ in range(3)]
    urls = [f"http://127.0.0.1:{free_port()}" for _ in range(3)]
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=checkout + os.pathsep + os.environ.get("PYTHONPATH", ""))
    processes, outs = [], {}
    for i, url in enumerate(urls, start=1):
        data_dir = os.path.join(workdir, f"member-{i}")
        os.makedirs(data_dir)
        outs[i] = os.path.join(workdir, f"events-{i}.json")
        processes.append(subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "member", "--out", outs[i], "--",
             "--nodaemon", "--pidfile=", f"--logfile={data_dir}.log", "metastore", "--id", str(i),
             "--cluster", ",".join(peers), "--port", url.rsplit(":", 1)[1], "--storage", "memory",
             "--data-dir", data_dir], cwd=data_dir, env=env))
    try:
        for url in urls:
            wait_for(url + "/health")
        load = subprocess.run(
            [sys.executable, "-m", "metastore.bench", "put", "--api", arguments.api, "--target-leader",
             "--endpoints", ",".join(urls), "-c", str(arguments.clients), "--duration", str(arguments.duration),
             "--warmup", str(arguments.warmup), "--json"], env=env, capture_output=True, text=True, check=True)
        result = json.loads(load.stdout)
        status = json.loads(subprocess.run(["curl", "-s", urls[0] + "/admin/status"], capture_output=True,
                                           text=True).stdout)
        leader_id = int(status["leader"])
    finally:
        for p in processes:
            p.send_signal(signal.SIGTERM)
        for p in processes:
            p.wait(timeout=30)
    print(json.dumps({k: result.get(k) for k in ("requests_per_second", "latency_ms") if k in result}))
    print("leader:", leader_id)
    print(json.dumps(analyse(outs, leader_id, arguments.warmup), indent=1))


if __name__ == "__main__":
    main()
