"""The dashboard at ``/ui`` in a real browser: Debian's headless Chromium
driven by Playwright, against a real three-member cluster.

The page must list the three members with the leader, and a key written
through the API (to another member) must appear in its live view through
watch, without a reload.  Skipped with the reason when ``/usr/bin/chromium``
or the ``playwright`` package is missing; Playwright's own browser builds
are never used.  Screenshots go to the test's temporary folder, and into
``docs/images/`` when ``METASTORE_DOCS_SCREENSHOTS=1``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

from twisted.internet import threads
from twisted.trial.unittest import SkipTest, TestCase

from tests.process import REPO_ROOT, Cluster

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
DOCS_IMAGES = os.path.join(REPO_ROOT, "docs", "images")
WAIT_MS = 30_000
"""The longest any one thing on the page may take to show."""


def _sync_playwright():
    """Playwright's ``sync_playwright``, or None when it is not installed."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    return sync_playwright


def _call(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, bytes]:
    """A blocking HTTP request (from the browser's thread): status and body."""
    request = urllib.request.Request(url, data=body, method=method)
    with urllib.request.urlopen(request, timeout=15) as response:
        return response.status, response.read()


class DashboardBrowserTests(TestCase):
    """Loads /ui from member 1 of a real cluster in headless Chromium."""

    timeout = 240

    async def setUp(self):
        self.sync_playwright = _sync_playwright()
        if self.sync_playwright is None:
            raise SkipTest("the playwright package is not installed (pip install playwright)")
        if not os.access(CHROMIUM, os.X_OK):
            raise SkipTest(f"{CHROMIUM} is missing (Debian: apt-get install chromium)")
        self.cluster = Cluster(self, 3, extra=["--request-timeout", "5"])
        self.cluster.start()
        self.leader_id = await self.cluster.leader()
        self.shots = os.path.abspath(self.mktemp())
        os.makedirs(self.shots)

    async def test_members_leader_and_live_changes(self):
        """Three members with the leader marked; a put and a delete made on
        another member show in the live view as they happen; the key
        browser lists the prefix; a lease shows with its key."""
        result = await threads.deferToThread(self.browse)
        self.assertEqual(result["members"], ["1", "2", "3"])
        self.assertEqual(result["leader_text"], f"member {self.leader_id}")
        self.assertEqual(result["leader_rows"], [str(self.leader_id)])
        self.assertEqual(result["healths"], ["healthy"] * 3)
        self.assertEqual(result["live_put"], ["PUT", "dashboard/greeting", "hello from the test"])
        self.assertEqual(result["live_delete"], ["DELETE", "dashboard/greeting"])
        self.assertTrue(result["same_document"], "the page reloaded")
        self.assertIn("dashboard/greeting", result["listed_keys"])
        self.assertIn("dashboard/leased", result["lease_keys"])
        self.assertEqual(result["page_errors"], [])
        if os.environ.get("METASTORE_DOCS_SCREENSHOTS") == "1":
            os.makedirs(DOCS_IMAGES, exist_ok=True)
            for name in os.listdir(self.shots):
                shutil.copy(os.path.join(self.shots, name), DOCS_IMAGES)

    @contextmanager
    def open_page(self, errors: list):
        """A page of a fresh headless Chromium (own user data dir) on member
        1's /ui; page errors, console errors and failed loads go to ``errors``."""
        with self.sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                os.path.abspath(self.mktemp()), executable_path=CHROMIUM, headless=True,
                args=CHROMIUM_ARGS, viewport={"width": 1440, "height": 520},
            )
            try:
                page = context.new_page()
                page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
                page.on("console", lambda m: m.type == "error" and errors.append(m.text))
                page.on("response", lambda r: r.status >= 400 and errors.append(f"{r.status} {r.url}"))
                page.goto(self.cluster.members[1].url + "/ui")
                yield page
            finally:
                context.close()

    def browse(self) -> dict:
        """Everything done in the browser (in a thread: Playwright's sync API
        blocks); what it saw, for the test to check."""
        writer = self.cluster.members[2].url
        result: dict = {"page_errors": []}
        with self.open_page(result["page_errors"]) as page:
            page.wait_for_function(
                """() => { const rows = [...document.querySelectorAll('#members tbody tr')];
                           return rows.length === 3 && rows.every(r => r.cells[3].textContent === 'healthy'); }""",
                timeout=WAIT_MS)
            page.wait_for_function("() => document.getElementById('leader').textContent.startsWith('member ')",
                                   timeout=WAIT_MS)
            result["members"] = page.eval_on_selector_all(
                "#members tbody tr", "rows => rows.map(r => r.dataset.memberId)")
            result["healths"] = page.eval_on_selector_all(
                "#members tbody tr", "rows => rows.map(r => r.cells[3].textContent)")
            result["leader_rows"] = page.eval_on_selector_all(
                "#members tbody tr[data-role=leader]", "rows => rows.map(r => r.dataset.memberId)")
            result["leader_text"] = page.text_content("#leader")
            page.wait_for_function("() => document.getElementById('live-state').textContent === 'watching'",
                                   timeout=WAIT_MS)
            page.evaluate("() => { window.sameDocument = true; }")

            self.assertEqual(_call(writer + "/dashboard/greeting", "PUT", b"hello from the test")[0], 204)
            page.wait_for_selector("#live tbody tr[data-event=PUT]", timeout=WAIT_MS)
            result["live_put"] = page.eval_on_selector(
                "#live tbody tr[data-event=PUT]", "r => [r.cells[2], r.cells[3], r.cells[4]].map(c => c.textContent)")
            page.fill("#keys-prefix", "dashboard/")
            page.click("#keys-form button")
            page.wait_for_selector("#keys tbody tr", timeout=WAIT_MS)
            result["listed_keys"] = page.eval_on_selector_all(
                "#keys tbody tr", "rows => rows.map(r => r.cells[0].textContent)")

            grant = json.loads(_call(writer + "/v3/lease/grant", "POST", b'{"TTL": 60}')[1])
            put = {"key": "ZGFzaGJvYXJkL2xlYXNlZA==", "value": "eA==", "lease": grant["ID"]}  # dashboard/leased
            _call(writer + "/v3/kv/put", "POST", json.dumps(put).encode())
            page.wait_for_selector(f"#leases tbody tr[data-lease-id='{grant['ID']}']", timeout=WAIT_MS)
            result["lease_keys"] = page.text_content(f"#leases tbody tr[data-lease-id='{grant['ID']}'] td.key")
            page.screenshot(path=os.path.join(self.shots, "dashboard.png"), full_page=True)

            self.assertEqual(_call(writer + "/dashboard/greeting", "DELETE")[0], 204)
            page.wait_for_selector("#live tbody tr[data-event=DELETE]", timeout=WAIT_MS)
            result["live_delete"] = page.eval_on_selector(
                "#live tbody tr[data-event=DELETE]", "r => [r.cells[2], r.cells[3]].map(c => c.textContent)")
            result["same_document"] = page.evaluate("() => window.sameDocument === true")
            page.locator("#live-section").screenshot(path=os.path.join(self.shots, "dashboard-live.png"))
        return result

    async def test_live_view_resumes_after_its_member_restarts(self):
        """Member 1, which serves the page, restarts; a put made through
        member 2 while it is down shows in the live view once it is back,
        exactly once, in the same document."""
        result = await threads.deferToThread(self.restart_while_watching)
        self.assertEqual(result["events"], ["dashboard/before", "dashboard/while-down", "dashboard/after"])
        self.assertTrue(result["same_document"], "the page reloaded")
        self.assertEqual([e for e in result["page_errors"] if e.startswith("uncaught")], [])

    def restart_while_watching(self) -> dict:
        """Watch, stop member 1, write, start it again, write; what the live view showed."""
        writer = self.cluster.members[2].url
        result: dict = {"page_errors": []}
        live_state = "() => document.getElementById('live-state').textContent"
        with self.open_page(result["page_errors"]) as page:
            page.wait_for_function(f"() => ({live_state})() === 'watching'", timeout=WAIT_MS)
            page.evaluate("() => { window.sameDocument = true; }")
            self.put_through(writer, "dashboard/before")
            page.wait_for_selector("#live tbody tr[data-event=PUT]", timeout=WAIT_MS)
            self.cluster.members[1].stop()
            page.wait_for_function(f"() => ({live_state})().startsWith('reconnecting') || "
                                   f"({live_state})().startsWith('stream ended')", timeout=WAIT_MS)
            self.put_through(writer, "dashboard/while-down")
            self.cluster.members[1].start()
            page.wait_for_function("() => document.querySelectorAll('#live tbody tr').length >= 2", timeout=60_000)
            self.put_through(writer, "dashboard/after")
            page.wait_for_function("() => document.querySelectorAll('#live tbody tr').length >= 3", timeout=WAIT_MS)
            keys = page.eval_on_selector_all("#live tbody tr", "rows => rows.map(r => r.cells[3].textContent)")
            result["events"] = list(reversed(keys))
            result["same_document"] = page.evaluate("() => window.sameDocument === true")
        return result

    @staticmethod
    def put_through(url: str, key: str, attempts: int = 100) -> None:
        """PUT ``key`` through the member at ``url``, retrying a 503 (an
        election) every 0.2 s, at most ``attempts`` times."""
        for _ in range(attempts):
            try:
                if _call(f"{url}/kv/{key}", "PUT", b"v")[0] == 204:
                    return
            except urllib.error.HTTPError as e:
                if e.code != 503:
                    raise
            time.sleep(0.2)
        raise AssertionError(f"PUT {key} through {url} did not succeed in {attempts} attempts")
