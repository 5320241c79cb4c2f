"""One event, one line: metastore.logs.formats."""

from __future__ import annotations

import json

from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from metastore.logs.formats import json_line, text_line

T0 = 1796410000.25
"""2026-12-04T18:46:40.250Z"""


def event(**fields) -> dict:
    """A log event as ``twisted.logger.Logger`` emits it."""
    base = {
        "log_time": T0,
        "log_level": LogLevel.info,
        "log_namespace": "metastore.node",
        "log_format": "member {id} became the leader",
        "id": 3,
    }
    base.update(fields)
    return base


def failed_event() -> dict:
    try:
        1 / 0
    except ZeroDivisionError:
        failure = Failure()
    return event(log_level=LogLevel.error, log_format="applying failed", log_failure=failure)


class JsonLineTests(SynchronousTestCase):
    """``--log-format json``: one JSON object per line."""

    def test_fixed_fields_then_the_events_own(self) -> None:
        """time (UTC, ms), level, namespace, message, then the event's fields."""
        line = json_line(event())
        self.assertTrue(line.endswith("\n"))
        self.assertEqual(line.count("\n"), 1)
        self.assertEqual(
            json.loads(line),
            {"time": "2026-12-04T18:46:40.250Z", "level": "info", "namespace": "metastore.node",
             "message": "member 3 became the leader", "id": 3},
        )

    def test_values_json_cannot_hold_are_their_repr(self) -> None:
        """An object, bytes or a NaN becomes its repr; the line stays valid JSON."""
        record = json.loads(json_line(event(peer=object(), key=b"\xff", ratio=float("nan"), flag=True)))
        self.assertTrue(record["peer"].startswith("<object object"))
        self.assertEqual((record["key"], record["ratio"], record["flag"]), ("b'\\xff'", "nan", True))

    def test_a_field_named_like_a_fixed_one_does_not_replace_it(self) -> None:
        record = json.loads(json_line(event(level="forged", message="forged")))
        self.assertEqual((record["level"], record["message"]), ("info", "member 3 became the leader"))

    def test_a_failure_keeps_its_traceback_in_the_one_line(self) -> None:
        line = json_line(failed_event())
        self.assertEqual(line.count("\n"), 1)
        record = json.loads(line)
        self.assertEqual((record["level"], record["error"]), ("error", "ZeroDivisionError: division by zero"))
        self.assertIn("ZeroDivisionError", record["traceback"])
        self.assertIn("\n", record["traceback"])

    def test_a_legacy_event_names_its_system(self) -> None:
        """``log.msg`` from Twisted's older code: its system is the namespace,
        its legacy keys are not repeated as fields."""
        legacy = {
            "log_time": T0, "log_level": LogLevel.info, "log_namespace": "log_legacy", "log_system": "-",
            "log_format": "{log_text}", "log_text": "Site starting on 9121", "log_legacy": True,
            "message": ("Site starting on 9121",), "system": "-", "isError": 0, "time": T0,
        }
        self.assertEqual(
            json.loads(json_line(legacy)),
            {"time": "2026-12-04T18:46:40.250Z", "level": "info", "namespace": "-", "message": "Site starting on 9121"},
        )


class TextLineTests(SynchronousTestCase):
    """``--log-format text``: a line for people."""

    def test_one_line_with_time_level_namespace_message(self) -> None:
        self.assertEqual(text_line(event()), "2026-12-04T18:46:40.250Z info  metastore.node: member 3 became the leader\n")

    def test_a_multi_line_message_continues_indented(self) -> None:
        line = text_line(event(log_format="first\nsecond"))
        self.assertEqual(line.splitlines()[1], "    second")

    def test_a_failure_traceback_follows_indented(self) -> None:
        lines = text_line(failed_event()).splitlines()
        self.assertIn("error metastore.node: applying failed", lines[0])
        self.assertGreater(len(lines), 2)
        self.assertTrue(all(line.startswith("    ") for line in lines[1:]))
        self.assertIn("ZeroDivisionError", lines[-1])
