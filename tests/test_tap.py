"""The twistd plugin and its options, as twistd and users see them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from metastore import __version__
from metastore.config import Config
from metastore.tap import Options
from metastore.workers import auto as auto_workers
from tests.process import free_port, run_to_exit, twistd_command


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
        self.assertEqual((c.snapshot_count, c.request_timeout, c.max_request_bytes), (100000, 5.0, 1536 * 1024))

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
            "--metrics": ["--metrics", "maybe"],
            "--log-format": ["--log-format", "xml"],
            "--log-level": ["--log-level", "verbose"],
        }
        for flag, argv in cases.items():
            options = Options()
            error = self.assertRaises(usage.UsageError, options.parseOptions, argv)
            self.assertIn(flag, str(error))

    def test_rocksdb_flags(self):
        """--storage rocksdb and its cache sizes parse (the newest-version cache
        16 MiB by default, 0 allowed); too small a cache is refused."""
        options = Options()
        options.parseOptions(["--storage", "rocksdb", "--rocksdb-block-cache-bytes", str(2**24)])
        self.assertEqual((options.config.storage, options.config.rocksdb_block_cache_bytes), ("rocksdb", 2**24))
        error = self.assertRaises(usage.UsageError, Options().parseOptions, ["--rocksdb-write-buffer-bytes", "10"])
        self.assertIn("--rocksdb-write-buffer-bytes", str(error))
        defaults = Options()
        defaults.parseOptions([])
        self.assertEqual(defaults.config.rocksdb_newest_cache_bytes, 16 * 2**20)
        options = Options()
        options.parseOptions(["--storage", "rocksdb", "--rocksdb-newest-cache-bytes", "0"])
        self.assertEqual(options.config.rocksdb_newest_cache_bytes, 0)
        error = self.assertRaises(usage.UsageError, Options().parseOptions, ["--rocksdb-newest-cache-bytes", "-1"])
        self.assertIn("--rocksdb-newest-cache-bytes", str(error))

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

    def parse_with_cores(self, cores: int, *args: str) -> Options:
        """Options parsed from ``args`` on a machine with ``cores`` usable cores."""
        self.patch(auto_workers, "usable_cores", lambda: cores)
        options = Options()
        options.parseOptions(list(args))
        return options

    def test_workers_flag(self):
        """The default is ``auto``, chosen by core count: no fronts below
        three usable cores, else one per core but one, at most four; a
        count is taken as given (and says nothing in the log); anything
        else names the flag."""
        for cores, expected in ((1, 0), (2, 0), (3, 2), (4, 3), (5, 4), (8, 4), (64, 4)):
            for args in ((), ("--workers", "auto"), ("--workers", "AUTO")):
                options = self.parse_with_cores(cores, *args)
                self.assertEqual(options.config.workers, expected, (cores, args))
                self.assertIn("--workers auto", options.workers_note)
                self.assertIn(f"{cores} usable core", options.workers_note)
        self.assertIn("no front processes", self.parse_with_cores(2).workers_note)
        self.assertIn("4 front processes", self.parse_with_cores(8).workers_note)
        options = self.parse_with_cores(1, "--workers", "3")
        self.assertEqual((options.config.workers, options.workers_note), (3, ""))
        self.assertEqual(self.parse_with_cores(64, "--workers", "0").config.workers, 0)
        for bad in ("many", "-1", "65"):
            error = self.assertRaises(usage.UsageError, Options().parseOptions, ["--workers", bad])
            self.assertIn("--workers", str(error))

    def test_auto_workers_step_aside_for_what_fronts_cannot_serve(self):
        """On many cores, ``auto`` starts no fronts with client TLS,
        ``--client-request-rate`` or ``--max-client-connections``, and its
        log line names the flag; an explicit count with them is a usage
        error naming both; gRPC is served by the core beside the fronts."""
        for args, named in ((("--auto-tls",), "client TLS"),
                            (("--client-request-rate", "100"), "--client-request-rate"),
                            (("--max-client-connections", "10"), "--max-client-connections")):
            options = self.parse_with_cores(16, *args)
            self.assertEqual(options.config.workers, 0, args)
            self.assertIn("no front processes", options.workers_note)
            self.assertIn(named, options.workers_note)
            self.assertEqual(self.parse_with_cores(16, *args, "--workers", "0").config.workers, 0)
            error = self.assertRaises(usage.UsageError, self.parse_with_cores, 16, *args, "--workers", "2")
            self.assertIn("--workers 2", str(error))
            self.assertIn(named, str(error))
        options = self.parse_with_cores(16, "--auto-tls", "--max-client-connections", "10")
        self.assertIn("client TLS (--cert-file or --auto-tls) and --max-client-connections", options.workers_note)
        options = self.parse_with_cores(16, "--grpc-port", "0")
        self.assertEqual((options.config.workers, options.config.grpc_port), (4, 0))

    def test_library_default_is_one_process(self):
        """A ``Config`` built by a program (``open_member``) has no fronts
        unless it says so, whatever the cores."""
        self.assertEqual(Config().workers, 0)

    def test_metrics_and_log_flags(self):
        """Metrics are on by default and --metrics off turns them off; log
        flags are case-blind; parsed outside twistd, no observer is made."""
        options = Options()
        options.parseOptions([])
        self.assertTrue(options.config.metrics)
        self.assertEqual((options["log-format"], options["log-level"]), ("text", "info"))
        self.assertIsNone(options.log_observer_factory)
        options = Options()
        options.parseOptions(["--metrics", "off", "--log-format", "JSON", "--log-level", "Warn"])
        self.assertFalse(options.config.metrics)
        self.assertEqual((options["log-format"], options["log-level"]), ("json", "warn"))

    def test_under_twistd_the_member_logs_through_its_observer(self):
        """twistd's options get the member's observer as the application's
        ILogObserver, unless twistd was given --logger or --syslog."""
        from twisted.scripts.twistd import ServerOptions
        from twisted.application.service import Application
        from twisted.logger import ILogObserver

        from metastore.tap import _CommandLineMember

        class TwistdOptions(ServerOptions):
            subCommands = [["metastore", None, Options, ""]]

        twistd = TwistdOptions()
        twistd.parseOptions(["--nodaemon", "--logfile", self.mktemp(), "metastore", "--log-format", "json"])
        factory = twistd.subOptions.log_observer_factory
        self.assertIsNotNone(factory)
        application = Application("metastore")
        _CommandLineMember(service_stub(), factory).setServiceParent(application)
        self.assertIsNotNone(application.getComponent(ILogObserver, None))
        twistd = TwistdOptions()
        twistd.parseOptions(["--nodaemon", "--logger", "twisted.logger.textFileLogObserver", "metastore"])
        self.assertIsNone(twistd.subOptions.log_observer_factory)


def service_stub():
    """A service standing in for a member."""
    from twisted.application.service import Service

    return Service()


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


def _console_script(name: str, module: str) -> list[str]:
    """The argv of an installed console script: the script itself when
    installed beside this Python, else its entry point run the same way."""
    script = shutil.which(name, path=os.path.dirname(sys.executable))
    if script is not None:
        return [script]
    return [sys.executable, "-c", f"from {module} import main; main()"]


class StartupErrorTests(SynchronousTestCase):
    """Real commands that cannot start: one clear line on standard error and
    an exit status, never a traceback."""

    def assert_one_line(self, result, status: int, *fragments: str) -> None:
        """Exit ``status``; standard error is one line holding every fragment."""
        self.assertEqual(result.returncode, status, result.stdout + result.stderr)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        for fragment in fragments:
            self.assertIn(fragment, lines[0])
        self.assertNotIn("Traceback", result.stdout + result.stderr)

    def metastore(self, *args: str, timeout: float = 60):
        """Run the ``metastore`` console script with ``args`` until it exits."""
        return run_to_exit(_console_script("metastore", "metastore.cli") + list(args), cwd=self.mktemp_dir(),
                           timeout=timeout)

    def mktemp_dir(self) -> str:
        """A fresh directory for one command."""
        path = self.mktemp()
        os.makedirs(path)
        return path

    def test_http_port_in_use(self):
        """The HTTP port is taken: one line naming it, exit status 1."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = self.metastore("--port", str(port), "--cluster", f"http://127.0.0.1:{free_port()}",
                                    "--data-dir", self.mktemp())
        self.assert_one_line(result, 1, "cannot listen for HTTP", str(port), "in use")

    def test_peer_port_in_use(self):
        """The peer port is taken: one line naming it, exit status 1 (twistd too)."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            args = ("--port", str(free_port()), "--cluster", f"http://127.0.0.1:{port}", "--data-dir", self.mktemp())
            self.assert_one_line(self.metastore(*args), 1, "cannot listen for peers", str(port), "in use")
            result = run_to_exit(twistd_command(*args, logfile=os.path.abspath(self.mktemp())), cwd=self.mktemp_dir())
            self.assert_one_line(result, 1, "cannot listen for peers", str(port))

    def test_unusable_data_dir(self):
        """A data directory that cannot be created or read: one line naming it, exit 1."""
        blocker = os.path.abspath(self.mktemp())
        with open(blocker, "w") as f:
            f.write("a file, not a directory")
        result = self.metastore("--port", str(free_port()), "--cluster", f"http://127.0.0.1:{free_port()}",
                                "--data-dir", os.path.join(blocker, "data"))
        self.assert_one_line(result, 1, "cannot start", blocker)

    def test_bad_flags(self):
        """A bad value or an unknown flag: one line naming it, exit status 2,
        from the console script and from twistd alike."""
        for args, fragment in ((["--port", "notaport"], "--port"), (["--bogus"], "--bogus"),
                               (["--header-timeout", "0"], "--header-timeout"), (["--id", "0"], "--id")):
            self.assert_one_line(self.metastore(*args), 2, fragment)
            self.assert_one_line(run_to_exit(twistd_command(*args), cwd=self.mktemp_dir()), 2, fragment)

    def test_version_everywhere(self):
        """``--version`` prints MetaStore's version on every console script
        and on ``twistd metastore``."""
        expected = f"MetaStore {__version__}"
        commands = [
            _console_script("metastore", "metastore.cli") + ["--version"],
            _console_script("metastore-chaos", "metastore.chaos.cli") + ["--version"],
            _console_script("metastore-chaos", "metastore.chaos.cli") + ["soak", "--version"],
            twistd_command("--version"),
        ]
        for argv in commands:
            result = run_to_exit(argv, cwd=self.mktemp_dir())
            self.assertEqual((result.returncode, result.stdout.strip()), (0, expected), argv)
            self.assertNotIn("Twisted", result.stdout)
