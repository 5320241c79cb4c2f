"""The twistd plugin and its options, as twistd and users see them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from metastore.tap import Options
from tests.process import run_to_exit, twistd_command


class PluginTests(SynchronousTestCase):
    """``twistd metastore`` is found and its options parse."""

    def test_plugin_is_listed(self):
        """getPlugins(IServiceMaker) lists one named ``metastore``."""
        names = [p.tapname for p in getPlugins(IServiceMaker)]
        self.assertIn("metastore", names)

    def test_defaults_are_the_seeds(self):
        """With no flags, the original MetaStore's defaults apply."""
        options = Options()
        options.parseOptions([])
        c = options.config
        self.assertEqual(
            (c.member_id, c.cluster, c.port, c.join, c.storage, c.data_dir, c.listen_host),
            (1, ("http://127.0.0.1:9021",), 9121, False, "memory", ".", "127.0.0.1"),
        )
        self.assertEqual((c.snapshot_count, c.request_timeout, c.max_request_bytes), (10000, 5.0, 1536 * 1024))

    def test_flags_parse(self):
        """Every flag reaches the configuration."""
        options = Options()
        options.parseOptions([
            "--id", "2", "--cluster", "http://127.0.0.1:1,http://127.0.0.1:2", "--port", "8080",
            "--data-dir", "/tmp/x", "--listen-host", "0.0.0.0", "--snapshot-count", "5",
            "--request-timeout", "1.5", "--max-request-bytes", "2048", "--tick-ms", "50",
            "--election-ticks", "20", "--heartbeat-ticks", "2", "--join",
        ])
        c = options.config
        self.assertEqual((c.member_id, len(c.cluster), c.port, c.join), (2, 2, 8080, True))
        self.assertEqual((c.tick_ms, c.election_ticks, c.heartbeat_ticks, c.request_timeout), (50, 20, 2, 1.5))

    def test_bad_values_name_their_flag(self):
        """Each bad value is a UsageError whose message names the flag."""
        cases = {
            "--port": ["--port", "abc"],
            "--id": ["--id", "0"],
            "--storage": ["--storage", "floppy"],
            "--request-timeout": ["--request-timeout", "soon"],
            "--election-ticks": ["--election-ticks", "1", "--heartbeat-ticks", "1"],
            "--cluster": ["--id", "3", "--cluster", "http://127.0.0.1:1"],
            "--max-request-bytes": ["--max-request-bytes", "10"],
        }
        for flag, argv in cases.items():
            options = Options()
            error = self.assertRaises(usage.UsageError, options.parseOptions, argv)
            self.assertIn(flag, str(error))

    def test_rocksdb_flags(self):
        """--storage rocksdb and its cache sizes parse; too small a cache is refused."""
        options = Options()
        options.parseOptions(["--storage", "rocksdb", "--rocksdb-block-cache-bytes", str(2**24)])
        self.assertEqual((options.config.storage, options.config.rocksdb_block_cache_bytes), ("rocksdb", 2**24))
        error = self.assertRaises(usage.UsageError, Options().parseOptions, ["--rocksdb-write-buffer-bytes", "10"])
        self.assertIn("--rocksdb-write-buffer-bytes", str(error))

    def test_auto_compaction_flags(self):
        """Revision mode with 10,000 revisions is the default; periodic mode
        takes a duration; a retention that does not fit the mode is refused."""
        options = Options()
        options.parseOptions([])
        self.assertEqual(options.config.auto_compaction_policy().retention, 10_000)
        options = Options()
        options.parseOptions(["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "5m"])
        self.assertEqual(options.config.auto_compaction_policy().retention, 300.0)
        options = Options()
        options.parseOptions(["--auto-compaction-retention", "0"])
        self.assertIsNone(options.config.auto_compaction_policy())
        error = self.assertRaises(usage.UsageError, Options().parseOptions, ["--auto-compaction-retention", "5m"])
        self.assertIn("--auto-compaction-retention", str(error))
        error = self.assertRaises(usage.UsageError, Options().parseOptions, ["--auto-compaction-mode", "hourly"])
        self.assertIn("--auto-compaction-mode", str(error))


class CommandLineTests(SynchronousTestCase):
    """twistd itself, in a child process."""

    def test_help_documents_every_flag(self):
        """``twistd metastore --help`` lists every flag."""
        result = run_to_exit(twistd_command("--help"), cwd=os.getcwd())
        self.assertEqual(result.returncode, 0, result.stderr)
        for flag in ("--id", "--cluster", "--port", "--join", "--storage", "--data-dir", "--listen-host",
                     "--snapshot-count", "--request-timeout", "--max-request-bytes", "--tick-ms"):
            self.assertIn(flag, result.stdout)

    def test_bad_flag_exits_non_zero_naming_it(self):
        """A bad flag value ends twistd with a non-zero status and the flag's name."""
        result = run_to_exit(twistd_command("--port", "notaport"), cwd=os.getcwd())
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("--port", result.stdout + result.stderr)

    def test_installed_console_script(self):
        """The installed ``metastore`` script shows the same help (when installed)."""
        script = shutil.which("metastore", path=os.path.dirname(sys.executable))
        if script is None:
            raise self.skipTest("metastore is not installed in this environment (run `make test`)")
        result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60, cwd="/")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("--snapshot-count", result.stdout)
