"""A member's log observer: level filter, quiet Twisted noise, rate-limited
repeats, one line per event in the chosen format."""

from __future__ import annotations

import sys
from typing import Callable, TextIO

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
)

from metastore.logs.formats import FORMATS
from metastore.logs.repeats import BURST, WINDOW_SECONDS, RepeatLimiter

LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
}
"""``--log-level``'s choices."""

CHATTY_NAMESPACES = (
    # "Starting factory" / "Stopping factory" for every outgoing HTTP
    # connection (a member asking another for its status).
    "twisted.web.client._HTTP11ClientFactory",
    # "Scheduling retry N to connect ..." for every attempt to reach a peer
    # that is down (the transport logs the lost connection once itself).
    "twisted.application._client_service.ClientService",
)
"""Twisted namespaces that write a line per connection at level info:
shown only at ``--log-level debug``."""


def member_observer(
    out: TextIO, log_format: str = "text", level: str = "info", clock=None,
    window: float = WINDOW_SECONDS, burst: int = BURST,
) -> ILogObserver:
    """An observer that writes to ``out`` the events at ``level`` or above,
    in ``log_format`` (``json`` or ``text``), one per line, without
    Twisted's per-connection lines (``CHATTY_NAMESPACES``, unless
    ``level`` is debug), and with a message's repeats beyond ``burst``
    within ``window`` seconds summarised (``RepeatLimiter``, on ``clock``;
    None writes every repeat)."""
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {log_format!r}")
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    observer: ILogObserver = FileLogObserver(out, FORMATS[log_format])
    if clock is not None:
        observer = RepeatLimiter(observer, clock, window, burst)
    predicate = LogLevelFilterPredicate(defaultLogLevel=LEVELS[level])
    if LEVELS[level] > LogLevel.debug:
        for namespace in CHATTY_NAMESPACES:
            predicate.setLogLevelForNamespace(namespace, LogLevel.warn)
    return FilteringLogObserver(observer, [predicate])


def twistd_observer_factory(log_format: str, level: str, logfile: str, nodaemon: bool) -> Callable[[], ILogObserver]:
    """What twistd's ``--logger`` takes: a callable making the member's
    observer, writing where twistd would (``--logfile``: ``-`` or, with
    ``--nodaemon``, none means standard output; otherwise the file,
    ``twistd.log`` by default).  Called once the reactor is installed,
    which then runs the repeat windows."""

    def make() -> ILogObserver:
        from twisted.internet import reactor
        from twisted.python.logfile import LogFile

        if logfile == "-" or (nodaemon and not logfile):
            out = sys.stdout
        else:
            out = LogFile.fromFullPath(logfile or "twistd.log")
        return member_observer(out, log_format, level, clock=reactor)

    return make
