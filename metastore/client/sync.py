"""The blocking flavour of the client, over urllib3's connection pool.

``Client`` sends the calls of ``metastore.client.wire`` to the members
listed, failing over as ``metastore.client.failover`` allows (reads and
other idempotent calls after any failure; writes only when the connection
was refused).  Safe to share between threads.
"""

from __future__ import annotations

import json
import threading
from typing import Callable, Iterator

import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError

from metastore.client import concurrency, wire
from metastore.client.operations import Operations
from metastore.client.failover import Endpoints, Outcome, Reconnects, may_retry, outcome_of_error
from metastore.client.stream import LineBuffer, WatchCanceled, WatchCursor


def _outcome_of(error: Exception) -> Outcome:
    return Outcome.REFUSED if isinstance(error, NewConnectionError) else Outcome.LOST


class Client(Operations):
    """A MetaStore (or etcd) cluster through its v3 JSON API.

    ``endpoints``: a list of URLs (``http://host:port``, or ``host:port``)
    or an ``Endpoints``.  ``user``/``password`` authenticate as etcd does
    (``/v3/auth/authenticate``; the token goes in ``Authorization``).
    ``timeout`` bounds each attempt in seconds (watches wait forever)."""

    def __init__(self, endpoints, *, timeout: float = 5.0, user: str | None = None, password: str | None = None,
                 pool: urllib3.PoolManager | None = None) -> None:
        self.endpoints = endpoints if isinstance(endpoints, Endpoints) else Endpoints(list(endpoints))
        self.timeout = timeout
        self._pool = pool or urllib3.PoolManager(maxsize=8, retries=False)
        self._credentials = (user, password or "") if user else None
        self._token: str | None = None
        self._lock = threading.Lock()
        self._sleep = threading.Event().wait

    def close(self) -> None:
        """Close the pooled connections."""
        self._pool.clear()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transport ------------------------------------------------------

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json"}
        if self._credentials and self._token is None:
            with self._lock:
                if self._token is None:
                    self._token = self.send(wire.authenticate_request(*self._credentials), auth=False)["token"]
        if self._token:
            headers["Authorization"] = self._token
        return headers

    def _post(self, url: str, call: wire.Call, *, stream: bool = False, headers: dict | None = None):
        timeout = urllib3.Timeout(connect=self.timeout, read=None if stream else self.timeout)
        return self._pool.request("POST", url + call.path, body=call.encode(), headers=headers or self._headers(),
                                  timeout=timeout, preload_content=not stream, retries=False)

    def send(self, call: wire.Call, url: str | None = None, auth: bool = True) -> dict:
        """The decoded answer to the prepared ``call`` from ``url``, or from the members in
        turn as the failover rule allows; an expired token is renewed once.
        Raises ``ClientError`` or ``NoMemberAvailable``."""
        try:
            return self._send(call, url, auth)
        except wire.ClientError as e:
            if not (auth and self._credentials and e.status == wire.UNAUTHENTICATED_STATUS):
                raise
            self._token = None
            return self._send(call, url, auth)

    def _send(self, call: wire.Call, url: str | None, auth: bool) -> dict:
        headers = self._headers() if auth else {"Content-Type": "application/json"}
        attempts = [(url, 0.0)] if url else self.endpoints.attempts()
        last: object = None
        for target, pause in attempts:
            if pause:
                self._sleep(pause)
            try:
                response = self._post(target, call, headers=headers)
            except HTTPError as e:
                last = f"{target}: {e}"
                if url or not may_retry(call, _outcome_of(e)):
                    raise wire.NoMemberAvailable(f"{call.path}: {last}") from e
                continue
            if response.status == 200:
                if not url:
                    self.endpoints.answered(target)
                return json.loads(response.data)
            error = wire.parse_error(response.status, response.data)
            if url or not may_retry(call, outcome_of_error(error)):
                raise error
            last = f"{target}: {error}"
        raise wire.NoMemberAvailable(f"no member answered {call.path}; last: {last}")

    def _ask(self, call: wire.Call, parse, url: str | None = None):
        return parse(self.send(call, url))

    def _lines(self, call: wire.Call, url: str, opened: Callable | None = None) -> Iterator[dict]:
        """The messages of a stream from ``url``; ``opened(response)`` first
        (so another thread may shut it down).  Raises ``HTTPError`` or
        ``ClientError``."""
        response = self._post(url, call, stream=True)
        if opened is not None:
            opened(response)
        try:
            if response.status != 200:
                raise wire.parse_error(response.status, response.read())
            buffer = LineBuffer()
            for chunk in response.stream(None):
                yield from buffer.feed(chunk)
            yield from buffer.finish()
        finally:
            response.release_conn()

    def lease(self, ttl: int, on_lost: Callable[[], None] | None = None) -> "KeptLease":
        """A new lease kept alive by a background thread until ``revoke()``
        or ``stop()`` (also a context manager that revokes on exit)."""
        return KeptLease(self, self.lease_grant(ttl), on_lost)

    def snapshot(self, out, url: str | None = None, progress: Callable[[int, int], None] | None = None) -> int:
        """Write a new snapshot of the member at ``url`` (default: the one in
        use) to the binary file ``out``; ``progress(done, total)`` after
        each blob.  Returns the bytes written."""
        done = 0
        for body in self._lines(wire.snapshot_request(), url or self.endpoints.urls[self.endpoints.current]):
            blob, remaining = wire.parse_snapshot_chunk(body)
            out.write(blob)
            done += len(blob)
            if progress is not None:
                progress(done, done + remaining)
        return done

    # -- watch and recipes ----------------------------------------------

    def watch(self, key, range_end=None, **options) -> "Watch":
        """An iterator of the ``wire.Event``s on ``key`` (or a range:
        ``prefix=True``...) from ``start_revision`` (default: from now),
        resumed on another member when a stream breaks."""
        return Watch(self, key, range_end, **options)

    def lock(self, name, ttl: int = 60) -> "Lock":
        """etcd's mutex named ``name`` (a key prefix)."""
        return Lock(self, name, ttl)

    def election(self, name, ttl: int = 60) -> "Election":
        """etcd's election named ``name`` (a key prefix)."""
        return Election(self, name, ttl)


