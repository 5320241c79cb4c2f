"""The core's end of the worker link: what a front may ask of the member.

Each connected front gets, in this order on one ordered link:

1. a dump of the key-value store (``("d0", ...)``, ``("d1", events)``...,
   ``("d2",)``), from which it builds a read-only replica;
2. from then on every apply of the store, as the commands applied
   (``("a", index, commands)``), which the front applies to its replica
   in the same order; a store replaced wholesale (a snapshot installed
   from the leader) is sent as a new dump instead;
3. answers to its calls (``("r", call id, ok, value or error)``), events of
   its watches (``("e", watch id, WatchResponse)``) and, every tick and at
   once when the auth state changes, the member's view (``("v",
   MemberStatus, members, alarms, db size, quota, auth enabled, auth
   revision)``).

Because an answer is queued after every apply that happened before it, a
front that receives the answer to a write (fired once applied here) or to
a read barrier already holds that state in its replica: an acknowledged
write is read back on any front, and a linearizable read on a front is as
fresh as one on the core.
"""

from __future__ import annotations

import inspect
from typing import Callable, Sequence

from twisted.internet import defer, protocol, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from metastore.auth.errors import AuthOldRevision
from metastore.auth.messages import AuthInfo
from metastore.facade import MemberFacade, Restoring
from metastore.kv.store import KeyValueStore
from metastore.workers import codec
from metastore.workers.link import BatchedLink

log = Logger()

DUMP_CHUNK_BYTES = 1 * 2**20
"""About this many bytes of key versions per dump message."""

FACADE_CALLS = (
    "propose", "read", "check_space", "lease_grant", "lease_revoke", "lease_keepalive", "lease_time_to_live",
    "add_member", "remove_member", "promote_member", "update_member", "transfer_leadership",
    "hand_over_leadership", "set_alarm", "take_snapshot", "snapshot_file", "propose_raw", "next_member_id",
)
"""The facade methods a front may call by name (its replica answers the other reads)."""
WATCH_OPERATIONS = ("cancel", "pause", "resume", "request_progress")
PROPOSALS = ("propose", "propose_let_in")
"""The calls whose answer may go by position (``ApplyFanout.position``)."""


class ApplyFanout:
    """Feeds every connected front the commands the store applies (packed
    once for all of them), remembers the results of the latest apply so an
    answer that is one of them can go by position, and notices when the
    store was replaced (its applied index moved without an apply) so that
    the fronts get a new dump."""

    def __init__(self, store: KeyValueStore, restoring: Callable[[], bool]) -> None:
        self._store = store
        self.restoring = restoring
        """Whether a snapshot from the leader is replacing the store now."""
        self.links: list[FrontConnection] = []
        self._last_index = store.applied_index
        self._latest: tuple[int, dict[int, int], Sequence] | None = None
        store.command_listeners.append(self._applied)

    def _applied(self, previous_index: int, index: int, commands, results) -> None:
        if previous_index != self._last_index:
            self._latest = None
            self._resync()
        else:
            # The results are kept so that their ids stay theirs while
            # ``position`` may compare with them.
            self._latest = (index, {id(r): k for k, r in enumerate(results) if r is not None}, results)
            if self.links:
                message = codec.pack(("a", index, commands))
                for link in self.links:
                    link.send_packed(message)
        self._last_index = index

    def position(self, value) -> tuple[int, int] | None:
        """``(index, position)`` when ``value`` is (this very object) a
        result of the latest apply, which every front applied itself and
        so holds the same result at that position; else None."""
        latest = self._latest
        if latest is None:
            return None
        k = latest[1].get(id(value))
        if k is None or latest[2][k] is not value:
            return None
        return latest[0], k

    def check(self) -> None:
        """Before answering a read: if the store was replaced since the last
        apply, send every front a new dump first."""
        if self._store.applied_index != self._last_index and not self.restoring():
            self._latest = None
            self._resync()
            self._last_index = self._store.applied_index

    def _resync(self) -> None:
        log.info("the store was replaced: sending the fronts a new dump")
        for link in self.links:
            link.send_dump()


