"""A small etcd v3 JSON client for fault tests: unary calls and resuming watches.

Speaks the grpc-gateway shapes (``docs`` in
``/work/shared/reference/etcd-v3-json-gateway.md``) to any member, MetaStore or
etcd.  Two things matter under faults:

- a unary call never retries by itself (a silently repeated write would
  corrupt the history): it returns a ``Reply`` whose ``code`` is None when
  nothing definite came back;
- ``ResumingWatch`` keeps one watch alive across member deaths the way
  etcd's clients do: when its stream ends for any reason it opens a new one
  on the next member, from the revision after the last one it saw, and it
  records every event it was given, in order, with the time it arrived.
"""

from __future__ import annotations

import base64
import io
import json
import time
from dataclasses import dataclass, field
from typing import Callable

from twisted.internet import defer, task
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Protocol
from twisted.web import client
from twisted.web.http_headers import Headers

PUT = "PUT"
DELETE = "DELETE"


def b64(data: bytes) -> str:
    """Standard padded base64 text of ``data``."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str | None) -> bytes:
    """The bytes of base64 ``text`` (absent: empty, as jsonpb leaves zero values out)."""
    return base64.b64decode(text) if text else b""


@dataclass(frozen=True, slots=True)
class Reply:
    """One unary call's outcome: ``code`` None when no definite answer came
    (timeout, reset); ``refused`` when the connection was refused (nothing
    was sent, so the call certainly did nothing)."""

    code: int | None
    body: dict | None = None
    refused: bool = False

    @property
    def ok(self) -> bool:
        """A 200 with a JSON body."""
        return self.code == 200 and self.body is not None

    @property
    def definite_failure(self) -> bool:
        """Certainly not applied: refused, or a 4xx answer."""
        return self.refused or (self.code is not None and 400 <= self.code < 500)

    @property
    def revision(self) -> int:
        """``header.revision`` of the answer (0 when absent)."""
        return int(((self.body or {}).get("header") or {}).get("revision", 0))


@dataclass(frozen=True, slots=True)
class SeenEvent:
    """One watch event as a client saw it: ``revision`` is the event's
    ``mod_revision``; ``value`` empty for a delete."""

    revision: int
    type: str
    key: bytes
    value: bytes = b""

    @classmethod
    def from_json(cls, event: dict) -> "SeenEvent":
        """The event of one gateway ``events`` item."""
        kv = event.get("kv") or {}
        kind = event.get("type") or PUT
        return cls(int(kv.get("mod_revision", 0)), DELETE if kind in ("DELETE", 1) else PUT,
                   unb64(kv.get("key")), unb64(kv.get("value")))

    def describe(self) -> str:
        """e.g. ``12 PUT lw/w/3='v9'``."""
        value = f"={self.value.decode(errors='replace')!r}" if self.type == PUT else ""
        return f"{self.revision} {self.type} {self.key.decode(errors='replace')}{value}"


class QuietClientFactory(client._HTTP11ClientFactory):
    """The pool's per-connection factory without its start/stop log lines."""

    noisy = False


def non_retrying_pool(reactor, persistent: bool = True, max_per_host: int = 32) -> client.HTTPConnectionPool:
    """A connection pool that never retries a request by itself: a silently
    repeated write would corrupt a fault run's history."""
    pool = client.HTTPConnectionPool(reactor, persistent=persistent)
    pool.retryAutomatically = False
    pool.maxPersistentPerHost = max_per_host
    pool._factory = QuietClientFactory
    return pool


def member_agent(reactor, pool: client.HTTPConnectionPool, tls=None) -> client.Agent:
    """An ``Agent`` for the members' URLs: over ``pool``, trusting the
    run's CA with ``tls`` (``metastore.chaos.tls.ChaosTLS``)."""
    return client.Agent(reactor, pool=pool) if tls is None else tls.agent(reactor, pool)


