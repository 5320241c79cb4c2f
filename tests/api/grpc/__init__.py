"""Tests of etcd's gRPC API (metastore/api/grpc)."""