class Watch:
    """Iterate for events; ``cancel()`` (from any thread) ends the
    iteration.  A broken stream is resumed at the first revision not yet
    delivered, on the next member that answers: no gap and no duplicate.
    Raises ``WatchCompacted`` when that revision was compacted, and
    ``NoMemberAvailable`` when no member answers for a full set of rounds."""

    def __init__(self, client: Client, key, range_end=None, *, start_revision: int = 0, **options) -> None:
        self._client = client
        self._request = lambda revision: wire.watch_request(key, range_end, start_revision=revision, **options)
        self.cursor = WatchCursor(start_revision)
        self._canceled = threading.Event()
        self._response = None

    def cancel(self) -> None:
        """End the iteration (the stream in flight is shut down)."""
        self._canceled.set()
        response = self._response
        if response is not None:
            try:
                response.shutdown()
            except RuntimeError:  # the stream already ended and went back to the pool
                pass

    def __iter__(self) -> Iterator[wire.Event]:
        reconnects = Reconnects(self._client.endpoints)
        last: object = None
        while not self._canceled.is_set():
            try:
                call = self._request(self.cursor.next_revision)
                for body in self._client._lines(call, reconnects.url, self._opened):
                    reconnects.received()
                    yield from self.cursor.message(body)
                    if self._canceled.is_set():
                        return
            except (HTTPError, WatchCanceled, OSError) as e:
                last = e
            except wire.ClientError as e:
                if e.status < 500:
                    raise
                last = e
            if self._canceled.is_set():
                return
            pause = reconnects.broke()
            if pause is None:
                raise wire.NoMemberAvailable(f"watch: no member answered; last: {last}")
            self._canceled.wait(pause)

    def _opened(self, response) -> None:
        self._response = response


