"""A member's logs: structured (JSON or text, one event per line), filtered
by level, without Twisted's per-connection noise, repeats rate-limited.

``member_observer`` builds the observer for any program; ``twistd
metastore`` installs it from ``--log-format`` and ``--log-level``.
"""

from metastore.logs.formats import FORMATS, json_line, text_line
from metastore.logs.observers import LEVELS, member_observer, twistd_observer_factory
from metastore.logs.repeats import RepeatLimiter

__all__ = ["FORMATS", "LEVELS", "RepeatLimiter", "json_line", "member_observer", "text_line", "twistd_observer_factory"]
