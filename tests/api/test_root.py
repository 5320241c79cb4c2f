"""Tests for metastore.api.root: each API sees the whole path."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource, getChildForRequest
from twisted.web.test.requesthelper import DummyRequest

from metastore.api.dashboard import DashboardResource
from metastore.api.root import RootResource, member_root


class Leaf(Resource):
    """A leaf that remembers which path reached it."""

    isLeaf = True

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


def route(root: Resource, path: bytes, method: bytes = b"GET") -> tuple[str, list[bytes]]:
    """Which leaf ``path`` reaches, and the path segments it is left with."""
    request = DummyRequest(path.lstrip(b"/").split(b"/"))
    request.method = method
    leaf = getChildForRequest(root, request)
    return leaf.name, request.postpath


class RootTests(SynchronousTestCase):
    """Mounts by first segment; everything else to the default API."""

    def test_mounted_apis_get_the_whole_path(self) -> None:
        root = member_root(Leaf("seed"), Leaf("admin"))
        self.assertEqual(route(root, b"/admin/status"), ("admin", [b"admin", b"status"]))
        self.assertEqual(route(root, b"/health"), ("admin", [b"health"]))
        self.assertEqual(route(root, b"/version"), ("admin", [b"version"]))

    def test_everything_else_is_the_seed_api(self) -> None:
        root = member_root(Leaf("seed"), Leaf("admin"))
        self.assertEqual(route(root, b"/some/key"), ("seed", [b"some", b"key"]))
        self.assertEqual(route(root, b"/"), ("seed", [b""]))
        self.assertEqual(route(root, b"/administrator"), ("seed", [b"administrator"]))

    def test_exact_mounts_take_only_their_own_path(self) -> None:
        root = member_root(Leaf("seed"), Leaf("admin"))
        self.assertEqual(route(root, b"/health/x"), ("seed", [b"health", b"x"]))
        self.assertEqual(route(root, b"/version/"), ("seed", [b"version", b""]))
        self.assertEqual(route(root, b"/health", b"HEAD")[0], "admin")
        # Every method reaches the endpoint's owner, which answers 405 for the wrong ones.
        self.assertEqual(route(root, b"/health", b"POST"), ("admin", [b"health"]))
        self.assertEqual(route(root, b"/version", b"DELETE")[0], "admin")
        self.assertEqual(route(root, b"/readyz")[0], "admin")
        self.assertEqual(route(root, b"/livez")[0], "admin")

    def test_a_new_api_is_one_more_mount(self) -> None:
        root = RootResource(Leaf("seed"), {b"v3": Leaf("v3")})
        self.assertEqual(route(root, b"/v3/kv/range"), ("v3", [b"v3", b"kv", b"range"]))
        self.assertEqual(route(root, b"/admin/status")[0], "seed")

    def test_the_dashboard_is_mounted_at_ui(self) -> None:
        """/ui and everything under it reach the dashboard; /uid is the seed's."""
        root = member_root(Leaf("seed"), Leaf("admin"))
        for path in (b"/ui", b"/ui/", b"/ui/app.js", b"/ui/../x"):
            request = DummyRequest(path.lstrip(b"/").split(b"/"))
            self.assertIsInstance(getChildForRequest(root, request), DashboardResource, path)
        self.assertEqual(route(root, b"/uid")[0], "seed")
