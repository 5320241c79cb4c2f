"""The client and metastorectl against a real etcd 3.4: the same answers
parse, and ``--user`` authenticates as etcdctl does."""

from __future__ import annotations

from twisted.internet import threads
from twisted.trial.unittest import TestCase

from metastore.client import wire
from metastore.client.sync import Client
from tests.client.test_ctl_process import ctl
from tests.etcd import EtcdCluster


class EtcdTests(TestCase):
    """etcd is the model: what works against MetaStore works against it."""

    timeout = 120

    async def test_client_against_etcd(self):
        """Put, get by prefix, txn, lease and status answers from etcd parse."""
        etcd = EtcdCluster(self)
        await etcd.start()
        client = Client(etcd.urls)
        self.addCleanup(client.close)

        def work():
            client.put("a/1", "x")
            client.put("a/2", "y")
            found = client.get("a/", prefix=True)
            swapped = client.txn([wire.Compare("a/1", "VALUE", "EQUAL", "x")], [wire.op_put("a/1", "z")])
            with client.lease(30) as lease:
                client.put("leased", "v", lease=lease.id)
                keys = client.lease_time_to_live(lease.id, keys=True).keys
            status = client.status()
            return found, swapped, keys, status, client.get("leased").kvs

        found, swapped, keys, status, after_revoke = await threads.deferToThread(work)
        self.assertEqual([(kv.key, kv.value) for kv in found.kvs], [(b"a/1", b"x"), (b"a/2", b"y")])
        self.assertTrue(swapped.succeeded)
        self.assertEqual(keys, (b"leased",))
        self.assertEqual(status.leader, status.header.member_id)
        self.assertEqual(after_revoke, ())

    async def test_user_flag_authenticates(self):
        """With auth enabled, ``--user root:pw`` works; no user or a wrong password exits 1 with etcd's words."""
        etcd = EtcdCluster(self)
        await etcd.start()
        admin = Client(etcd.urls)
        self.addCleanup(admin.close)

        def enable_auth():
            admin.send(wire.Call("/v3/auth/user/add", {"name": "root", "password": "pw"}, False))
            admin.send(wire.Call("/v3/auth/user/grant", {"user": "root", "role": "root"}, False))
            admin.send(wire.Call("/v3/auth/enable", {}, False))

        await threads.deferToThread(enable_auth)
        put = ctl(etcd.urls, "--user", "root:pw", "put", "k", "v")
        self.assertEqual((put.returncode, put.stdout), (0, "OK\n"), put.stderr)
        got = ctl(etcd.urls, "--user", "root", "--password", "pw", "get", "k")
        self.assertEqual(got.stdout, "k\nv\n")
        anonymous = ctl(etcd.urls, "get", "k")
        self.assertEqual((anonymous.returncode, anonymous.stderr), (1, "Error: etcdserver: user name is empty\n"))
        wrong = ctl(etcd.urls, "--user", "root:nope", "get", "k")
        self.assertEqual(wrong.returncode, 1)
        self.assertIn("authentication failed", wrong.stderr)

        user = Client(etcd.urls, user="root", password="pw")
        self.addCleanup(user.close)
        self.assertEqual((await threads.deferToThread(user.get, "k")).kvs[0].value, b"v")
        user._token = "no-longer-valid"  # as after etcd's token TTL: renewed once
        self.assertEqual((await threads.deferToThread(user.get, "k")).kvs[0].value, b"v")
        self.assertNotEqual(user._token, "no-longer-valid")
