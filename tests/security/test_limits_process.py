"""Limits that protect a real member, each with its clear error.

One member runs with ``--max-client-connections``, ``--client-request-rate``
and ``--max-watchers-per-stream`` (and gRPC): the connection over the cap
gets a 503 with a JSON reason, a client over its rate a 429 with a JSON
reason and ``Retry-After``, and a watch beyond the per-stream limit is
answered created-and-canceled with etcd's style of reason, while the
stream's other watches go on.
"""

from __future__ import annotations

import json
import queue
import socket
import urllib.error
import urllib.request

import grpc
from twisted.trial.unittest import SynchronousTestCase

from metastore.api.grpc.proto import rpc_pb2, rpc_pb2_grpc
from tests.chaos.helpers import http_json, is_leader, poll
from tests.process import Member, free_port


def get(url: str) -> tuple[int, dict, dict]:
    """(status, JSON body, headers) of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read() or b"null"), dict(response.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), dict(e.headers)


class LimitsTests(SynchronousTestCase):
    """Each limit's error, on one member."""

    def start(self, *flags: str) -> Member:
        """One healthy member with ``flags``."""
        self.grpc_port = free_port()
        member = Member(member_id=1, cluster=[f"http://127.0.0.1:{free_port()}"], http_port=free_port(),
                        workdir=self.mktemp(), extra=["--grpc-port", str(self.grpc_port), *flags])
        member.start()
        self.addCleanup(member.kill)
        poll(lambda: is_leader(member), timeout=30, what="the member to lead")
        return member

    def test_connections_over_the_cap_get_503_json(self):
        """With 3 connections open, the 4th is answered 503 with a reason and
        closed; once one closes, requests are served again."""
        member = self.start("--max-client-connections", "3")
        held = [socket.create_connection(("127.0.0.1", member.http_port), timeout=5) for _ in range(3)]
        try:
            def refused():
                status, body, _ = get(member.url + "/health")
                return (status, body) if status == 503 else None

            status, body = poll(refused, timeout=15, what="a 503 for the connection over the cap")
            self.assertEqual(body["error"], "too_many_connections")
            self.assertIn("--max-client-connections", body["message"])
        finally:
            held.pop().close()
        poll(lambda: http_json(member.url + "/health")[0] == 200, timeout=15, what="a served request again")
        for s in held:
            s.close()

    def test_a_client_over_its_rate_gets_429_json(self):
        """At 2 requests a second (burst 2), a quick run of 10 requests sees
        429s with a JSON reason and Retry-After; later requests pass again."""
        member = self.start("--client-request-rate", "2", "--client-request-burst", "2")
        answers = [get(member.url + "/health") for _ in range(10)]
        limited = [a for a in answers if a[0] == 429]
        self.assertTrue(limited, [a[0] for a in answers])
        status, body, headers = limited[0]
        self.assertEqual(body["error"], "too_many_requests")
        self.assertIn("--client-request-rate", body["message"])
        self.assertGreaterEqual(int(headers["Retry-After"]), 1)
        poll(lambda: get(member.url + "/health")[0] == 200, timeout=10, what="the rate to allow a request")

    def test_watchers_over_the_per_stream_limit_are_refused(self):
        """With --max-watchers-per-stream 2, a third watch on one gRPC stream
        is created-and-canceled with the reason; the first two still deliver."""
        member = self.start("--max-watchers-per-stream", "2")
        requests: queue.Queue = queue.Queue()

        def request_stream():
            for _ in range(10):
                item = requests.get(timeout=20)
                if item is None:
                    return
                yield item

        with grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
            responses = rpc_pb2_grpc.WatchStub(channel).Watch(request_stream(), timeout=30)
            for key in (b"a", b"b", b"c"):
                requests.put(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=key)))
            answers = [next(responses) for _ in range(3)]
            self.assertEqual([a.created for a in answers], [True, True, True])
            self.assertEqual([a.canceled for a in answers], [False, False, True])
            self.assertIn("etcdserver: too many watchers on this stream", answers[2].cancel_reason)
            kv = rpc_pb2_grpc.KVStub(channel)
            kv.Put(rpc_pb2.PutRequest(key=b"a", value=b"1"), timeout=10)
            event = next(responses)
            self.assertEqual([e.kv.key for e in event.events], [b"a"])
            requests.put(None)
            responses.cancel()
        self.assertTrue(member.running())

    def test_grpc_calls_over_the_rate_get_resource_exhausted(self):
        """At 2 calls a second, a quick run of Range calls sees
        RESOURCE_EXHAUSTED "etcdserver: too many requests"."""
        self.start("--client-request-rate", "2", "--client-request-burst", "2")
        codes = []
        with grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
            kv = rpc_pb2_grpc.KVStub(channel)
            for _ in range(8):
                try:
                    kv.Range(rpc_pb2.RangeRequest(key=b"k"), timeout=10)
                    codes.append("OK")
                except grpc.RpcError as e:
                    codes.append((e.code(), e.details()))
        self.assertIn((grpc.StatusCode.RESOURCE_EXHAUSTED, "etcdserver: too many requests"), codes)
        self.assertIn("OK", codes)
