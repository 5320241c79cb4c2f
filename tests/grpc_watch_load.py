"""A child process that holds many gRPC watches open on one member.

    python -m tests.grpc_watch_load HOST:PORT STREAMS WATCHES_PER_STREAM KEY

opens STREAMS ``Watch`` streams (each on its own channel when
``--channels`` is given, else all on one), creates WATCHES_PER_STREAM
watches of KEY on each, prints ``created N`` once every watch answered
``created``, then ``events N`` once every watch has seen an event (the
parent writes KEY), and exits when its standard input closes.  It runs on
its own asyncio loop, so the parent's reactor is not involved.
"""

from __future__ import annotations

import asyncio
import sys

import grpc

from metastore.api.grpc.proto import rpc_pb2, rpc_pb2_grpc

TIMEOUT = 120.0


async def watch_stream(stub, key: bytes, watches: int, created: asyncio.Queue, seen: asyncio.Queue):
    """One stream with ``watches`` watches; reports each created and each first event."""
    call = stub.Watch(timeout=TIMEOUT)
    for _ in range(watches):
        await call.write(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=key)))
    had_event: set[int] = set()
    while len(had_event) < watches:
        response = await call.read()
        if response is grpc.aio.EOF:
            raise RuntimeError("the stream ended")
        if response.created:
            created.put_nowait(response.watch_id)
        elif response.events and response.watch_id not in had_event:
            had_event.add(response.watch_id)
            seen.put_nowait(response.watch_id)
    return call


async def main(target: str, streams: int, per_stream: int, key: bytes, channels: bool) -> None:
    created, seen = asyncio.Queue(), asyncio.Queue()
    shared = grpc.aio.insecure_channel(target)
    opened = [shared] + [grpc.aio.insecure_channel(target) for _ in range(streams - 1 if channels else 0)]
    tasks = [
        asyncio.ensure_future(watch_stream(rpc_pb2_grpc.WatchStub(opened[i % len(opened)]), key, per_stream,
                                           created, seen))
        for i in range(streams)
    ]
    total = streams * per_stream
    for _ in range(total):
        await asyncio.wait_for(created.get(), TIMEOUT)
    print(f"created {total}", flush=True)
    for _ in range(total):
        await asyncio.wait_for(seen.get(), TIMEOUT)
    print(f"events {total}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for task in tasks:
        task.cancel()
    for channel in opened:
        await channel.close()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--channels"]
    asyncio.run(main(args[0], int(args[1]), int(args[2]), args[3].encode(), "--channels" in sys.argv))