class V3Client:
    """Unary v3 JSON calls to members given by URL, over a pool that never
    retries by itself; ``close()`` when done.  With ``tls`` it trusts the
    run's CA; with ``auth`` (``metastore.chaos.auth.ChaosAuth``) every call
    carries the workload user's token for the member it asks."""

    def __init__(self, reactor, timeout: float = 3.0, max_per_host: int = 32, tls=None, auth=None) -> None:
        self.reactor = reactor
        self.timeout = timeout
        self._pool = non_retrying_pool(reactor, max_per_host=max_per_host)
        self._agent = member_agent(reactor, self._pool, tls)
        self._auth = auth

    async def call(self, url: str, path: str, body: dict, timeout: float | None = None) -> Reply:
        """POST ``body`` as JSON to ``url + path``; never raises.  With auth
        and no token to be had from the member, nothing is sent: refused."""
        headers = Headers({b"Content-Type": [b"application/json"]})
        token = None
        if self._auth is not None:
            token = await self._auth.token(url)
            if token is None:
                return Reply(None, refused=True)
            headers.addRawHeader(b"Authorization", token.encode())
        reply = await self._post(url, path, body, headers, timeout)
        if token is not None:
            self._auth.answered(url, token, reply.code, reply.body)
        return reply

    async def _post(self, url: str, path: str, body: dict, headers: Headers, timeout: float | None) -> Reply:
        data = json.dumps(body).encode()
        d = self._agent.request(b"POST", (url + path).encode(), headers, client.FileBodyProducer(io.BytesIO(data)))
        d.addTimeout(timeout or self.timeout, self.reactor)
        try:
            response = await d
            content_d = client.readBody(response)
            content_d.addTimeout(timeout or self.timeout, self.reactor)
            content = await content_d
        except ConnectionRefusedError:
            return Reply(None, refused=True)
        except Exception:
            return Reply(None)
        try:
            parsed = json.loads(content.decode().strip().splitlines()[0]) if content.strip() else {}
        except (ValueError, IndexError):
            parsed = None
        if isinstance(parsed, dict) and "result" in parsed and path == "/v3/lease/keepalive":
            parsed = parsed["result"]  # the gateway wraps a stream's one message
        return Reply(response.code, parsed if isinstance(parsed, dict) else None)

    async def close(self) -> None:
        """Close the pooled connections."""
        await self._pool.closeCachedConnections()

    # -- the calls the workloads make ----------------------------------------

    def grant(self, url: str, ttl: int) -> defer.Deferred:
        """``/v3/lease/grant`` of ``ttl`` seconds."""
        return defer.ensureDeferred(self.call(url, "/v3/lease/grant", {"TTL": ttl, "ID": 0}))

    def keepalive(self, url: str, lease_id: int) -> defer.Deferred:
        """``/v3/lease/keepalive``: the body has ``TTL`` when the lease lives."""
        return defer.ensureDeferred(self.call(url, "/v3/lease/keepalive", {"ID": lease_id}))

    def time_to_live(self, url: str, lease_id: int) -> defer.Deferred:
        """``/v3/lease/timetolive``: ``TTL`` -1 when there is no such lease."""
        return defer.ensureDeferred(self.call(url, "/v3/lease/timetolive", {"ID": lease_id}))

    def put(self, url: str, key: bytes, value: bytes, lease: int = 0) -> defer.Deferred:
        """``/v3/kv/put``."""
        body = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = lease
        return defer.ensureDeferred(self.call(url, "/v3/kv/put", body))

    def txn(self, url: str, success: list[dict]) -> defer.Deferred:
        """``/v3/kv/txn`` with no compares: ``success`` always runs."""
        return defer.ensureDeferred(self.call(url, "/v3/kv/txn", {"success": success}))

    def range(self, url: str, key: bytes, range_end: bytes = b"", revision: int = 0,
              serializable: bool = False) -> defer.Deferred:
        """``/v3/kv/range`` (at ``revision``, 0: now)."""
        body: dict = {"key": b64(key)}
        if range_end:
            body["range_end"] = b64(range_end)
        if revision:
            body["revision"] = revision
        if serializable:
            body["serializable"] = True
        return defer.ensureDeferred(self.call(url, "/v3/kv/range", body))


def _json_object(content: bytes) -> dict | None:
    """``content`` as a JSON object, or None."""
    try:
        parsed = json.loads(content)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


class _LineReader(Protocol):
    """Reads a chunked watch body as newline-separated JSON messages."""

    def __init__(self, on_message: Callable[[dict], None]) -> None:
        self._on_message = on_message
        self._buffer = b""
        self.done: defer.Deferred = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        for line in lines:
            if line.strip():
                self._on_message(json.loads(line))

    def connectionLost(self, reason=None) -> None:
        if self._buffer.strip():
            try:
                self._on_message(json.loads(self._buffer))
            except ValueError:
                pass
        self.done.callback(None)

    def abort(self) -> None:
        """Drop the connection (the way etcd3gw cancels a watch)."""
        if self.transport is not None:
            self.transport.stopProducing()


@dataclass
class WatchSession:
    """One stream of a resuming watch: where and from which revision it
    started, and how it ended."""

    member: int
    start_revision: int
    opened: float
    created: bool = False
    events: int = 0
    ended: str = ""


