"""An in-process member serving gRPC on the running asyncio reactor, and
a ``grpc.aio`` channel to it, for servicer tests.

Run such tests with ``python -m twisted.trial --reactor=asyncio MODULE``;
under another reactor they are skipped with that command as the reason.
"""

from __future__ import annotations

import grpc
from twisted.internet import reactor
from twisted.trial.unittest import SkipTest

from metastore.api.grpc.server import WrongReactor, as_deferred, asyncio_loop
from metastore.config import Config
from metastore.service import open_member


def require_asyncio(module: str) -> None:
    """``SkipTest`` naming the command to run ``module`` unless the asyncio reactor runs."""
    try:
        asyncio_loop(reactor)
    except WrongReactor:
        raise SkipTest(f"needs the asyncio reactor: python -m twisted.trial --reactor=asyncio {module}") from None


async def start_member(testcase, **config):
    """A started single-member cluster with gRPC on a free port, stopped
    after the test; returns ``(member service, grpc port)`` once it is ready."""
    config = Config(cluster=("http://127.0.0.1:0",), port=0, grpc_port=0, data_dir=testcase.mktemp(), **config)
    member = open_member(config.validate(), reactor)
    member.privilegedStartService()
    member.startService()
    testcase.addCleanup(lambda: member.stopService() if member.running else None)
    port = await member.grpc.listening
    await member.ready()
    return member, port


def open_channel(testcase, port: int) -> grpc.aio.Channel:
    """A ``grpc.aio`` channel to ``127.0.0.1:port``, closed after the test."""
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    testcase.addCleanup(lambda: as_deferred(channel.close(), reactor))
    return channel


def run(coroutine):
    """A Deferred of ``coroutine`` run on the reactor's loop (for ``await`` in a trial test)."""
    return as_deferred(coroutine, reactor)
