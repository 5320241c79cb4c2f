"""The Twisted flavour of the client, over treq.

``TxClient`` has the operations of ``metastore.client.operations`` (each
returns a Deferred), the same failover rule as the blocking client (see
``metastore.client.failover``), watches that call a callback and resume on
another member, leases kept alive by a ``LoopingCall``, and the lock and
election recipes.  Pass the reactor in; nothing here imports the global one.
"""

from __future__ import annotations

import json
from typing import Callable

import treq
from twisted.internet import defer, task
from twisted.internet.error import ConnectError
from twisted.internet.protocol import Protocol
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss

from metastore.client import concurrency, wire
from metastore.client.failover import Endpoints, Outcome, Reconnects, may_retry, outcome_of_error
from metastore.client.operations import Operations
from metastore.client.stream import LineBuffer, WatchCanceled, WatchCursor


def _outcome_of(error: Exception) -> Outcome:
    return Outcome.REFUSED if isinstance(error, ConnectError) else Outcome.LOST


class _Lines(Protocol):
    """A streamed body, one decoded JSON line at a time to ``on_message``;
    ``finished`` fires when the stream ends."""

    def __init__(self, on_message: Callable[[dict], None]) -> None:
        self.finished: defer.Deferred = defer.Deferred(lambda _: self.stop())
        self._on_message = on_message
        self._buffer = LineBuffer()

    def dataReceived(self, data: bytes) -> None:
        try:
            for message in self._buffer.feed(data):
                self._on_message(message)
        except Exception:
            self.stop()
            if not self.finished.called:
                self.finished.errback()

    def connectionLost(self, reason) -> None:
        if self.finished.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(None)
        else:
            self.finished.errback(reason)

    def stop(self) -> None:
        """Close the stream's connection."""
        if self.transport is not None:
            self.transport.loseConnection()


class TxClient(Operations):
    """A MetaStore (or etcd) cluster through its v3 JSON API, on ``reactor``.

    ``endpoints``: a list of URLs or an ``Endpoints``; ``user``/``password``
    authenticate as etcd does; ``timeout`` bounds each attempt in seconds
    (a watch's stream, once open, waits forever)."""

    def __init__(self, endpoints, reactor, *, timeout: float = 5.0, user: str | None = None,
                 password: str | None = None) -> None:
        self.endpoints = endpoints if isinstance(endpoints, Endpoints) else Endpoints(list(endpoints))
        self.reactor = reactor
        self.timeout = timeout
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._http = treq.client.HTTPClient(Agent(reactor, pool=self._pool))
        self._credentials = (user, password or "") if user else None
        self._token: str | None = None

    def close(self) -> defer.Deferred:
        """Close the pooled connections (a test's cleanup waits on this)."""
        return self._pool.closeCachedConnections()

    async def _headers(self) -> dict:
        headers = {b"Content-Type": [b"application/json"]}
        if self._credentials and self._token is None:
            self._token = (await self.send(wire.authenticate_request(*self._credentials), auth=False))["token"]
        if self._token:
            headers[b"Authorization"] = [self._token.encode()]
        return headers

    async def _post(self, url: str, call: wire.Call, headers: dict):
        d = self._http.post(url + call.path, data=call.encode(), headers=headers)
        d.addTimeout(self.timeout, self.reactor)
        return await d

    async def send(self, call: wire.Call, url: str | None = None, auth: bool = True) -> dict:
        """The decoded answer to the prepared ``call`` from ``url``, or from
        the members in turn as the failover rule allows; an expired token is
        renewed once.  Raises ``ClientError`` or ``NoMemberAvailable``."""
        try:
            return await self._send(call, url, auth)
        except wire.ClientError as e:
            if not (auth and self._credentials and e.status == wire.UNAUTHENTICATED_STATUS):
                raise
            self._token = None
            return await self._send(call, url, auth)

    async def _send(self, call: wire.Call, url: str | None, auth: bool) -> dict:
        headers = await self._headers() if auth else {b"Content-Type": [b"application/json"]}
        attempts = [(url, 0.0)] if url else self.endpoints.attempts()
        last: object = None
        for target, pause in attempts:
            if pause:
                await task.deferLater(self.reactor, pause, lambda: None)
            try:
                response = await self._post(target, call, headers)
                content = treq.content(response)
                content.addTimeout(self.timeout, self.reactor)
                content = await content
            except Exception as e:
                last = f"{target}: {e!r}"
                if url or not may_retry(call, _outcome_of(e)):
                    raise wire.NoMemberAvailable(f"{call.path}: {last}") from e
                continue
            if response.code == 200:
                if not url:
                    self.endpoints.answered(target)
                return json.loads(content)
            error = wire.parse_error(response.code, content)
            if url or not may_retry(call, outcome_of_error(error)):
                raise error
            last = f"{target}: {error}"
        raise wire.NoMemberAvailable(f"no member answered {call.path}; last: {last}")

    def _ask(self, call: wire.Call, parse, url: str | None = None) -> defer.Deferred:
        return defer.ensureDeferred(self.send(call, url)).addCallback(parse)

    async def _stream(self, call: wire.Call, url: str, on_message: Callable[[dict], None],
                      opened: Callable[[_Lines], None] | None = None) -> None:
        """Feed the messages of a stream from ``url`` to ``on_message``
        until it ends; ``opened`` gets the reader (to stop it)."""
        response = await self._post(url, call, await self._headers())
        if response.code != 200:
            raise wire.parse_error(response.code, await treq.content(response))
        lines = _Lines(on_message)
        if opened is not None:
            opened(lines)
        response.deliverBody(lines)
        await lines.finished

    async def snapshot(self, out, url: str | None = None, progress: Callable[[int, int], None] | None = None) -> int:
        """Write a new snapshot of the member at ``url`` (default: the one in
        use) to the binary file ``out``; ``progress(done, total)`` after
        each blob.  Returns the bytes written."""
        done = [0]

        def blob(body: dict) -> None:
            data, remaining = wire.parse_snapshot_chunk(body)
            out.write(data)
            done[0] += len(data)
            if progress is not None:
                progress(done[0], done[0] + remaining)

        await self._stream(wire.snapshot_request(), url or self.endpoints.urls[self.endpoints.current], blob)
        return done[0]

    def watch(self, key, on_event: Callable[[wire.Event], None], range_end=None, **options) -> "TxWatch":
        """Call ``on_event`` with each ``wire.Event`` on ``key`` (or a range:
        ``prefix=True``...) from ``start_revision`` (default: from now),
        resumed on another member when a stream breaks."""
        return TxWatch(self, on_event, lambda revision: wire.watch_request(
            key, range_end, **{**options, "start_revision": revision}), options.get("start_revision", 0))

    async def lease(self, ttl: int, on_lost: Callable[[], None] | None = None) -> "TxKeptLease":
        """A new lease kept alive by a ``LoopingCall`` until ``revoke()`` or ``stop()``."""
        return TxKeptLease(self, await self.lease_grant(ttl), on_lost)

    def lock(self, name, ttl: int = 60) -> "TxLock":
        """etcd's mutex named ``name`` (a key prefix)."""
        return TxLock(self, name, ttl)

    def election(self, name, ttl: int = 60) -> "TxElection":
        """etcd's election named ``name`` (a key prefix)."""
        return TxElection(self, name, ttl)


