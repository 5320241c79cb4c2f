"""The cluster's membership as applied on this member (etcd's RaftCluster).

One home for who the members are: it applies committed membership changes
and member attributes (a published client URL), answers who is a member and
who was removed, tells the transport whom to connect to, builds the
``ConfChange`` a member operation proposes, and produces and restores the
engine's stored record of it (``ClusterState``, stored unchanged).

Raft's own tracker (voters, learners) is applied by the driver; this
module holds what raft does not know: URLs and removals.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import replace
from typing import Callable

from twisted.internet import defer
from twisted.logger import Logger

from metastore.auth.messages import AuthCommand
from metastore.auth.state import AuthState
from metastore.errors import EntryRejected, Stopping
from metastore.kv.commands import AlarmType, PublishMember, SetAlarm, UpdateMember
from metastore.raft.confchange import encode_conf_change
from metastore.raft.types import ConfChange, ConfChangeType, ConfState
from metastore.storage.engine import ClusterState, MemberRecord
from metastore.transport.urls import parse_peer_url

log = Logger()


_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def _host_is_valid(host: str) -> bool:
    """An IP address, or a DNS name of valid labels."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    return 0 < len(name) <= 253 and all(_DNS_LABEL.match(label) for label in name.split("."))


def peer_address(url: str) -> tuple[str, int]:
    """What makes two peer URLs the same member: (lower-cased host, port)."""
    host, port = parse_peer_url(url)
    return host.lower().rstrip("."), port


