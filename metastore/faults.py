"""Fault injection for tests of durability, off unless asked for.

A member started with ``METASTORE_FAULT_FSYNC=<kind>-after:<n>`` in its
environment has a WAL whose ``fsync`` succeeds ``n`` times and then fails
every time with ``kind`` (``eio`` or ``enospc``), as a dying or full disk
would.  Without the variable the WAL uses ``os.fsync``.
"""

from __future__ import annotations

import errno
import os
from typing import Callable, Mapping

ENVIRONMENT_VARIABLE = "METASTORE_FAULT_FSYNC"
_ERRORS = {"eio": errno.EIO, "enospc": errno.ENOSPC}


def failing_fsync(successes: int, code: int) -> Callable[[int], None]:
    """An fsync that works ``successes`` times, then raises ``OSError(code)``."""
    remaining = [successes]

    def fsync(fd: int) -> None:
        if remaining[0] <= 0:
            raise OSError(code, os.strerror(code))
        remaining[0] -= 1
        os.fsync(fd)

    return fsync


def wal_fsync_from_environment(environ: Mapping[str, str] = os.environ) -> Callable[[int], None]:
    """The fsync the WAL should use: ``os.fsync`` unless a fault is asked
    for; a malformed request raises ValueError naming the variable."""
    spec = environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if not spec:
        return os.fsync
    try:
        kind, count = spec.split("-after:")
        return failing_fsync(int(count), _ERRORS[kind])
    except (KeyError, ValueError):
        raise ValueError(f"{ENVIRONMENT_VARIABLE} must look like eio-after:10 or enospc-after:0, not {spec!r}") from None
