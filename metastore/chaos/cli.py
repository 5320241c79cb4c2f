"""``metastore-chaos``: run real members under faults and check the history.

Example::

    metastore-chaos --members 3 --duration 60 --nemesis kill,pause,partition,leader-kill \\
        --workdir /tmp/chaos-1 --seed 7

prints the report, writes ``report.json`` and ``history.jsonl`` into the
work directory, and exits 0 only when the history is linearizable, no
acknowledged write was lost and the cluster converged after healing.
``--workload lease,watch`` (or ``all``) adds the lease and watch workloads
and their checks: no kept-alive lease expires, every watcher receives
exactly the history, from every member alike.
``--check HISTORY`` only checks an existing history file.
``metastore-chaos soak ...`` runs a soak instead (``metastore/chaos/soak.py``);
``metastore-chaos failover ...`` times writes in flight across leader kills
(``metastore/chaos/failover.py``).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace

from twisted.internet import defer, task
from twisted.python import usage

from metastore.chaos.checker import Operation, check_history
from metastore.chaos.nemesis import NEMESES
from metastore.chaos.runner import WORKLOADS, ChaosRun, RunConfig
from metastore.chaos import failover, soak
from metastore.options import VersionOption


class ChaosOptions(VersionOption, usage.Options):
    """The command line of ``metastore-chaos``."""

    optParameters = [
        ["members", "n", 3, "number of members", int],
        ["duration", "d", 60.0, "seconds of workload under faults", float],
        ["nemesis", None, "kill,pause,partition,leader-kill",
         f"comma-separated faults among {', '.join(NEMESES)} (or 'all', or 'none')"],
        ["workdir", "w", "chaos-run", "where data, logs, history.jsonl and report.json go"],
        ["seed", None, 0, "random seed of the workload and the nemesis", int],
        ["clients", None, 6, "register (read/write/CAS) clients", int],
        ["set-clients", None, 2, "set (unique-key append) clients", int],
        ["request-timeout", None, 2.0, "the members' --request-timeout", float],
        ["workers", None, 0, "the members' --workers (front processes per member)", int],
        ["client-timeout", None, 3.0, "seconds before a client gives up (the operation becomes unknown)", float],
        ["runs", None, 1, "run this many times (seeds seed, seed+1, ...; work dirs run-1, run-2, ...)", int],
        ["check", None, None, "only check this history.jsonl file and exit"],
        ["workload", None, "register,set",
         f"comma-separated workloads among {', '.join(WORKLOADS)} (or 'all')"],
        ["lease-keepers", None, 4, "leases kept alive by the lease workload", int],
        ["lease-ttl", None, 6, "TTL of the kept-alive leases (renewed every second)", int],
        ["watchers", None, 2, "watchers per member of the watch workload", int],
    ]
    optFlags = [
        ["tls", None, "members serve clients HTTPS and talk to each other over mutual TLS with a peer token"],
        ["auth", None, "enable auth: the workloads run as a user with READWRITE on their key prefixes, with tokens"],
    ]

    def postOptions(self) -> None:
        """Validate the nemesis names and sizes."""
        names = self["nemesis"].strip()
        if names == "all":
            self["nemesis"] = tuple(NEMESES)
        elif names in ("", "none"):
            self["nemesis"] = ()
        else:
            chosen = tuple(n.strip() for n in names.split(","))
            unknown = [n for n in chosen if n not in NEMESES]
            if unknown:
                raise usage.UsageError(f"unknown nemesis {unknown}; choose among {', '.join(NEMESES)}")
            self["nemesis"] = chosen
        if self["members"] < 1:
            raise usage.UsageError("--members must be at least 1")
        workloads = self["workload"].strip()
        chosen = WORKLOADS if workloads == "all" else tuple(w.strip() for w in workloads.split(",") if w.strip())
        unknown = [w for w in chosen if w not in WORKLOADS]
        if unknown or not chosen:
            raise usage.UsageError(f"unknown workload {unknown}; choose among {', '.join(WORKLOADS)}")
        self["workload"] = chosen
        if self["lease-ttl"] < 2 or self["lease-keepers"] < 1 or self["watchers"] < 1:
            raise usage.UsageError("--lease-ttl must be at least 2, --lease-keepers and --watchers at least 1")

    def config(self) -> RunConfig:
        """The run configuration these options describe."""
        return RunConfig(
            size=self["members"], duration=self["duration"], nemeses=self["nemesis"], workdir=self["workdir"],
            seed=self["seed"], register_clients=self["clients"], set_clients=self["set-clients"],
            request_timeout=self["request-timeout"], client_timeout=self["client-timeout"], tls=bool(self["tls"]),
            auth=bool(self["auth"]),
            workloads=self["workload"], lease_keepers=self["lease-keepers"], lease_ttl=self["lease-ttl"],
            watchers_per_member=self["watchers"],
            # Always given: a member's own default is --workers auto (by core count).
            extra_member_args=("--workers", str(self["workers"])),
        )


def check_file(path: str) -> int:
    """Check a history file; print the verdict; 0 when linearizable."""
    with open(path) as f:
        ops = [Operation.from_json(json.loads(line)) for line in f if line.strip()]
    result = check_history(ops)
    print(f"operations checked: {result.operations_checked} on {len(result.keys)} keys")
    print(f"linearizable: {result.linearizable}")
    for violation in result.violations:
        print(f"  key {violation.key}: stuck on {violation.stuck_on.describe() if violation.stuck_on else None}")
    return 0 if result.linearizable else 1


async def run_chaos(reactor, config: RunConfig, runs: int = 1) -> int:
    """Run ``runs`` times, print each report and, for several runs, the
    totals; the exit status (0 only when every run passed)."""
    reports = []
    for n in range(runs):
        if runs == 1:
            this = config
        else:
            this = replace(config, seed=config.seed + n, workdir=os.path.join(config.workdir, f"run-{n + 1}"))
        report = await ChaosRun(reactor, this).run()
        print(report.summary(), flush=True)
        print(flush=True)
        reports.append(report)
    if runs > 1:
        print(
            f"TOTAL runs: {len(reports)}, passed: {sum(r.passed for r in reports)}, "
            f"operations: {sum(r.operations for r in reports)}, "
            f"register operations checked: {sum(r.register_operations_checked for r in reports)}, "
            f"set writes acknowledged: {sum(r.set_acknowledged for r in reports)}, "
            f"faults: {sum(len(r.faults) for r in reports)}, "
            f"non-linearizable runs: {sum(r.linearizable is False for r in reports)}, "
            f"undecided runs: {sum(r.linearizable is None for r in reports)}, "
            f"acknowledged writes lost: {sum(len(r.lost_writes) for r in reports)}",
            flush=True,
        )
    return 0 if all(r.passed for r in reports) else 1


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``metastore-chaos`` console script
    (``metastore-chaos soak ...`` hands over to the soak)."""
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["soak"]:
        return soak.main(arguments[1:])
    if arguments[:1] == ["failover"]:
        return failover.main(arguments[1:])
    options = ChaosOptions()
    try:
        options.parseOptions(arguments)
    except usage.UsageError as e:
        raise SystemExit(f"{options}\nmetastore-chaos: {e}")
    if options["check"]:
        raise SystemExit(check_file(options["check"]))

    async def body(reactor):
        status = await run_chaos(reactor, options.config(), options["runs"])
        if status:
            raise SystemExit(status)

    task.react(lambda reactor: defer.ensureDeferred(body(reactor)))
