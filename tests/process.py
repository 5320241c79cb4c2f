"""Real MetaStore members as child processes, for integration tests.

Members run the checkout's code through ``twistd`` (the plugin is found on
``sys.path`` exactly as after an install), on 127.0.0.1 and free ports.
Every wait is bounded: a condition is polled until a deadline, never slept
on in hope.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import treq
from twisted.internet import defer, reactor, task

from metastore.ports import free_port  # noqa: F401  (tests import it from here)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWISTD = "from twisted.scripts.twistd import run; run()"
MEMBER_REACTOR = os.environ.get("METASTORE_TEST_MEMBER_REACTOR", "")
"""The reactor member processes run on (twistd's --reactor name, e.g.
``asyncio``); empty for twistd's default."""
MEMBER_WORKERS = os.environ.get("METASTORE_TEST_WORKERS", "") or "0"
"""``--workers`` for every member process a test starts (``make
test-workers`` sets 2; ``auto`` lets the member choose by core count),
where its flags allow front processes; by default 0, the single process,
whatever the machine's cores (a member's own default is ``auto``)."""
NO_WORKERS_FLAGS = ("--cert-file", "--auto-tls", "--client-request-rate", "--max-client-connections")
"""Flags a count of fronts cannot be combined with: a member given one
runs without fronts."""


def with_test_workers(args: list[str]) -> list[str]:
    """``args`` plus ``--workers METASTORE_TEST_WORKERS``, unless ``args``
    choose ``--workers`` themselves; ``--workers 0`` instead of a count when
    one of ``args`` is in ``NO_WORKERS_FLAGS``."""
    flags = {a.split("=", 1)[0] for a in args}
    if "--workers" in flags:
        return list(args)
    workers = MEMBER_WORKERS
    if workers != "auto" and flags & set(NO_WORKERS_FLAGS):
        workers = "0"
    return [*args, "--workers", workers]


def twistd_command(*args: str, logfile: str = "-") -> list[str]:
    """The argv that runs ``twistd -n metastore ARGS`` on the checkout."""
    reactor = [f"--reactor={MEMBER_REACTOR}"] if MEMBER_REACTOR else []
    return [sys.executable, "-c", TWISTD, "--nodaemon", "--pidfile=", f"--logfile={logfile}", *reactor, "metastore", *args]


def child_env() -> dict:
    """The environment for children: the checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_to_exit(args: list[str], cwd: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run a command that is expected to exit by itself, within ``timeout``."""
    return subprocess.run(args, cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=timeout)