class TxWatch:
    """A running watch.  ``cancel()`` stops it; ``done`` fires (None) when
    it was cancelled, or fails with ``WatchCompacted``, ``ClientError`` or
    ``NoMemberAvailable``.  A broken stream is resumed at the first revision
    not yet delivered, on the next member: no gap and no duplicate."""

    def __init__(self, client: TxClient, on_event, request_for, start_revision: int) -> None:
        self.cursor = WatchCursor(start_revision)
        self._client, self._on_event, self._request_for = client, on_event, request_for
        self._canceled = False
        self._lines: _Lines | None = None
        self._reconnects = Reconnects(client.endpoints)
        self.done = defer.ensureDeferred(self._run())

    def cancel(self) -> None:
        """Stop watching."""
        self._canceled = True
        if self._lines is not None:
            self._lines.stop()

    def _message(self, body: dict) -> None:
        self._reconnects.received()
        for event in self.cursor.message(body):
            if self._canceled:
                return
            self._on_event(event)

    def _opened(self, lines: _Lines) -> None:
        self._lines = lines
        if self._canceled:
            lines.stop()

    async def _run(self) -> None:
        last: object = None
        while not self._canceled:
            try:
                call = self._request_for(self.cursor.next_revision)
                await self._client._stream(call, self._reconnects.url, self._message, self._opened)
            except WatchCanceled as e:
                last = e
            except wire.ClientError as e:
                if e.status < 500:
                    raise
                last = e
            except Exception as e:  # refused, reset, timed out: the next member
                last = e
            self._lines = None
            if self._canceled:
                return
            pause = self._reconnects.broke()
            if pause is None:
                raise wire.NoMemberAvailable(f"watch: no member answered; last: {last!r}")
            await task.deferLater(self._client.reactor, pause, lambda: None)


