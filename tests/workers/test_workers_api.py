"""The API tests of ``tests/api``, run again against a member with two
front processes (``--workers 2``): the core runs in this process (so the
tests can still look at its node), the fronts are real child processes
serving the client port, and every request goes through one of them."""

from __future__ import annotations

import treq

from tests.api import test_edge, test_rest, test_rest_auth, test_rest_leases
from tests.api.v3 import test_auth_routes, test_cluster_maintenance_routes, test_kv_routes, test_lease_watch_routes
from tests.process import wait_until

FRONTS = 2


class WorkersMember:
    """Mixed in before a ``SingleMemberTestCase``: the member runs with
    ``FRONTS`` fronts, and ``start_member`` returns once they serve."""

    async def start_member(self, fsync=None, **overrides):
        """Start the member with its fronts; wait until each is linked and one answers."""
        member = await super().start_member(fsync, workers=FRONTS, **overrides)
        fronts = member.fronts
        await wait_until(lambda: len(fronts.link.fanout.links) == FRONTS, timeout=30, what="the fronts to link")

        async def serving():
            try:
                response = await treq.get(self.url + "/livez", persistent=False)
                await treq.content(response)
                return response.code == 200
            except Exception:
                return False

        await wait_until(serving, timeout=30, what="a front to serve")
        return member


class KeyValueTests(WorkersMember, test_rest.KeyValueTests):
    """The seed API's key-value checks through fronts."""


class ConditionalWriteTests(WorkersMember, test_rest.ConditionalWriteTests):
    """If-Match / If-None-Match through fronts."""


class BadInputTests(WorkersMember, test_rest.BadInputTests):
    """Bad input through fronts (proxied admin routes included)."""


class DiskFailureTests(WorkersMember, test_rest.DiskFailureTests):
    """A failing fsync is a 503 through fronts too."""


class LeaseTests(WorkersMember, test_rest_leases.LeaseTests):
    """``?ttl`` and ``?refresh`` through fronts."""


class BlockingReadTests(WorkersMember, test_rest_leases.BlockingReadTests):
    """Blocking reads: watches held by the core for a front."""


class KVRouteTests(WorkersMember, test_kv_routes.KVRouteTests):
    """The v3 KV service served by fronts."""


class ClusterRouteTests(WorkersMember, test_cluster_maintenance_routes.ClusterRouteTests):
    """The v3 cluster service, forwarded to the core."""


class MaintenanceRouteTests(WorkersMember, test_cluster_maintenance_routes.MaintenanceRouteTests):
    """The v3 maintenance service, forwarded to the core."""


class SingleMemberEdgeTests(WorkersMember, test_edge.SingleMemberEdgeTests):
    """Edge cases of the HTTP layer through fronts."""


SingleMemberEdgeTests.test_unexpected_exception_is_json_500_logged_once_with_its_id.skip = (
    "patches the core's store, which a front does not read (it reads its replica)"
)


class RocksDBKeyValueTests(WorkersMember, test_rest.KeyValueTests):
    """The key-value checks through fronts of a RocksDB member (the fronts'
    replicas are in memory whatever the core's engine)."""

    config_overrides = {"storage": "rocksdb"}


class LeaseRouteTests(WorkersMember, test_lease_watch_routes.LeaseRouteTests):
    """The v3 lease service, forwarded to the core (keep-alive streams included)."""


class WatchRouteTests(WorkersMember, test_lease_watch_routes.WatchRouteTests):
    """v3 watch streams through fronts."""


class ProgressRouteTests(WorkersMember, test_lease_watch_routes.ProgressRouteTests):
    """Progress notifications through fronts."""


class FragmentRouteTests(WorkersMember, test_lease_watch_routes.FragmentRouteTests):
    """Fragmented watch responses through fronts."""


class AuthManagementTests(WorkersMember, test_auth_routes.AuthManagementTests):
    """Users, roles and tokens with fronts: while auth is enabled every
    request goes whole to the core, which answers as in one process."""


class PermissionDeniedTests(WorkersMember, test_auth_routes.PermissionDeniedTests):
    """A user with a role reads and writes through a front; one without the
    permission is refused exactly as without fronts (KV, txn, leases,
    watches, admin routes)."""


class RestAuthTests(WorkersMember, test_rest_auth.RestAuthTests):
    """The seed API with auth enabled through fronts: tokens, Basic, per-key permissions."""
