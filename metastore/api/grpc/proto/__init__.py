"""etcd's v3 wire contract as ``.proto`` files and the Python modules
generated from them (``*_pb2.py``, ``rpc_pb2_grpc.py``): regenerate with
``make protos`` after editing a ``.proto``, never edit the modules."""
