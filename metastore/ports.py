"""Free TCP ports for the processes that tests, the chaos tool and the
benchmark start on 127.0.0.1.

A port the kernel hands out for ``bind(0)`` comes from the ephemeral range,
the same range it takes the local ports of outgoing connections from: a busy
machine can give that port to a client socket between the moment it is
chosen and the moment the child process binds it ("Address already in
use").  So ports are chosen below the ephemeral range, at random, and each
is handed out once per process and, through a claim file, once per machine
for ``CLAIM_SECONDS``: processes choosing at the same time (``trial
--jobs`` workers) never hand out the same port before its owner binds it.
"""

from __future__ import annotations

import os
import random
import socket
import tempfile
import time

_DEFAULT_EPHEMERAL_LOW = 32768
_LOWEST = 10000
_given: set[int] = set()
CLAIM_SECONDS = 600
"""How long a port handed out by one process is refused to the others."""
_CLAIMS = os.path.join(tempfile.gettempdir(), "metastore-test-ports")


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return _DEFAULT_EPHEMERAL_LOW


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _claim(port: int) -> bool:
    """Whether this process may hand out ``port``: it created the port's
    claim file, or took over one older than ``CLAIM_SECONDS`` (renaming
    the stale file first, so that of two processes only one takes it).
    Without a usable claims directory, every port may be handed out."""
    path = os.path.join(_CLAIMS, str(port))
    try:
        os.makedirs(_CLAIMS, exist_ok=True)
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            return True
        except FileExistsError:
            if time.time() - os.stat(path).st_mtime < CLAIM_SECONDS:
                return False
            stale = f"{path}.{os.getpid()}.{random.getrandbits(32)}"
            os.rename(path, stale)  # only one of several takers succeeds
            os.remove(stale)
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            return True
    except FileNotFoundError:
        return False  # another process took over the stale claim first
    except FileExistsError:
        return False
    except OSError:
        return True


def free_port(attempts: int = 200) -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, outside the
    kernel's ephemeral range and not handed out before by this process."""
    high = _ephemeral_low()
    if high - _LOWEST > 1000:
        for _ in range(attempts):
            port = random.randrange(_LOWEST, high)
            if port not in _given and _claim(port) and _bindable(port):
                _given.add(port)
                return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _given.add(port)
    return port
