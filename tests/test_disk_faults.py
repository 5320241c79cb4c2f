"""Disk faults: a failing fsync or a full disk stops acknowledgements; a
damaged WAL or snapshot recovers to a valid prefix or is refused with a
clear message, never wrong data, never a traceback.

- Generated damage (truncations, bit flips, zeroed runs, garbage tails,
  missing segments) on a multi-segment WAL, replayed in-process with
  ``WAL.open``: hundreds of seeded cases.
- The same for snapshot files with ``read_snapshot``.
- Real member processes with ``METASTORE_FAULT_FSYNC`` (fsync fails after N
  successes) and with a damaged WAL on disk.
"""

from __future__ import annotations

import os
import random
import shutil

from twisted.trial.unittest import SynchronousTestCase

from metastore.faults import ENVIRONMENT_VARIABLE
from metastore.raft.types import Entry, HardState
from metastore.storage.engine import ClusterState, Event, KeyValue, MemberRecord
from metastore.storage.errors import WALCorruptionError
from metastore.snapshots.format import SnapshotCorruptionError, SnapshotHeader, read_snapshot, write_snapshot
from metastore.storage.wal import WAL
from tests.chaos.helpers import http_json, http_request, is_leader, poll
from tests.process import Member, free_port

CASES = 400
"""Damage cases generated per file kind."""


def _no_fsync(fd: int) -> None:
    """Durability is irrelevant to replay tests; skip the cost."""


def _segments(directory: str) -> list[str]:
    return sorted(os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(".wal"))


