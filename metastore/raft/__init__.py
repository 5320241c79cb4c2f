"""The Raft consensus algorithm as a pure, deterministic state machine.

Nothing under this package does I/O, reads a clock or uses global
randomness; the driver in ``metastore.node`` does all of that.
"""
