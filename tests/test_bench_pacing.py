"""``metastore-bench --rate``: the token bucket and a paced run on a fake clock."""

from __future__ import annotations

import re
from itertools import count

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from metastore.bench.apis import SeedRequests, Target, ValueSource
from metastore.bench.cli import BenchOptions
from metastore.bench.load import LoadRun, Workload
from metastore.bench.pacing import TokenBucket
from metastore.bench.report import config_as_json
from metastore.bench.stats import PUT


class TokenBucketTests(SynchronousTestCase):
    """Tokens come at the rate, one at the start, at most ``burst`` banked."""

    def test_rate(self) -> None:
        """At 10/s: one token at once, the next 0.1 s later."""
        bucket = TokenBucket(10, start=100.0)
        self.assertTrue(bucket.take(100.0))
        self.assertFalse(bucket.take(100.0))
        self.assertAlmostEqual(bucket.wait(100.05), 0.05)
        self.assertFalse(bucket.available(100.09))
        self.assertTrue(bucket.take(100.1))
        self.assertFalse(bucket.take(100.1))

    def test_burst_bounds_the_catch_up(self) -> None:
        """After a long idle spell only ``burst`` tokens are there."""
        bucket = TokenBucket(1000, start=0.0, burst=5)
        taken = sum(bucket.take(60.0) for _ in range(100))
        self.assertEqual(taken, 5)
        self.assertEqual(TokenBucket(1000, 0.0).burst, 50)  # 50 ms of the rate by default
        self.assertEqual(TokenBucket(2, 0.0).burst, 1)

    def test_invalid(self) -> None:
        """A rate must be positive."""
        self.assertRaises(ValueError, TokenBucket, 0, 0.0)


class PacedRunTests(SynchronousTestCase):
    """Four clients held to 20 requests/s against an instant server."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        target = Target.from_url("http://127.0.0.1:8080")
        self.run = LoadRun(
            self.reactor, [target], 4, Workload(PUT, count().__next__),
            {target: SeedRequests(target, "k/", ValueSource(b"v"))},
            duration=2.0, request_timeout=5.0, now=self.reactor.seconds, rate=20.0,
        )
        self.result = self.run.start()
        self.connections = []

    def answer_everything(self) -> int:
        """Connect pending clients and answer every request sent; the number answered."""
        while len(self.connections) < len(self.reactor.tcpClients):
            _, _, factory, _, _ = self.reactor.tcpClients[len(self.connections)]
            protocol, transport = factory.buildProtocol(None), StringTransport()
            protocol.makeConnection(transport)
            self.connections.append((protocol, transport))
        answered = 0
        for protocol, transport in self.connections:
            sent = len(re.findall(rb"PUT \S+ HTTP/1.1", transport.value()))
            transport.clear()
            for _ in range(sent):
                protocol.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
            answered += sent
        return answered

    def test_held_to_the_rate(self) -> None:
        """Over 2 s about 40 requests go out (not hundreds), spread over
        time: no 0.25 s step carries more than its share and the burst."""
        per_step = [0] * 8
        for step in range(200):  # 10 ms steps
            per_step[step // 25] += self.answer_everything()
            self.reactor.advance(0.01)
        for protocol, _ in self.connections:
            protocol.connectionLost(None)
        result = self.successResultOf(self.result)
        self.assertTrue(38 <= result.overall.requests <= 42, result.overall.requests)
        self.assertEqual(result.overall.outcomes, {"204": result.overall.requests})
        self.assertLessEqual(max(per_step), 6)
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class RateOptionTests(SynchronousTestCase):
    """``--rate`` on the command line."""

    def test_parsed_and_reported(self) -> None:
        """--rate reaches the config and the JSON; a non-positive rate is refused."""
        options = BenchOptions()
        options.parseOptions(["put", "-u", "http://127.0.0.1:1", "--rate", "1500"])
        self.assertEqual(options.config.rate, 1500.0)
        self.assertEqual(config_as_json(options.config)["rate"], 1500.0)
        options = BenchOptions()
        options.parseOptions(["put", "-u", "http://127.0.0.1:1"])
        self.assertIsNone(options.config.rate)
        self.assertRaises(usage.UsageError, BenchOptions().parseOptions,
                          ["put", "-u", "http://127.0.0.1:1", "--rate", "0"])
