"""Consul-style blocking reads for the seed REST API: wait for a change.

``GET /{key}?index=N&wait=30s`` answers once ``key`` (or, with ``?list``,
a key under the prefix) changes after revision ``N``, or when the wait
ends, whichever is first; the answer carries ``X-MetaStore-Index``, the
revision to pass as ``index`` next time.  The wait is a watch from revision
``N + 1`` on the member's facade, so it wakes on exactly the changes a
watch would report, on any member.
"""

from __future__ import annotations

import re

from twisted.internet import defer

from metastore.api import validation
from metastore.api.errors import HTTPError
from metastore.facade import MemberFacade

DEFAULT_WAIT_SECONDS = 300.0
"""How long a blocking read waits when ``wait`` is not given (Consul's default)."""
MAX_WAIT_SECONDS = 600.0
"""The longest wait a client may ask for (Consul's cap)."""

_DURATION = re.compile(rb"\A([0-9]+(?:\.[0-9]+)?)(ms|s|m)?\Z")
_UNIT_SECONDS = {b"ms": 0.001, b"s": 1.0, b"m": 60.0, None: 1.0}


def wait_seconds(raw: bytes | None) -> float:
    """The ``wait`` argument (``100ms``, ``30s``, ``5m`` or seconds) in
    seconds, at most ``MAX_WAIT_SECONDS``; the default when absent."""
    if raw is None:
        return DEFAULT_WAIT_SECONDS
    match = _DURATION.match(raw.strip())
    if match is None:
        raise HTTPError(400, "bad_wait", f"wait is a duration like 30s, 5m or 500ms, got {raw[:40]!r}")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds > MAX_WAIT_SECONDS:
        raise HTTPError(400, "bad_wait", f"wait is at most {MAX_WAIT_SECONDS:g}s, got {raw[:40].decode()}")
    return seconds


def blocking_index(request) -> int | None:
    """The ``index`` argument as a revision, or None when the read does not block."""
    raw = request.args.get(b"index", [None])[0]
    return None if raw is None else validation.revision(raw, "index")


def wait_for_change(
    member: MemberFacade, key: bytes, range_end: bytes, after: int, seconds: float, clock
) -> defer.Deferred:
    """Fires with True once ``key`` (or ``[key, range_end)``) changes after
    revision ``after`` (at once if it already did, or if the history from
    there is compacted away), with False after ``seconds``.  Cancelling the
    Deferred (the client went away) ends the watch."""
    finished = defer.Deferred(lambda _: finish(None))
    state: dict = {"watch": None, "done": False}

    def finish(changed: bool | None) -> None:
        if state["done"]:
            return
        state["done"] = True
        if timer.active():
            timer.cancel()
        if state["watch"] is not None:
            state["watch"].cancel()
        if changed is not None:
            finished.callback(changed)

    def on_response(response) -> None:
        if response.events or (response.canceled and not state["done"]):
            finish(True)

    timer = clock.callLater(seconds, finish, False)
    watch = member.watch(key, range_end, after + 1, callback=on_response)
    if state["done"]:
        watch.cancel()
    else:
        state["watch"] = watch
    return finished
