"""Where a member's reactor thread spends its time under load.

``python -m metastore.bench.profile [--api seed|v3] [--workload
put|get|sget] [--duration 8] [--storage memory|rocksdb] [--checkout DIR]
[--keep FILE] [--clients 64] [--native]`` starts one MetaStore member from this checkout (or
``DIR``), puts ``metastore-bench`` load on it (64 clients unless told, 256 B
values, 10,000 keys; a get first writes every key), samples the member
with ``py-spy`` (``pip install py-spy``) while the load runs, and prints
the share of the samples spent in each layer of the request path (a
sample counts for the first layer found walking its stack from the top
frame down, so the shares add up to 100 %), then the busiest functions by
their own samples.  The member is stopped at the end, however it ends.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile

from metastore.bench.servers import CHECKOUT, start_metastore, wait_for

LAYERS = (
    ("idle (waiting in epoll/select)", ("EPollReactor.doPoll", "SelectReactor.doSelect")),
    ("raft core", ("metastore/raft/",)),
    ("WAL, storage engine", ("metastore/storage/",)),
    ("kv state machine", ("metastore/kv/",)),
    ("twisted logging and log context", ("twisted/logger/", "twisted/python/log.py")),
    ("fast path", ("metastore/api/fastpath.py", "metastore/api/hotwire.py", "metastore/api/hotrequest.py")),
    ("json", ("json/",)),
    ("metastore api", ("metastore/api/",)),
    ("node, facade, watch, leases", ("metastore/",)),
    ("klein + werkzeug routing", ("klein/", "werkzeug/")),
    ("twisted.web resource/render", ("twisted/web/server.py", "twisted/web/resource.py")),
    ("twisted.web HTTP parsing", ("twisted/web/http.py", "twisted/web/http_headers.py", "twisted/protocols/basic.py")),
    ("httptools", ("httptools",)),
    ("deferred machinery", ("twisted/internet/defer.py",)),
    ("reactor, TCP", ("twisted/internet/",)),
)
"""(layer, substrings of a frame that put a sample in it), innermost layers first."""


def layer_of(frames: list[str]) -> str:
    """The layer of one stack, frames listed from the outermost to the top."""
    for frame in reversed(frames):
        for name, needles in LAYERS:
            if any(n in frame for n in needles):
                return name
    return "other"


def summarize(collapsed: str, top: int = 15) -> str:
    """A text summary of a py-spy ``raw`` (collapsed stacks) profile of the
    main thread."""
    layers: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or "MainThread" not in stack.split(";")[0]:
            continue
        frames = stack.split(";")[1:]
        samples = int(count)
        total += samples
        layers[layer_of(frames)] += samples
        own[frames[-1] if frames else "?"] += samples
    lines = [f"{total} samples of the reactor (main) thread", "", "| layer | share |", "|---|---|"]
    lines += [f"| {name} | {100 * n / total:.1f} % |" for name, n in layers.most_common()]
    lines += ["", "| busiest functions (own samples) | share |", "|---|---|"]
    lines += [f"| `{frame}` | {100 * n / total:.1f} % |" for frame, n in own.most_common(top)]
    return "\n".join(lines)


def profile(api: str, workload: str, duration: float, storage: str, keep: str | None = None,
            checkout: str = CHECKOUT, out=sys.stdout, clients: int = 64, native: bool = False) -> None:
    """Start a member from ``checkout``, load it with ``clients`` clients
    while py-spy samples it, print the summary (and copy py-spy's collapsed
    stacks to ``keep``).  With ``native``, py-spy also samples C frames
    (it then pauses the member for each sample, which slows it down)."""
    workdir = tempfile.mkdtemp(prefix="metastore-profile-")
    server = start_metastore(workdir, storage=storage, checkout=checkout)
    try:
        wait_for(server.ready_url)
        bench = [sys.executable, "-m", "metastore.bench", "put" if workload == "put" else "range",
                 "--api", api, "--endpoints", server.url, "--clients", str(clients), "--duration", str(duration + 2)]
        if workload != "put":
            bench += ["--consistency", "l" if workload == "get" else "s"]
            populate = bench[:3] + ["put", "--api", api, "--endpoints", server.url, "--sequential-keys",
                                    "--total", "10000", "--clients", "16"]
            subprocess.run(populate, cwd=CHECKOUT, capture_output=True, check=True)
        raw = os.path.join(workdir, "profile.txt")
        load = subprocess.Popen(bench, cwd=CHECKOUT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            subprocess.run(
                [shutil.which("py-spy", path=os.path.dirname(sys.executable)) or "py-spy", "record", "--pid", str(server.process.pid), "--format", "raw", "--output", raw,
                 "--duration", str(int(duration)), "--threads", "--idle", "--rate", "200"]
                + (["--native"] if native else ["--nonblocking"]),
                check=True, capture_output=True,
            )
        finally:
            report = load.communicate(timeout=duration + 120)[0]
        if keep:
            shutil.copy(raw, keep)
        with open(raw) as f:
            print(summarize(f.read()), file=out)
        rate = next((line for line in report.splitlines() if "requests/s" in line.lower()), "")
        print(f"\nload: {' '.join(bench[2:])}\n{rate.strip()}", file=out)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    """Parse the options and profile."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", choices=("seed", "v3"), default="seed")
    parser.add_argument("--workload", choices=("put", "get", "sget"), default="put",
                        help="put, linearizable get or serializable get")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds sampled")
    parser.add_argument("--storage", choices=("memory", "rocksdb"), default="memory")
    parser.add_argument("--keep", help="copy py-spy's collapsed stacks to this file")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--native", action="store_true", help="sample C frames too (pauses the member per sample)")
    parser.add_argument("--checkout", default=CHECKOUT, help="run the member from this checkout (default: this one)")
    arguments = parser.parse_args()
    profile(arguments.api, arguments.workload, arguments.duration, arguments.storage, arguments.keep,
            os.path.abspath(arguments.checkout), clients=arguments.clients, native=arguments.native)


if __name__ == "__main__":
    main()
