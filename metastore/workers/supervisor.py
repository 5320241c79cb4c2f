"""The core's side of ``--workers N``: its sockets, its claim on the client
port, and the front processes it starts, restarts and stops."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import signal
import socket
import sys
import time

from twisted.application import service
from twisted.internet import defer, protocol
from twisted.internet.address import IPv4Address
from twisted.internet.error import ProcessExitedAlready
from twisted.logger import Logger

from metastore.errors import StartupError
from metastore.workers.front import FrontSettings

log = Logger()

RESTART_DELAY_SECONDS = 1.0
"""A front that died is started again after this long."""
STOP_GRACE_SECONDS = 5.0
"""A front that does not exit this long after SIGTERM is killed."""
RELEASE_WAIT_SECONDS = 3.0
"""How long a starting core waits for its client port to be released."""
ORPHAN_EXIT_SECONDS = 5.0
"""How long a starting core waits for the fronts its killed predecessor
left to be gone once it killed them."""
MAX_SOCKET_PATH = 100
"""Unix socket paths longer than this (the limit is 107 bytes) go to
Linux's abstract namespace instead of the data directory."""


def socket_address(data_dir: str, member_id: int, name: str) -> str:
    """The address of the core's socket ``name`` (``link`` or ``http``):
    a file in the data directory, or an abstract name derived from it when
    the path would be too long."""
    path = os.path.join(os.path.abspath(data_dir), f"metastore-{member_id}-{name}.sock")
    if len(path.encode()) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(path.encode()).hexdigest()[:24]
    return f"\0metastore-{digest}"


def remove_stale_socket(address: str) -> None:
    """Remove a socket file left by a core that did not stop cleanly."""
    if not address.startswith("\0") and os.path.exists(address):
        os.unlink(address)


