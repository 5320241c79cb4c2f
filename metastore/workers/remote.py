"""A front's ``MemberFacade``: the same methods, answered over the link.

The APIs call a ``RemoteFacade`` exactly as they call the core's facade.
Writes, lease and membership calls and read barriers go to the core;
reads (``get``, ``range_request``, ``read_request``, ``hash_kv``,
``revision``...) are answered from the front's replica of the store, which
the core keeps current (``metastore.workers.core``); ``status``,
``members``, ``alarms`` and ``db_size`` from the view the core pushes
every tick.  A read barrier is always a call to the core, serializable
ones included: its answer arrives after every apply the core made before
it, so the replica then reflects all this member applied (an acknowledged
write, through whichever front, is read back).

When the link is lost every pending call fails with ``CoreUnavailable``
(HTTP 503) at once, and so does every later call or read; every watch
gets its last, ``canceled`` response; a call unanswered for
``call_timeout`` seconds (a core that hangs) fails the same way.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import Callable

from twisted.internet import defer, task
from twisted.logger import Logger

from metastore import health
from metastore.auth.errors import AuthNotEnabled, AuthOldRevision
from metastore.auth.messages import AuthInfo
from metastore.auth.state import AuthState
from metastore.errors import Unavailable
from metastore.facade import Consistency, MemberFacade, MemberStatus
from metastore.kv.store import KeyValueStore
from metastore.kv.validation import adds_data
from metastore.storage.memory import MemoryEngine
from metastore.watch import Callback, WatchFilter, WatchResponse
from metastore.workers import codec
from metastore.workers.link import BatchedLink

log = Logger()

COMPACT_INTERVAL_SECONDS = 0.5
COMPACT_STEPS = 10
"""The replica drops compacted versions in bounded slices: at most this
many ``compact_step`` calls every ``COMPACT_INTERVAL_SECONDS``."""


class CoreUnavailable(Unavailable):
    """This front lost (or never had) its link to the member's core."""


class RemoteWatch:
    """A watch held by the core for a front; the methods of ``metastore.watch.Watch``."""

    def __init__(self, link: "FrontLink", watch_id: int, callback: Callback) -> None:
        self._link = link
        self.local_id = watch_id
        self.id: int | None = None
        """The core's id of the watch, once created."""
        self.callback = callback
        self.canceled = False

    def deliver(self, response) -> None:
        """A response from the core: hand it to the callback."""
        if response.created and self.id is None:
            self.id = response.watch_id
        if response.canceled:
            self.canceled = True
            self._link.watches.pop(self.local_id, None)
        self.callback(response)

    def cancel(self, reason: str = "") -> None:
        """End the watch (its callback gets a last ``canceled`` response)."""
        self._operate("cancel", reason)

    def pause(self) -> None:
        """Hold responses in the core's buffer."""
        self._operate("pause")

    def resume(self) -> None:
        """Deliver what is buffered, then go on."""
        self._operate("resume")

    def request_progress(self) -> None:
        """Ask for a progress notification."""
        self._operate("request_progress")

    def _operate(self, operation: str, *args) -> None:
        if not self.canceled:
            self._link.send(("wo", self.local_id, operation, args))