def damage_file(rng: random.Random, path: str) -> str:
    """Damage ``path`` in one random way; a description of what was done."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        how = rng.choice(["truncate", "flip", "flips", "zero", "garbage-tail", "duplicate-tail"])
        if how == "truncate":
            cut = rng.randrange(0, max(size, 1))
            del data[cut:]
            what = f"truncated at {cut} of {size}"
        elif how in ("flip", "flips") and size:
            offsets = [rng.randrange(size) for _ in range(1 if how == "flip" else rng.randint(2, 8))]
            for offset in offsets:
                data[offset] ^= 1 << rng.randrange(8)
            what = f"bit flips at {sorted(offsets)}"
        elif how == "zero" and size:
            start = rng.randrange(size)
            length = rng.randint(1, 64)
            data[start:start + length] = bytes(len(data[start:start + length]))
            what = f"zeroed {length} bytes at {start}"
        elif how == "duplicate-tail" and size > 40:
            start = rng.randrange(size // 2, size)
            data += data[start:]
            what = f"repeated bytes {start}.. at the end"
        else:
            data += rng.randbytes(rng.randint(1, 100))
            what = "random bytes appended"
        f.seek(0)
        f.truncate()
        f.write(data)
    return what


class WALDamageTests(SynchronousTestCase):
    """Hundreds of damaged copies of one multi-segment WAL."""

    def build_wal(self, directory: str) -> tuple[list[Entry], list[HardState]]:
        """A WAL of several small segments with entries in three terms and a
        hard state after each batch; what was written."""
        wal, _ = WAL.open(directory, metadata=b"member-1", segment_bytes=1024, fsync=_no_fsync)
        written: list[Entry] = []
        hard_states = [HardState()]
        index = 0
        rng = random.Random(7)
        for batch in range(30):
            term = 1 + batch // 10
            batch_entries = []
            for _ in range(rng.randint(1, 4)):
                index += 1
                batch_entries.append(Entry(term, index, data=rng.randbytes(rng.randint(0, 90))))
            hard_state = HardState(term, 1, index)
            wal.save(hard_state, batch_entries)
            wal.sync()
            written += batch_entries
            hard_states.append(hard_state)
        wal.close()
        return written, hard_states

    def test_damaged_wal_recovers_a_prefix_or_refuses(self):
        """Every damaged copy either replays to a prefix of what was written
        (entries and a hard state that was really saved, whose commit index
        the surviving entries cover), or raises WALCorruptionError naming the
        file and offset.  Damage outside the last segment is refused unless it lost nothing."""
        base = self.mktemp()
        written, hard_states = self.build_wal(base)
        self.assertGreater(len(_segments(base)), 3)
        rng = random.Random(2024)
        outcomes = {"recovered-all": 0, "recovered-prefix": 0, "refused": 0}
        for case in range(CASES):
            directory = f"{self.mktemp()}-{case}"
            shutil.copytree(base, directory)
            segments = _segments(directory)
            # Half the cases hit the last segment, where a torn tail may legitimately be cut.
            victim = segments[-1] if rng.random() < 0.5 else rng.choice(segments)
            what = f"case {case}: {os.path.basename(victim)} " + damage_file(rng, victim)
            try:
                wal, state = WAL.open(directory, fsync=_no_fsync)
            except WALCorruptionError as e:
                outcomes["refused"] += 1
                self.assertIn(directory, str(e), what)
                self.assertIn("offset", str(e), what)
                continue
            except Exception as e:  # anything else is a crash with a traceback
                self.fail(f"{what}: {type(e).__name__}: {e}")
            wal.close()
            recovered = state.entries
            self.assertEqual(recovered, written[:len(recovered)], what)
            self.assertIn(state.hard_state, hard_states, what)
            self.assertLessEqual(state.hard_state.commit, recovered[-1].index if recovered else 0, what)
            if victim != segments[-1]:
                # Only damage that loses nothing (e.g. whole valid records repeated) may pass there.
                self.assertEqual(len(recovered), len(written), f"{what}: damage outside the last segment lost entries")
            outcomes["recovered-all" if len(recovered) == len(written) else "recovered-prefix"] += 1
            shutil.rmtree(directory)
        # Every kind of outcome happened: the generator really exercises both paths.
        self.assertGreater(outcomes["refused"], CASES // 10, outcomes)
        self.assertGreater(outcomes["recovered-prefix"] + outcomes["recovered-all"], CASES // 20, outcomes)


class SnapshotDamageTests(SynchronousTestCase):
    """Hundreds of damaged copies of one snapshot file."""

    def test_damaged_snapshot_reads_exactly_or_refuses(self):
        """A damaged snapshot either still reads as exactly what was written
        (damage beyond what matters cannot exist: nothing may follow the
        footer) or raises SnapshotCorruptionError naming the file."""
        directory = self.mktemp()
        rng = random.Random(99)
        items = [
            Event(KeyValue(b"key-%04d" % i, rng.randbytes(rng.randint(0, 200)), i + 1, i + 1, 1), rng.randint(0, 5))
            for i in range(300)
        ]
        cluster = ClusterState((1, 2, 3), (), tuple(MemberRecord(i, f"http://127.0.0.1:{9000 + i}") for i in (1, 2, 3)))
        header = SnapshotHeader(index=500, term=3, revision=400, cluster_state=cluster)
        path = write_snapshot(directory, header, items, fsync=_no_fsync)
        with open(path, "rb") as f:
            original = f.read()
        refused = 0
        for case in range(CASES):
            with open(path, "wb") as f:
                f.write(original)
            what = f"case {case}: " + damage_file(rng, path)
            try:
                got_header, iterator = read_snapshot(path)
                got_items = list(iterator)
            except SnapshotCorruptionError as e:
                refused += 1
                self.assertIn(path, str(e), what)
                continue
            except Exception as e:
                self.fail(f"{what}: {type(e).__name__}: {e}")
            self.assertEqual((got_header, got_items), (header, items), what)
        self.assertGreater(refused, CASES // 2)


def start_member(testcase, workdir: str, fault: str | None = None, cluster=None, member_id=1, http_port=None) -> Member:
    """Start a member, with ``METASTORE_FAULT_FSYNC=fault`` when given."""
    member = Member(member_id=member_id, cluster=cluster or [f"http://127.0.0.1:{free_port()}"],
                    http_port=http_port or free_port(), workdir=workdir, extra=["--request-timeout", "2"])
    saved = os.environ.get(ENVIRONMENT_VARIABLE)
    if fault is None:
        os.environ.pop(ENVIRONMENT_VARIABLE, None)
    else:
        os.environ[ENVIRONMENT_VARIABLE] = fault
    try:
        member.start()  # the child copies the environment now
    finally:
        if saved is None:
            os.environ.pop(ENVIRONMENT_VARIABLE, None)
        else:
            os.environ[ENVIRONMENT_VARIABLE] = saved
    testcase.addCleanup(member.kill)
    return member


class FsyncFailureTests(SynchronousTestCase):
    """A member whose WAL fsync starts failing."""

    def run_until_failure(self, fault: str) -> None:
        """Write until the member reports a storage failure; then: no more 204s, /health 503,
        and after a restart on a good disk, every acknowledged write is there."""
        workdir = self.mktemp()
        member = start_member(self, workdir, fault)
        poll(lambda: is_leader(member), timeout=30, what="the member to lead")
        acknowledged = []
        first_refusal = None
        for i in range(300):
            code = http_request(f"{member.url}/k{i}", "PUT", b"v%d" % i)
            if code == 204:
                self.assertIsNone(first_refusal, f"PUT k{i} acknowledged after a refused one")
                acknowledged.append(i)
            else:
                self.assertIn(code, (503, 0), f"PUT k{i}")
                status = http_json(member.url + "/admin/status")[1]
                if first_refusal is None and status is not None and status.get("storage_failure"):
                    first_refusal = i
                # A 503 before the disk failed is a timeout on a busy machine: allowed.
                if first_refusal is not None and i - first_refusal >= 5:
                    break
        self.assertIsNotNone(first_refusal, "the fsync fault never took effect")
        self.assertTrue(acknowledged, "nothing was acknowledged before the fault")
        code, body = poll(lambda: (lambda r: r if r[0] == 503 else None)(http_json(member.url + "/health")),
                          timeout=10, what="/health to say 503")
        self.assertEqual(body["health"], "false")
        status = http_json(member.url + "/admin/status")[1]
        if status is not None:
            self.assertFalse(status["healthy"])
            self.assertTrue(status["storage_failure"])
        member.kill()
        restarted = Member(member_id=1, cluster=member.cluster, http_port=free_port(), workdir=workdir,
                           extra=member.extra)
        restarted.start()
        self.addCleanup(restarted.kill)
        poll(lambda: is_leader(restarted), timeout=30, what="the restarted member to lead")
        for i in acknowledged:
            self.assertEqual(http_request(f"{restarted.url}/k{i}", "GET"), 200, f"acknowledged k{i} lost")

    def test_eio(self):
        """fsync fails with EIO after 30 successes."""
        self.run_until_failure("eio-after:30")

    def test_enospc(self):
        """fsync fails with ENOSPC (disk full) after 30 successes."""
        self.run_until_failure("enospc-after:30")

    def test_follower_disk_failure_does_not_stop_the_cluster(self):
        """One member of three with a failing disk: the others keep
        acknowledging, that member reports itself unhealthy, and after it is
        restarted on a good disk every acknowledged write is everywhere."""
        workdir = self.mktemp()
        cluster = [f"http://127.0.0.1:{free_port()}" for _ in range(3)]
        members = [start_member(self, workdir, "eio-after:40" if i == 3 else None, cluster, i) for i in (1, 2, 3)]
        poll(lambda: any(is_leader(m) for m in members), timeout=30, what="a leader")
        acknowledged = []
        for i in range(120):
            writer = members[i % 2]  # members 1 and 2 take the writes
            if http_request(f"{writer.url}/k{i}", "PUT", b"v%d" % i) == 204:
                acknowledged.append(i)
        self.assertGreater(len(acknowledged), 100)
        poll(lambda: http_json(members[2].url + "/health")[0] in (503, 0), timeout=30,
             what="member 3 to report itself unhealthy")
        members[2].kill()
        members[2] = start_member(self, workdir, None, cluster, 3, members[2].http_port)
        for i in acknowledged:
            poll(lambda: http_request(f"{members[2].url}/k{i}", "GET") == 200, timeout=30, what=f"k{i} on member 3")


class DamagedWALProcessTests(SynchronousTestCase):
    """A real member started on a WAL damaged on disk."""

    def prepare(self) -> tuple[str, list[str], list[int]]:
        """A stopped member's data dir holding 40 acknowledged writes."""
        workdir = os.path.abspath(self.mktemp())
        member = start_member(self, workdir)
        poll(lambda: is_leader(member), timeout=30, what="the member to lead")
        for i in range(40):
            self.assertEqual(http_request(f"{member.url}/k{i}", "PUT", b"v%d" % i), 204)
        member.kill()
        return workdir, member.cluster, list(range(40))

    def wal_dir(self, workdir: str) -> str:
        return os.path.join(workdir, "metaStore-1")

    def start_and_wait(self, workdir, cluster) -> tuple[Member, str]:
        """Start on the damaged data: ('serving' | 'refused', member)."""
        member = start_member(self, workdir, None, cluster)
        outcome = poll(
            lambda: "refused" if not member.running() else ("serving" if is_leader(member) else None),
            timeout=30, what=f"member {member.member_id} to serve or exit (log: {member.logfile})",
        )
        return member, outcome

    def test_torn_last_record_is_cut_and_the_rest_served(self):
        """A crash mid-write (the last record cut short): the member starts and
        serves everything before it with the right values."""
        workdir, cluster, keys = self.prepare()
        last = _segments(self.wal_dir(workdir))[-1]
        os.truncate(last, os.path.getsize(last) - 3)
        member, outcome = self.start_and_wait(workdir, cluster)
        self.assertEqual(outcome, "serving", member.log_text()[-3000:])
        present = 0
        for i in keys:
            code = http_request(f"{member.url}/k{i}", "GET")
            if code == 200:
                present += 1
        self.assertGreaterEqual(present, len(keys) - 1)
        self.assertNotIn("Traceback", member.log_text())

    def test_bit_flip_in_the_middle_is_refused_with_a_message(self):
        """Damage before the end of the log: the member refuses to start,
        names the file and offset, and prints no traceback."""
        workdir, cluster, _ = self.prepare()
        path = _segments(self.wal_dir(workdir))[0]
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) // 2)
            byte = f.read(1)[0]
            f.seek(os.path.getsize(path) // 2)
            f.write(bytes([byte ^ 0x10]))
        member, outcome = self.start_and_wait(workdir, cluster)
        log = member.log_text()
        self.assertEqual(outcome, "refused", log[-3000:])
        self.assertIn(os.path.basename(path), log)
        self.assertIn("offset", log)
        self.assertNotIn("Traceback", log)

    def test_stray_file_in_wal_directory_is_refused_with_a_message(self):
        """A file that is not a segment in the WAL directory: refused, named."""
        workdir, cluster, _ = self.prepare()
        with open(os.path.join(self.wal_dir(workdir), "garbage.wal"), "wb") as f:
            f.write(b"\x00" * 10)
        member, outcome = self.start_and_wait(workdir, cluster)
        log = member.log_text()
        self.assertEqual(outcome, "refused", log[-3000:])
        self.assertIn("garbage.wal", log)
        self.assertNotIn("Traceback", log)

