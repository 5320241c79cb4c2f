"""etcd's Maintenance service, protocol-neutral: status, hash, hashkv,
defragment, alarm, snapshot and MoveLeader; and their JSON form for the
v3 JSON API (``/maintenance/transfer-leadership`` is MoveLeader there)."""

from __future__ import annotations

import base64
import enum
import os
from dataclasses import dataclass
from typing import Iterator

from metastore.api.v3.errors import INVALID_ARGUMENT, UNAVAILABLE, V3Error
from metastore.api.v3.json_fields import enum_field, int_field, uint_field
from metastore.api.v3.kv_codec import without_zeros
from metastore.api.v3.versions import ETCD_SERVER_VERSION
from metastore.facade import AlarmType, MemberFacade
import metastore.snapshots.stream as stream

SNAPSHOT_CHUNK_BYTES = 32 * 1024
"""etcd sends the snapshot in 32 KiB blobs."""


class AlarmAction(enum.IntEnum):
    """``AlarmRequest.AlarmAction``."""

    GET = 0
    ACTIVATE = 1
    DEACTIVATE = 2


@dataclass(frozen=True, slots=True)
class StatusAnswer:
    """etcd's ``StatusResponse`` fields (``revision`` is its header's)."""

    revision: int
    version: str
    db_size: int
    leader: int
    raft_index: int
    raft_term: int
    raft_applied_index: int
    errors: list[str]
    db_size_in_use: int
    is_learner: bool


@dataclass(frozen=True, slots=True)
class HashAnswer:
    """etcd's ``HashKVResponse`` (and ``HashResponse``: ``compact_revision`` 0)
    with the revision of its header."""

    revision: int
    hash: int
    compact_revision: int = 0


class MaintenanceService:
    """etcd's ``Maintenance`` service over a member's facade; raises
    etcd's errors."""

    def __init__(self, member: MemberFacade) -> None:
        self._member = member

    def status(self) -> StatusAnswer:
        """``Maintenance.Status``: this member's view."""
        status = self._member.status()
        me = next((m for m in self._member.members() if m.member_id == status.member_id), None)
        size = self._member.db_size()
        return StatusAnswer(
            revision=status.revision,
            version=ETCD_SERVER_VERSION,
            db_size=size,
            leader=status.leader,
            raft_index=status.commit_index,
            raft_term=status.term,
            raft_applied_index=status.applied_index,
            errors=[f"memberID:{m} alarm:{a.name} " for m, a in self._member.alarms()],
            db_size_in_use=size,
            is_learner=bool(me and me.is_learner),
        )

    def hash(self) -> HashAnswer:
        """``Maintenance.Hash``: a hash of the whole keyspace history here
        (etcd hashes its database file; MetaStore's equals across members
        that applied the same entries)."""
        value, _ = self._member.hash_kv(0)
        return HashAnswer(self._member.revision, value)

    def hash_kv(self, revision: int) -> HashAnswer:
        """``Maintenance.HashKV`` at ``revision`` (0: now)."""
        value, compacted = self._member.hash_kv(revision)
        return HashAnswer(self._member.revision, value, compacted)

    def defragment(self) -> None:
        """``Maintenance.Defragment``: accepted; the engines need no defragmenting."""

    async def alarm(self, action: AlarmAction, member_id: int, alarm: AlarmType) -> list[tuple[int, AlarmType]]:
        """``Maintenance.Alarm``, changes through raft; answers as etcd 3.4
        does: GET every raised alarm, ACTIVATE the alarm raised, DEACTIVATE
        the alarm disarmed (none when it was not raised)."""
        if action is AlarmAction.GET:
            return self._member.alarms()
        if alarm is AlarmType.NONE:
            raise V3Error(INVALID_ARGUMENT, "etcdserver: alarm type is NONE")
        was_raised = (member_id, alarm) in self._member.alarms()
        await self._member.set_alarm(member_id, alarm, action is AlarmAction.ACTIVATE)
        return [(member_id, alarm)] if action is AlarmAction.ACTIVATE or was_raised else []

    async def move_leader(self, target: int) -> None:
        """``Maintenance.MoveLeader``: returns once ``target`` leads."""
        await self._member.transfer_leadership(target)

    async def snapshot(self) -> str:
        """``Maintenance.Snapshot``: the path of a new snapshot file of the
        whole store (MetaStore's format; ``snapshot_chunks`` streams it);
        UNAVAILABLE while another snapshot is being taken."""
        try:
            return await self._member.snapshot_file()
        except RuntimeError as e:
            raise V3Error(UNAVAILABLE, f"etcdserver: {e}; retry") from None