class TxKeptLease:
    """A lease kept alive every third of its TTL by a ``LoopingCall`` on the
    client's reactor.  ``lost`` turns true (and ``on_lost`` is called once)
    if the lease is found gone; a round no member answers is retried next time."""

    def __init__(self, client: TxClient, granted: wire.Lease, on_lost: Callable[[], None] | None = None) -> None:
        self.id, self.ttl = granted.id, granted.ttl
        self.lost = False
        self._client, self._on_lost = client, on_lost
        self._loop = task.LoopingCall(self._refresh)
        self._loop.clock = client.reactor
        self._loop.start(max(self.ttl / 3, 0.2), now=False)

    async def _refresh(self) -> None:
        try:
            answer = await self._client.lease_keepalive_once(self.id)
        except (wire.ClientError, wire.NoMemberAvailable):
            return
        if answer.ttl <= 0:
            self.lost = True
            self.stop()
            if self._on_lost is not None:
                self._on_lost()

    def stop(self) -> None:
        """Stop keeping it alive (it then expires after its TTL)."""
        if self._loop.running:
            self._loop.stop()

    async def revoke(self) -> None:
        """Stop, and revoke the lease now (deleting its keys)."""
        self.stop()
        try:
            await self._client.lease_revoke(self.id)
        except wire.ClientError as e:
            if e.code != wire.NOT_FOUND:
                raise


class _TxContender:
    """One place in the queue under ``name``: a kept lease and a key."""

    def __init__(self, client: TxClient, name, ttl: int) -> None:
        self.client, self.prefix, self.ttl = client, concurrency.queue_prefix(name), ttl
        self.lease: TxKeptLease | None = None
        self.key: bytes | None = None
        self.revision = 0

    async def _queue(self, value) -> None:
        self.lease = await self.client.lease(self.ttl)
        run = concurrency.QueueRun(self.prefix, value, self.lease.id)
        try:
            step = run.next()
            while step is not None:
                if isinstance(step, concurrency.Send):
                    step = run.next(step.parse(await self.client.send(step.call)))
                else:
                    step = run.next(await self._wait_deleted(step.key, step.from_revision))
        except Exception:  # NotLeader, or no member answered: give the place up
            try:
                await self._leave()
            except Exception:  # the lease is no longer kept alive and expires
                self.lease, self.key, self.revision = None, None, 0
            raise
        self.key, self.revision = run.result

    async def _wait_deleted(self, key: bytes, from_revision: int) -> None:
        deleted: defer.Deferred = defer.Deferred()

        def on_event(event: wire.Event) -> None:
            if event.type == "DELETE" and not deleted.called:
                deleted.callback(None)

        watch = self.client.watch(key, on_event, start_revision=from_revision)
        watch.done.addErrback(lambda f: deleted.called or deleted.errback(f))
        try:
            await deleted
        finally:
            watch.cancel()

    async def _leave(self) -> None:
        if self.lease is not None:
            await self.lease.revoke()
        self.lease, self.key, self.revision = None, None, 0


class TxLock(_TxContender):
    """etcd's mutex: ``await lock.acquire()`` ... ``await lock.release()``."""

    async def acquire(self) -> None:
        """Wait until this client holds the lock."""
        await self._queue(b"")

    async def release(self) -> None:
        """Give the lock up (revoking the lease deletes the key)."""
        await self._leave()


class TxElection(_TxContender):
    """etcd's election: ``campaign``, ``proclaim``, ``leader``, ``observe``, ``resign``."""

    async def campaign(self, value) -> None:
        """Wait until this candidate leads, announcing ``value``."""
        await self._queue(value)

    async def proclaim(self, value) -> None:
        """Change the leader's value; ``NotLeader`` if this one no longer leads."""
        if self.key is None:
            raise concurrency.NotLeader("not campaigning")
        answer = await self.client._ask(concurrency.proclaim_request(self.key, self.revision, value, self.lease.id),
                                        wire.parse_txn)
        if not answer.succeeded:
            raise concurrency.NotLeader(f"{self.key!r} is no longer this candidate's")

    async def resign(self) -> None:
        """Stop leading (or campaigning)."""
        await self._leave()

    async def leader(self) -> wire.KeyValue | None:
        """The leader's key and value, or None when nobody leads."""
        return concurrency.first_in_line((await self.client.get(self.prefix, prefix=True)).kvs)

    async def observe(self, on_leader: Callable[[wire.KeyValue | None], None]) -> TxWatch:
        """Call ``on_leader`` with the leader now, then on every change of
        leader or of its value, until the returned watch is cancelled."""
        current = await self.client.get(self.prefix, prefix=True)
        view = concurrency.LeaderView(current.kvs)
        on_leader(view.leader)
        return self.client.watch(self.prefix, lambda event: view.apply(event) and on_leader(view.leader),
                                 prefix=True, start_revision=current.header.revision + 1)
