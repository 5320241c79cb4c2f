"""Logging refused connections without a flood.

A stranger retrying in a loop must not fill the log: the first refusal
from an address is logged at once; later ones within ``interval`` seconds
are only counted, and the next refusal after the interval logs one line
that includes how many were not logged.  At most ``max_addresses`` are
remembered (the oldest forgotten first), so a scan of many addresses costs
bounded memory.
"""

from __future__ import annotations

from collections import OrderedDict

from twisted.logger import Logger

log = Logger()


class RefusalLog:
    """Rate-limited log of refused connections, per remote address."""

    def __init__(self, clock, what: str, interval: float = 60.0, max_addresses: int = 1024) -> None:
        self.clock = clock
        self.what = what
        self.interval = interval
        self.max_addresses = max_addresses
        self._seen: OrderedDict[str, list] = OrderedDict()  # address -> [last logged at, suppressed]
        self.logged = 0
        """Lines written so far (tests read it)."""

    def refused(self, address: str, reason: str) -> bool:
        """Record a refusal; True when it was logged."""
        now = self.clock.seconds()
        entry = self._seen.get(address)
        if entry is not None and now - entry[0] < self.interval:
            entry[1] += 1
            return False
        suppressed = entry[1] if entry is not None else 0
        self._seen[address] = [now, 0]
        self._seen.move_to_end(address)
        while len(self._seen) > self.max_addresses:
            self._seen.popitem(last=False)
        more = f" ({suppressed} more refused since the last line)" if suppressed else ""
        log.warn("Refused {what} from {address}: {reason}{more}", what=self.what, address=address,
                 reason=reason, more=more)
        self.logged += 1
        return True