def snapshot_chunks(path: str) -> Iterator[tuple[bytes, int]]:
    """The stream of the snapshot file at ``path`` as etcd sends it:
    ``(blob, remaining_bytes)`` pairs of at most ``SNAPSHOT_CHUNK_BYTES``,
    read one at a time, ``remaining_bytes`` counting down to 0.  The bytes
    are ``metastore.snapshots.stream``'s, which ``etcdctl snapshot save``
    accepts and ``--restore-from`` reads."""
    remaining = stream.stream_size(os.path.getsize(path))
    for blob in stream.stream_chunks(path, SNAPSHOT_CHUNK_BYTES):
        remaining -= len(blob)
        yield blob, remaining


# -- the JSON API's form -----------------------------------------------------


def alarms_json(alarms) -> list[dict]:
    """``AlarmMember`` messages."""
    return [without_zeros({"memberID": str(member_id), "alarm": alarm.name}) for member_id, alarm in alarms]


class MaintenanceJSON:
    """The JSON routes' side of ``MaintenanceService``: bodies in, answers out."""

    def __init__(self, service: MaintenanceService, headers) -> None:
        self._service = service
        self._headers = headers

    async def status(self, body: dict) -> dict:
        """``/maintenance/status``."""
        s = self._service.status()
        return without_zeros({
            "header": self._headers.at(s.revision),
            "version": s.version,
            "dbSize": str(s.db_size),
            "leader": str(s.leader),
            "raftIndex": str(s.raft_index),
            "raftTerm": str(s.raft_term),
            "raftAppliedIndex": str(s.raft_applied_index),
            "errors": s.errors,
            "dbSizeInUse": str(s.db_size_in_use),
            "isLearner": s.is_learner,
        })  # fmt: skip

    async def hash(self, body: dict) -> dict:
        """``/maintenance/hash``."""
        answer = self._service.hash()
        return without_zeros({"header": self._headers.at(answer.revision), "hash": str(answer.hash)})

    async def hashkv(self, body: dict) -> dict:
        """``/maintenance/hashkv``."""
        answer = self._service.hash_kv(int_field(body, "revision"))
        return without_zeros({
            "header": self._headers.at(answer.revision), "hash": str(answer.hash),
            "compact_revision": str(answer.compact_revision),
        })  # fmt: skip

    async def defragment(self, body: dict) -> dict:
        """``/maintenance/defragment``."""
        self._service.defragment()
        return {"header": self._headers.now()}

    async def alarm(self, body: dict) -> dict:
        """``/maintenance/alarm``."""
        action = enum_field(body, "action", AlarmAction)
        alarm, member_id = AlarmType.NONE, 0
        if action is not AlarmAction.GET:
            alarm, member_id = enum_field(body, "alarm", AlarmType), uint_field(body, "memberID")
        alarms = await self._service.alarm(action, member_id, alarm)
        return without_zeros({"header": self._headers.now(), "alarms": alarms_json(alarms)})

    async def move_leader(self, body: dict) -> dict:
        """``/maintenance/transfer-leadership``."""
        await self._service.move_leader(uint_field(body, "targetID"))
        return {"header": self._headers.now()}

    async def snapshot(self, body: dict) -> Iterator[dict]:
        """``/maintenance/snapshot``: as the gateway streams etcd's, one
        ``{"result": ...}`` message per blob."""
        path = await self._service.snapshot()
        header = self._headers.now()
        return (
            {"result": without_zeros({"header": header, "remaining_bytes": str(remaining),
                                      "blob": base64.b64encode(blob).decode("ascii")})}
            for blob, remaining in snapshot_chunks(path)
        )  # fmt: skip
