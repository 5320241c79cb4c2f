"""Mixins that give a conformance suite its engine: mix one in before the
behaviour class and ``SynchronousTestCase``."""

import os

from metastore.storage.memory import MemoryEngine
from metastore.storage.rocksdb import RocksDBEngine


class OnMemoryEngine:
    """``make_engine`` gives a fresh memory engine."""

    def make_engine(self):
        return MemoryEngine()


class OnRocksDBEngine:
    """``make_engine`` gives a RocksDB engine in a new temporary directory."""

    def make_engine(self):
        return RocksDBEngine.open(os.path.join(self.mktemp(), "db"))
