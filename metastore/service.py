"""Assembling a member: storage, Raft, the node driver, and its listeners.

``open_member`` is what both ``twistd metastore`` and an embedding program
call.  It opens (and if needed creates) the member's storage before
anything listens, so a member that cannot start says why at once with a
``StartupError``.
"""

from __future__ import annotations

import functools
import math
import os
import random
from dataclasses import dataclass

import msgpack
from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.internet.error import CannotListenError

from metastore import raft
from metastore.api.admin import AdminAPI
from metastore.api.peer_status import PeerStatusClient
from metastore.api.fastpath import HotRoutes
from metastore.api.rest import RestAPI
from metastore.api.root import member_root
from metastore.api.site import MetaStoreSite
from metastore.api.v3.app import V3API
from metastore.auth.tokens import token_provider
from metastore.config import Config
from metastore.errors import StartupError, Stopping
from metastore.compacting import CompactionService
from metastore.diskworker import DiskWorker
from metastore.diskusage import DiskUsage
from metastore.facade import MemberFacade
from metastore.kv.dedup import RecentRequests
from metastore.kv.store import KeyValueStore
from metastore.listening import (
    MemberSecurity, client_endpoint, client_root, grpc_credentials, grpc_interceptors, grpc_options, member_security,
)
from metastore.leases import Lessor
from metastore.membership import Membership
from metastore.metrics import instrument
from metastore.node import Node
from metastore.snapshots.compaction import Compaction
from metastore.snapshots.recovery import RecoveredLog, align_wal, recover, recover_durable_engine
from metastore.snapshots.snapshotter import SnapshotPolicy, Snapshotter
from metastore.snapshots.format import SnapshotCorruptionError, SnapshotDirectory
from metastore.snapshots.restore import seed_from_snapshot
from metastore.storage.errors import WALCorruptionError, WALError, WALLockedError
from metastore.storage.memory import MemoryEngine
from metastore.storage.rocksdb import EngineOpenError, RocksDBEngine, rocksdb_layout
from metastore.storage.wal import WAL, WALState
from metastore.transport import PeerTransport, cluster_id_from_token
from metastore.watch import WatchHub


def listen_error(what: str, e: BaseException) -> StartupError:
    """A ``StartupError`` that says in one line why ``what`` cannot listen."""
    if isinstance(e, CannotListenError):
        reason = getattr(e.socketError, "strerror", None) or e.socketError
        return StartupError(f"cannot listen for {what} on {e.interface or '*'}:{e.port}: {reason}")
    return StartupError(f"cannot listen for {what}: {e}")


class ListenerService(service.Service):
    """Listens on a server endpoint while running; ``listening`` fires with
    the ``IListeningPort`` (useful with port 0), or fails with a
    ``StartupError`` saying why the address cannot be used."""

    def __init__(self, endpoint, factory, what: str = "HTTP") -> None:
        self.endpoint = endpoint
        self.factory = factory
        self.what = what
        self.port = None
        self.listening: defer.Deferred = defer.Deferred()

    def privilegedStartService(self) -> None:
        """Listen now (twistd calls this before starting services); raises
        ``StartupError`` at once when the address cannot be used."""
        super().privilegedStartService()
        self.bind()

    def bind(self) -> None:
        """Listen now, before the service starts; raises ``StartupError``
        at once when the address cannot be used (port in use, bad host)."""
        if self.port is not None:
            return
        errors: list[StartupError] = []
        self._listen(errors.append)
        if errors:
            raise errors[0]

    def startService(self) -> None:
        """Start listening (unless ``bind`` already did); a failure to bind
        fails ``listening``."""
        super().startService()
        if self.port is None:
            self._listen(self.listening.errback)

    def _listen(self, report) -> None:
        def listened(port):
            self.port = port
            self.listening.callback(port)

        def failed(failure):
            report(listen_error(self.what, failure.value))

        self.endpoint.listen(self.factory).addCallbacks(listened, failed)

    def stopService(self):
        """Stop listening."""
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()


log = Logger()

HANDOVER_SECONDS = 2.0
"""How long a stopping leader waits for another member to take over."""


