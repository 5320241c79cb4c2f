"""etcd's v3 API as JSON over HTTP, the way etcd 3.4's grpc-gateway serves it."""
