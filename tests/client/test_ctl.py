"""metastorectl's command line, without a cluster: flags, environment and
errors that are found before anything is sent."""

from __future__ import annotations

import io
import sys

from click.testing import CliRunner
from twisted.trial.unittest import SynchronousTestCase

from metastore.client.failover import Endpoints
from metastore.ctl.cli import Context, main


class CommandLineTests(SynchronousTestCase):
    """Flags and environment variables as etcdctl takes them."""

    def test_endpoints_and_user_from_the_environment(self):
        """``METASTORECTL_ENDPOINTS`` and ``METASTORECTL_USER`` fill the flags."""
        seen = {}
        original = Context.__init__

        def note(self, *args):
            original(self, *args)
            seen.update(urls=self.endpoints.urls, user=self.user, password=self.password, format=self.format)

        self.patch(Context, "__init__", note)
        result = CliRunner().invoke(main, ["lease", "--help"], env={
            "METASTORECTL_ENDPOINTS": "a:1,http://b:2", "METASTORECTL_USER": "root:secret",
            "METASTORECTL_WRITE_OUT": "json"})
        self.assertEqual(result.exit_code, 0, result.output)
        self.assertEqual(seen, {"urls": ["http://a:1", "http://b:2"], "user": "root", "password": "secret",
                                "format": "json"})

    def test_output_is_simple_when_not_on_a_terminal(self):
        """Without ``-w`` the format is etcdctl's plain lines unless stdout is a terminal."""
        self.patch(sys, "stdout", io.StringIO())
        self.assertEqual(Context("a:1", None, None, 1.0, None).format, "simple")
        self.assertEqual(Context("a:1", None, None, 1.0, "table").format, "table")
        self.assertIsInstance(Context("a:1", None, None, 1.0, None).endpoints, Endpoints)

    def test_a_bad_lease_id_is_a_usage_error(self):
        """Lease ids are hexadecimal; anything else exits 2 naming the value."""
        result = CliRunner().invoke(main, ["--endpoints", "127.0.0.1:9", "lease", "revoke", "xyz"])
        self.assertEqual(result.exit_code, 2)
        self.assertIn("'xyz' is not a hexadecimal id", result.output)

    def test_snapshot_save_needs_one_endpoint(self):
        """A snapshot comes from one member: two endpoints are a usage error."""
        result = CliRunner().invoke(main, ["--endpoints", "a:1,b:2", "snapshot", "save", "out.db"])
        self.assertEqual(result.exit_code, 2)
        self.assertIn("exactly one endpoint", result.output)

    def test_restore_refuses_a_member_id_outside_the_cluster(self):
        """Restore validates as the member would start: the id must be a position in --cluster."""
        runner = CliRunner()
        with runner.isolated_filesystem():
            open("snap.db", "wb").close()
            result = runner.invoke(main, ["snapshot", "restore", "snap.db", "--data-dir", "d", "--id", "4",
                                          "--cluster", "http://127.0.0.1:1,http://127.0.0.1:2"])
        self.assertEqual(result.exit_code, 1)
        self.assertIn("--id 4 has no entry in --cluster", result.output)
