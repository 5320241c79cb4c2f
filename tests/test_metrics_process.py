"""``/metrics`` and the logs of a real three-member cluster of ``twistd
metastore`` processes, under a little load and across the leader's death."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer
from twisted.trial.unittest import TestCase

from tests.process import Cluster, wait_until

FLAGS = ["--request-timeout", "2", "--log-format", "json"]


def sample(families: dict, name: str, **labels) -> float | None:
    """The value of sample ``name`` (with ``labels``) in a parsed scrape, or None."""
    for family in families.values():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


class MetricsProcessTests(TestCase):
    """Scrape every member with Prometheus' own parser."""

    timeout = 180

    async def setUp(self):
        self.cluster = Cluster(self, 3, extra=FLAGS)
        self.cluster.start()
        self.leader_id = await self.cluster.leader()

    async def scrape(self, member_id: int) -> dict | None:
        """The member's metric families by name, or None when it does not answer."""
        code, body, response = await self.cluster.request(member_id, "GET", "/metrics", timeout=5)
        if code != 200:
            return None
        self.assertTrue(response.headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain"))
        return {f.name: f for f in text_string_to_metric_families(body.decode())}

    async def scrape_all(self, member_ids) -> dict[int, dict]:
        scrapes = {i: await self.scrape(i) for i in member_ids}
        for i, families in scrapes.items():
            self.assertIsNotNone(families, f"member {i} did not answer /metrics\n{self.cluster.logs()}")
        return scrapes

    async def write(self, prefix: str, count: int) -> None:
        """``count`` concurrent PUTs spread over the three members, all acknowledged."""
        writes = [defer.ensureDeferred(self.cluster.request(1 + i % 3, "PUT", f"/{prefix}-{i}", b"v"))
                  for i in range(count)]
        codes = [code for code, _, _ in await defer.gatherResults(writes)]
        self.assertEqual(set(codes), {204}, self.cluster.logs())

    async def test_scrape_under_load_then_kill_the_leader(self):
        """Key metrics are present and sane on every member; the survivors
        count the leader change once the leader is SIGKILLed."""
        members = (1, 2, 3)
        load = defer.ensureDeferred(self.write("during", 60))
        during = await self.scrape_all(members)  # scraped while the writes are in flight
        await load
        await self.write("more", 30)
        after = await self.scrape_all(members)
        for i in members:
            before_value = sample(during[i], "etcd_server_proposals_committed_total")
            self.assertGreater(sample(after[i], "etcd_server_proposals_committed_total"), before_value, f"member {i}")
            self.assertEqual(sample(after[i], "etcd_server_has_leader"), 1, f"member {i}")
            self.assertGreater(sample(after[i], "etcd_disk_wal_fsync_duration_seconds_count"), 0)
            self.assertGreaterEqual(sample(after[i], "etcd_server_leader_changes_seen_total"), 1)
            self.assertEqual(sample(after[i], "etcd_server_proposals_failed_total"), 0)
        leaders = [i for i in members if sample(after[i], "etcd_server_is_leader") == 1]
        self.assertEqual(leaders, [self.leader_id])
        for follower in (i for i in members if i != self.leader_id):
            # The leader times its heartbeats to each follower (etcd labels ids in hexadecimal).
            self.assertGreater(sample(after[self.leader_id], "etcd_network_peer_round_trip_time_seconds_count",
                                      To=format(follower, "x")), 0)
        self.assertGreater(sample(after[1], "metastore_http_request_duration_seconds_count",
                                  method="PUT", route="/{key}", code="204"), 0)

        async def keys_everywhere():
            scrapes = await self.scrape_all(members)
            return all(sample(s, "etcd_debugging_mvcc_keys_total") == 90 for s in scrapes.values())

        await wait_until(keys_everywhere, timeout=20, interval=0.2, what="90 keys counted on every member")

        survivors = [i for i in members if i != self.leader_id]
        seen = {i: sample(after[i], "etcd_server_leader_changes_seen_total") for i in survivors}
        self.cluster.members[self.leader_id].kill()  # SIGKILL by PID

        async def change_counted():
            scrapes = {i: await self.scrape(i) for i in survivors}
            if any(s is None for s in scrapes.values()):
                return False
            moved = all(sample(s, "etcd_server_leader_changes_seen_total") > seen[i] for i, s in scrapes.items())
            leaders = [i for i, s in scrapes.items() if sample(s, "etcd_server_is_leader") == 1]
            led = all(sample(s, "etcd_server_has_leader") == 1 for s in scrapes.values())
            return moved and led and len(leaders) == 1

        await wait_until(change_counted, timeout=30, interval=0.2, what="the survivors to count a new leader")

    async def test_json_logs_without_a_line_per_request(self):
        """Every line of a member's log is one JSON object with the fixed
        fields; a hundred requests (and members asking each other for
        their status) add no line."""
        lines_before = {i: len(open(m.logfile).read().splitlines()) for i, m in self.cluster.members.items()}
        await self.write("quiet", 90)
        for i in (1, 2, 3):
            for _ in range(3):
                code, _, _ = await self.cluster.request(i, "GET", "/admin/members")
                self.assertEqual(code, 200)
        for i, member in self.cluster.members.items():
            with open(member.logfile) as f:
                lines = f.read().splitlines()
            for line in lines:
                record = json.loads(line)
                self.assertLessEqual({"time", "level", "namespace", "message"}, set(record), line)
            added = lines[lines_before[i]:]
            # A late start-up line may land meanwhile; a line per request would be ~100.
            self.assertLessEqual(len(added), 3, f"member {i} logged per request: {added}")
            self.assertFalse([line for line in lines if "quiet-" in line or "Starting factory" in line], f"member {i}")
