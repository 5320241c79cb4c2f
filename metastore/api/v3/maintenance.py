"""The v3 Maintenance service: status, hash, hashkv, defragment, alarm,
snapshot and MoveLeader (``/maintenance/transfer-leadership``)."""

from __future__ import annotations

import base64
import enum
from typing import Iterator

from metastore.api.v3.errors import INVALID_ARGUMENT, UNAVAILABLE, V3Error
from metastore.api.v3.header import Headers
from metastore.api.v3.json_fields import enum_field, int_field, uint_field
from metastore.api.v3.kv_codec import without_zeros
from metastore.api.v3.versions import ETCD_SERVER_VERSION
from metastore.facade import AlarmType, MemberFacade

SNAPSHOT_CHUNK_BYTES = 32 * 1024
"""etcd's gateway sends the snapshot in 32 KiB blobs."""


class AlarmAction(enum.IntEnum):
    """``AlarmRequest.AlarmAction``."""

    GET = 0
    ACTIVATE = 1
    DEACTIVATE = 2


def alarms_json(alarms) -> list[dict]:
    """``AlarmMember`` messages."""
    return [without_zeros({"memberID": str(member_id), "alarm": alarm.name}) for member_id, alarm in alarms]


class MaintenanceService:
    """etcd's ``Maintenance`` service over a member's facade."""

    def __init__(self, member: MemberFacade, headers: Headers) -> None:
        self._member = member
        self._headers = headers

    async def status(self, body: dict) -> dict:
        """``/maintenance/status``: this member's view."""
        status = self._member.status()
        me = next((m for m in self._member.members() if m.member_id == status.member_id), None)
        size = self._member.db_size()
        return without_zeros({
            "header": self._headers.at(status.revision),
            "version": ETCD_SERVER_VERSION,
            "dbSize": str(size),
            "leader": str(status.leader),
            "raftIndex": str(status.commit_index),
            "raftTerm": str(status.term),
            "raftAppliedIndex": str(status.applied_index),
            "errors": [f"memberID:{m} alarm:{a.name} " for m, a in self._member.alarms()],
            "dbSizeInUse": str(size),
            "isLearner": bool(me and me.is_learner),
        })  # fmt: skip

    async def hash(self, body: dict) -> dict:
        """``/maintenance/hash``: a hash of the whole keyspace history here
        (etcd hashes its database file; MetaStore's equals across members
        that applied the same entries)."""
        value, _ = self._member.hash_kv(0)
        return without_zeros({"header": self._headers.now(), "hash": str(value)})

    async def hashkv(self, body: dict) -> dict:
        """``/maintenance/hashkv``: etcd's HashKV at ``revision`` (0: now)."""
        value, compacted = self._member.hash_kv(int_field(body, "revision"))
        return without_zeros({
            "header": self._headers.now(), "hash": str(value), "compact_revision": str(compacted),
        })  # fmt: skip

    async def defragment(self, body: dict) -> dict:
        """``/maintenance/defragment``: accepted; the engines need no defragmenting."""
        return {"header": self._headers.now()}

    async def alarm(self, body: dict) -> dict:
        """``/maintenance/alarm``: list (GET), raise (ACTIVATE) or disarm
        (DEACTIVATE) alarms; changes go through raft."""
        action = enum_field(body, "action", AlarmAction)
        if action is not AlarmAction.GET:
            alarm = enum_field(body, "alarm", AlarmType)
            member_id = uint_field(body, "memberID")
            if alarm is AlarmType.NONE:
                raise V3Error(INVALID_ARGUMENT, "etcdserver: alarm type is NONE")
            await self._member.set_alarm(member_id, alarm, action is AlarmAction.ACTIVATE)
        return without_zeros({"header": self._headers.now(), "alarms": alarms_json(self._member.alarms())})

    async def move_leader(self, body: dict) -> dict:
        """``/maintenance/transfer-leadership``: answers once ``targetID`` leads."""
        await self._member.transfer_leadership(uint_field(body, "targetID"))
        return {"header": self._headers.now()}

    async def snapshot(self, body: dict) -> Iterator[dict]:
        """``/maintenance/snapshot``: a new snapshot of the whole store, as
        the gateway streams etcd's: one ``{"result": ...}`` message per
        blob, ``remaining_bytes`` counting down to 0."""
        try:
            path = await self._member.snapshot_file()
        except RuntimeError as e:
            raise V3Error(UNAVAILABLE, f"etcdserver: {e}; retry") from None
        return _snapshot_messages(path, self._headers.now())


def _snapshot_messages(path: str, header: dict) -> Iterator[dict]:
    """The stream's messages, read from ``path`` one blob at a time."""
    with open(path, "rb") as source:
        source.seek(0, 2)
        remaining = source.tell()
        source.seek(0)
        while True:
            blob = source.read(SNAPSHOT_CHUNK_BYTES)
            remaining -= len(blob)
            yield {"result": without_zeros({
                "header": header, "remaining_bytes": str(remaining), "blob": base64.b64encode(blob).decode("ascii"),
            })}  # fmt: skip
            if not blob or remaining <= 0:
                return