class FrontLink(BatchedLink):
    """The front's end of the link: calls out, answers, watch events, the
    replica's dump and apply stream, and the member's view in."""

    def __init__(self, clock, call_timeout: float) -> None:
        super().__init__(clock)
        self.call_timeout = call_timeout
        self.member_id = 0
        self.replica: KeyValueStore | None = None
        self.view: tuple | None = None
        self.ready: defer.Deferred = defer.Deferred()
        """Fires once the replica holds the first dump and the view came."""
        self.lost: defer.Deferred = defer.Deferred()
        """Fires once the link is gone."""
        self.watches: dict[int, RemoteWatch] = {}
        self._pending: OrderedDict[int, tuple[float, defer.Deferred]] = OrderedDict()
        self._ids = itertools.count(1)
        self._dump: list | None = None
        self._dump_header: tuple | None = None
        self._latest: tuple[int, list] | None = None
        """The index and results of the replica's latest apply."""
        self._connected = False

    # -- calls --------------------------------------------------------------------

    def call(self, name: str, *args) -> defer.Deferred:
        """Ask the core's facade to run ``name(*args)``; fires with its answer."""
        if not self._connected:
            return defer.fail(CoreUnavailable("this front has lost its member's core process"))
        call_id = next(self._ids)
        d: defer.Deferred = defer.Deferred()
        self._pending[call_id] = (self._clock.seconds() + self.call_timeout, d)
        self.send(("c", call_id, name, args))
        return d

    def expire_calls(self) -> None:
        """Fail the calls that waited longer than ``call_timeout``."""
        now = self._clock.seconds()
        while self._pending:
            call_id, (deadline, d) = next(iter(self._pending.items()))
            if deadline > now:
                break
            del self._pending[call_id]
            d.errback(CoreUnavailable(f"the member's core process did not answer within {self.call_timeout:g}s"))

    def store(self) -> KeyValueStore:
        """The replica, to read from; raises ``CoreUnavailable`` once the
        link is lost (the replica no longer follows the member)."""
        if not self._connected or self.replica is None:
            raise CoreUnavailable("this front has lost its member's core process")
        return self.replica

    def watch(self, arguments: tuple, callback: Callback) -> RemoteWatch:
        """Open a watch in the core; ``callback`` gets its responses."""
        watch = RemoteWatch(self, next(self._ids), callback)
        if not self._connected:
            raise CoreUnavailable("this front has lost its member's core process")
        self.watches[watch.local_id] = watch
        self.send(("w", watch.local_id, arguments))
        return watch

    # -- messages -----------------------------------------------------------------

    def link_made(self) -> None:
        """Say hello: the codec's schema must match the core's."""
        self._connected = True
        self.send(("hello", codec.SCHEMA))

    def message_received(self, message: tuple) -> None:
        """Apply, answer or deliver one message of the core."""
        kind = message[0]
        if kind == "a":
            self._latest = (message[1], self.replica.apply(message[1], message[2]))
        elif kind == "r":
            entry = self._pending.pop(message[1], None)
            if entry is not None:
                d = entry[1]
                d.callback(message[3]) if message[2] else d.errback(message[3])
        elif kind == "p":
            self._answer_by_position(*message[1:])
        elif kind == "e":
            watch = self.watches.get(message[1])
            if watch is not None:
                watch.deliver(message[2])
        elif kind == "v":
            self.view = message[1:]
            self._maybe_ready()
        elif kind == "d0":
            self._dump_header, self._dump = message[1], []
        elif kind == "d1":
            self._dump.extend(message[1])
        elif kind == "d2":
            self._restore()
        elif kind == "we":
            watch = self.watches.get(message[1])
            if not isinstance(message[2], AuthOldRevision):
                log.warn("the core refused a watch: {e}", e=message[2])
            if watch is not None:
                watch.deliver(WatchResponse(0, 0, created=True, canceled=True, cancel_reason=str(message[2])))
        elif kind == "welcome":
            self.member_id = message[1]
        else:
            log.error("dropping the link: unexpected message {kind!r} from the core", kind=kind)
            self.transport.loseConnection()

    def _answer_by_position(self, call_id: int, ok: bool, index: int, position: int) -> None:
        """A write's answer: the result at ``position`` of this replica's
        apply ``index``, the latest (the core sends it so only then)."""
        entry = self._pending.pop(call_id, None)
        if entry is None:
            return
        d = entry[1]
        latest = self._latest
        if latest is None or latest[0] != index:
            log.error("the core answered a write by the result of apply {i}, which this front does not hold", i=index)
            d.errback(codec.RemoteError(f"the result of apply {index} is not in this front's replica"))
            return
        result = latest[1][position]
        d.callback(result) if ok else d.errback(result)

    def _restore(self) -> None:
        state = self._dump_header
        engine = MemoryEngine()
        engine.restore(self._dump, state.revision, state.applied_index, state.cluster_state, state.compacted_revision,
                       state.physically_compacted_revision, state.leases)
        self._dump = self._dump_header = None
        self._latest = None
        self.replica = KeyValueStore(engine)
        self._maybe_ready()

    def _maybe_ready(self) -> None:
        if self.replica is not None and self.view is not None and not self.ready.called:
            self.ready.callback(self)

    def link_lost(self, reason) -> None:
        """Fail every pending call and end every watch; ``lost`` fires
        whatever a watch's callback raises (a front must never outlive
        its core)."""
        self._connected = False
        try:
            pending, self._pending = self._pending, OrderedDict()
            for _, d in pending.values():
                d.errback(CoreUnavailable("this front lost its member's core process"))
            watches, self.watches = self.watches, {}
            for watch in watches.values():
                try:
                    watch.deliver(WatchResponse(watch.id or 0, 0, canceled=True,
                                                cancel_reason="the member's core process is gone"))
                except Exception:
                    log.failure("a watch failed to end")
            if not self.ready.called:
                self.ready.errback(CoreUnavailable("the link to the core closed before the front was ready"))
        finally:
            self.lost.callback(None)

    def compact_replica(self) -> None:
        """Drop a bounded slice of the versions the replica's compaction hides."""
        if self.replica is None:
            return
        for _ in range(COMPACT_STEPS):
            if self.replica.compact_step():
                break


