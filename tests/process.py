"""Real MetaStore members as child processes, for integration tests.

Members run the checkout's code through ``twistd`` (the plugin is found on
``sys.path`` exactly as after an install), on 127.0.0.1 and free ports.
Every wait is bounded: a condition is polled until a deadline, never slept
on in hope.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

from twisted.internet import reactor, task

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWISTD = "from twisted.scripts.twistd import run; run()"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def twistd_command(*args: str, logfile: str = "-") -> list[str]:
    """The argv that runs ``twistd -n metastore ARGS`` on the checkout."""
    return [sys.executable, "-c", TWISTD, "--nodaemon", "--pidfile=", f"--logfile={logfile}", "metastore", *args]


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
            *self.extra,
        ]

    def start(self) -> None:
        """Spawn the member (its log goes to ``logfile``)."""
        os.makedirs(self.workdir, exist_ok=True)
        self.process = subprocess.Popen(
            twistd_command(*self.args(), logfile=self.logfile),
            cwd=self.workdir,
            env=child_env(),
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.workdir, f"member-{self.member_id}.stderr"), "ab"),
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
