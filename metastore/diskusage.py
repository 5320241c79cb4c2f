"""How many bytes a member's data directory takes, measured at most once
per interval (a walk of the directory is too slow to make per request)."""

from __future__ import annotations

import os


def directory_bytes(path: str) -> int:
    """The total size of the regular files under ``path`` (0 if it is gone)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue  # deleted while walking (a pruned snapshot, a rotated segment)
    return total


class DiskUsage:
    """``directory_bytes(path)``, remeasured when the last measure is older
    than ``interval`` seconds of ``clock``."""

    def __init__(self, path: str, clock, interval: float = 1.0) -> None:
        self._path = path
        self._clock = clock
        self._interval = interval
        self._measured_at: float | None = None
        self._bytes = 0

    def __call__(self) -> int:
        """The directory's size, at most ``interval`` seconds old."""
        now = self._clock.seconds()
        if self._measured_at is None or now - self._measured_at >= self._interval:
            self._bytes = directory_bytes(self._path)
            self._measured_at = now
        return self._bytes
