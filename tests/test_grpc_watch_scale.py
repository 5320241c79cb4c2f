"""A thousand gRPC watchers on one member cost it no thread: 1,000 watches
on one Watch stream, and 1,000 streams on 1,000 connections, each get
their event while the member's thread count (``/proc/PID/status``) stays
what it was before them.  A thread per stream would add a thousand."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

from twisted.trial.unittest import TestCase

from tests.etcdctl import GrpcCluster
from tests.process import REPO_ROOT, child_env, wait_healthy, wait_until

WATCHERS = 1000


def threads_of(pid: int) -> int:
    """The thread count the kernel reports for process ``pid``."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError(f"no Threads: line for {pid}")


class WatchScaleTests(TestCase):
    """Threads of a member before and while it serves a thousand watchers."""

    timeout = 300

    async def setUp(self):
        self.cluster = GrpcCluster(self, 1)
        self.cluster.start()
        self.member = self.cluster.members[1]
        await wait_healthy(self.member, 40)
        # The disk thread pool starts its thread with the first write: before counting.
        await self.put(b"warm-up")

    async def put(self, key: bytes) -> None:
        body = json.dumps({"key": base64.b64encode(key).decode(), "value": "dg=="}).encode()

        async def attempt():
            status, _, _ = await self.cluster.request(1, "POST", "/v3/kv/put", body)
            return status == 200

        await wait_until(attempt, timeout=30, interval=0.2, what=f"put {key!r}")

    async def watchers(self, streams: int, per_stream: int, channels: bool) -> tuple[int, int, int]:
        """Thread counts (before, with every watch created, after every
        watch got its event) around a child holding the watchers."""
        pid = self.member.process.pid
        before = threads_of(pid)
        key = b"scale/%d" % streams
        args = [sys.executable, "-m", "tests.grpc_watch_load", f"127.0.0.1:{self.cluster.grpc_ports[1]}",
                str(streams), str(per_stream), key.decode(), *(["--channels"] if channels else [])]
        out_path = os.path.abspath(self.mktemp())
        with open(out_path, "wb") as out:
            child = subprocess.Popen(args, cwd=REPO_ROOT, env=child_env(), stdin=subprocess.PIPE, stdout=out,
                                     stderr=subprocess.STDOUT)
        self.addCleanup(lambda: child.poll() is None and (child.kill(), child.wait(10)))

        def printed(word):
            with open(out_path) as f:
                text = f.read()
            if child.poll() is not None:
                raise AssertionError(f"the watch client exited: {text}")
            return f"{word} {streams * per_stream}" in text

        await wait_until(lambda: printed("created"), timeout=120, interval=0.2, what="every watch created")
        created = threads_of(pid)
        await self.put(key)
        await wait_until(lambda: printed("events"), timeout=120, interval=0.2, what="every watch's event")
        delivered = threads_of(pid)
        child.stdin.close()
        child.wait(30)
        return before, created, delivered

    async def test_thousand_watches_on_one_stream(self):
        """1,000 watches multiplexed on one stream add no thread."""
        before, created, delivered = await self.watchers(1, WATCHERS, channels=False)
        print(f"\nthreads, 1 stream x {WATCHERS} watches: before {before}, created {created}, events {delivered}")
        self.assertEqual((created, delivered), (before, before))

    async def test_thousand_streams_on_a_thousand_connections(self):
        """1,000 streams, each on its own connection, add no thread."""
        before, created, delivered = await self.watchers(WATCHERS, 1, channels=True)
        print(f"\nthreads, {WATCHERS} streams on {WATCHERS} connections: before {before}, created {created}, "
              f"events {delivered}")
        self.assertEqual((created, delivered), (before, before))

