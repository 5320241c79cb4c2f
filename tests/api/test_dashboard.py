"""The dashboard's static files at ``/ui`` (``metastore.api.dashboard``),
over raw sockets to a real member: the right content types, no directory
listing, and no path (dot segments, encoded slashes, absolute paths) that
reaches any file but the shipped ones."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from metastore.api.dashboard import shipped_files
from tests.api.test_hostile_http import build_request, parse_response, raw_request
from tests.chaos.helpers import start_single_member

SHIPPED = shipped_files()

TRAVERSALS = [
    "/ui/../setup.py", "/ui/../../../../../../etc/passwd", "/ui/..%2fsetup.py", "/ui/%2e%2e/setup.py",
    "/ui/%2e%2e%2f%2e%2e%2fsetup.py", "/ui/%2E%2E/api/dashboard.py", "/ui/../api/dashboard.py",
    "/ui//etc/passwd", "/ui/%2fetc%2fpasswd", "/ui/..\\dashboard.py", "/ui/..%5cdashboard.py",
    "/ui/./app.js", "/ui/app.js/", "/ui/app.js/..", "/ui/app.js%00.html", "/ui/APP.JS", "/ui/..",
    "/ui/.", "/ui/%2e", "/ui/ui/app.js", "/ui/__init__.py", "/ui/dashboard.py", "/ui/../dashboard.py",
    "/ui/%252e%252e/setup.py", "/ui/\u00e9.js".encode().decode("latin-1"),
]
"""Targets that must all be 404 (the raw bytes are sent as they are)."""

OUTSIDE_MARKERS = (b"setuptools", b"root:", b"import ", b"DashboardResource")
"""Text of files outside the dashboard that must never come back."""


class DashboardFilesTests(SynchronousTestCase):
    """``/ui`` on one real member process."""

    def setUp(self):
        self.member = start_single_member(self)

    def get(self, target: str, method: str = "GET") -> tuple[int, dict, bytes]:
        """Status, headers and body of ``target`` sent as its raw bytes."""
        raw = raw_request(self.member.http_port, build_request(method, target, [], b""))
        return parse_response(raw)

    def assert_not_found(self, target: str) -> None:
        """``target`` is a JSON 400 or 404 carrying no other file's text."""
        status, headers, body = self.get(target)
        self.assertIn(status, (400, 404), target)
        self.assertEqual(headers["content-type"], "application/json", target)
        self.assertTrue(json.loads(body)["error"], target)
        for marker in OUTSIDE_MARKERS:
            self.assertNotIn(marker, body, target)

    def test_the_page_and_its_files_have_their_content_types(self):
        """The page at /ui, /ui/ and /ui/index.html, the script and the style
        sheet, each with its type, its length, nosniff and a strict CSP."""
        expected = {
            "/ui": ("text/html; charset=utf-8", "index.html"),
            "/ui/": ("text/html; charset=utf-8", "index.html"),
            "/ui/index.html": ("text/html; charset=utf-8", "index.html"),
            "/ui/app.js": ("text/javascript; charset=utf-8", "app.js"),
            "/ui/style.css": ("text/css; charset=utf-8", "style.css"),
            "/ui/favicon.svg": ("image/svg+xml", "favicon.svg"),
        }
        for target, (content_type, name) in expected.items():
            status, headers, body = self.get(target)
            self.assertEqual((status, headers["content-type"]), (200, content_type), target)
            self.assertEqual(body, SHIPPED[name].body, target)
            self.assertEqual(int(headers["content-length"]), len(body), target)
            self.assertEqual(headers["x-content-type-options"], "nosniff", target)
            self.assertIn("default-src 'none'", headers["content-security-policy"], target)

    def test_head_answers_the_headers_without_the_body(self):
        """HEAD /ui/app.js: the same type and length as GET, no body."""
        status, headers, body = self.get("/ui/app.js", "HEAD")
        self.assertEqual((status, headers["content-type"], body), (200, "text/javascript; charset=utf-8", b""))
        self.assertEqual(int(headers["content-length"]), len(SHIPPED["app.js"].body))

    def test_the_package_ships_exactly_the_dashboard(self):
        """The table holds the page, its script, style sheet and icon, nothing else."""
        self.assertEqual(sorted(SHIPPED), ["app.js", "favicon.svg", "index.html", "style.css"])

    def test_no_directory_listing(self):
        """/ui/ is the page itself; a folder-like path is 404, never a listing."""
        self.assertEqual(self.get("/ui/")[2], SHIPPED["index.html"].body)
        for target in ("/ui/ui/", "/ui/static/", "/ui//", "/ui/api/"):
            self.assert_not_found(target)

    def test_path_traversal_reaches_no_other_file(self):
        """Dot segments, encoded dots and slashes, backslashes, NULs and
        absolute paths are all 404 with a JSON body."""
        for target in TRAVERSALS:
            self.assert_not_found(target)
        # A query names no file: it is ignored.
        self.assertEqual(self.get("/ui/app.js?x=../../setup.py")[2], SHIPPED["app.js"].body)

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    @given(tail=st.lists(st.sampled_from(["..", ".", "%2e%2e", "%2f", "%5c", "", "app.js", "index.html",
                                          "setup.py", "etc", "passwd", "metastore", "%00"]),
                         min_size=1, max_size=6).map("/".join))
    def test_any_path_is_a_shipped_file_or_404(self, tail):
        """Whatever follows /ui/, the answer is a shipped file named
        exactly by it, or a JSON 404."""
        target = "/ui/" + tail
        status, headers, body = self.get(target)
        if tail in SHIPPED or tail == "":
            self.assertEqual((status, body), (200, SHIPPED[tail or "index.html"].body), target)
        else:
            self.assertEqual((status, headers["content-type"]), (404, "application/json"), target)

    def test_only_get_and_head(self):
        """Writing methods are 405 with Allow and a JSON body; /ui is no key."""
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            status, headers, body = self.get("/ui/app.js", method)
            self.assertEqual((status, headers["allow"]), (405, "GET, HEAD"), method)
            self.assertEqual(json.loads(body)["error"], "method_not_allowed")
        self.assertEqual(self.get("/ui")[2], SHIPPED["index.html"].body)