class KeptLease:
    """A lease kept alive every third of its TTL by a daemon thread.
    ``lost`` turns true (and ``on_lost`` is called once) if the lease is
    found gone; a round in which no member answers is retried next time."""

    def __init__(self, client: Client, granted: wire.Lease, on_lost: Callable[[], None] | None = None) -> None:
        self.id, self.ttl = granted.id, granted.ttl
        self.lost = False
        self._client, self._on_lost = client, on_lost
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"keepalive-{self.id:x}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(max(self.ttl / 3, 0.2)):
            try:
                answer = self._client.lease_keepalive_once(self.id)
            except (wire.ClientError, wire.NoMemberAvailable):
                continue
            if answer.ttl <= 0:
                self.lost = True
                self._stopped.set()
                if self._on_lost is not None:
                    self._on_lost()

    def stop(self) -> None:
        """Stop keeping it alive (it then expires after its TTL)."""
        self._stopped.set()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def revoke(self) -> None:
        """Stop, and revoke the lease now (deleting its keys)."""
        self.stop()
        try:
            self._client.lease_revoke(self.id)
        except wire.ClientError as e:
            if e.code != wire.NOT_FOUND:  # already gone
                raise

    def __enter__(self) -> "KeptLease":
        return self

    def __exit__(self, *exc) -> None:
        self.revoke()


class _Contender:
    """One place in the queue under ``name``: a kept lease and a key."""

    def __init__(self, client: Client, name, ttl: int) -> None:
        self.client, self.prefix, self.ttl = client, concurrency.queue_prefix(name), ttl
        self.lease: KeptLease | None = None
        self.key: bytes | None = None
        self.revision = 0

    def _queue(self, value) -> None:
        self.lease = self.client.lease(self.ttl)
        run = concurrency.QueueRun(self.prefix, value, self.lease.id)
        try:
            step = run.next()
            while step is not None:
                if isinstance(step, concurrency.Send):
                    step = run.next(step.parse(self.client.send(step.call)))
                else:
                    step = run.next(self._wait_deleted(step.key, step.from_revision))
        except Exception:  # NotLeader, or no member answered: give the place up
            try:
                self._leave()
            except Exception:  # the lease is no longer kept alive and expires
                self.lease, self.key, self.revision = None, None, 0
            raise
        self.key, self.revision = run.result

    def _wait_deleted(self, key: bytes, from_revision: int) -> None:
        watch = self.client.watch(key, start_revision=from_revision)
        for event in watch:
            if event.type == "DELETE":
                watch.cancel()
                return

    def _leave(self) -> None:
        if self.lease is not None:
            self.lease.revoke()
        self.lease, self.key, self.revision = None, None, 0


class Lock(_Contender):
    """etcd's mutex: ``acquire()`` blocks until held; ``release()``; or
    ``with client.lock(name):``.  A holder that dies releases the lock when
    its lease expires (``ttl`` seconds)."""

    def acquire(self) -> None:
        """Wait until this client holds the lock."""
        self._queue(b"")

    def release(self) -> None:
        """Give the lock up (revoking the lease deletes the key)."""
        self._leave()

    def __enter__(self) -> "Lock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class Election(_Contender):
    """etcd's election: ``campaign(value)`` blocks until leading;
    ``proclaim(value)``; ``leader()``; ``observe()``; ``resign()``."""

    def campaign(self, value) -> None:
        """Wait until this candidate leads, announcing ``value``."""
        self._queue(value)

    def proclaim(self, value) -> None:
        """Change the leader's value; ``NotLeader`` if this one no longer leads."""
        if self.key is None:
            raise concurrency.NotLeader("not campaigning")
        answer = wire.parse_txn(self.client.send(concurrency.proclaim_request(self.key, self.revision, value, self.lease.id)))
        if not answer.succeeded:
            raise concurrency.NotLeader(f"{self.key!r} is no longer this candidate's")

    def resign(self) -> None:
        """Stop leading (or campaigning)."""
        self._leave()

    def leader(self) -> wire.KeyValue | None:
        """The leader's key and value, or None when nobody leads."""
        return concurrency.first_in_line(self.client.get(self.prefix, prefix=True).kvs)

    def observe(self) -> Iterator[wire.KeyValue | None]:
        """The leader now, then on every change of leader or of its value
        (an endless iterator; break out of it to stop)."""
        current = self.client.get(self.prefix, prefix=True)
        view = concurrency.LeaderView(current.kvs)
        yield view.leader
        watch = self.client.watch(self.prefix, prefix=True, start_revision=current.header.revision + 1)
        try:
            for event in watch:
                if view.apply(event):
                    yield view.leader
        finally:
            watch.cancel()
