"""The root of a member's HTTP tree: which API owns which path.

Each API is mounted by its first path segment (``admin``, ``health``,
``version``; later ``v3``) and sees the request's path whole, as if it were
the root; every other path belongs to the seed REST API.  A new API is one
more mount, without touching the others.
"""

from __future__ import annotations

from twisted.web.resource import IResource, Resource


class RootResource(Resource):
    """Routes each request by its first path segment to a mounted API."""

    def __init__(self, default: IResource, mounts: dict[bytes, IResource]) -> None:
        super().__init__()
        self._default = default
        self._mounts = dict(mounts)

    def getChildWithDefault(self, segment: bytes, request) -> IResource:
        """The API mounted at ``segment`` (else the default), given the whole path."""
        request.postpath.insert(0, request.prepath.pop())
        return self._mounts.get(segment, self._default)


def member_root(seed: IResource, admin: IResource) -> RootResource:
    """A member's tree: admin, health and version to ``admin``, the rest to ``seed``."""
    return RootResource(seed, {b"admin": admin, b"health": admin, b"version": admin})
