"""Drive a member with the ``etcd3`` PyPI package (python-etcd3, gRPC) and
print what it saw as one JSON object.

    PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python python -m tests.etcd3_client_run HOST PORT

Run in a child process: etcd3 registers its own generated ``etcdserverpb``
messages in protobuf's default pool, which clashes with MetaStore's, and
its stubs (made for protobuf 3) import only with the pure-Python protobuf.
Nothing of ``metastore`` is imported here.
"""

from __future__ import annotations

import json
import queue
import sys

import etcd3

WAIT = 15.0


def main(host: str, port: int) -> dict:
    client = etcd3.client(host, port, timeout=WAIT)
    seen: dict = {}
    lease = client.lease(30)
    seen["lease_granted_ttl"] = lease.granted_ttl
    client.put("e3/k", "v1", lease=lease)
    value, meta = client.get("e3/k")
    seen["get"] = [value.decode(), meta.lease_id == lease.id, meta.version]

    events: queue.Queue = queue.Queue()
    watch_id = client.add_watch_callback("e3/", events.put, range_end="e30")
    client.put("e3/k", "v2", lease=lease)
    client.delete("e3/k")
    got = [events.get(timeout=WAIT), events.get(timeout=WAIT)]
    seen["watch"] = [[type(e).__name__, e.key.decode(), e.value.decode()] for r in got for e in r.events]
    client.cancel_watch(watch_id)

    client.put("e3/leased", "x", lease=lease)
    refreshed = lease.refresh()
    seen["refresh_ttl"] = [r.TTL for r in refreshed]
    seen["remaining_ttl_positive"] = 0 < lease.remaining_ttl <= 30
    seen["keys"] = [k.decode() for k in lease.keys]
    lease.revoke()
    seen["after_revoke"] = [client.get("e3/leased")[0], client.get_lease_info(lease.id).TTL]
    client.close()
    return seen


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))))
