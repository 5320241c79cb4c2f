"""Free TCP ports for the processes that tests, the chaos tool and the
benchmark start on 127.0.0.1.

A port the kernel hands out for ``bind(0)`` comes from the ephemeral range,
the same range it takes the local ports of outgoing connections from: a busy
machine can give that port to a client socket between the moment it is
chosen and the moment the child process binds it ("Address already in
use").  So ports are chosen below the ephemeral range, at random, and each
is handed out once per process.
"""

from __future__ import annotations

import random
import socket

_DEFAULT_EPHEMERAL_LOW = 32768
_LOWEST = 10000
_given: set[int] = set()


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


def free_port(attempts: int = 200) -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, outside the
    kernel's ephemeral range and not handed out before by this process."""
    high = _ephemeral_low()
    if high - _LOWEST > 1000:
        for _ in range(attempts):
            port = random.randrange(_LOWEST, high)
            if port not in _given and _bindable(port):
                _given.add(port)
                return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _given.add(port)
    return port
