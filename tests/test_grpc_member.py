"""``--grpc-port``: a member that serves gRPC runs on the asyncio reactor.

gRPC is off by default.  With ``--grpc-port`` twistd's plugin installs the
asyncio reactor itself when no ``--reactor`` was given, and a member
started on another reactor exits at once with one line that says why.
A KV Range answered with the member's header proves the port speaks
gRPC to the member (``tests.test_etcdctl_process`` drives it with etcdctl).
"""

from __future__ import annotations

import os
import signal
import socket

import grpc
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from metastore.api.grpc.proto import rpc_pb2, rpc_pb2_grpc
from metastore.bench.servers import wait_for
from metastore.config import Config
from metastore.errors import StartupError
from metastore.service import open_member
from metastore.tap import Options
from tests.process import Member, free_port, run_to_exit, twistd_command

CALL_TIMEOUT = 10.0


class GrpcPortOptionTests(SynchronousTestCase):
    """The flag and the configuration."""

    def test_off_by_default(self):
        """With no --grpc-port the member serves no gRPC."""
        options = Options()
        options.parseOptions([])
        self.assertIsNone(options.config.grpc_port)

    def test_port_parses(self):
        """--grpc-port reaches the configuration."""
        options = Options()
        options.parseOptions(["--grpc-port", "2379"])
        self.assertEqual(options.config.grpc_port, 2379)

    def test_bad_values_name_the_flag(self):
        """A non-integer or out-of-range port is a UsageError naming --grpc-port."""
        for value in ("abc", "70000", "-1"):
            with self.assertRaises(usage.UsageError) as caught:
                Options().parseOptions(["--grpc-port", value])
            self.assertIn("--grpc-port", str(caught.exception))

    def test_wrong_reactor_stops_before_storage(self):
        """open_member with a gRPC port on a reactor other than asyncio
        raises StartupError naming the flag and the fix, before it opens
        or creates anything on disk."""
        data_dir = os.path.abspath(self.mktemp())
        config = Config(data_dir=data_dir, grpc_port=0).validate()
        with self.assertRaises(StartupError) as caught:
            open_member(config, MemoryReactorClock())
        self.assertIn("--grpc-port", str(caught.exception))
        self.assertIn("--reactor=asyncio", str(caught.exception))
        self.assertFalse(os.path.exists(data_dir))


class GrpcMemberProcessTests(SynchronousTestCase):
    """A real member process with --grpc-port."""

    def test_member_installs_asyncio_and_serves_grpc_beside_http(self):
        """Without --reactor the member runs on the asyncio reactor, its
        HTTP API answers, its gRPC port answers a KV call, and SIGTERM
        stops it cleanly."""
        grpc_port = free_port()
        workdir = os.path.abspath(self.mktemp())
        member = Member(1, [f"http://127.0.0.1:{free_port()}"], free_port(), workdir,
                        extra=["--grpc-port", str(grpc_port)])
        member.start()
        self.addCleanup(member.stop)
        wait_for(member.url + "/health", timeout=30)
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=CALL_TIMEOUT)
            answer = rpc_pb2_grpc.KVStub(channel).Range(rpc_pb2.RangeRequest(key=b"k"), timeout=CALL_TIMEOUT)
        self.assertEqual((answer.header.member_id, list(answer.kvs)), (1, []))
        self.assertIn("AsyncioSelectorReactor", member.log_text())
        # twistd re-raises SIGTERM once it has shut down cleanly.
        self.assertEqual(member.stop(), -signal.SIGTERM)
        self.assertIn("Server Shut Down", member.log_text())

    def test_busy_grpc_port_exits_with_one_line(self):
        """A gRPC port already in use stops the member before it serves:
        exit status 1 and one line that names gRPC, the address and why."""
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        holder = socket.socket()
        self.addCleanup(holder.close)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        grpc_port = holder.getsockname()[1]
        argv = twistd_command("--grpc-port", str(grpc_port), "--cluster", f"http://127.0.0.1:{free_port()}",
                              "--port", str(free_port()), "--data-dir", workdir)
        done = run_to_exit(argv, cwd=workdir)
        self.assertEqual(done.returncode, 1, done.stderr)
        self.assertEqual(
            done.stderr.strip(),
            f"metastore: cannot start: cannot listen for gRPC on 127.0.0.1:{grpc_port}: Address already in use",
        )

    def test_member_on_another_reactor_exits_with_one_line(self):
        """``twistd --reactor=epoll metastore --grpc-port N`` exits 1 with
        one line on stderr that names the flag and the fix."""
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        argv = twistd_command("--grpc-port", str(free_port()), "--cluster", f"http://127.0.0.1:{free_port()}",
                              "--port", str(free_port()), "--data-dir", workdir)
        argv = [arg for arg in argv if not arg.startswith("--reactor=")]
        argv.insert(argv.index("metastore"), "--reactor=epoll")
        done = run_to_exit(argv, cwd=workdir)
        self.assertEqual(done.returncode, 1, done.stderr)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        self.assertEqual(len(lines), 1, done.stderr)
        self.assertIn("metastore: cannot start: --grpc-port", lines[0])
        self.assertIn("--reactor=asyncio", lines[0])
