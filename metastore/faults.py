"""Fault injection for tests, off unless asked for.  Never set these in
production.

A member started with ``METASTORE_DEBUG_PROPOSE_RAW=1`` serves
``POST /admin/debug/propose-raw?type=normal`` (or ``type=conf-change``),
which proposes the request body as it is as a Raft entry, bypassing every
check, so tests can put poison entries into the log; without the variable
that route answers 404.

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


RAW_PROPOSALS_VARIABLE = "METASTORE_DEBUG_PROPOSE_RAW"


def raw_proposals_from_environment(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the test-only raw proposal route is on (the variable is ``1``)."""
    return environ.get(RAW_PROPOSALS_VARIABLE, "").strip() == "1"
