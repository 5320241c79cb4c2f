"""The ``header`` of every v3 response: which cluster and member answered,
at which store revision and raft term."""

from __future__ import annotations

from metastore.facade import MemberFacade


class Headers:
    """Makes response headers for one member of cluster ``cluster_id``."""

    def __init__(self, member: MemberFacade, cluster_id: int) -> None:
        self._member = member
        self._cluster_id = cluster_id

    def at(self, revision: int | None) -> dict:
        """etcd's ``ResponseHeader`` at ``revision`` (None: left out, as
        etcd does in the cluster API), 64-bit integers as strings."""
        header = {"cluster_id": str(self._cluster_id), "member_id": str(self._member.member_id)}
        if revision:
            header["revision"] = str(revision)
        header["raft_term"] = str(self._member.term)
        return header

    def json_at(self, revision: int | None) -> bytes:
        """``at(revision)`` as compact JSON."""
        ids = (self._cluster_id, self._member.member_id)
        if revision:
            return b'{"cluster_id":"%d","member_id":"%d","revision":"%d","raft_term":"%d"}' % (
                *ids, revision, self._member.term)
        return b'{"cluster_id":"%d","member_id":"%d","raft_term":"%d"}' % (*ids, self._member.term)

    def now(self) -> dict:
        """The header at the store's current revision."""
        return self.at(self._member.revision)
