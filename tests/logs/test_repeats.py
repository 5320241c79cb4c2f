"""Rate-limited repeats: metastore.logs.repeats, on task.Clock."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from metastore.logs.repeats import RepeatLimiter


def event(text: str, level: LogLevel = LogLevel.warn, namespace: str = "metastore.transport") -> dict:
    return {"log_level": level, "log_namespace": namespace, "log_format": "{text}", "text": text, "log_time": 0.0}


class RepeatLimiterTests(SynchronousTestCase):
    """A message repeated within a window is written ``burst`` times, then counted and summarised."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.written: list[dict] = []
        self.limiter = RepeatLimiter(self.written.append, self.clock, window=10.0, burst=2)

    def texts(self) -> list[str]:
        return [formatEvent(e) for e in self.written]

    def test_repeats_past_the_burst_are_counted_then_summarised(self) -> None:
        for _ in range(50):
            self.limiter(event("peer 2 unreachable"))
        self.assertEqual(self.texts(), ["peer 2 unreachable"] * 2)
        self.clock.advance(9.9)
        self.assertEqual(len(self.written), 2)
        self.clock.advance(0.1)
        self.assertEqual(self.texts()[2], "message repeated 48 more times in 10s: peer 2 unreachable")
        summary = self.written[2]
        self.assertEqual((summary["log_level"], summary["log_namespace"], summary["repeats"]),
                         (LogLevel.warn, "metastore.transport", 48))

    def test_a_new_window_starts_after_the_summary(self) -> None:
        for _ in range(3):
            self.limiter(event("x"))
        self.clock.advance(10)
        self.limiter(event("x"))
        self.assertEqual(self.texts(), ["x", "x", "message repeated 1 more times in 10s: x", "x"])

    def test_no_summary_when_nothing_was_left_out(self) -> None:
        self.limiter(event("once"))
        self.clock.advance(60)
        self.assertEqual(self.texts(), ["once"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_messages_differing_in_text_level_or_namespace_are_counted_apart(self) -> None:
        for _ in range(5):
            self.limiter(event("peer 2 unreachable"))
            self.limiter(event("peer 3 unreachable"))
            self.limiter(event("peer 2 unreachable", level=LogLevel.error))
            self.limiter(event("peer 2 unreachable", namespace="metastore.node"))
        self.assertEqual(len(self.written), 8)
        self.clock.advance(10)
        self.assertEqual(len(self.written), 12)
        self.assertTrue(all(e.get("repeats") == 3 for e in self.written[8:]))