class RemoteFacade:
    """``MemberFacade``'s methods for the APIs of a front (see the module docstring)."""

    check = staticmethod(MemberFacade.check)
    is_read_only = staticmethod(MemberFacade.is_read_only)

    def __init__(self, link: FrontLink) -> None:
        self._link = link

    # -- identity and view ------------------------------------------------------

    @property
    def member_id(self) -> int:
        """This member's id."""
        return self._link.member_id

    def status(self) -> MemberStatus:
        """The member's status as the core last pushed it (at most a tick old)."""
        return self._link.view[0]

    @property
    def leader_id(self) -> int:
        """The leader the core knew of at its last push."""
        return self.status().leader

    @property
    def term(self) -> int:
        """The raft term at the core's last push."""
        return self.status().term

    def members(self) -> list:
        """Every member, as the core last pushed them."""
        return list(self._link.view[1])

    def alarms(self) -> list:
        """The raised alarms, as the core last pushed them."""
        return list(self._link.view[2])

    # -- auth: served here only while disabled; checked again in the core --------
    #
    # While auth is enabled a front forwards every request whole to the core
    # (``front.AuthGate``), so the checks below run only for requests that
    # arrived while the pushed view said auth was off.  Should auth have come
    # on since (the view is pushed at once on a change, in apply order), they
    # fail with etcd's "revision of auth store is old" and the client's retry
    # goes to the core: a write carries the auth revision it was let in at,
    # which the core's applier checks (``AuthInfo``), and a read barrier's
    # answer, which follows any auth change made before it, is checked too.

    def auth_state(self) -> AuthState:
        """Whether auth is enabled and its revision, as the core last
        pushed them (no users or roles); enabled before the first push."""
        view = self._link.view
        if view is None or len(view) < 7:
            return AuthState(enabled=True)
        return AuthState(enabled=bool(view[5]), revision=view[6])

    def _refuse_if_enabled(self) -> None:
        if self.auth_state().enabled:
            raise AuthOldRevision()

    def _let_in(self, auth: AuthInfo | None) -> AuthInfo:
        """What a proposal from here carries: the auth revision it was let
        in at while auth was off, so that the core's applier refuses it
        (``AuthOldRevision``) if auth was enabled before its entry."""
        return auth if auth is not None else AuthInfo("", self.auth_state().revision)

    def authorize(self, token, request) -> None:
        """Passes while auth is disabled (answering no ``AuthInfo``), as in
        the core; ``AuthOldRevision`` if it was enabled since the request came."""
        self._refuse_if_enabled()

    def auth_still_current(self, auth) -> None:
        """Nothing to check: ``authorize`` never answers an ``AuthInfo`` here."""

    def authorize_read(self, token, key: bytes, range_end: bytes) -> None:
        """Like ``authorize``."""
        self._refuse_if_enabled()

    def authorize_admin(self, token) -> None:
        """Like ``authorize``."""
        self._refuse_if_enabled()

    def authorize_user(self, token) -> None:
        """Like ``authorize``."""
        self._refuse_if_enabled()

    def track_watch(self, user, key: bytes, range_end: bytes, watch) -> None:
        """Nothing to track: no watch is created here while auth is enabled."""

    def authenticate(self, name: str, password: str) -> defer.Deferred:
        """Fails: "authentication is not enabled" (while it is, the core authenticates)."""
        return defer.fail(AuthOldRevision() if self.auth_state().enabled else AuthNotEnabled())

    def db_size(self) -> int:
        """The member's bytes on disk at the core's last push."""
        return self._link.view[3]

    @property
    def quota_bytes(self) -> int:
        """``--quota-backend-bytes``."""
        return self._link.view[4]

    def health(self) -> str:
        """Why the member cannot serve, or "" (from the pushed status)."""
        return "; ".join(self.health_problems())

    def health_problems(self) -> list[str]:
        """``MemberFacade.health_problems`` on the pushed status."""
        return health.problems(self.status(), health.HEALTH_CHECKS)

    def readiness_problems(self) -> list[str]:
        """``MemberFacade.readiness_problems`` on the pushed status."""
        return health.problems(self.status(), health.READY_CHECKS)

    # -- the keyspace: writes and barriers in the core, reads here --------------

    def propose(self, command, auth=None) -> defer.Deferred:
        """``MemberFacade.propose``, in the core, with the auth revision
        the request was let in at (see the auth section above)."""
        if auth is None:
            return self._link.call("propose_let_in", command, self.auth_state().revision)
        return self._link.call("propose", command, auth)

    def read(self, consistency: Consistency = Consistency.LINEARIZABLE) -> defer.Deferred:
        """``MemberFacade.read`` in the core; once it fires the replica
        holds everything the core had applied by then.  Fails with
        ``AuthOldRevision`` if auth was enabled meanwhile: the request was
        let in unchecked, and must be checked in the core now."""
        d = self._link.call("read", consistency)
        d.addCallback(self._still_open)
        return d

    def _still_open(self, value):
        self._refuse_if_enabled()
        return value

    def check_space(self, request) -> defer.Deferred:
        """``MemberFacade.check_space``: passes here while the pushed view
        (at most a tick old) has no alarm and the database within its
        quota, so a write costs no extra round trip; otherwise in the core
        (which raises NOSPACE through raft)."""
        view = self._link.view
        if not adds_data(request) or (view is not None and not view[2] and view[3] <= view[4]):
            return defer.succeed(None)
        return self._link.call("check_space", request)

    def get(self, key: bytes, revision: int = 0):
        """``MemberFacade.get`` from the replica."""
        return self._link.store().get(key, revision)

    def range_request(self, request):
        """``MemberFacade.range_request`` from the replica."""
        return self._link.store().range(request)

    def read_request(self, request):
        """``MemberFacade.read_request`` from the replica."""
        return self._link.store().read(request)

    def hash_kv(self, revision: int = 0) -> tuple[int, int]:
        """``MemberFacade.hash_kv`` from the replica (the same log, the same hash)."""
        return self._link.store().hash_kv(revision)

    @property
    def compacted_revision(self) -> int:
        """The revision history was compacted at (the replica's)."""
        return self._link.store().compacted_revision

    @property
    def revision(self) -> int:
        """The replica's current revision."""
        return self._link.store().revision

    def keyspace_hash(self) -> str:
        """``MemberFacade.keyspace_hash`` from the replica."""
        return self._link.store().keyspace_hash()

    def leases(self) -> list:
        """Every lease in the replica."""
        return self._link.store().leases()

    # -- leases, watches, members, snapshots: in the core -------------------------

    def lease_grant(self, ttl: int, id: int = 0, auth=None) -> defer.Deferred:
        """``MemberFacade.lease_grant``, in the core (``auth``: as for ``propose``)."""
        return self._link.call("lease_grant", ttl, id, self._let_in(auth))

    def lease_revoke(self, id: int, auth=None) -> defer.Deferred:
        """``MemberFacade.lease_revoke``, in the core (``auth``: as for ``propose``)."""
        return self._link.call("lease_revoke", id, self._let_in(auth))

    def lease_keepalive(self, id: int) -> defer.Deferred:
        """``MemberFacade.lease_keepalive``, in the core."""
        return self._link.call("lease_keepalive", id)

    def watch(self, key: bytes, range_end: bytes = b"", start_revision: int = 0,
              filters: tuple[WatchFilter, ...] = (), prev_kv: bool = False, progress_notify: bool = False,
              *, callback: Callback) -> RemoteWatch:
        """``MemberFacade.watch``, held by the core's watch hub; raises
        ``CoreUnavailable`` without a link."""
        return self._link.watch((key, range_end, start_revision, tuple(filters), prev_kv, progress_notify), callback)

    def add_member(self, member_id: int, peer_url: str, learner: bool = False) -> defer.Deferred:
        """``MemberFacade.add_member``; its ``MembershipError`` comes as a failure."""
        return self._link.call("add_member", member_id, peer_url, learner)

    def remove_member(self, member_id: int) -> defer.Deferred:
        """``MemberFacade.remove_member``; its ``MembershipError`` comes as a failure."""
        return self._link.call("remove_member", member_id)

    def promote_member(self, member_id: int) -> defer.Deferred:
        """``MemberFacade.promote_member``, in the core."""
        return self._link.call("promote_member", member_id)

    def update_member(self, member_id: int, peer_url: str) -> defer.Deferred:
        """``MemberFacade.update_member``, in the core."""
        return self._link.call("update_member", member_id, peer_url)

    def transfer_leadership(self, target: int, timeout: float | None = None) -> defer.Deferred:
        """``MemberFacade.transfer_leadership``, in the core."""
        return self._link.call("transfer_leadership", target, timeout)

    def set_alarm(self, member_id: int, alarm, active: bool) -> defer.Deferred:
        """``MemberFacade.set_alarm``, in the core."""
        return self._link.call("set_alarm", member_id, alarm, active)

    def take_snapshot(self) -> defer.Deferred:
        """``MemberFacade.take_snapshot``, in the core."""
        return self._link.call("take_snapshot")

    def snapshot_file(self) -> defer.Deferred:
        """``MemberFacade.snapshot_file``, in the core (the path is on this machine)."""
        return self._link.call("snapshot_file")

    def propose_raw(self, data: bytes, conf_change: bool = False) -> defer.Deferred:
        """``MemberFacade.propose_raw``, in the core."""
        return self._link.call("propose_raw", data, conf_change)

    def wait_physical(self, revision: int) -> defer.Deferred:
        """The core's ``CompactionService.wait_physical``."""
        return self._link.call("wait_physical", revision)


def housekeeping(link: FrontLink, clock) -> Callable[[], None]:
    """Start the front's periodic chores (expire calls, compact the
    replica); returns the function that stops them."""
    chores = task.LoopingCall(lambda: (link.expire_calls(), link.compact_replica()))
    chores.clock = clock
    chores.start(COMPACT_INTERVAL_SECONDS, now=False)
    return chores.stop
