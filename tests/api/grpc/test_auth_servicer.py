"""Auth over gRPC on an in-process member: the ``Auth`` service, the token
from the call's ``token`` metadata, and permission denied on KV, lease and
watch calls, with etcd's status codes.

    python -m twisted.trial --reactor=asyncio tests.api.grpc.test_auth_servicer
"""

from __future__ import annotations

import grpc
from twisted.trial.unittest import TestCase

from metastore.api.grpc.proto import auth_pb2, rpc_pb2, rpc_pb2_grpc
from metastore.auth import passwords
from tests.api.grpc.member import open_channel, require_asyncio, run, start_member

CALL_TIMEOUT = 20.0


class AuthServicerTests(TestCase):
    """``u`` may read and write ``[a, c)``; root may do anything."""

    async def setUp(self):
        require_asyncio(__name__)
        self.patch(passwords, "SCRYPT_N", 1 << 4)
        self.member, port = await start_member(self)
        channel = open_channel(self, port)
        self.auth = rpc_pb2_grpc.AuthStub(channel)
        self.kv = rpc_pb2_grpc.KVStub(channel)
        self.lease = rpc_pb2_grpc.LeaseStub(channel)
        self.watch = rpc_pb2_grpc.WatchStub(channel)
        a = self.auth
        await run(a.UserAdd(rpc_pb2.AuthUserAddRequest(name="root", password="pw"), timeout=CALL_TIMEOUT))
        await run(a.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"), timeout=CALL_TIMEOUT))
        await run(a.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="r"), timeout=CALL_TIMEOUT))
        perm = auth_pb2.Permission(permType=auth_pb2.Permission.READWRITE, key=b"a", range_end=b"c")
        await run(a.RoleGrantPermission(rpc_pb2.AuthRoleGrantPermissionRequest(name="r", perm=perm),
                                        timeout=CALL_TIMEOUT))
        await run(a.UserAdd(rpc_pb2.AuthUserAddRequest(name="u", password="upw"), timeout=CALL_TIMEOUT))
        await run(a.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="u", role="r"), timeout=CALL_TIMEOUT))
        await run(a.AuthEnable(rpc_pb2.AuthEnableRequest(), timeout=CALL_TIMEOUT))
        self.root = await self.token("root", "pw")
        self.user = await self.token("u", "upw")

    async def token(self, name: str, password: str) -> tuple[tuple[str, str]]:
        """Call metadata carrying ``name``'s token."""
        answer = await run(self.auth.Authenticate(rpc_pb2.AuthenticateRequest(name=name, password=password),
                                                  timeout=CALL_TIMEOUT))
        return (("token", answer.token),)

    async def assertStatus(self, call, code: grpc.StatusCode, message: str) -> None:
        """``call`` (a gRPC coroutine) fails with ``code`` and etcd's ``message``."""
        with self.assertRaises(grpc.aio.AioRpcError) as raised:
            await run(call)
        self.assertEqual((raised.exception.code(), raised.exception.details()), (code, message))

    async def assertDenied(self, method, request) -> None:
        """``u`` is refused permission; root is not."""
        await self.assertStatus(method(request, metadata=self.user, timeout=CALL_TIMEOUT),
                                grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")
        await run(method(request, metadata=self.root, timeout=CALL_TIMEOUT))

    async def test_kv_calls(self):
        """put, range, delete, txn (compare, success, failure), compaction."""
        await run(self.kv.Put(rpc_pb2.PutRequest(key=b"a", value=b"1"), metadata=self.user, timeout=CALL_TIMEOUT))
        await self.assertDenied(self.kv.Put, rpc_pb2.PutRequest(key=b"z", value=b"1"))
        await self.assertDenied(self.kv.Range, rpc_pb2.RangeRequest(key=b"a", range_end=b"d"))
        await self.assertDenied(self.kv.DeleteRange, rpc_pb2.DeleteRangeRequest(key=b"z"))
        compare = rpc_pb2.Compare(key=b"z", target=rpc_pb2.Compare.VERSION, result=rpc_pb2.Compare.EQUAL, version=0)
        good = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"b", value=b"1"))
        bad = rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"z"))
        await self.assertDenied(self.kv.Txn, rpc_pb2.TxnRequest(compare=[compare], success=[good]))
        await self.assertDenied(self.kv.Txn, rpc_pb2.TxnRequest(success=[good], failure=[bad]))
        await self.assertDenied(self.kv.Compact, rpc_pb2.CompactionRequest(revision=1))

    async def test_tokens(self):
        """No token: "user name is empty"; a bad one: UNAUTHENTICATED; a wrong password: "authentication failed"."""
        await self.assertStatus(self.kv.Range(rpc_pb2.RangeRequest(key=b"a"), timeout=CALL_TIMEOUT),
                                grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: user name is empty")
        await self.assertStatus(self.kv.Range(rpc_pb2.RangeRequest(key=b"a"), metadata=(("token", "x"),),
                                              timeout=CALL_TIMEOUT),
                                grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")
        await self.assertStatus(self.auth.Authenticate(rpc_pb2.AuthenticateRequest(name="u", password="x"),
                                                       timeout=CALL_TIMEOUT),
                                grpc.StatusCode.INVALID_ARGUMENT,
                                "etcdserver: authentication failed, invalid user ID or password")
        await self.assertStatus(self.auth.UserList(rpc_pb2.AuthUserListRequest(), metadata=self.user,
                                                   timeout=CALL_TIMEOUT),
                                grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")
        users = await run(self.auth.UserList(rpc_pb2.AuthUserListRequest(), metadata=self.root, timeout=CALL_TIMEOUT))
        self.assertEqual(list(users.users), ["root", "u"])

    async def test_lease_with_a_key_out_of_range(self):
        """Attaching a lease to a key out of range is a refused put; its revoke is refused."""
        grant = await run(self.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=60), metadata=self.user,
                                                timeout=CALL_TIMEOUT))
        await self.assertStatus(self.kv.Put(rpc_pb2.PutRequest(key=b"z", lease=grant.ID), metadata=self.user,
                                            timeout=CALL_TIMEOUT),
                                grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")
        await run(self.kv.Put(rpc_pb2.PutRequest(key=b"z", lease=grant.ID), metadata=self.root, timeout=CALL_TIMEOUT))
        await self.assertDenied(self.lease.LeaseRevoke, rpc_pb2.LeaseRevokeRequest(ID=grant.ID))

    async def test_watch_refused_and_revoked(self):
        """A watch out of range is refused at creation; one in range is
        cancelled when its permission is revoked."""
        call = self.watch.Watch(metadata=self.user, timeout=CALL_TIMEOUT)
        await run(call.write(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"z"))))
        refused = await run(call.read())
        self.assertEqual((refused.created, refused.canceled, refused.cancel_reason),
                         (True, True, "etcdserver: permission denied"))
        await run(call.write(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"b"))))
        created = await run(call.read())
        self.assertEqual((created.created, created.canceled), (True, False))
        await run(self.auth.RoleRevokePermission(
            rpc_pb2.AuthRoleRevokePermissionRequest(role="r", key=b"a", range_end=b"c"), metadata=self.root,
            timeout=CALL_TIMEOUT))
        cancelled = await run(call.read())
        self.assertEqual((cancelled.watch_id, cancelled.canceled, cancelled.cancel_reason),
                         (created.watch_id, True, "etcdserver: permission denied"))
        call.cancel()
