"""Cheap histograms exposed as Prometheus histograms: metastore.metrics.histogram."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from metastore.metrics.histogram import HistogramFamily


class HistogramFamilyTests(SynchronousTestCase):
    """Observations land in the right buckets and read back as a histogram."""

    def scrape(self, *families: HistogramFamily) -> dict:
        registry = CollectorRegistry()
        for family in families:
            registry.register(family)
        text = generate_latest(registry).decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(text) for s in f.samples}

    def test_buckets_are_cumulative_and_bounds_inclusive(self) -> None:
        family = HistogramFamily("lat_seconds", "Latency.", [0.01, 0.001, 0.1])  # any order
        for amount in (0.001, 0.0005, 0.05, 0.1, 7.0):
            family.observe(amount)
        samples = self.scrape(family)
        buckets = {le: samples[("lat_seconds_bucket", (("le", le),))] for le in ("0.001", "0.01", "0.1", "+Inf")}
        self.assertEqual(buckets, {"0.001": 2, "0.01": 2, "0.1": 4, "+Inf": 5})
        self.assertEqual(samples[("lat_seconds_count", ())], 5)
        self.assertAlmostEqual(samples[("lat_seconds_sum", ())], 7.1515)

    def test_labelled_children_apart_and_an_empty_family_still_declared(self) -> None:
        family = HistogramFamily("rtt_seconds", "RTT.", [0.001], labelnames=("To",))
        family.labels(To="2").observe(0.0001)
        family.labels(To="2").observe(0.5)
        family.labels(To="3").observe(0.5)
        empty = HistogramFamily("none_seconds", "Nothing yet.", [1.0], labelnames=("To",))
        samples = self.scrape(family, empty)
        self.assertEqual(samples[("rtt_seconds_count", (("To", "2"),))], 2)
        self.assertEqual(samples[("rtt_seconds_bucket", (("To", "3"), ("le", "0.001")))], 0)
        registry = CollectorRegistry()
        registry.register(empty)
        self.assertIn(b"# TYPE none_seconds histogram", generate_latest(registry))
