"""etcd's Watch messages to and from the gateway's JSON.

A ``/v3/watch`` body is one ``WatchRequest``: its ``create_request`` (or a
``progress_request``); each response is written as the gateway writes a
stream message, ``{"result": WatchResponse}``, zero values left out (a PUT
event has no ``type``; watch id 0 is absent).
"""

from __future__ import annotations

from metastore.api.v3.header import Headers
from metastore.api.v3.json_fields import (
    bool_field,
    bytes_field,
    enum_value,
    int_field,
    list_field,
)
from metastore.api.v3.kv_codec import key_value, without_zeros
from metastore.api.v3.streaming import json_line
from metastore.api.v3.watch import WatchCreateRequest
from metastore.facade import EventType, WatchEvent, WatchFilter, WatchResponse


def create_request(body: dict) -> WatchCreateRequest:
    """A ``WatchCreateRequest`` from its JSON (filters by name or number)."""
    filters = tuple(dict.fromkeys(enum_value(f, "filters", WatchFilter) for f in list_field(body, "filters")))
    return WatchCreateRequest(
        key=bytes_field(body, "key"),
        range_end=bytes_field(body, "range_end"),
        start_revision=int_field(body, "start_revision"),
        filters=filters,
        prev_kv=bool_field(body, "prev_kv"),
        progress_notify=bool_field(body, "progress_notify"),
        watch_id=int_field(body, "watch_id"),
        fragment=bool_field(body, "fragment"),
    )


def event(value: WatchEvent) -> dict:
    """An ``mvccpb.Event``."""
    return without_zeros({
        "type": value.type.name if value.type is not EventType.PUT else None,
        "kv": key_value(value.kv),
        "prev_kv": None if value.prev_kv is None else key_value(value.prev_kv),
    })  # fmt: skip


def watch_response(response: WatchResponse, headers: Headers) -> dict:
    """One stream message: ``{"result": WatchResponse}``; a compacted
    cancel's header has no revision, as etcd's."""
    revision = None if response.compact_revision else response.revision
    return {"result": without_zeros({
        "header": headers.at(revision),
        "watch_id": str(response.watch_id),
        "created": response.created,
        "canceled": response.canceled,
        "compact_revision": str(response.compact_revision),
        "cancel_reason": response.cancel_reason,
        "fragment": response.fragment,
        "events": [event(e) for e in response.events],
    })}  # fmt: skip


class SharedEncoding:
    """Encodes watch responses as stream lines, once for a run of watchers
    that are sent the same events: the hub hands every watcher of one
    fan-out that wants the same events the same tuple, so the line made for
    the first is reused, byte for byte, for the others (a JSON watch's id
    is always 0 and the header is the member's)."""

    def __init__(self, headers: Headers) -> None:
        self._headers = headers
        self._last: tuple[tuple[WatchEvent, ...], tuple, bytes] | None = None

    def line(self, response: WatchResponse) -> bytes:
        """``json_line(watch_response(response, headers))``, reused when
        the previous response had the same events tuple and fields."""
        if not response.events:
            return json_line(watch_response(response, self._headers))
        header = self._headers.at(response.revision)
        key = (response.revision, response.watch_id, response.fragment, response.created, response.canceled,
               response.compact_revision, response.cancel_reason, header)
        last = self._last
        if last is not None and last[0] is response.events and last[1] == key:
            return last[2]
        line = json_line(watch_response(response, self._headers))
        self._last = (response.events, key, line)
        return line