def _front_processes(link_address: str) -> list[int]:
    """The ids of the live front processes (on this machine, by their
    command line) whose core's link is ``link_address``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rpartition(b")")[2].split()[0]
        except (OSError, IndexError):
            continue  # gone meanwhile, or not ours to read
        if state == b"Z" or b"metastore.workers.front" not in argv[:-1]:
            continue
        try:
            settings = FrontSettings.from_json(argv[argv.index(b"metastore.workers.front") + 1].decode())
        except (ValueError, TypeError):
            continue
        if settings.link == link_address:
            found.append(int(entry))
    return found


def stop_orphan_fronts(link_address: str) -> int:
    """Kill the fronts a previous core of this data directory left behind
    and wait (at most ``ORPHAN_EXIT_SECONDS``) until they are gone; how
    many there were.  A front outlives a killed core by a second or more
    (longer on a loaded machine), holding the client port the new core
    must claim.  Call it only while holding the data directory's WAL
    lock: then no live core serves these fronts."""
    orphans = _front_processes(link_address)
    count = len(orphans)
    for pid in orphans:
        log.warn("killing front process {pid}, left by this member's previous core", pid=pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + ORPHAN_EXIT_SECONDS
    while orphans and time.monotonic() < deadline:
        live = set(_front_processes(link_address))
        orphans = [pid for pid in orphans if pid in live]
        if orphans:
            time.sleep(0.02)
    return count


class _ClaimedPort:
    """What ``ListenerService.listening`` gives: ``getHost()``."""

    def __init__(self, host: str, port: int) -> None:
        self._address = IPv4Address("TCP", host, port)

    def getHost(self) -> IPv4Address:
        """The claimed address."""
        return self._address


class PortClaim(service.Service):
    """Binds the client port with ``SO_REUSEPORT`` without listening, for
    as long as the core runs: a port in use by anything else is a
    ``StartupError`` at once, port 0 picks the port the fronts then share,
    and no connection is ever queued on this socket (only the fronts
    listen).  ``listening`` fires with an object whose ``getHost()`` is the
    address, like ``metastore.service.ListenerService``'s."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self._socket: socket.socket | None = None
        self.listening: defer.Deferred = defer.Deferred()

    def privilegedStartService(self) -> None:
        """Claim the port now; raises ``StartupError`` when it is in use."""
        super().privilegedStartService()
        self.bind()

    def bind(self) -> None:
        """Claim the port (once)."""
        if self._socket is not None:
            return
        if self.requested_port:
            self._check_free()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.host, self.requested_port))
        except OSError as e:
            sock.close()
            raise StartupError(f"cannot listen for HTTP on {self.host}:{self.requested_port}: {e.strerror}") from None
        self._socket = sock
        self.port = sock.getsockname()[1]
        self.listening.callback(_ClaimedPort(self.host, self.port))

    def _check_free(self) -> None:
        """Refuse a port another process uses, with ``SO_REUSEPORT`` or
        not (another member's fronts would otherwise share it silently).
        Waits up to ``RELEASE_WAIT_SECONDS`` for it: the fronts of this
        member's previous, killed core release it within about a second."""
        deadline = time.monotonic() + RELEASE_WAIT_SECONDS
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((self.host, self.requested_port))
                    return
                except OSError as e:
                    if e.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                        raise StartupError(
                            f"cannot listen for HTTP on {self.host}:{self.requested_port}: {e.strerror}") from None
            time.sleep(0.1)

    def startService(self) -> None:
        """Claim the port unless ``privilegedStartService`` did."""
        super().startService()
        if self._socket is None:
            try:
                self.bind()
            except StartupError as e:
                self.listening.errback(e)

    def stopService(self):
        """Release the port."""
        super().stopService()
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _front_environment() -> dict:
    """This process's environment, with the directory this ``metastore``
    was imported from first on the path: a front runs the core's code."""
    import metastore

    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(metastore.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


class _FrontProcess(protocol.ProcessProtocol):
    """One front: its output goes to the core's log; its end is reported."""

    def __init__(self, supervisor: "FrontSupervisor", number: int) -> None:
        self.supervisor = supervisor
        self.number = number
        self.ended: defer.Deferred = defer.Deferred()
        self._partial = b""

    def outReceived(self, data: bytes) -> None:
        self.errReceived(data)

    def errReceived(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            log.info("front {n}: {line}", n=self.number, line=line.decode("utf-8", "replace"))

    def processEnded(self, reason) -> None:
        self.ended.callback(reason.value)
        self.supervisor.ended(self, reason.value)


class FrontSupervisor(service.Service):
    """Runs ``count`` front processes with ``settings`` while running:
    starts them, starts again one that died (after
    ``RESTART_DELAY_SECONDS``), and stops them (SIGTERM, then SIGKILL after
    ``STOP_GRACE_SECONDS``) when stopped.  With ``interim_site`` (the
    core's own site) it serves the client port itself from its start until
    the first front listens (``front_listening``), so a member that has
    just started (a learner that caught up in a moment, say) answers at
    once instead of refusing connections while its fronts start."""

    def __init__(self, reactor, count: int, settings: FrontSettings, claim: PortClaim | None = None,
                 interim_site=None) -> None:
        self._reactor = reactor
        self.count = count
        self.settings = settings
        self._claim = claim
        self._interim_site = interim_site
        self._interim_port = None
        self.processes: dict[int, _FrontProcess] = {}
        self.restarts = 0
        """How many fronts were started again after dying."""
        self.link = None
        """The ``CoreLinkFactory`` the fronts connect to (set by ``add_fronts``)."""

    def startService(self) -> None:
        """Start every front (on the port ``claim`` holds, when given)."""
        super().startService()
        if self._claim is not None and self._claim.port is not None:
            self.settings = dataclasses.replace(self.settings, port=self._claim.port)
        if self._interim_site is not None:
            from metastore.workers.front import listen_reuseport

            self._interim_port = listen_reuseport(self._reactor, self.settings.host, self.settings.port,
                                                  self._interim_site)
        for number in range(1, self.count + 1):
            self._spawn(number)

    def _spawn(self, number: int) -> None:
        if not self.running or number in self.processes:
            return
        front = _FrontProcess(self, number)
        argv = [sys.executable, "-m", "metastore.workers.front", self.settings.to_json()]
        self._reactor.spawnProcess(front, sys.executable, argv, env=_front_environment(), childFDs={0: "w", 1: "r", 2: "r"})
        self.processes[number] = front

    def ended(self, front: _FrontProcess, reason) -> None:
        """A front exited: start it again unless stopping."""
        if self.processes.get(front.number) is front:
            del self.processes[front.number]
        if self.running:
            log.warn("front {n} exited ({reason}); starting it again", n=front.number, reason=reason)
            self.restarts += 1
            self._reactor.callLater(RESTART_DELAY_SECONDS, self._spawn, front.number)

    def front_listening(self) -> defer.Deferred:
        """A front serves the client port: the core stops serving it (fires once stopped)."""
        return defer.maybeDeferred(self._stop_interim)

    def _stop_interim(self):
        port, self._interim_port = self._interim_port, None
        if port is not None:
            log.info("a front serves the client port: the core stops serving it")
            # Closing a listening socket resets the connections queued on it
            # that it has not accepted yet (SO_REUSEPORT does not hand them to
            # the fronts): accept those first; they stay with the core.
            port.doRead()
            return port.stopListening()
        return None

    def pids(self) -> list[int]:
        """The process ids of the running fronts."""
        return [p.transport.pid for p in self.processes.values() if p.transport and p.transport.pid]

    def stopService(self):
        """Stop every front; fires once all have exited."""
        super().stopService()
        fronts = list(self.processes.values())
        waits = [defer.maybeDeferred(self._stop_interim)]
        for front in fronts:
            self._signal(front, "TERM")
            kill = self._reactor.callLater(STOP_GRACE_SECONDS, self._signal, front, "KILL")
            front.ended.addBoth(lambda result, kill=kill: kill.active() and kill.cancel())
            waits.append(front.ended)
        return defer.DeferredList(waits)

    @staticmethod
    def _signal(front: _FrontProcess, name: str) -> None:
        try:
            front.transport.signalProcess(name)
        except (ProcessExitedAlready, OSError):
            pass  # already gone


def add_fronts(member, config, reactor, api, site, wait_physical, restoring) -> FrontSupervisor:
    """Make ``member`` (a ``MemberService`` built with a ``PortClaim`` as
    its ``http``) the core of ``config.workers`` fronts: its HTTP ``site``
    on a Unix socket for the routes the fronts forward, the link socket
    serving ``api``, and the supervisor.  Stopped first, in reverse."""
    from twisted.internet import endpoints

    from metastore.service import ListenerService
    from metastore.transport import cluster_id_from_token
    from metastore.workers.core import CoreLinkFactory

    link_address = socket_address(config.data_dir, config.member_id, "link")
    http_address = socket_address(config.data_dir, config.member_id, "http")
    stop_orphan_fronts(link_address)
    for address in (link_address, http_address):
        remove_stale_socket(address)
    link = CoreLinkFactory(api, member.node.store, reactor, wait_physical=wait_physical, restoring=restoring,
                           view_interval=config.tick_ms / 1000)
    for address, factory, what in ((http_address, site, "the fronts' HTTP"), (link_address, link, "the fronts' link")):
        endpoint = endpoints.UNIXServerEndpoint(reactor, address, mode=0o600)
        ListenerService(endpoint, factory, what).setServiceParent(member)
    settings = FrontSettings(
        link=link_address, core_http=http_address, host=config.listen_host, port=config.port,
        cluster_id=cluster_id_from_token(config.cluster_token), max_request_bytes=config.max_request_bytes,
        header_timeout=config.header_timeout, call_timeout=2 * config.request_timeout + 5,
    )
    supervisor = FrontSupervisor(reactor, config.workers, settings, member.http, interim_site=site)
    supervisor.link = link
    link.on_front_listening = supervisor.front_listening
    supervisor.setServiceParent(member)
    return supervisor
