"""Leases and watches across leader kills, on 3 real members.

While lease keepers renew their leases, writers write and watchers read
(spread over the members, some replaying from revision 1), the leader is
SIGKILLed by PID, a new leader is awaited, and the old one is restarted;
twice.  Then: no kept-alive lease expired, the never-renewed control leases
did, every watcher received exactly the history read back from every member
at the end (no gap, no duplicate, same order, whichever member it was on and
however often it resumed), every acknowledged put is in that history, and
ranges at past revisions agree with it.

The same scenario runs against Debian's etcd 3.4 as the reference: what it
asserts is what etcd does.
"""

from __future__ import annotations

import json

import treq
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from metastore.chaos.lease_watch import LeaseWatchConfig, LeaseWatchWorkload
from tests.etcd import EtcdCluster
from tests.process import Cluster, wait_healthy, wait_until

KILLS = 2
ENOUGH_PUTS = 100
CONFIG = LeaseWatchConfig(lease_keepers=4, lease_ttl=10, renew_every=1.0, control_leases=2, control_ttl=3,
                          watchers_per_member=2, writers=2, catch_up_timeout=60.0, range_samples=20, seed=5)


async def _v3_status(url: str) -> dict | None:
    """``/v3/maintenance/status`` of one member, or None."""
    try:
        d = treq.post(url + "/v3/maintenance/status", data=b"{}", persistent=False)
        d.addTimeout(2, reactor)
        response = await d
        return json.loads(await treq.content(response)) if response.code == 200 else None
    except Exception:
        return None


class LeaseWatchScenario:
    """Runs the scenario against members reachable at ``urls`` (id -> URL),
    with ``kill(id)`` / ``restart(id)`` given by the cluster kind."""

    def __init__(self, testcase: TestCase, urls: dict[int, str], kill, restart, logs) -> None:
        self.testcase = testcase
        self.urls = urls
        self.kill = kill
        self.restart = restart
        self.logs = logs

    async def leader(self, among: list[int]) -> int:
        """The member of ``among`` that every one of them names as leader."""

        async def agreed():
            statuses = {i: await _v3_status(self.urls[i]) for i in among}
            if None in statuses.values():
                return None
            leaders = {s.get("leader") for s in statuses.values()}
            if len(leaders) != 1:
                return None
            leader = leaders.pop()
            return next((i for i, s in statuses.items() if s["header"]["member_id"] == leader), None)

        return await wait_until(agreed, timeout=60, interval=0.2, what=f"members {among} to agree on a leader")

    async def run(self) -> None:
        """Kill the leader ``KILLS`` times under the workloads; check everything."""
        workload = LeaseWatchWorkload(reactor, self.urls, CONFIG)
        self.testcase.addCleanup(workload.close)
        await workload.start()
        ids = sorted(self.urls)

        def events():
            return sum(len(w.events) for w in workload.watches)

        await wait_until(lambda: events() > 30, timeout=30, what="watchers to receive events")
        for round in range(KILLS):
            leader = await self.leader(ids)
            self.kill(leader)
            others = [i for i in ids if i != leader]
            await self.leader(others)
            renewed, delivered = workload._renewals, events()
            await wait_until(lambda: workload._renewals > renewed + 4 and events() > delivered + 20, timeout=60,
                             what=f"renewals and events after killing leader {leader}")
            await self.restart(leader)
            await self.leader(ids)
        # However slow the machine, enough writes cross the history checks.
        await wait_until(lambda: len(workload.acknowledged_puts) >= ENOUGH_PUTS, timeout=120, interval=0.2,
                         what=f"{ENOUGH_PUTS} acknowledged puts")
        await workload.stop_writes()
        report = await workload.verify()
        summary = "\n".join(report.summary_lines())
        self.testcase.assertEqual(report.problems, [], summary + "\n" + self.logs())
        self.testcase.assertEqual(report.kept_leases_lost, 0, summary)
        self.testcase.assertEqual((report.leases_kept, report.controls_expired), (4, 2), summary)
        self.testcase.assertGreater(report.watch_resumes, 0, summary)  # watchers on killed leaders moved
        self.testcase.assertGreaterEqual(report.acknowledged_puts, ENOUGH_PUTS, summary)
        self.testcase.assertGreater(report.ranges_compared, 5, summary)
        self.testcase.assertEqual(report.watchers, 6, summary)


class MetaStoreLeaderKillTests(TestCase):
    """The scenario on three MetaStore members."""

    timeout = 400

    async def test_leader_kills_keep_leases_and_watches(self):
        """SIGKILL the leader twice under lease and watch load: nothing lost."""
        cluster = Cluster(self, 3, extra=["--request-timeout", "2"])
        cluster.start()
        for member in cluster.members.values():
            await wait_healthy(member, timeout=60)

        async def restart(member_id: int) -> None:
            cluster.members[member_id].start()
            await wait_healthy(cluster.members[member_id], timeout=60)

        urls = {i: m.url for i, m in cluster.members.items()}
        await LeaseWatchScenario(self, urls, lambda i: cluster.members[i].kill(), restart, cluster.logs).run()


class EtcdLeaderKillTests(TestCase):
    """The same scenario on three etcd members: the reference."""

    timeout = 400

    async def test_leader_kills_keep_leases_and_watches(self):
        """What the MetaStore test asserts holds for etcd 3.4."""
        cluster = EtcdCluster(self, 3, name="lw")
        await cluster.start()
        members = dict(enumerate(cluster.members, start=1))
        initial = ",".join(f"{m.name}={m.peer_url}" for m in cluster.members)

        def kill(member_id: int) -> None:
            process = members[member_id].process
            process.kill()  # SIGKILL by PID
            process.wait(timeout=15)
            members[member_id].process = None

        async def restart(member_id: int) -> None:
            members[member_id].start(initial, cluster.token)
            await wait_until(lambda: cluster._healthy(members[member_id]), timeout=60,
                             what=f"etcd member {member_id} to be healthy again")

        urls = {i: m.url for i, m in members.items()}
        await LeaseWatchScenario(self, urls, kill, restart, cluster.logs).run()

