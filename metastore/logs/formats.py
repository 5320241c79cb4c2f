"""One log event as one line: JSON or text.

JSON: one object per line with ``time`` (UTC, ISO 8601, milliseconds),
``level``, ``namespace`` and ``message`` (the event's formatted text), then
the event's own fields (values JSON cannot hold are written as their
``repr``); a failure adds ``error`` and ``traceback``.  Text: time, level,
namespace and message on one line; a failure's traceback follows on lines
indented by four spaces (JSON keeps it in its one line).
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

from twisted.logger import LogEvent, LogLevel, formatEvent

RESERVED = ("time", "level", "namespace", "message", "error", "traceback")
"""The fields every JSON line has (an event field of the same name is dropped)."""

_LEGACY_FIELDS = frozenset(("message", "system", "isError", "time", "format", "why", "failure", "printed"))

LEVEL_NAMES = {
    LogLevel.debug: "debug",
    LogLevel.info: "info",
    LogLevel.warn: "warn",
    LogLevel.error: "error",
    LogLevel.critical: "critical",
}


def event_time(event: LogEvent) -> str:
    """The event's time, UTC, ISO 8601 with milliseconds (``...Z``)."""
    seconds = event.get("log_time")
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return "-"
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def event_level(event: LogEvent) -> str:
    """``debug``, ``info``, ``warn``, ``error`` or ``critical``."""
    return LEVEL_NAMES.get(event.get("log_level"), "info")


def event_namespace(event: LogEvent) -> str:
    """Who logged: the logger's namespace (a legacy ``log.msg`` event's system)."""
    namespace = event.get("log_namespace", "-")
    if namespace == "log_legacy":
        return str(event.get("log_system", "-"))
    return str(namespace)


def event_message(event: LogEvent) -> str:
    """The event's text, formatted from its format string and fields."""
    return formatEvent(event)


def _fields(event: LogEvent) -> dict:
    legacy = "log_legacy" in event or event.get("log_namespace") == "log_legacy"
    fields = {}
    for name, value in event.items():
        if name.startswith("log_") or name in RESERVED or (legacy and name in _LEGACY_FIELDS):
            continue
        fields[name] = value if _is_json(value) else repr(value)
    return fields


def _is_json(value) -> bool:
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    return False


def _failure(event: LogEvent) -> tuple[str, str] | None:
    failure = event.get("log_failure")
    if failure is None:
        return None
    return f"{failure.type.__name__}: {failure.value}", failure.getTraceback()


def json_line(event: LogEvent) -> str:
    """``event`` as one JSON object and a newline."""
    record = {
        "time": event_time(event),
        "level": event_level(event),
        "namespace": event_namespace(event),
        "message": event_message(event),
    }
    record.update(_fields(event))
    failure = _failure(event)
    if failure is not None:
        record["error"], record["traceback"] = failure
    return json.dumps(record, ensure_ascii=False, default=repr) + "\n"


def text_line(event: LogEvent) -> str:
    """``event`` as ``time level namespace: message`` and a newline (a
    traceback on indented lines after it)."""
    message = event_message(event).replace("\n", "\n    ")
    line = f"{event_time(event)} {event_level(event):<5} {event_namespace(event)}: {message}\n"
    failure = _failure(event)
    if failure is not None:
        line += "".join("    " + part + "\n" for part in failure[1].rstrip("\n").split("\n"))
    return line


FORMATS = {"json": json_line, "text": text_line}
"""``--log-format``'s choices."""
