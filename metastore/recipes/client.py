"""A small asynchronous client of the seed REST API, for the recipes.

``RestClient`` takes every member's URL and sends each request to the
member that last answered, moving on to the next one when a member does
not answer or answers 503 (no leader, timed out), so that a caller rides
over a leader change.  Other answers are the caller's: a 4xx raises
``RestError`` with the status and the server's JSON reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable
from urllib.parse import quote

import treq
from twisted.internet import defer

RETRY_STATUSES = (503,)


class RestError(Exception):
    """The member answered with an error; ``status`` and ``error`` say which."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status, self.error = status, error


class NoMemberAnswered(Exception):
    """No member answered (or every one was unavailable) within the attempts."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A key as a listing answers it."""

    key: str
    value: str
    create_revision: int
    mod_revision: int
    lease: int


class RestClient:
    """Requests to a MetaStore cluster through its seed REST API."""

    def __init__(self, urls: list[str], clock, timeout: float = 10.0, rounds: int = 5, pause: float = 0.5) -> None:
        self._urls = [u.rstrip("/") for u in urls]
        self._clock = clock
        self._timeout = timeout
        self._rounds = rounds
        self._pause = pause
        self._current = 0

    async def _request(self, method: str, path: str, body: bytes | None = None, headers=None, timeout=None):
        """``(status, body, response)`` from the first member that answers
        with anything but 503; raises ``NoMemberAnswered``."""
        last = None
        cancelled: list[bool] = []
        for attempt in range(self._rounds * len(self._urls)):
            url = self._urls[self._current]
            try:
                d = treq.request(method, url + path, data=body, headers=headers, persistent=False)
                d.addTimeout(timeout or self._timeout, self._clock)
                response = await _noting_cancel(d, cancelled)
                content = await _noting_cancel(treq.content(response), cancelled)
                if response.code not in RETRY_STATUSES:
                    return response.code, content, response
                last = f"{url}: {response.code}"
            except Exception as e:  # refused, reset, timed out: try the next member
                if cancelled:
                    # The caller gave up; twisted.web reports that in many
                    # ways (even as a DNS lookup error), so it is noted here.
                    raise defer.CancelledError() from e
                last = f"{url}: {e!r}"
            self._current = (self._current + 1) % len(self._urls)
            if self._current == 0:
                await _sleep(self._clock, self._pause)
        raise NoMemberAnswered(f"no member answered {method} {path}; last: {last}")

    @staticmethod
    def _raise(status: int, content: bytes) -> None:
        try:
            reason = json.loads(content)
        except ValueError:
            reason = {}
        raise RestError(status, reason.get("error", "unknown"), reason.get("message", content[:200].decode("utf-8", "replace")))

    async def put(self, key: str, value: str, ttl: int = 0, create_only: bool = False) -> dict:
        """Set ``key``; with ``ttl`` attach a new lease (answered as
        ``{"revision", "lease", "ttl"}``); ``create_only`` fails with
        ``RestError`` 412 when the key exists."""
        headers = {b"If-None-Match": [b"*"]} if create_only else None
        query = f"?ttl={ttl}" if ttl else ""
        status, content, response = await self._request("PUT", _path(key) + query, value.encode(), headers)
        if status == 204:
            return {"revision": int(response.headers.getRawHeaders("X-MetaStore-Revision")[0])}
        if status != 200:
            self._raise(status, content)
        return json.loads(content)

    async def refresh(self, key: str) -> int:
        """Keep ``key``'s lease alive; its TTL.  ``RestError`` 404 when it is gone."""
        status, content, _ = await self._request("PUT", _path(key) + "?refresh")
        if status != 200:
            self._raise(status, content)
        return json.loads(content)["ttl"]

    async def delete(self, key: str) -> bool:
        """Delete ``key``; whether it existed."""
        status, content, _ = await self._request("DELETE", _path(key))
        if status not in (204, 404):
            self._raise(status, content)
        return status == 204

    async def get(self, key: str, index: int = 0, wait: float = 0) -> tuple[str | None, int]:
        """``(value or None, index)``; with ``index`` it waits (up to
        ``wait`` seconds) for a change after that revision."""
        status, content, response = await self._request("GET", _path(key) + _blocking(index, wait), timeout=_timeout(self._timeout, wait))
        if status not in (200, 404):
            self._raise(status, content)
        found = int(response.headers.getRawHeaders("X-MetaStore-Index")[0])
        return (content.decode("utf-8") if status == 200 else None), found

    async def list(self, prefix: str, index: int = 0, wait: float = 0) -> tuple[list[Entry], int]:
        """``(entries under prefix in key order, index)``; blocking like ``get``."""
        query = "?list" + _blocking(index, wait).replace("?", "&")
        status, content, _ = await self._request("GET", _path(prefix) + query, timeout=_timeout(self._timeout, wait))
        if status != 200:
            self._raise(status, content)
        body = json.loads(content)
        entries = [Entry(kv["key"], kv.get("value", ""), kv["create_revision"], kv["mod_revision"], kv["lease"]) for kv in body["kvs"]]
        return entries, body["revision"]


    def follow(self, prefix: str, on_entries: Callable[[list[Entry]], None], wait: float = 30.0) -> Callable[[], None]:
        """Call ``on_entries`` with the entries under ``prefix`` now and
        after every change (blocking lists, each up to ``wait`` seconds, and
        once more whenever a wait ends), until the returned function is called;
        it ends the request in flight too."""

        async def follow() -> None:
            index = 0
            while True:
                entries, index = await self.list(prefix, index=index, wait=wait)
                on_entries(entries)

        running = defer.ensureDeferred(follow())
        running.addErrback(lambda f: f.trap(defer.CancelledError))
        return running.cancel


def _noting_cancel(d: defer.Deferred, cancelled: list[bool]) -> defer.Deferred:
    """``d``, whose cancellation (by whoever awaits it) is noted in ``cancelled``."""
    outer = defer.Deferred(lambda _: (cancelled.append(True), d.cancel()))
    d.chainDeferred(outer)
    return outer


def _path(key: str) -> str:
    return "/kv/" + quote(key, safe="/")


def _blocking(index: int, wait: float) -> str:
    return f"?index={index}&wait={int(wait * 1000)}ms" if index else ""


def _timeout(base: float, wait: float) -> float:
    return base + wait


def _sleep(clock, seconds: float) -> defer.Deferred:
    d = defer.Deferred()
    clock.callLater(seconds, d.callback, None)
    return d
