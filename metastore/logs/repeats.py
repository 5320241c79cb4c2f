"""Rate-limited repeats: a message logged again and again is summarised."""

from __future__ import annotations

from twisted.logger import ILogObserver, LogEvent
from zope.interface import implementer

from metastore.logs.formats import event_message

WINDOW_SECONDS = 10.0
"""How long after a message's first line its repeats are counted, not written."""
BURST = 3
"""Lines of one message written within a window before its repeats are counted."""
MAX_TRACKED = 10_000
"""Distinct messages followed at once; past this, messages pass unlimited."""


@implementer(ILogObserver)
class RepeatLimiter:
    """Passes events to ``observer``, but of one message (same namespace,
    level and text) at most ``burst`` within ``window`` seconds of its
    first; the rest are counted, and when the window ends one event says
    how many were left out (``message repeated N more times in Ws: ...``).
    ``clock`` (an ``IReactorTime``) runs the windows."""

    def __init__(self, observer: ILogObserver, clock, window: float = WINDOW_SECONDS, burst: int = BURST) -> None:
        self._observer = observer
        self._clock = clock
        self._window = window
        self._burst = burst
        self._seen: dict[tuple, list] = {}
        """Each message in its window: [lines written, repeats left out, a sample event]."""

    def __call__(self, event: LogEvent) -> None:
        """Write ``event`` unless its message already filled its window."""
        key = (event.get("log_namespace"), event.get("log_level"), event_message(event))
        seen = self._seen.get(key)
        if seen is None:
            if len(self._seen) < MAX_TRACKED:
                self._seen[key] = [1, 0, event]
                self._clock.callLater(self._window, self._close, key)
            self._observer(event)
        elif seen[0] < self._burst:
            seen[0] += 1
            self._observer(event)
        else:
            seen[1] += 1

    def _close(self, key: tuple) -> None:
        _, repeats, sample = self._seen.pop(key)
        if repeats:
            self._observer({
                "log_namespace": sample.get("log_namespace"),
                "log_level": sample.get("log_level"),
                "log_time": self._clock.seconds(),
                "log_format": "message repeated {repeats} more times in {window:g}s: {repeated}",
                "repeats": repeats,
                "window": self._window,
                "repeated": key[2],
            })
