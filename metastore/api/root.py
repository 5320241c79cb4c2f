"""The root of a member's HTTP tree: which API owns which path.

Each API is mounted by its first path segment, either for everything under
it (``admin``, ``v3``, ``ui``) or for that one path alone (``health``,
``livez``, ``readyz``, ``version``), and sees the request's path whole, as
if it were the root; every other path belongs to the seed REST API.  A new API is one more
mount, without touching the others.
"""

from __future__ import annotations

from twisted.web.resource import IResource, Resource

from metastore.api.dashboard import DashboardResource


class RootResource(Resource):
    """Routes each request by its first path segment to a mounted API."""

    def __init__(
        self,
        default: IResource,
        mounts: dict[bytes, IResource],
        exact: dict[bytes, IResource] | None = None,
    ) -> None:
        super().__init__()
        self._default = default
        self._mounts = dict(mounts)
        self._exact = dict(exact or {})

    def getChildWithDefault(self, segment: bytes, request) -> IResource:
        """The API mounted at ``segment`` (else the default), given the whole path."""
        whole_path = not request.postpath
        request.postpath.insert(0, request.prepath.pop())
        if whole_path and segment in self._exact:
            return self._exact[segment]
        return self._mounts.get(segment, self._default)

    def is_mounted(self, segment: bytes) -> bool:
        """Whether a path starting with ``segment`` belongs to a mounted API
        (not to the default one)."""
        return segment in self._mounts or segment in self._exact


def member_root(
    seed: IResource, admin: IResource, v3: IResource | None = None, metrics: IResource | None = None
) -> RootResource:
    """A member's tree: ``/admin/...``, ``/health``, ``/livez``,
    ``/readyz`` and ``/version`` to ``admin``, ``/v3/...`` (and the older
    ``/v3beta/...`` and ``/v3alpha/...``) to ``v3``, ``/metrics`` to
    ``metrics`` (to ``admin``, which answers 404, when metrics are off: the
    path stays reserved), ``/ui`` and ``/ui/...`` to the dashboard,
    everything else to ``seed``."""
    exact = {name: admin for name in (b"health", b"livez", b"readyz", b"version")}
    exact[b"metrics"] = admin if metrics is None else metrics
    mounts = {b"admin": admin, b"ui": DashboardResource()}
    if v3 is not None:
        mounts.update({name: v3 for name in (b"v3", b"v3beta", b"v3alpha")})
    return RootResource(seed, mounts, exact=exact)