async def wait_until(condition, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    """Poll the (possibly async) ``condition`` until it returns a true
    value, at most ``timeout`` seconds; returns that value."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 1):
        value = condition()
        if hasattr(value, "__await__"):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            break
        await task.deferLater(reactor, interval, lambda: None)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Member:
    """One member process: its flags, its working directory and its log."""

    member_id: int
    cluster: list[str]
    http_port: int
    workdir: str
    extra: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        # The member runs in workdir, so a relative workdir (trial's mktemp)
        # would put its log under workdir/workdir, where log_text never looks.
        self.workdir = os.path.abspath(self.workdir)

    @property
    def url(self) -> str:
        """The member's HTTP base URL."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def logfile(self) -> str:
        """Where the member's twistd log goes."""
        return os.path.join(self.workdir, f"member-{self.member_id}.log")

    def args(self) -> list[str]:
        """The metastore flags this member runs with."""
        return [
            "--id", str(self.member_id),
            "--cluster", ",".join(self.cluster),
            "--port", str(self.http_port),
            "--data-dir", self.workdir,
            *with_test_workers(self.extra),
        ]

    def start(self) -> None:
        """Spawn the member (its log goes to ``logfile``)."""
        os.makedirs(self.workdir, exist_ok=True)
        # twistd prints a usage error on stdout: keep it with stderr for log_text.
        with open(os.path.join(self.workdir, f"member-{self.member_id}.stderr"), "ab") as output:
            self.process = subprocess.Popen(
                twistd_command(*self.args(), logfile=self.logfile),
                cwd=self.workdir,
                env=child_env(),
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 15) -> int:
        """Send ``sig`` and reap the process within ``timeout``; its exit code."""
        if self.process is None:
            return 0
        proc, self.process = self.process, None
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(timeout=timeout)

    def stop(self) -> int:
        """Stop the member gracefully (SIGTERM), or kill it if it hangs."""
        return self.kill(signal.SIGTERM)

    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        """Everything the member logged, for failure messages."""
        parts = []
        for path in (self.logfile, os.path.join(self.workdir, f"member-{self.member_id}.stderr")):
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    parts.append(f.read())
        return "\n".join(parts)


class Cluster:
    """A cluster of real member processes for one test, always stopped."""

    def __init__(
        self, testcase, size: int, extra: list[str] | None = None, member_flags: dict[int, list[str]] | None = None
    ) -> None:
        self.testcase = testcase
        self.workdir = os.path.abspath(testcase.mktemp())
        self.extra = list(extra or [])
        self.peer_urls = [f"http://127.0.0.1:{free_port()}" for _ in range(size)]
        self.members: dict[int, Member] = {}
        for member_id in range(1, size + 1):
            self._new_member(member_id, self.peer_urls, (member_flags or {}).get(member_id, []))

    def _new_member(self, member_id: int, cluster: list[str], extra: list[str] = ()) -> Member:
        member = Member(
            member_id=member_id,
            cluster=list(cluster),
            http_port=free_port(),
            workdir=self.workdir,
            extra=self.extra + list(extra),
        )
        self.members[member_id] = member
        self.testcase.addCleanup(member.kill)
        return member

    def add_member(self) -> Member:
        """A new member (not started) that will ``--join`` with the full list."""
        member_id = max(self.members) + 1
        self.peer_urls.append(f"http://127.0.0.1:{free_port()}")
        return self._new_member(member_id, self.peer_urls, ["--join"])

    def start(self, *member_ids: int) -> None:
        """Start the given members (all when none are named)."""
        for member_id in member_ids or tuple(self.members):
            self.members[member_id].start()

    async def status(self, member_id: int) -> dict | None:
        """The member's /admin/status, or None when it does not answer."""
        member = self.members[member_id]
        if not member.running():
            return None
        try:
            d = treq.get(member.url + "/admin/status", persistent=False)
            d.addTimeout(2, reactor)
            response = await d
            return await treq.json_content(response)
        except Exception:
            return None

    async def leader(self, among=None, timeout: float = 30) -> int:
        """The id of the leader that the running members in ``among`` agree on."""
        ids = list(among or [i for i, m in self.members.items() if m.running()])

        async def agreed():
            statuses = [await self.status(i) for i in ids]
            leaders = {s["leader"] for s in statuses if s}
            if len(leaders) == 1 and None not in statuses:
                leader = leaders.pop()
                return leader if leader in ids else None
            return None

        return await wait_until(agreed, timeout=timeout, what=f"members {ids} to agree on a leader")

    async def request(self, member_id: int, method: str, path: str, body: bytes | None = None,
                      headers=None, timeout: float = 15) -> tuple[int, bytes, object]:
        """``(status, body, response)``; status 0 when the member did not answer."""
        member = self.members[member_id]
        try:
            d = treq.request(method, member.url + path, data=body, headers=headers, persistent=False)
            d.addTimeout(timeout, reactor)
            response = await d
            return response.code, await treq.content(response), response
        except Exception:
            return 0, b"", None

    async def put_until_ok(self, member_id: int, key: str, value: bytes, timeout: float = 30) -> None:
        """PUT, retrying while the cluster answers 503 (e.g. during an election)."""

        async def put():
            code, _, _ = await self.request(member_id, "PUT", "/" + key, value)
            return code == 204

        await wait_until(put, timeout=timeout, interval=0.2, what=f"PUT {key} on member {member_id}")

    def logs(self) -> str:
        """Every member's log, for failure messages."""
        return "\n".join(f"--- member {i}\n{m.log_text()[-4000:]}" for i, m in self.members.items())


async def burst_then_kill(member: Member, put, count: int, kill_after: int) -> dict[int, bool]:
    """Start ``count`` concurrent ``put(i)`` calls and SIGKILL ``member`` as
    soon as ``kill_after`` of them are acknowledged, with the rest still in
    flight.  Returns ``{i: acknowledged}``."""
    acknowledged: dict[int, bool] = {}

    def note(ok: bool, i: int) -> None:
        acknowledged[i] = ok
        if ok and sum(acknowledged.values()) == kill_after and member.running():
            member.kill()

    writes = []
    for i in range(count):
        d = defer.ensureDeferred(put(i))
        d.addCallbacks(lambda ok, i=i: note(bool(ok), i), lambda f, i=i: note(False, i))
        writes.append(d)
    await defer.DeferredList(writes, consumeErrors=True)
    if member.running():
        member.kill()
    return acknowledged


async def start_healthy(member: Member, timeout: float = 30) -> None:
    """Start ``member`` and wait until its /health answers 200; fail with
    its log if it exits first."""
    member.start()
    await wait_healthy(member, timeout)


async def wait_healthy(member: Member, timeout: float = 30) -> None:
    """Wait until the running ``member``'s /health answers 200; fail with
    its log if it exits first."""

    async def healthy():
        if not member.running():
            raise AssertionError(f"member {member.member_id} exited during start-up:\n{member.log_text()}")
        try:
            response = await treq.get(member.url + "/health", persistent=False)
            await treq.content(response)
            return response.code == 200
        except Exception:
            return False

    await wait_until(healthy, timeout=timeout, what=f"member {member.member_id} to be healthy")
