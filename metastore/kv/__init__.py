"""The replicated state machine: a keyspace with etcd's revisions."""
