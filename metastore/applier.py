"""Applying committed entries: the keyspace, the membership, their waiters."""

from __future__ import annotations

from typing import Callable, Sequence

from twisted.logger import Logger

from metastore import raft
from metastore.kv.commands import Command, CommandError, PublishMember, SetAlarm, UpdateMember, decode_command
from metastore.kv.errors import NoSpaceError
from metastore.kv.validation import adds_data
from metastore.kv.store import KeyValueStore
from metastore.membership import Membership
from metastore.raft.types import ConfChange, ConfState, Entry, EntryType
from metastore.waiters import PendingRequests

log = Logger()


class EntryApplier:
    """Applies committed entries in log order to the key-value store and
    the membership, and answers the requests waiting for them.

    A membership change is applied on its own: first to raft
    (``apply_conf_change``), then to
    ``membership``; the engine stores the new membership record with the
    change's index.  An entry that holds no valid command is skipped by
    every member alike, so state stays identical."""

    def __init__(
        self,
        store: KeyValueStore,
        membership: Membership,
        pending: PendingRequests,
        apply_conf_change: Callable[[ConfChange], object],
        conf_state: Callable[[], ConfState],
    ) -> None:
        self._store = store
        self._membership = membership
        self._pending = pending
        self._apply_conf_change = apply_conf_change
        self._conf_state = conf_state
        self.first_applied_index: int | None = None
        """The index of the first entry this process applied."""

    def apply(self, entries: Sequence[Entry]) -> None:
        """Apply ``entries`` (committed, durable, in order)."""
        if not entries:
            return
        if self.first_applied_index is None:
            self.first_applied_index = entries[0].index
        run: list[tuple[bytes | None, Command | None]] = []
        for entry in entries:
            if entry.type == EntryType.EntryConfChange:
                self._apply_commands(run, entry.index - 1)
                run = []
                change = raft.decode_conf_change(entry.data)
                self._apply_conf_change(change)
                self._membership.apply_conf_change(change)
                self._apply_commands([(None, None)], entry.index)
            else:
                run.append(self._decode(entry))
        self._apply_commands(run, entries[-1].index)

    def _decode(self, entry: Entry) -> tuple[bytes | None, Command | None]:
        if not entry.data:
            return None, None  # a new leader's empty entry
        try:
            request_id, command = decode_command(entry.data)
        except CommandError as e:
            log.error("entry {i} holds no valid command, skipped: {e}", i=entry.index, e=e)
            return None, None
        if isinstance(command, (PublishMember, UpdateMember)):
            self._membership.apply_attributes(command)
            self._pending.resolve(request_id, None)
            return None, None
        if isinstance(command, SetAlarm):
            self._membership.apply_alarm(command)
            self._pending.resolve(request_id, None)
            return None, None
        if self._membership.out_of_space and adds_data(command):
            self._pending.resolve(request_id, NoSpaceError())  # etcd's capped applier
            return None, None
        return request_id, command

    def _apply_commands(self, run: list[tuple[bytes | None, Command | None]], index: int) -> None:
        if not run:
            return
        record = self._membership.changed_record(self._conf_state)
        results = self._store.apply(index, [c for _, c in run], record)
        for (request_id, _), result in zip(run, results):
            if request_id is not None:
                self._pending.resolve(request_id, result)
