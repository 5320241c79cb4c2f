"""``metastore-chaos failover``: how long a write in flight waits when its leader dies.

Each round, on a converged 3-member cluster of real processes:

1. the leader is paused (SIGSTOP), so nothing it is sent can commit;
2. a write is sent to a follower, which forwards it to the paused leader;
3. the leader is killed (SIGKILL) and the clock starts;
4. the clock stops when the follower answers the write (success or error);
5. the killed member is started again and the cluster reconverges.

The report gives the median and maximum time to the answer, how many
answers were successes, and the version of a counter key before and after
each round, so a write applied twice shows as a jump of two.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

import treq
from twisted.internet import defer, task
from twisted.python import usage

from metastore.chaos.cluster import ProxiedCluster

COUNTER_KEY = "failover-counter"


@dataclass(frozen=True)
class Round:
    """One kill: the seconds from SIGKILL to the answer, its status, and the
    counter key's version before and after (None when it could not be read)."""

    seconds: float
    status: int | None
    version_before: int | None
    version_after: int | None


class FailoverOptions(usage.Options):
    """The command line of ``metastore-chaos failover``."""

    optParameters = [
        ["kills", "k", 20, "number of leader kills", int],
        ["workdir", "w", None, "where data and logs go (a temporary directory by default)"],
        ["request-timeout", None, 5.0, "the members' --request-timeout", float],
        ["pause-seconds", None, 0.2, "how long the write waits on the paused leader before the kill", float],
    ]


async def _version(url: str) -> int | None:
    """The counter key's version as ``url`` reads it, 0 if absent, None on error."""
    try:
        response = await treq.get(url + "/" + COUNTER_KEY, persistent=False, timeout=5)
        await treq.content(response)
    except Exception:
        return None
    if response.code == 404:
        return 0
    if response.code != 200:
        return None
    return int(response.headers.getRawHeaders("X-MetaStore-Version", ["0"])[0])


async def one_round(reactor, cluster: ProxiedCluster, n: int, pause_seconds: float) -> Round:
    """Kill the leader while a write to a follower waits on it; time the answer."""
    if not await cluster.wait_converged(timeout=60):
        raise RuntimeError("the cluster did not converge before the round")
    leader = await cluster.leader()
    follower = cluster.members[next(i for i in cluster.ids if i != leader)]
    before = await _version(follower.url)
    cluster.members[leader].pause()
    write = defer.ensureDeferred(_put(follower.url, f"round-{n}".encode()))
    await task.deferLater(reactor, pause_seconds, lambda: None)
    started = time.monotonic()
    cluster.members[leader].kill()
    status = await write
    seconds = time.monotonic() - started
    cluster.members[leader].start()
    if not await cluster.wait_converged(timeout=60):
        raise RuntimeError("the cluster did not converge after the round")
    after = await _version(follower.url)
    return Round(seconds, status, before, after)


async def _put(url: str, value: bytes) -> int | None:
    """PUT the counter key; the status code, or None when the request failed."""
    try:
        response = await treq.put(url + "/" + COUNTER_KEY, data=value, persistent=False, timeout=60)
        await treq.content(response)
        return response.code
    except Exception:
        return None


def summarize(rounds: list[Round]) -> dict:
    """Median and maximum seconds to the answer, successes, and the rounds
    whose counter moved by more than one (a write applied twice)."""
    seconds = [r.seconds for r in rounds]
    doubled = [
        i for i, r in enumerate(rounds)
        if r.version_before is not None and r.version_after is not None and r.version_after - r.version_before > 1
    ]
    return {
        "kills": len(rounds),
        "median_seconds": round(statistics.median(seconds), 3) if seconds else None,
        "max_seconds": round(max(seconds), 3) if seconds else None,
        "successes": sum(r.status == 204 for r in rounds),
        "applied_twice": doubled,
        "rounds": [asdict(r) for r in rounds],
    }


async def run(reactor, options: FailoverOptions) -> dict:
    """Start a proxied 3-member cluster, run the rounds, stop it; the summary."""
    workdir = options["workdir"] or tempfile.mkdtemp(prefix="metastore-failover-")
    cluster = ProxiedCluster(reactor, 3, workdir, ["--request-timeout", str(options["request-timeout"])])
    await cluster.start()
    rounds = []
    try:
        for n in range(options["kills"]):
            rounds.append(await one_round(reactor, cluster, n, options["pause-seconds"]))
            r = rounds[-1]
            print(f"kill {n + 1}: answer {r.status} after {r.seconds:.3f} s "
                  f"(version {r.version_before} -> {r.version_after})", flush=True)
    finally:
        await cluster.stop()
    return summarize(rounds)


def main(argv: list[str]) -> None:
    """Entry point of ``metastore-chaos failover``."""
    options = FailoverOptions()
    try:
        options.parseOptions(argv)
    except usage.UsageError as e:
        raise SystemExit(f"{options}\nmetastore-chaos failover: {e}")

    async def body(reactor):
        summary = await run(reactor, options)
        print(json.dumps({k: v for k, v in summary.items() if k != "rounds"}), flush=True)
        if summary["applied_twice"]:
            raise SystemExit(1)

    task.react(lambda reactor: defer.ensureDeferred(body(reactor)))


if __name__ == "__main__":
    main(sys.argv[1:])
