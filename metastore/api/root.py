"""The root of a member's HTTP tree: which API owns which path.

Each API is mounted by its first path segment, either for everything under
it (``admin``; later ``v3``) or for that one path and given methods only
(``GET``/``HEAD`` of ``health`` and ``version``), and sees the request's path whole, as if it were the root;
every other path belongs to the seed REST API.  A new API is one more
mount, without touching the others.
"""

from __future__ import annotations

from twisted.web.resource import IResource, Resource


class RootResource(Resource):
    """Routes each request by its first path segment to a mounted API."""

    def __init__(
        self,
        default: IResource,
        mounts: dict[bytes, IResource],
        exact: dict[bytes, tuple[IResource, frozenset[bytes]]] | None = None,
    ) -> None:
        super().__init__()
        self._default = default
        self._mounts = dict(mounts)
        self._exact = dict(exact or {})

    def getChildWithDefault(self, segment: bytes, request) -> IResource:
        """The API mounted at ``segment`` (else the default), given the whole path."""
        whole_path = not request.postpath
        request.postpath.insert(0, request.prepath.pop())
        resource, methods = self._exact.get(segment, (None, frozenset()))
        if whole_path and request.method in methods:
            return resource
        return self._mounts.get(segment, self._default)


def member_root(seed: IResource, admin: IResource) -> RootResource:
    """A member's tree: ``/admin/...``, ``/health`` and ``/version`` to
    ``admin``, everything else to ``seed``."""
    reads = frozenset({b"GET", b"HEAD"})
    return RootResource(seed, {b"admin": admin}, exact={b"health": (admin, reads), b"version": (admin, reads)})
