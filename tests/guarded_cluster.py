"""A three-member cluster of real processes kept whole between hostile
requests, for property tests that may send any request, membership
changes included.

After each request, ``restore`` undoes what a request changed in the
membership (removes members it added, replaces a member it removed with a
fresh process), and ``check_serving`` proves the cluster still commits a
write and serves a linearizable read on every member, that ``/health``
agrees, and that no member logged a traceback.  Everything blocks, with
a bound: hypothesis examples are synchronous.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

from tests.chaos.helpers import poll
from tests.process import Member, free_port

CLUSTER_TOKEN = "hostile-http"
"""Not the default token, so a peer URL that happens to name another test's
member is refused at the handshake instead of joining the clusters."""


def call(url: str, method: str = "GET", body: bytes | None = None, timeout: float = 5.0):
    """``(status, headers, body)`` of one request; status 0 when nothing answered."""
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
    except OSError:
        return 0, {}, b""


class GuardedCluster:
    """Three voters, each a ``twistd`` process; the ids and processes that
    are meant to be the cluster are ``members``."""

    size = 3

    def __init__(self, testcase, extra: list[str] = ()) -> None:
        self.testcase = testcase
        self.workdir = os.path.abspath(testcase.mktemp())
        self.extra = ["--cluster-token", CLUSTER_TOKEN, "--request-timeout", "2", *extra]
        self.peer_urls = {i: f"http://127.0.0.1:{free_port()}" for i in range(1, self.size + 1)}
        self.members: dict[int, Member] = {}
        self.retired: list[Member] = []
        self.used_ids: set[int] = set(self.peer_urls)
        self.additions_undone = 0
        """Members that requests added and ``restore`` removed again."""
        self.removals_undone = 0
        """Members that requests removed and ``restore`` replaced."""
        for member_id in self.peer_urls:
            self._new_member(member_id, [self.peer_urls[i] for i in sorted(self.peer_urls)])

    def _new_member(self, member_id: int, cluster: list[str], extra: list[str] = ()) -> Member:
        member = Member(member_id=member_id, cluster=cluster, http_port=free_port(), workdir=self.workdir,
                        extra=self.extra + list(extra))
        self.members[member_id] = member
        self.testcase.addCleanup(member.kill)
        return member

    def start(self) -> None:
        """Start every member and wait until each is healthy."""
        for member in self.members.values():
            member.start()
        for member in self.members.values():
            self._wait_healthy(member)

    def _wait_healthy(self, member: Member, timeout: float = 30) -> None:
        def healthy():
            if not member.running():
                raise AssertionError(f"member {member.member_id} exited:\n{member.log_text()[-3000:]}")
            return call(member.url + "/health")[0] == 200

        poll(healthy, timeout=timeout, what=f"member {member.member_id} to be healthy")

    def target(self, index: int) -> Member:
        """The ``index``-th member (modulo their number), in id order."""
        ids = sorted(self.members)
        return self.members[ids[index % len(ids)]]

    def own_urls(self) -> list[str]:
        """URLs that members use: their peer URLs and their HTTP URLs."""
        return [self.peer_urls[i] for i in sorted(self.members)] + [m.url for m in self.members.values()]

    # -- restoring the membership -------------------------------------------

    def listed(self, member: Member) -> list[int] | None:
        """The member ids ``member`` has applied, or None when it does not answer."""
        status, _, body = call(member.url + "/admin/members")
        return [m["id"] for m in json.loads(body)["members"]] if status == 200 else None

    def _agreed_listing(self, timeout: float = 20) -> list[int]:
        """The membership once every running intended member lists the same."""

        def agreed():
            listings = [self.listed(m) for m in self.members.values() if m.running()]
            if listings and all(l is not None and l == listings[0] for l in listings):
                return listings[0]
            return None

        return poll(agreed, timeout=timeout, what="the members to agree on the membership")

    def _change(self, method: str, member_id: int, body: bytes | None, done: tuple[int, ...]) -> None:
        """A membership change through any live member, retried while the
        cluster answers 503 (a change still applying, an election)."""

        def attempt():
            for member in self.members.values():
                if member.running():
                    status, _, answer = call(f"{member.url}/admin/members/{member_id}", method, body)
                    if status in done:
                        return True
                    if status not in (0, 503):
                        raise AssertionError(f"{method} member {member_id}: {status} {answer!r}")
            return False

        poll(attempt, timeout=30, interval=0.3, what=f"{method} of member {member_id}")

    def restore(self) -> None:
        """Make the membership the intended three voters again: remove what
        a request added, replace a member a request removed."""
        listed = set(self._agreed_listing())
        self.used_ids |= listed
        for extra in sorted(listed - set(self.members)):
            self._change("DELETE", extra, None, done=(204, 404))
            self.additions_undone += 1
        for gone in sorted(set(self.members) - listed):
            self._retire(gone)
            self.removals_undone += 1
        for _ in range(self.size - len(self.members)):
            self._add_replacement()
        expected = sorted(self.members)
        poll(lambda: self._agreed_listing() == expected, timeout=30, what=f"membership {expected}")

    def _retire(self, member_id: int) -> None:
        member = self.members.pop(member_id)
        try:
            poll(lambda: not member.running(), timeout=15, what=f"removed member {member_id} to exit")
        finally:
            member.kill()
        self.retired.append(member)

    def _add_replacement(self) -> None:
        member_id = min(i for i in range(1, len(self.used_ids) + 2) if i not in self.used_ids)
        self.used_ids.add(member_id)
        url = f"http://127.0.0.1:{free_port()}"
        self.peer_urls[member_id] = url
        # --cluster only bootstraps; entries of ids that are gone name free ports.
        cluster = [self.peer_urls.get(i) or f"http://127.0.0.1:{free_port()}" for i in range(1, member_id + 1)]
        self._change("POST", member_id, url.encode(), done=(204,))
        member = self._new_member(member_id, cluster, ["--join"])
        member.start()
        self._wait_healthy(member)

    # -- the oracle ---------------------------------------------------------

    def check_serving(self, round_number: int) -> None:
        """Every member commits a write; the next member reads it back
        linearizably; /health is 200 everywhere; no log has a traceback."""
        ids = sorted(self.members)
        for n, member_id in enumerate(ids):
            writer, reader = self.members[member_id], self.members[ids[(n + 1) % len(ids)]]
            key, value = f"/kv/oracle-{round_number}-{member_id}", b"%d" % round_number
            poll(lambda: call(writer.url + key, "PUT", value)[0] == 204, timeout=20, interval=0.2,
                 what=f"member {member_id} to commit a write")
            status, _, body = call(reader.url + key)
            assert (status, body) == (200, value), f"member {reader.member_id} read {status} {body!r}"
        for member in self.members.values():
            status, _, body = call(member.url + "/health")
            assert status == 200, f"member {member.member_id} serves but /health says {status} {body!r}"
        self.assert_no_traceback()

    def assert_no_traceback(self) -> None:
        """No member, current or removed, logged a traceback."""
        for member in list(self.members.values()) + self.retired:
            text = member.log_text()
            assert "Traceback" not in text, f"member {member.member_id} logged a traceback:\n{text[-4000:]}"
