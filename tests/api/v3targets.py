"""Systems that serve etcd's v3 JSON API, started for one test, and a
client that posts to them.

A ``V3Target`` is either a real etcd cluster (the reference) or a MetaStore
cluster (the system under test); tests talk to both through ``V3Client``
and compare what they answer.  ``METASTORE_V3_TARGET=etcd`` makes
``start_system_under_test`` start etcd in MetaStore's place, which proves a
test right against etcd itself.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Callable

import treq
from twisted.internet import reactor
from twisted.web.client import HTTPConnectionPool

from tests.etcd import EtcdCluster
from tests.process import Cluster, wait_healthy, wait_until

TARGET_ENV = "METASTORE_V3_TARGET"

# etcd never compacts on its own unless told to; MetaStore compacts by
# default (issue 12), which a comparison with etcd cannot allow.
METASTORE_FLAGS = ["--request-timeout", "5", "--auto-compaction-retention", "0"]


@dataclass
class V3Target:
    """A running cluster serving the v3 JSON API: a name for messages,
    its members' base URLs, a way to read its logs and one to crash a member."""

    name: str
    urls: list[str]
    logs: Callable[[], str]
    kill_member: Callable[[int], None]
    """SIGKILL the member at ``index`` in ``urls`` (a crash)."""
    is_etcd: bool = False


async def start_etcd(testcase, size: int, name: str = "etcd") -> V3Target:
    """A new ``size``-member real etcd cluster, healthy (the test is
    skipped when etcd is not installed)."""
    cluster = EtcdCluster(testcase, size, name=name)
    await cluster.start()
    return V3Target(
        name=f"{size}-member etcd", urls=cluster.urls, logs=cluster.logs, is_etcd=True,
        kill_member=lambda index: cluster.members[index].kill(),
    )


async def start_metastore(testcase, size: int = 3, timeout: float = 40) -> V3Target:
    """A new ``size``-member MetaStore cluster, every member healthy."""
    cluster = Cluster(testcase, size, extra=METASTORE_FLAGS)
    cluster.start()
    for member in cluster.members.values():
        try:
            await wait_healthy(member, timeout)
        except AssertionError as e:
            lines = member.log_text().strip().splitlines() or ["(no output)"]
            raise AssertionError(
                f"MetaStore did not start with {' '.join(METASTORE_FLAGS)}: {lines[-1]}\n{e}"
            ) from None
    members = list(cluster.members.values())
    return V3Target(
        name=f"{size}-member MetaStore", urls=[m.url for m in members], logs=cluster.logs,
        kill_member=lambda index: members[index].kill(),
    )


class OnRealEtcd:
    """Mixin for a ``TestCase``: ``start_cluster`` gives a real 3-member
    etcd, which proves a client scenario states etcd's behaviour (skipped
    without etcd)."""

    async def start_cluster(self) -> V3Target:
        """A running 3-member etcd."""
        return await start_etcd(self, 3)


class OnMetaStore:
    """Mixin for a ``TestCase``: ``start_cluster`` gives a 3-member
    MetaStore, the system a client scenario is held to."""

    async def start_cluster(self) -> V3Target:
        """A running 3-member MetaStore."""
        return await start_metastore(self, 3)


async def start_system_under_test(testcase, size: int = 3) -> V3Target:
    """MetaStore, or real etcd when ``$METASTORE_V3_TARGET`` is ``etcd``."""
    kind = os.environ.get(TARGET_ENV, "metastore")
    if kind == "etcd":
        return await start_etcd(testcase, size, name="sut")
    if kind != "metastore":
        raise ValueError(f"${TARGET_ENV} must be 'metastore' or 'etcd', not {kind!r}")
    return await start_metastore(testcase, size)


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status, Content-Type and body bytes."""

    status: int
    content_type: str
    body: bytes

    def json(self):
        """The body parsed as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def describe(self) -> str:
        """The answer as one line for failure messages."""
        return f"{self.status} {self.content_type} {self.body.decode('utf-8', 'replace')}"


class V3Client:
    """Posts request bodies to members over persistent connections, which
    are closed at the test's cleanup."""

    def __init__(self, testcase, timeout: float = 15) -> None:
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = 2
        self.timeout = timeout
        testcase.addCleanup(self.pool.closeCachedConnections)

    async def post(self, base_url: str, path: str, body) -> Answer:
        """POST ``body`` (bytes, or anything else as JSON) to ``base_url + path``."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        d = treq.post(base_url + path, data=data, headers={"Content-Type": "application/json"}, pool=self.pool)
        d.addTimeout(self.timeout, reactor)
        response = await d
        content = await treq.content(response)
        content_type = response.headers.getRawHeaders("Content-Type", [""])[0]
        return Answer(response.code, content_type, content)


async def raft_leader_index(client: V3Client, target: V3Target, timeout: float = 20) -> int:
    """The index in ``target.urls`` of the member that every member names
    as the Raft leader in its ``/v3/maintenance/status``."""

    async def agreed():
        answers = [await client.post(url, "/v3/maintenance/status", {}) for url in target.urls]
        statuses = [a.json() for a in answers if a.status == 200]
        if len(statuses) != len(target.urls) or len({s["leader"] for s in statuses}) != 1:
            return None
        ids = [s["header"]["member_id"] for s in statuses]
        return (ids.index(statuses[0]["leader"]),) if statuses[0]["leader"] in ids else None

    [index] = await wait_until(agreed, timeout=timeout, what=f"the members of {target.name} to agree on a leader")
    return index
