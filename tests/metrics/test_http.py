"""Request latency by route and code, and GET /metrics: metastore.metrics.http."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase

from metastore.metrics.http import MAX_ROUTES, MetricsResource, RequestDurations, route_label

MOUNTED = {b"v3", b"admin", b"health", b"metrics"}


@dataclass
class FinishedRequest:
    """What the hook reads of a finished ``twisted.web`` request."""

    method: bytes
    path: bytes
    code: int
    received_at: float | None = 10.0


class RouteLabelTests(SynchronousTestCase):
    """Routes are few whatever the paths: keys and ids never become labels."""

    def test_routes(self) -> None:
        cases = {
            b"/v3/kv/range": "/v3/kv/range",
            b"/v3/cluster/member/list": "/v3/cluster/member/list",
            b"/admin/members/12": "/admin/members/{id}",
            b"/health": "/health",
            b"/some/key": "/{key}",
            b"/": "/{key}",
            b"/kv/a/b": "/kv/{key}",
            b"/v3/kv/%FF": "other",
        }
        for path, route in cases.items():
            self.assertEqual(route_label(path, MOUNTED.__contains__), route, path)


class RequestDurationsTests(SynchronousTestCase):
    """The site's hook observes each request under (method, route, code)."""

    def setUp(self) -> None:
        self.registry = CollectorRegistry()
        histogram = Histogram("req", "", labelnames=("method", "route", "code"), registry=self.registry)
        self.hook = RequestDurations(histogram, MOUNTED.__contains__, clock=lambda: 10.25)

    def count(self, method: str, route: str, code: str) -> float | None:
        return self.registry.get_sample_value("req_count", {"method": method, "route": route, "code": code})

    def test_time_since_the_head_arrived(self) -> None:
        self.hook(FinishedRequest(b"PUT", b"/k1", 204))
        self.hook(FinishedRequest(b"PUT", b"/k2", 204))
        self.assertEqual(self.count("PUT", "/{key}", "204"), 2.0)
        self.assertEqual(self.registry.get_sample_value("req_sum", {"method": "PUT", "route": "/{key}", "code": "204"}),
                         0.5)

    def test_unknown_paths_methods_and_overflow_stay_bounded(self) -> None:
        for i in range(3 * MAX_ROUTES):
            self.hook(FinishedRequest(b"GET", b"/v3/nope%d" % i, 404))
            self.hook(FinishedRequest(b"GET", b"/admin/x%d" % i, 200))
            self.hook(FinishedRequest(b"BREW%d" % i, b"/k", 405))
        self.hook(FinishedRequest(b"GET", b"/missing", 404))
        self.assertEqual(self.count("GET", "unmatched", "404"), 3.0 * MAX_ROUTES)
        self.assertEqual(self.count("other", "/{key}", "405"), 3.0 * MAX_ROUTES)
        self.assertEqual(self.count("GET", "/{key}", "404"), 1.0)  # a missing key is still the key route
        routes = {s.labels["route"] for m in self.registry.collect() for s in m.samples}
        self.assertLessEqual(len(routes), MAX_ROUTES + 2)
        self.assertGreater(self.count("GET", "other", "200"), 0)

    def test_a_request_refused_before_its_head_is_not_timed(self) -> None:
        self.hook(FinishedRequest(b"GET", b"/k", 431, received_at=None))
        self.assertEqual(list(self.registry.collect())[0].samples, [])


class MetricsResourceTests(SynchronousTestCase):
    """``GET /metrics`` answers the registry in Prometheus' text format."""

    def test_exposition(self) -> None:
        registry = CollectorRegistry()
        Counter("things", "Things seen.", registry=registry).inc(3)
        client = StubTreq(MetricsResource(registry))
        response = self.successResultOf(client.get("http://member/metrics"))
        self.assertEqual(response.code, 200)
        self.assertTrue(response.headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain; version=0.0.4"))
        body = self.successResultOf(response.text())
        families = {f.name: f for f in text_string_to_metric_families(body)}
        self.assertEqual(families["things"].samples[0].value, 3.0)

    def test_other_methods_are_a_json_405(self) -> None:
        client = StubTreq(MetricsResource(CollectorRegistry()))
        response = self.successResultOf(client.put("http://member/metrics", data=b"x"))
        self.assertEqual((response.code, response.headers.getRawHeaders(b"allow")), (405, [b"GET, HEAD"]))
        self.assertEqual(self.successResultOf(response.json())["error"], "method_not_allowed")
