"""Server CPU and memory accounting from ``/proc`` (Linux), for ``--pid``.

The load generator samples each server process before and after the
measured phase; the difference in user + system CPU time, divided by the
requests served, is the server's CPU cost per request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """One process's CPU time so far (user + system, seconds) and resident memory (bytes)."""

    pid: int
    cpu_seconds: float
    rss_bytes: int


def parse_stat_cpu(stat_text: str) -> float:
    """User + system CPU seconds from the text of ``/proc/PID/stat``.

    The command name (field 2) may hold spaces and parentheses, so fields
    are counted from the last ``)``: utime and stime are fields 14 and 15.
    """
    after_name = stat_text[stat_text.rindex(")") + 2 :].split()
    utime, stime = int(after_name[11]), int(after_name[12])
    return (utime + stime) / CLOCK_TICKS


def parse_status_bytes(status_text: str, name: str = "VmRSS") -> int:
    """A memory field (``VmRSS``, ``VmHWM``...) in bytes from the text of
    ``/proc/PID/status`` (0 if absent)."""
    for line in status_text.splitlines():
        if line.startswith(name + ":"):
            number, unit = line.split()[1:3]
            return int(number) * {"kB": 1024, "mB": 1024 * 1024}.get(unit, 1)
    return 0


def parse_status_rss(status_text: str) -> int:
    """Resident set size in bytes from the text of ``/proc/PID/status`` (0 if absent)."""
    return parse_status_bytes(status_text, "VmRSS")


def sample(pid: int, proc_root: str = "/proc") -> ProcessSample:
    """Read ``pid``'s CPU time and RSS now; OSError if it does not exist."""
    with open(f"{proc_root}/{pid}/stat") as f:
        cpu = parse_stat_cpu(f.read())
    with open(f"{proc_root}/{pid}/status") as f:
        rss = parse_status_rss(f.read())
    return ProcessSample(pid, cpu, rss)


@dataclass(frozen=True, slots=True)
class ServerCost:
    """What one server process spent over a measured phase."""

    pid: int
    cpu_ms: float
    cpu_ms_per_1000_requests: float | None
    rss_before_bytes: int
    rss_after_bytes: int

    @classmethod
    def between(cls, before: ProcessSample, after: ProcessSample, requests: int) -> ServerCost:
        """The cost from ``before`` to ``after`` while ``requests`` requests were answered."""
        cpu_ms = (after.cpu_seconds - before.cpu_seconds) * 1000
        return cls(
            pid=before.pid,
            cpu_ms=round(cpu_ms, 1),
            cpu_ms_per_1000_requests=round(cpu_ms / requests * 1000, 1) if requests else None,
            rss_before_bytes=before.rss_bytes,
            rss_after_bytes=after.rss_bytes,
        )


class CostMeter:
    """Samples a set of server processes at the start and end of a measurement."""

    def __init__(self, pids: tuple[int, ...], proc_root: str = "/proc") -> None:
        self._pids = pids
        self._proc_root = proc_root
        self._before: dict[int, ProcessSample] = {}
        self._after: dict[int, ProcessSample] = {}

    def start(self) -> None:
        """Take the before samples."""
        self._before = self._sample_all()

    def stop(self) -> None:
        """Take the after samples."""
        self._after = self._sample_all()

    def _sample_all(self) -> dict[int, ProcessSample]:
        """A sample of every process that still exists; one that has gone
        simply has no cost to report."""
        samples = {}
        for pid in self._pids:
            try:
                samples[pid] = sample(pid, self._proc_root)
            except OSError:
                pass
        return samples

    def costs(self, requests: int) -> list[ServerCost]:
        """Each process's cost over the measurement of ``requests`` requests."""
        return [
            ServerCost.between(self._before[pid], self._after[pid], requests)
            for pid in self._pids
            if pid in self._before and pid in self._after
        ]
