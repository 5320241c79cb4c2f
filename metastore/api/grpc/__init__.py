"""etcd's gRPC API: the wire contract (``proto/``), its generated modules,
and the ``grpc.aio`` server that runs on the reactor's asyncio loop."""
