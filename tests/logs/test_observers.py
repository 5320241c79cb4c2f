"""The member's observer: level filter and quiet Twisted noise (metastore.logs.observers)."""

from __future__ import annotations

import io
import json

from twisted.internet.task import Clock
from twisted.logger import Logger, LogPublisher
from twisted.trial.unittest import SynchronousTestCase

from metastore.logs.observers import member_observer


def logged(level: str, log_format: str = "json", emit=None) -> list[str]:
    """The lines written by a member observer at ``level`` for what ``emit(publisher)`` logs."""
    out = io.StringIO()
    publisher = LogPublisher(member_observer(out, log_format, level, clock=Clock()))
    emit(publisher)
    return out.getvalue().splitlines()


def every_level(publisher) -> None:
    log = Logger(namespace="metastore.node", observer=publisher)
    log.debug("d")
    log.info("i")
    log.warn("w")
    log.error("e")
    log.critical("c")


class LevelFilterTests(SynchronousTestCase):
    """``--log-level``: events below it are not written."""

    def test_each_level_keeps_itself_and_above(self) -> None:
        expected = {"debug": "diwec", "info": "iwec", "warn": "wec", "error": "ec"}
        for level, messages in expected.items():
            lines = logged(level, emit=every_level)
            self.assertEqual("".join(json.loads(line)["message"] for line in lines), messages, level)

    def test_text_format_writes_the_same_events(self) -> None:
        lines = logged("warn", "text", every_level)
        self.assertEqual([line.split(": ", 1)[1] for line in lines], ["w", "e", "c"])

    def test_unknown_format_or_level_is_refused(self) -> None:
        self.assertRaises(ValueError, member_observer, io.StringIO(), "xml", "info")
        self.assertRaises(ValueError, member_observer, io.StringIO(), "json", "verbose")


class ChattyTwistedTests(SynchronousTestCase):
    """Twisted's line per outgoing connection shows only at debug."""

    def emit_factory_noise(self, publisher) -> None:
        for namespace in ("twisted.web.client._HTTP11ClientFactory",
                          "twisted.application._client_service.ClientService"):
            Logger(namespace=namespace, observer=publisher).info("Starting factory {n}", n=namespace)
        Logger(namespace="twisted.web.client._HTTP11ClientFactory", observer=publisher).error("real trouble")
        Logger(namespace="metastore.transport.peers", observer=publisher).info("Lost connection to peer 3")

    def test_hidden_at_info_except_warnings(self) -> None:
        messages = [json.loads(line)["message"] for line in logged("info", emit=self.emit_factory_noise)]
        self.assertEqual(messages, ["real trouble", "Lost connection to peer 3"])

    def test_shown_at_debug(self) -> None:
        self.assertEqual(len(logged("debug", emit=self.emit_factory_noise)), 4)


class RepeatsThroughTheObserverTests(SynchronousTestCase):
    """The member's observer rate-limits repeats on the clock it is given."""

    def test_a_flood_is_three_lines_and_a_summary(self) -> None:
        out, clock = io.StringIO(), Clock()
        log = Logger(namespace="metastore.transport", observer=LogPublisher(member_observer(out, "json", "info", clock)))
        for _ in range(1000):
            log.warn("queue to peer {peer} is full", peer=2)
        clock.advance(10)
        messages = [json.loads(line)["message"] for line in out.getvalue().splitlines()]
        self.assertEqual(messages, ["queue to peer 2 is full"] * 3
                         + ["message repeated 997 more times in 10s: queue to peer 2 is full"])

    def test_without_a_clock_every_repeat_is_written(self) -> None:
        out = io.StringIO()
        log = Logger(namespace="metastore.transport", observer=LogPublisher(member_observer(out, "text", "info")))
        for _ in range(10):
            log.warn("same")
        self.assertEqual(len(out.getvalue().splitlines()), 10)
