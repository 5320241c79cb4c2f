"""A real ``twistd metastore`` process: durability across SIGKILL, and
start-up errors that stop it with a clear message."""

from __future__ import annotations

import glob
import os

import treq
from twisted.internet import defer
from twisted.trial.unittest import TestCase

from metastore.kv.commands import Put, encode_command
from metastore.raft.types import Entry
from metastore.storage.wal import WAL
from tests.process import Member, free_port, run_to_exit, start_healthy, twistd_command

WRITES = 200


class SingleMemberProcessTestCase(TestCase):
    """Starts real members in a temporary directory and always stops them."""

    timeout = 120

    def new_member(self, workdir: str | None = None) -> Member:
        member = Member(
            member_id=1,
            cluster=[f"http://127.0.0.1:{free_port()}"],
            http_port=free_port(),
            workdir=workdir or os.path.abspath(self.mktemp()),
        )
        self.addCleanup(member.kill)
        return member

    async def start_and_wait(self, member: Member) -> None:
        await start_healthy(member)

    async def put(self, member: Member, key: str, value: bytes) -> int:
        response = await treq.put(f"{member.url}/{key}", data=value, persistent=False)
        await treq.content(response)
        return response.code

    async def get(self, member: Member, key: str) -> tuple[int, bytes]:
        response = await treq.get(f"{member.url}/{key}", persistent=False)
        return response.code, await treq.content(response)

    def segments(self, member: Member) -> list[str]:
        return sorted(glob.glob(os.path.join(member.workdir, "metaStore-1", "*.wal")))


class DurabilityTests(SingleMemberProcessTestCase):
    """Acknowledged writes survive SIGKILL."""

    async def test_acknowledged_writes_survive_sigkill(self):
        """Every write answered 204 before a SIGKILL is there after restart."""
        member = self.new_member()
        await self.start_and_wait(member)
        codes = await defer.gatherResults(
            [defer.ensureDeferred(self.put(member, f"key-{i}", b"value-%d" % i)) for i in range(WRITES)]
        )
        self.assertEqual(set(codes), {204})
        await self.put(member, "key-0", b"overwritten")
        member.kill()
        await self.start_and_wait(member)
        for i in range(WRITES):
            expected = b"overwritten" if i == 0 else b"value-%d" % i
            self.assertEqual(await self.get(member, f"key-{i}"), (200, expected))

    async def test_torn_tail_is_cut_and_earlier_writes_kept(self):
        """A half-written last record is cut off at start; the rest is served."""
        member = self.new_member()
        await self.start_and_wait(member)
        for i in range(10):
            self.assertEqual(await self.put(member, f"k{i}", b"v%d" % i), 204)
        member.kill()
        # A crash mid-write leaves the last record cut short: write one more
        # (never acknowledged) entry, then cut the file inside it.
        wal, state = WAL.open(os.path.join(member.workdir, "metaStore-1"))
        last = state.entries[-1]
        wal.save(None, [Entry(last.term, last.index + 1, data=encode_command(b"torn", Put(b"torn", b"x" * 100)))])
        wal.sync()
        wal.close()
        segment = self.segments(member)[-1]
        os.truncate(segment, os.path.getsize(segment) - 50)
        await self.start_and_wait(member)
        self.assertEqual((await self.get(member, "torn"))[0], 404)
        for i in range(10):
            self.assertEqual(await self.get(member, f"k{i}"), (200, b"v%d" % i))
        self.assertEqual(await self.put(member, "after", b"x"), 204)


class StartupRefusalTests(SingleMemberProcessTestCase):
    """A member that cannot start safely says why and exits non-zero."""

    async def test_corrupted_record_refuses_start_naming_file_and_offset(self):
        """A bit flip inside the WAL (valid records after it) stops the member."""
        member = self.new_member()
        await self.start_and_wait(member)
        for i in range(20):
            await self.put(member, f"k{i}", b"some value %d" % i)
        member.kill()
        segment = self.segments(member)[-1]
        size = os.path.getsize(segment)
        with open(segment, "r+b") as f:
            f.seek(size // 2)
            byte = f.read(1)
            f.seek(size // 2)
            f.write(bytes([byte[0] ^ 0x40]))
        result = run_to_exit(twistd_command(*member.args()), cwd=member.workdir, timeout=30)
        output = result.stdout + result.stderr
        self.assertNotEqual(result.returncode, 0, output)
        self.assertIn(os.path.basename(segment), output)
        self.assertIn("offset", output)
        self.assertNotIn("Traceback", output)

    def test_unusable_data_dir_is_a_clear_error(self):
        """A --data-dir that cannot be created stops start-up with a message."""
        blocker = os.path.abspath(self.mktemp())
        with open(blocker, "w") as f:
            f.write("a file, not a directory")
        args = ["--cluster", f"http://127.0.0.1:{free_port()}", "--port", str(free_port()),
                "--data-dir", os.path.join(blocker, "data")]
        result = run_to_exit(twistd_command(*args), cwd=os.path.dirname(blocker))
        output = result.stdout + result.stderr
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("cannot", output)
        self.assertIn(blocker, output)
        self.assertNotIn("Traceback", output)