class FrontConnection(BatchedLink):
    """The core's side of one front's link (see the module docstring)."""

    def __init__(self, factory: "CoreLinkFactory") -> None:
        super().__init__(factory.clock)
        self._factory = factory
        self._watches: dict[int, object] = {}
        self._greeted = False

    def message_received(self, message: tuple) -> None:
        """Serve one message of the front."""
        kind = message[0]
        if not self._greeted:
            if kind == "hello":
                self._hello(message[1])
                return
            kind = "before hello: " + str(kind)
        if kind == "c":
            self._call(message[1], message[2], message[3])
        elif kind == "w":
            self._watch(message[1], message[2])
        elif kind == "listening":
            self._factory.front_listening()
        elif kind == "wo":
            watch = self._watches.get(message[1])
            if watch is not None and message[2] in WATCH_OPERATIONS:
                getattr(watch, message[2])(*message[3])
        else:
            log.error("dropping a worker link: unexpected message {kind!r}", kind=kind)
            self.transport.loseConnection()

    def _hello(self, schema: str) -> None:
        if schema != codec.SCHEMA:
            log.error("a front of another version connected (schema {s}); dropping it", s=schema)
            self.transport.loseConnection()
            return
        self._greeted = True
        factory = self._factory
        self.send(("welcome", factory.facade.member_id))
        self.send_dump()
        factory.fanout.links.append(self)
        self.send_view()

    def send_dump(self) -> None:
        """Send the whole store as it is now (its history back to the
        compacted revision and its leases), a chunk per message."""
        state, items = self._factory.store.dump()
        self.send(("d0", state))
        chunk: list = []
        size = 0
        for event in items:
            chunk.append(event)
            size += len(event.kv.key) + len(event.kv.value) + 32
            if size >= DUMP_CHUNK_BYTES:
                self.send(("d1", chunk))
                self.flush()
                chunk, size = [], 0
        self.send(("d1", chunk))
        self.send(("d2",))

    def send_view(self) -> None:
        """Send the member's status, members, alarms and size as of now."""
        facade = self._factory.facade
        auth = facade.auth_state()
        self.send(("v", facade.status(), tuple(facade.members()), tuple(facade.alarms()),
                   facade.db_size(), facade.quota_bytes, auth.enabled, auth.revision))

    def _call(self, call_id: int, name: str, args: tuple) -> None:
        method = self._factory.calls.get(name)
        if method is None:
            self.send(("r", call_id, False, codec.RemoteError(f"no such call: {name!r}")))
            return
        if name == "read":
            self._factory.fanout.check()
        try:
            result = method(*args)
        except Exception:
            self._answer(call_id, name, False, Failure())
            return
        if inspect.iscoroutine(result):
            result = defer.ensureDeferred(result)
        if isinstance(result, defer.Deferred):
            result.addCallbacks(lambda value: self._answer(call_id, name, True, value),
                                lambda failure: self._answer(call_id, name, False, failure))
        else:
            self._answer(call_id, name, True, result)

    def _answer(self, call_id: int, name: str, ok: bool, value) -> None:
        if not ok:
            error = value.value
            if not codec.carries(error):
                log.failure("a front's {name} call failed unexpectedly", value, name=name)
            value = error
        if name in PROPOSALS:
            position = self._factory.fanout.position(value)
            if position is not None:
                # The front applied this very command and holds its result.
                self.send(("p", call_id, ok, *position))
                return
        elif name == "read":
            if self._factory.fanout.restoring():
                # The store is being replaced: the front's replica cannot
                # be brought up to date yet, so it must not read.
                ok, value = False, Restoring("this member is installing a snapshot; retry")
            else:
                self._factory.fanout.check()
        self.send(("r", call_id, ok, value))

    def _watch(self, watch_id: int, arguments: tuple) -> None:
        key, range_end, start_revision, filters, prev_kv, progress_notify = arguments
        if self._factory.facade.auth_state().enabled:
            # The front opened it unchecked, its view of auth not yet updated:
            # refused, the client's retry goes to the core and is checked there.
            self.send(("we", watch_id, AuthOldRevision()))
            return

        def deliver(response) -> None:
            self.send(("e", watch_id, response))
            if response.canceled:
                self._watches.pop(watch_id, None)

        try:
            watch = self._factory.facade.watch(
                key, range_end, start_revision, filters, prev_kv, progress_notify, callback=deliver
            )
        except Exception as e:
            self.send(("we", watch_id, e))
            return
        if not getattr(watch, "canceled", False):
            self._watches[watch_id] = watch

    def link_lost(self, reason) -> None:
        """End the front's watches and stop feeding it."""
        links = self._factory.fanout.links
        if self in links:
            links.remove(self)
        watches, self._watches = self._watches, {}
        for watch in watches.values():
            watch.cancel()


class CoreLinkFactory(protocol.ServerFactory):
    """Accepts fronts on the core's link socket and serves them
    ``facade`` (calls, watches) and ``store`` (dump and apply stream);
    pushes the member's view every ``view_interval`` seconds and after
    each auth change."""

    noisy = False

    def __init__(self, facade: MemberFacade, store: KeyValueStore, clock, *,
                 wait_physical: Callable[[int], defer.Deferred],
                 restoring: Callable[[], bool] = lambda: False,
                 view_interval: float = 0.1) -> None:
        self.facade = facade
        self.store = store
        self.clock = clock
        self.fanout = ApplyFanout(store, restoring)
        self.calls: dict[str, Callable] = {name: getattr(facade, name) for name in FACADE_CALLS}
        self.calls["wait_physical"] = wait_physical
        # A write a front let in while auth was off, at auth_revision (an int
        # crosses the link for about 2.5 µs less than an AuthInfo).
        self.calls["propose_let_in"] = lambda command, auth_revision: facade.propose(
            command, AuthInfo("", auth_revision))
        self.on_front_listening: Callable[[], None] = lambda: None
        """Called each time a front says it listens on the client port."""
        self._view = task.LoopingCall(self._push_view)
        self._view.clock = clock
        self._view_interval = view_interval
        # An auth change reaches the fronts at once, in apply order: an
        # answer the core sends after it finds the front's view updated.
        facade.auth_listeners.append(self._push_view)

    def front_listening(self) -> None:
        """A front listens on the client port now."""
        self.on_front_listening()

    def buildProtocol(self, addr) -> FrontConnection:
        """A connection from a front."""
        return FrontConnection(self)

    def startFactory(self) -> None:
        """Start pushing the view."""
        if not self._view.running:
            self._view.start(self._view_interval, now=False)

    def stopFactory(self) -> None:
        """Stop pushing the view."""
        if self._view.running:
            self._view.stop()

    def _push_view(self) -> None:
        for link in self.fanout.links:
            try:
                link.send_view()
            except Exception:
                log.failure("could not send the member's view to a front")
