"""The client's operations, written once for both flavours.

Each method prepares a ``wire.Call`` and names the parser of its answer;
the flavour's ``_ask`` sends it and parses what comes back: at once in
the blocking ``Client``, in a Deferred in the Twisted ``TxClient``.
"""

from __future__ import annotations

from typing import Callable

from metastore.client import wire


def _header_of(body: dict) -> wire.Header:
    return wire.parse_header(body.get("header"))


class Operations:
    """etcd's v3 operations; see ``metastore.client.wire`` for the options."""

    def _ask(self, call: wire.Call, parse: Callable[[dict], object], url: str | None = None):
        raise NotImplementedError

    # -- kv

    def get(self, key, range_end=None, **options):
        """``key`` (or a range: ``range_end``, ``prefix=True``, ``from_key=True``)
        with etcd's options ``revision``, ``limit``, ``keys_only``, ``count_only``,
        ``serializable``, ``sort_order``, ``sort_target``: a ``RangeResult``."""
        return self._ask(wire.range_request(key, range_end, **options), wire.parse_range)

    def put(self, key, value, **options):
        """Set ``key`` (options ``lease``, ``prev_kv``, ``ignore_value``,
        ``ignore_lease``): a ``PutResult``."""
        return self._ask(wire.put_request(key, value, **options), wire.parse_put)

    def delete(self, key, range_end=None, **options):
        """Delete ``key`` or a range (``prefix=True``, ``from_key=True``,
        ``prev_kv``): a ``DeleteResult``."""
        return self._ask(wire.delete_request(key, range_end, **options), wire.parse_delete)

    def txn(self, compare=(), success=(), failure=()):
        """A transaction of ``wire.Compare``s and ``wire.op_*`` ops: a ``TxnResult``."""
        return self._ask(wire.txn_request(compare, success, failure), wire.parse_txn)

    def compact(self, revision: int, physical: bool = False):
        """Compact the history below ``revision``: the answer's ``Header``."""
        return self._ask(wire.compaction_request(revision, physical), _header_of)

    # -- leases

    def lease_grant(self, ttl: int, lease_id: int = 0):
        """A new lease of ``ttl`` seconds: a ``Lease``."""
        return self._ask(wire.lease_grant_request(ttl, lease_id), wire.parse_lease)

    def lease_revoke(self, lease_id: int):
        """Revoke the lease, deleting its keys: the answer's ``Header``."""
        return self._ask(wire.lease_revoke_request(lease_id), _header_of)

    def lease_keepalive_once(self, lease_id: int):
        """Reset the lease's TTL once: a ``Lease`` (``ttl`` -1: it is gone)."""
        return self._ask(wire.lease_keepalive_request(lease_id), wire.parse_lease)

    def lease_time_to_live(self, lease_id: int, keys: bool = False):
        """The lease's remaining TTL (-1: gone) and, if asked, its keys: a ``Lease``."""
        return self._ask(wire.lease_time_to_live_request(lease_id, keys), wire.parse_lease)

    def lease_list(self):
        """Every live lease's id."""
        return self._ask(wire.lease_leases_request(), wire.parse_leases)

    # -- cluster

    def member_list(self):
        """The members: a ``MemberList``."""
        return self._ask(wire.member_list_request(), wire.parse_members)

    def member_add(self, peer_url: str, learner: bool = False):
        """Add a member: a ``MemberList`` whose ``added`` is the new one."""
        return self._ask(wire.member_add_request(peer_url, learner), wire.parse_members)

    def member_remove(self, member_id: int):
        """Remove a member: the new ``MemberList``."""
        return self._ask(wire.member_remove_request(member_id), wire.parse_members)

    def member_promote(self, member_id: int):
        """Promote a learner to voter: the new ``MemberList``."""
        return self._ask(wire.member_promote_request(member_id), wire.parse_members)

    # -- maintenance (of one member: ``url``, or any)

    def status(self, url: str | None = None):
        """The member's ``Status``."""
        return self._ask(wire.status_request(), wire.parse_status, url)

    def hashkv(self, url: str | None = None, revision: int = 0):
        """The member's ``HashKV`` of the keyspace at ``revision`` (0: now)."""
        return self._ask(wire.hashkv_request(revision), wire.parse_hashkv, url)

    def defragment(self, url: str | None = None):
        """Defragment the member's storage: the answer's ``Header``."""
        return self._ask(wire.defragment_request(), _header_of, url)