class MemberService(service.MultiService):
    """One MetaStore member as a Twisted service: add it to an application
    (``setServiceParent``) to run it inside another program.

    ``removed`` fires once the member has applied its own removal from the
    cluster and stopped itself."""

    metrics = None
    """The member's ``metastore.metrics.MemberMetrics`` (its registry), None with metrics off."""

    def __init__(
        self,
        config: Config,
        node: Node,
        transport: PeerTransport,
        http: ListenerService,
        api: MemberFacade,
        history_compaction: CompactionService,
        grpc=None,
        security: MemberSecurity | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.security = security if security is not None else MemberSecurity()
        """The member's TLS identities (``reload()`` them after replacing the files)."""
        self.node = node
        self.api = api
        """What the APIs see of this member (``metastore.facade``)."""
        self.transport = transport
        self.http = http
        self.history_compaction = history_compaction
        """Compacts the MVCC history (``metastore.compacting``)."""
        self.grpc = grpc
        """The ``GrpcService`` when --grpc-port is given, else None."""
        self.fronts = None
        """The ``FrontSupervisor`` with --workers, else None."""
        self.removed: defer.Deferred = defer.Deferred()
        self._leaving = False
        # Started in this order, stopped in reverse: the node answers no
        # request after the API stops, and sends nothing after the transport;
        # history compaction stops before the node closes the engine.
        transport.setServiceParent(self)
        node.setServiceParent(self)
        history_compaction.setServiceParent(self)
        http.setServiceParent(self)
        if grpc is not None:
            grpc.setServiceParent(self)
        node.on_removed = self._on_removed
        http.listening.addCallback(self._publish_client_url)
        if grpc is not None:
            grpc.listening.addCallback(self._publish_grpc_url)

    def privilegedStartService(self) -> None:
        """Bind the peer and HTTP ports; raises ``StartupError`` when either
        cannot be used."""
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            raise listen_error("peers", e) from None

    def ready(self) -> defer.Deferred:
        """A Deferred that fires (with this member's id) once the member
        knows a leader and has applied every entry known committed at that
        moment, so a proposal or a linearizable read made then can succeed;
        fails with ``Stopping`` if the member stops first.  Call it after
        starting the member."""
        d: defer.Deferred = defer.Deferred()
        node, target = self.node, [None]

        def check() -> None:
            if not node.running:
                poll.stop()
                d.errback(Stopping("the member stopped before it was ready"))
                return
            status = self.api.status()
            if status.leader != 0 and target[0] is None:
                target[0] = status.commit_index
            if target[0] is not None and status.applied_index >= target[0] and not d.called:
                poll.stop()
                d.callback(status.member_id)

        poll = task.LoopingCall(check)
        poll.clock = node.reactor
        poll.start(self.config.tick_ms / 1000, now=True)
        return d

    def stopService(self):
        """Stop the member; a leader first hands leadership to the most
        up-to-date voter (bounded by ``HANDOVER_SECONDS``), so that the
        cluster need not wait out an election timeout."""
        d = self.api.hand_over_leadership(HANDOVER_SECONDS) if self.running else defer.succeed(None)
        d.addCallback(lambda leader: leader and log.info("handed leadership to member {id} before stopping", id=leader))
        d.addErrback(lambda f: log.info("leadership was not handed over before stopping: {e}", e=f.value))
        d.addCallback(lambda _: super(MemberService, self).stopService())
        return d

    def _publish_client_url(self, port):
        address = port.getHost()
        self.node.membership.client_url = f"{self.security.client_scheme}://{address.host}:{address.port}"
        return port

    def _publish_grpc_url(self, port: int) -> int:
        self.node.membership.grpc_url = f"{self.security.client_scheme}://{self.grpc.host}:{port}"
        return port

    def _on_removed(self) -> None:
        # The node says so after every cycle that ends removed, and a peer
        # may say so too: stop, and fire ``removed``, once.
        if self._leaving:
            return
        self._leaving = True
        d = defer.maybeDeferred(self.stopService)
        d.addBoth(lambda _: self.removed.callback(self.node.member_id))


def _wal_metadata(config: Config) -> bytes:
    return msgpack.packb({"member_id": config.member_id, "cluster_token": config.cluster_token})


def _open_wal(config: Config, wal_dir: str, fsync) -> tuple[WAL, WALState]:
    try:
        wal, state = WAL.open(
            wal_dir, metadata=_wal_metadata(config), segment_bytes=config.wal_segment_bytes, fsync=fsync
        )
    except (WALCorruptionError, WALLockedError) as e:
        raise StartupError(str(e)) from None
    except WALError as e:
        raise StartupError(f"cannot use data directory {config.data_dir!r}: {e}") from None
    except OSError as e:
        raise StartupError(
            f"cannot use data directory {config.data_dir!r}: {e.strerror or e} ({e.filename or wal_dir})"
        ) from None
    if state.metadata:
        found = msgpack.unpackb(state.metadata)
        if found.get("member_id") != config.member_id or found.get("cluster_token") != config.cluster_token:
            wal.close()
            raise StartupError(
                f"{wal_dir} belongs to member {found.get('member_id')} of cluster "
                f"{found.get('cluster_token')!r}, not member {config.member_id} of {config.cluster_token!r}"
            )
    return wal, state


def _raft_storage(recovered: RecoveredLog) -> raft.MemoryStorage:
    storage = raft.MemoryStorage()
    if recovered.snapshot is not None:
        storage.apply_snapshot(raft.Snapshot(metadata=recovered.snapshot))
    if not recovered.hard_state.is_empty():
        storage.set_hard_state(recovered.hard_state)
    if recovered.entries:
        storage.append(recovered.entries)
    return storage


def _open_snapshots(snap_dir: str, max_snapshots: int, fsync) -> SnapshotDirectory:
    try:
        return SnapshotDirectory(snap_dir, max_snapshots, fsync)
    except OSError as e:
        raise StartupError(f"cannot use snapshot directory {snap_dir!r}: {e.strerror or e}") from None


def _seed(config: Config, wal: WAL, state: WALState, snapshots: SnapshotDirectory, snap_dir: str, fsync) -> None:
    """``--restore-from``: start this new member from a saved snapshot (the
    file in the snapshot directory, its marker in the WAL, durable)."""
    if not state.hard_state.is_empty() or state.entries or snapshots.snapshots():
        raise StartupError(
            f"--restore-from needs a new data directory, but {config.data_dir!r} already holds this member's "
            "data (start it without --restore-from to keep it)"
        )
    try:
        header = seed_from_snapshot(config.restore_from, snap_dir, config.cluster, fsync)
    except (SnapshotCorruptionError, OSError) as e:
        raise StartupError(f"--restore-from {config.restore_from!r}: {e}") from None
    conf = raft.ConfState(voters=header.cluster_state.voters)
    wal.save_snapshot(raft.SnapshotMetadata(header.index, header.term, conf))
    wal.sync()


def restore_data_dir(config: Config, fsync=os.fsync) -> None:
    """Seed a new member's empty data directory from ``config.restore_from``
    exactly as ``--restore-from`` does at start, without starting it
    (``metastorectl snapshot restore``); the member then starts with the
    same flags minus ``--restore-from``.  Raises ``StartupError``."""
    paths = _paths(config)
    wal, state = _open_wal(config, paths.wal, fsync)
    try:
        snapshots = _open_snapshots(paths.snap, config.max_snapshots, fsync)
        _seed(config, wal, state, snapshots, paths.snap, fsync)
    finally:
        wal.close()


@dataclass(frozen=True, slots=True)
class _Paths:
    wal: str
    snap: str


def _paths(config: Config) -> _Paths:
    if config.storage == "rocksdb":
        layout = rocksdb_layout(config.data_dir, config.member_id)
        return _Paths(layout.wal, layout.snap)
    return _Paths(config.wal_dir, config.snap_dir)


def _open_engine(config: Config):
    """The storage engine and how a restart recovers it."""
    if config.storage == "memory":
        return MemoryEngine(), recover
    path = rocksdb_layout(config.data_dir, config.member_id).db
    try:
        engine = RocksDBEngine.open(
            path, block_cache_bytes=config.rocksdb_block_cache_bytes, write_buffer_bytes=config.rocksdb_write_buffer_bytes,
            newest_cache_bytes=config.rocksdb_newest_cache_bytes,
        )
    except EngineOpenError as e:
        raise StartupError(str(e)) from None
    return engine, recover_durable_engine


def open_node(config: Config, reactor, *, run_blocking=None, fsync=os.fsync, snapshot_run_blocking=None,
              rng: random.Random | None = None) -> Node:
    """Open the member's storage (recovering it) and wire the driver and
    its collaborators, without a transport or listeners.  Raises
    ``StartupError``.

    ``run_blocking`` replaces the fsync thread, ``snapshot_run_blocking``
    the snapshot thread, ``fsync`` the WAL's and snapshots' fsync and ``rng``
    raft's randomness (tests and simulations inject them; keep the defaults
    in production)."""
    paths = _paths(config)
    wal, state = _open_wal(config, paths.wal, fsync)
    engine = None
    try:
        snapshots = _open_snapshots(paths.snap, config.max_snapshots, fsync)
        if config.restore_from:
            _seed(config, wal, state, snapshots, paths.snap, fsync)
        engine, recover_engine = _open_engine(config)
        recovered = recover_engine(state, snapshots, engine, paths.wal)
        align_wal(wal, state, recovered)
    except BaseException:
        wal.close()
        if engine is not None:
            engine.close()
        raise
    storage = _raft_storage(recovered)
    fresh = state.hard_state.is_empty() and not state.entries and recovered.snapshot is None
    rawnode = raft.RawNode(
        raft.Config(
            id=config.member_id,
            election_tick=config.election_ticks,
            heartbeat_tick=config.heartbeat_ticks,
            storage=storage,
            applied=recovered.applied_index,
            # The membership as applied at that index (the engine's or the
            # snapshot's record): the applier may have skipped changes raft
            # alone would apply.
            applied_conf_state=None if recovered.snapshot is None else recovered.snapshot.conf_state,
            rng=rng if rng is not None else random.Random(),
        )
    )
    if fresh and not config.join:
        rawnode.bootstrap(list(range(1, len(config.cluster) + 1)))
    store = KeyValueStore(engine)
    membership = Membership(
        config.member_id, {i: url for i, url in enumerate(config.cluster, start=1)}, engine.cluster_state
    )
    membership.strict_reconfig_check = config.strict_reconfig_check
    disk = DiskWorker(reactor, wal, run_blocking)
    compaction = Compaction(
        snapshotter=Snapshotter(
            reactor,
            snapshots,
            SnapshotPolicy(config.snapshot_count, config.snapshot_catchup_entries),
            snapshot_index=recovered.applied_index,
            fsync=fsync,
            run_blocking=snapshot_run_blocking,
        ),
        raft_storage=storage,
        wal=wal,
        store=store,
        membership=membership,
        recent_requests=RecentRequests(entries=engine.cluster_state.requests if engine.cluster_state else ()),
        conf_state=rawnode.applied_conf_state,
        sync_wal=disk.sync_wal,
        run_blocking=disk.run,
    )
    return Node(
        member_id=config.member_id,
        reactor=reactor,
        rawnode=rawnode,
        raft_storage=storage,
        wal=wal,
        store=store,
        membership=membership,
        compaction=compaction,
        disk=disk,
        tick_seconds=config.tick_ms / 1000,
        election_ticks=config.election_ticks,
        request_timeout=config.request_timeout,
    )


def open_member(config: Config, reactor, *, run_blocking=None, fsync=os.fsync,
                raw_proposals: bool = False, snapshot_run_blocking=None) -> MemberService:
    """Open the member's storage and wire its parts; nothing runs until the
    returned service is started.  Raises ``StartupError``.

    ``fsync`` is the WAL's fault-injection hook (tests make it fail) and
    ``raw_proposals`` turns on the test-only raw proposal route
    (``metastore.faults``); ``run_blocking`` and ``snapshot_run_blocking``
    replace the fsync and snapshot threads (``open_node``); keep the
    defaults in production."""
    security = member_security(config)
    grpc = _grpc_service(config, reactor, security)
    node = open_node(config, reactor, run_blocking=run_blocking, fsync=fsync, snapshot_run_blocking=snapshot_run_blocking)
    membership = node.membership
    transport = PeerTransport(
        reactor,
        config.member_id,
        cluster_id_from_token(config.cluster_token),
        config.cluster[config.member_id - 1],
        on_messages=node.receive,
        report_unreachable=node.report_unreachable,
        is_member=membership.accepts_peer,
        was_removed=membership.was_removed,
        on_removed=node.removed_by_peer,
        snapshot_directory=node.compaction.snapshotter.directory,
        secret=security.peer_secret,
        tls=security.peer,
    )
    node.transport = membership.transport = transport
    history_compaction = CompactionService(reactor, node, config.auto_compaction_policy())
    lessor = Lessor(
        node.store, functools.partial(node.requests.propose, again=False), reactor, lambda: node.is_leader,
        min_ttl=math.ceil(1.5 * config.election_ticks * config.tick_ms / 1000),
        check_interval=config.tick_ms / 1000,
        checkpoint_interval=config.lease_checkpoint_interval,
    )  # fmt: skip
    watch_hub = WatchHub(node.store, reactor, progress_interval=config.watch_progress_interval)
    api = MemberFacade(
        node, config.storage, DiskUsage(config.data_dir, reactor), config.quota_backend_bytes,
        lessor=lessor, watch_hub=watch_hub,
        auth_tokens=token_provider(config.auth_token, reactor, config.auth_token_ttl),
    )
    rest = RestAPI(api, reactor)
    admin = AdminAPI(api, PeerStatusClient(reactor), rest.members, raw_proposals).app.resource()
    v3 = V3API(api, cluster_id_from_token(config.cluster_token), history_compaction.wait_physical,
               max_request_bytes=config.max_request_bytes, max_watchers_per_stream=config.max_watchers_per_stream)
    metrics = instrument(node, api) if config.metrics else None
    tree = member_root(rest.app.resource(), admin, v3.app.resource(), metrics=metrics and metrics.resource())
    root = client_root(config, reactor, tree)
    # The hot routes answer before the resource tree, so a per-client rate limit (in the tree) turns them off.
    hot_routes = None if config.client_request_rate else HotRoutes(api, v3)
    site = MetaStoreSite(root, config.max_request_bytes, reactor=reactor, header_timeout=config.header_timeout,
                         hot_routes=hot_routes)
    if metrics is not None:
        site.request_observer = metrics.request_durations(tree.is_mounted)
    if grpc is not None:
        grpc.registrations = _grpc_servicers(api, reactor, config, history_compaction)
    if config.workers:
        from metastore.workers.supervisor import PortClaim

        http = PortClaim(config.listen_host, config.port)
    else:
        http = ListenerService(client_endpoint(config, reactor, security), site)
    member = MemberService(config, node, transport, http, api, history_compaction, grpc, security)
    member.metrics = metrics
    lessor.setServiceParent(member)
    watch_hub.setServiceParent(member)
    if config.workers:
        from metastore.workers.supervisor import add_fronts

        member.fronts = add_fronts(member, config, reactor, api, site, history_compaction.wait_physical,
                                   lambda: node.compaction.restoring)
    return member


def _grpc_servicers(api: MemberFacade, reactor, config: Config, history_compaction: CompactionService):
    """The registrations of every gRPC service over ``api``."""
    from metastore.api.grpc.member import ServedMember
    from metastore.api.grpc.services import registrations

    served = ServedMember(
        api, reactor, cluster_id_from_token(config.cluster_token), history_compaction.wait_physical,
        config.max_request_bytes, config.max_watchers_per_stream,
    )  # fmt: skip
    return tuple(registrations(served))


def _grpc_service(config: Config, reactor, security: MemberSecurity):
    """The gRPC listener when --grpc-port is given; ``StartupError`` when
    the reactor cannot run it.  Imported only then: grpc starts threads."""
    if config.grpc_port is None:
        return None
    from metastore.api.grpc.server import GrpcService, WrongReactor, asyncio_loop

    try:
        asyncio_loop(reactor)
    except WrongReactor as e:
        raise StartupError(f"--grpc-port: {e}") from None
    return GrpcService(reactor, config.listen_host, config.grpc_port, max_request_bytes=config.max_request_bytes,
                       options=grpc_options(config), credentials=grpc_credentials(security),
                       interceptors=grpc_interceptors(config, reactor))