class MembershipError(ValueError):
    """A member operation that cannot be proposed; ``code`` names why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Membership:
    """The members as of the last applied entry, and the changes in flight.

    ``transport`` (set once it exists) is told of every peer added or
    removed; ``self_removed`` turns true once this member's own removal is
    applied."""

    def __init__(self, member_id: int, initial_urls: dict[int, str], record: ClusterState | None = None) -> None:
        self.member_id = member_id
        self.initial_urls = dict(initial_urls)
        """The --cluster list: who the peers are until a membership is applied."""
        self.members: dict[int, MemberRecord] = {}
        self.removed_ids: set[int] = set()
        self.alarms: set[tuple[int, AlarmType]] = set()
        """The raised alarms, as applied here."""
        self.auth = AuthState()
        """The auth state as applied here: replicated cluster metadata
        stored in the same record as the membership."""
        self.auth_changed: Callable[[], None] = lambda: None
        """Called after the auth state changed (applied or restored)."""
        self.self_removed = False
        self.transport = None
        self.client_url = ""
        """This member's own client URL, published once a leader is known."""
        self.grpc_url = ""
        """This member's gRPC URL (with ``--grpc-port``), published with it."""
        self.strict_reconfig_check = True
        """Refuse membership changes that could lose quorum (``unsafe_reconfiguration``)."""
        self._changed = False
        self._publishing = False
        self._waiters: dict[bytes, list[defer.Deferred]] = {}
        if record is not None:
            self.restore(record)

    # -- questions ----------------------------------------------------------

    def peer_urls(self) -> dict[int, str]:
        """Who the peers are: the applied membership once it is known
        (restored or replayed), the --cluster list before that."""
        if self.members:
            return {i: m.peer_url for i, m in self.members.items()}
        return dict(self.initial_urls)

    def listing(self) -> list[MemberRecord]:
        """Every member, by id."""
        return sorted(self.members.values(), key=lambda m: m.member_id)

    def is_member(self, member_id: int) -> bool:
        """Whether ``member_id`` is in the applied membership."""
        return member_id in self.members

    def was_removed(self, peer_id: int) -> bool:
        """Whether ``peer_id`` was removed from the cluster (as applied here,
        or absent from a known membership although --cluster lists it)."""
        if peer_id in self.removed_ids:
            return True
        return bool(self.members) and peer_id in self.initial_urls and peer_id not in self.members

    def accepts_peer(self, peer_id: int) -> bool:
        """Whether a peer connection from ``peer_id`` may be accepted."""
        return peer_id in self.peer_urls() and peer_id not in self.removed_ids

    def invalid_reason(self, change: ConfChange) -> str | None:
        """Why ``change`` cannot apply to the membership as it stands, or
        None when it can.  The applier asks this of every committed change
        (raft's own rules passed), against the membership as applied at the
        entry's index, so every member refuses alike: the rules read only
        what ``record`` stores."""
        if change.type == ConfChangeType.ConfChangeRemoveNode:
            if change.node_id not in self.members:
                return f"member {change.node_id} is not in the cluster"
            voters = [i for i, m in self.members.items() if not m.is_learner]
            if voters == [change.node_id]:
                return f"member {change.node_id} is the cluster's only voter"
            return None
        if change.node_id in self.removed_ids:
            return f"member id {change.node_id} was removed and cannot be reused"
        if change.type == ConfChangeType.ConfChangeAddNode and change.node_id in self.members:
            if not self.members[change.node_id].is_learner:
                return f"member {change.node_id} is already in the cluster"
        if change.type == ConfChangeType.ConfChangeAddLearnerNode and change.node_id in self.members:
            return f"member {change.node_id} is already in the cluster"
        return self._url_taken(change)

    def _url_taken(self, change: ConfChange) -> str | None:
        """Why the peer URL ``change`` adds cannot be used: another member
        has it.  (Bootstrap entries carry no URL: --cluster gives them.)"""
        if not change.context:
            return None
        return self._url_conflict(change.context.decode("utf-8", "replace"), change.node_id)

    def _url_conflict(self, url: str, member_id: int) -> str | None:
        """Why ``url`` cannot be ``member_id``'s peer URL: it is no valid
        peer URL, or another member uses it; None when it can."""
        try:
            address = peer_address(url)
        except ValueError:
            return f"peer URL {url[:200]!r} is not a valid peer URL"
        for m in self.members.values():
            if m.member_id == member_id:
                continue
            try:
                if peer_address(m.peer_url) == address:
                    return f"member {m.member_id} already uses peer URL {m.peer_url}"
            except ValueError:
                continue
        return None

    def unsafe_reconfiguration(self, change: ConfChange) -> str | None:
        """etcd's strict reconfiguration check (when ``strict_reconfig_check``):
        why ``change`` could cost the cluster its quorum, or None.  A member
        counts as started when it is this one or the transport is connected
        to it.  Adding a voter needs as many started voters as the new
        quorum (a one-member cluster may always add one); removing a voter
        needs a quorum of the remaining voters started.  Learners are not
        checked."""
        if not self.strict_reconfig_check or self.transport is None:
            return None
        voters = [i for i, m in self.members.items() if not m.is_learner]
        started = {i for i in voters if i == self.member_id or self.transport.connected(i)}
        if change.type == ConfChangeType.ConfChangeAddNode and change.node_id not in voters:
            after = len(voters) + 1
            if len(started) < after // 2 + 1 and not (len(started) == 1 and after == 2):
                return (f"adding a voter needs {after // 2 + 1} started members for the new quorum; "
                        f"{len(started)} of {len(voters)} are connected")
        elif change.type == ConfChangeType.ConfChangeRemoveNode and change.node_id in voters:
            remaining = [i for i in voters if i != change.node_id]
            up = len(started.intersection(remaining))
            if up < len(remaining) // 2 + 1:
                return (f"removing member {change.node_id} would leave {up} started of {len(remaining)} voters, "
                        f"fewer than a quorum of {len(remaining) // 2 + 1}")
        return None

    # -- building proposals ---------------------------------------------------

    def next_member_id(self) -> int:
        """An id no member ever had here: one more than every id in use,
        removed, or in --cluster (deterministic, so every member picks the
        same for the same applied state)."""
        return max([0, *self.members, *self.removed_ids, *self.initial_urls]) + 1

    def _check_peer_url(self, peer_url: str, member_id: int = 0) -> None:
        """Raise ``MembershipError`` when ``peer_url`` is not a valid peer URL
        or another member than ``member_id`` uses it."""
        try:
            host, _ = parse_peer_url(peer_url)
        except ValueError as e:
            raise MembershipError("bad_peer_url", f"the body must be the new member's peer URL: {e}") from None
        if not _host_is_valid(host):
            raise MembershipError("bad_peer_url", f"peer URL {peer_url!r}: {host[:80]!r} is not a host name or IP address")
        taken = self._url_conflict(peer_url, member_id)
        if taken is not None:
            raise MembershipError("peer_url_exists", taken)

    def add_change(self, member_id: int, peer_url: str, learner: bool = False) -> ConfChange:
        """The change that adds ``member_id`` at ``peer_url`` (as a learner:
        a non-voting member that catches up first); raises
        ``MembershipError`` (``bad_peer_url``, ``member_exists``,
        ``member_removed``, ``peer_url_exists``)."""
        self._check_peer_url(peer_url)
        if member_id in self.members:
            raise MembershipError("member_exists", f"member {member_id} is already in the cluster")
        if member_id in self.removed_ids:
            raise MembershipError("member_removed", f"member {member_id} was removed; a removed id is never reused")
        kind = ConfChangeType.ConfChangeAddLearnerNode if learner else ConfChangeType.ConfChangeAddNode
        return ConfChange(kind, member_id, peer_url.encode())

    def promote_change(self, member_id: int) -> ConfChange:
        """The change that makes learner ``member_id`` a voter; raises
        ``MembershipError`` (``no_such_member``, ``not_learner``)."""
        known = self.members.get(member_id)
        if known is None:
            raise MembershipError("no_such_member", f"member {member_id} is not in the cluster")
        if not known.is_learner:
            raise MembershipError("not_learner", f"member {member_id} is not a learner")
        return ConfChange(ConfChangeType.ConfChangeAddNode, member_id, known.peer_url.encode())

    def update_command(self, member_id: int, peer_url: str) -> UpdateMember:
        """The command that moves ``member_id`` to ``peer_url``; raises
        ``MembershipError`` (``no_such_member``, ``bad_peer_url``, ``peer_url_exists``)."""
        if member_id not in self.members:
            raise MembershipError("no_such_member", f"member {member_id} is not in the cluster")
        self._check_peer_url(peer_url, member_id)
        return UpdateMember(member_id, peer_url)

    def remove_change(self, member_id: int) -> ConfChange:
        """The change that removes ``member_id``; raises ``MembershipError``
        (``no_such_member``, ``last_member``)."""
        if member_id not in self.members:
            raise MembershipError("no_such_member", f"member {member_id} is not in the cluster")
        voters = [m.member_id for m in self.members.values() if not m.is_learner]
        if voters == [member_id]:
            raise MembershipError("last_member", f"member {member_id} is the cluster's only voter; it cannot be removed")
        return ConfChange(ConfChangeType.ConfChangeRemoveNode, member_id)

    def wait_applied(self, change: ConfChange) -> defer.Deferred:
        """A Deferred that fires with ``change`` once it is applied here, or
        fails with ``EntryRejected`` once its entry is applied as a no-op."""
        return self.wait_entry(encode_conf_change(change))

    def wait_entry(self, data: bytes) -> defer.Deferred:
        """A Deferred for the conf change entry holding ``data``: the entry's
        bytes survive even when they decode to nothing, so a proposer of a
        malformed change is answered too."""
        d = defer.Deferred()
        self._waiters.setdefault(data, []).append(d)
        return d

    def reject_entry(self, data: bytes, index: int, reason: str) -> None:
        """The conf change entry ``data`` at ``index`` was applied as a
        no-op: fail whoever waits on it, saying why."""
        log.warn("membership change at index {index} refused: {reason}", index=index, reason=reason)
        error = EntryRejected(f"the membership change committed at index {index} was refused: {reason}")
        for d in self._waiters.pop(data, []):
            if not d.called:
                d.errback(error)

    def answer_waiters_on_leaving(self) -> None:
        """This member is leaving the cluster: a request for its own removal
        succeeded (a peer may tell of the removal before it is applied
        here); every other change waiting fails with ``Stopping``."""
        own_removal = encode_conf_change(ConfChange(ConfChangeType.ConfChangeRemoveNode, self.member_id))
        waiters, self._waiters = self._waiters, {}
        for key, deferreds in waiters.items():
            for d in deferreds:
                if d.called:
                    continue
                if key == own_removal:
                    d.callback(None)
                else:
                    d.errback(Stopping("this member was removed"))

    # -- applying -------------------------------------------------------------

    def apply_conf_change(self, change: ConfChange, data: bytes | None = None) -> None:
        """A committed membership change (already applied to raft), held in
        entry bytes ``data``: update the members, the transport's peers,
        and wake its proposer."""
        self._changed = True
        self._record_change(change)
        # Waiters run after the change is recorded, so that they see it.
        for d in self._waiters.pop(encode_conf_change(change) if data is None else data, []):
            if not d.called:
                d.callback(change)

    def _record_change(self, change: ConfChange) -> None:
        if change.type == ConfChangeType.ConfChangeRemoveNode:
            self.members.pop(change.node_id, None)
            self.removed_ids.add(change.node_id)
            if self.transport is not None and change.node_id != self.member_id:
                self.transport.remove_peer(change.node_id)
            if change.node_id == self.member_id:
                self.self_removed = True
            return
        # Bootstrap entries carry no URL: it comes from --cluster.
        url = change.context.decode("utf-8", "replace") or self.initial_urls.get(change.node_id, "")
        learner = change.type == ConfChangeType.ConfChangeAddLearnerNode
        known = self.members.get(change.node_id)
        self.members[change.node_id] = MemberRecord(
            change.node_id, url, known.client_url if known else "", learner, known.grpc_url if known else ""
        )
        self.removed_ids.discard(change.node_id)
        if self.transport is not None and change.node_id != self.member_id:
            if url:
                self.transport.add_peer(change.node_id, url)
            else:
                log.warn("member {id} was added without a peer URL", id=change.node_id)

    def apply_attributes(self, command: PublishMember | UpdateMember) -> None:
        """A committed ``PublishMember`` (record the member's client URL) or
        ``UpdateMember`` (its new peer URL, which the transport dials from now on)."""
        known = self.members.get(command.member_id)
        if known is None:
            return
        self._changed = True
        if isinstance(command, PublishMember):
            self.members[command.member_id] = replace(known, client_url=command.client_url, grpc_url=command.grpc_url)
            return
        self.members[command.member_id] = replace(known, peer_url=command.peer_url)
        if self.transport is not None and command.member_id != self.member_id:
            self.transport.add_peer(command.member_id, command.peer_url)

    def apply_alarm(self, command: SetAlarm) -> None:
        """A committed ``SetAlarm``: raise or disarm the alarm."""
        alarm = (command.member_id, command.alarm)
        if command.active and alarm not in self.alarms:
            self.alarms.add(alarm)
            self._changed = True
        elif not command.active and alarm in self.alarms:
            self.alarms.discard(alarm)
            self._changed = True

    def apply_auth(self, command: AuthCommand) -> None:
        """A committed auth command: applied to ``auth`` (which raises
        etcd's ``AuthError`` and changes nothing when it is refused)."""
        self.auth.apply(command)
        self._changed = True
        self.auth_changed()

    @property
    def out_of_space(self) -> bool:
        """Whether a NOSPACE alarm is raised: writes that add data are refused."""
        return bool(self.alarms) and any(alarm is AlarmType.NOSPACE for _, alarm in self.alarms)

    # -- the engine's record ---------------------------------------------------

    def record(self, conf: ConfState) -> ClusterState:
        """The membership as applied here, in the engine's terms, with
        raft's voters and learners ``conf``."""
        alarms = tuple(sorted((m, int(a)) for m, a in self.alarms))
        return ClusterState(
            tuple(conf.voters), tuple(conf.learners), tuple(self.listing()), tuple(sorted(self.removed_ids)),
            alarms=alarms, auth=self.auth.encode(),
        )

    def changed_record(self, conf: Callable[[], ConfState]) -> ClusterState | None:
        """``record(conf())`` if anything changed since the last one taken, else None."""
        if not self._changed:
            return None
        self._changed = False
        return self.record(conf())

    def connect_peers(self) -> None:
        """Tell the transport of every peer (at start)."""
        if self.transport is not None:
            for peer_id, url in self.peer_urls().items():
                if peer_id != self.member_id and url:
                    self.transport.add_peer(peer_id, url)

    def restore(self, record: ClusterState) -> None:
        """Replace the members with a stored record (the engine's, or a
        snapshot's) and connect to them."""
        self.members = {m.member_id: m for m in record.members}
        self.removed_ids = set(record.removed)
        self.alarms = {(m, AlarmType(a)) for m, a in record.alarms}
        self.auth = AuthState.decode(record.auth)
        self.auth_changed()
        if self.transport is not None:
            for m in record.members:
                if m.member_id != self.member_id and m.peer_url:
                    self.transport.add_peer(m.member_id, m.peer_url)

    # -- publishing this member's attributes --------------------------------

    def maybe_publish(self, propose: Callable[[PublishMember], defer.Deferred]) -> None:
        """Make this member's client URL part of the replicated membership
        (as etcd publishes its attributes), one attempt at a time; the
        caller retries (every tick) until it is applied."""
        me = self.members.get(self.member_id)
        if self._publishing or not self.client_url or me is None:
            return
        if (me.client_url, me.grpc_url) == (self.client_url, self.grpc_url):
            return
        self._publishing = True
        d = propose(PublishMember(self.member_id, self.client_url, self.grpc_url))
        d.addErrback(lambda f: log.debug("publishing the client URL failed, will retry: {f}", f=f.value))
        d.addBoth(lambda _: setattr(self, "_publishing", False))