@dataclass
class ResumingWatch:
    """A watch on ``[key, range_end)`` that survives member deaths.

    ``start_revision`` 0 means "from now": the first stream's ``created``
    header fixes ``first_revision`` (header revision + 1).  Every later
    stream starts at ``next_revision``, one past the last event seen (or
    past the last progress header), on the next member in ``members``.
    ``events`` is every event received, in arrival order, with its arrival
    time in ``arrivals``; ``problems`` lists what must not happen (a
    compacted start, an event at or below one already seen, a fragment).
    """

    name: str
    members: dict[int, str]
    key: bytes
    range_end: bytes
    start_revision: int = 0
    first_member: int = 0
    now: Callable[[], float] = time.monotonic
    retry_delay: float = 0.2
    create_timeout: float = 3.0
    events: list[SeenEvent] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    sessions: list[WatchSession] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    first_revision: int = 0
    next_revision: int = 0
    stopping: bool = False
    on_event: Callable[["ResumingWatch", SeenEvent, float], None] | None = None
    tls: object = None
    """The run's ``ChaosTLS`` when the members serve HTTPS."""
    auth: object = None
    """The run's ``ChaosAuth`` when auth is on: each stream carries a token."""

    def run(self, reactor) -> defer.Deferred:
        """Keep watching until ``stop()``; fires when the last stream ended."""
        self._reactor = reactor
        self._reader: _LineReader | None = None
        self._agent = member_agent(reactor, non_retrying_pool(reactor, persistent=False), self.tls)
        self.first_revision = self.next_revision = self.start_revision
        return defer.ensureDeferred(self._loop())

    def stop(self) -> None:
        """End the watch (drops the current stream)."""
        self.stopping = True
        if self._reader is not None:
            self._reader.abort()

    @property
    def last_revision(self) -> int:
        """The revision of the last event seen, 0 before any."""
        return self.events[-1].revision if self.events else 0

    async def _loop(self) -> None:
        ids = sorted(self.members)
        position = ids.index(self.first_member) if self.first_member in ids else 0
        for _ in range(1_000_000):  # bounded by stop(); a run is minutes
            if self.stopping:
                return
            member = ids[position % len(ids)]
            session = WatchSession(member, self.next_revision, self.now())
            self.sessions.append(session)
            await self._stream(member, session)
            if self.stopping:
                return
            position += 1
            await task.deferLater(self._reactor, self.retry_delay, lambda: None)

    async def _stream(self, member: int, session: WatchSession) -> None:
        create: dict = {"key": b64(self.key)}
        if self.range_end:
            create["range_end"] = b64(self.range_end)
        if self.next_revision:
            create["start_revision"] = self.next_revision
        body = json.dumps({"create_request": create}).encode()
        url = self.members[member]
        headers = Headers({b"Content-Type": [b"application/json"]})
        token = None
        if self.auth is not None:
            token = await self.auth.token(url)
            if token is None:
                session.ended = "no token"
                return
            headers.addRawHeader(b"Authorization", token.encode())
        d = self._agent.request(b"POST", (url + "/v3/watch").encode(), headers,
                                client.FileBodyProducer(io.BytesIO(body)))
        d.addTimeout(self.create_timeout, self._reactor)
        try:
            response = await d
        except Exception as e:
            session.ended = f"no answer: {type(e).__name__}"
            return
        if response.code != 200:
            session.ended = f"status {response.code}"
            content = await client.readBody(response).addErrback(lambda _: b"")
            if token is not None:
                self.auth.answered(url, token, response.code, _json_object(content))
            return
        reader = _LineReader(lambda message: self._message(session, message))
        self._reader = reader
        response.deliverBody(reader)
        if self.stopping:
            reader.abort()
        await reader.done
        self._reader = None
        if not session.ended:
            session.ended = "stream ended"

    def _message(self, session: WatchSession, message: dict) -> None:
        result = message.get("result")
        if result is None:
            session.ended = f"error message: {message}"
            return
        header_revision = int((result.get("header") or {}).get("revision", 0))
        if result.get("created"):
            session.created = True
            if not self.next_revision:
                self.first_revision = self.next_revision = header_revision + 1
            return
        if result.get("canceled"):
            compact = int(result.get("compact_revision", 0))
            session.ended = f"canceled: {result.get('cancel_reason', '')} compact_revision={compact}"
            if compact:
                self.problems.append(f"{self.name}: start {session.start_revision} compacted at {compact}")
            return
        if result.get("fragment"):
            self.problems.append(f"{self.name}: a fragmented response, which was not asked for")
        now = self.now()
        for item in result.get("events", ()):
            event = SeenEvent.from_json(item)
            if event.revision < self.next_revision:
                self.problems.append(
                    f"{self.name}: event {event.describe()} from member {session.member} is before "
                    f"revision {self.next_revision}, where its stream started or had reached")
            self.events.append(event)
            self.arrivals.append(now)
            session.events += 1
            if self.on_event is not None:
                self.on_event(self, event, now)
        if result.get("events"):
            self.next_revision = max(self.next_revision, self.events[-1].revision + 1)
        elif header_revision:  # a progress notification: everything up to it was sent
            self.next_revision = max(self.next_revision, header_revision + 1)
