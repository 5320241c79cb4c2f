"""Tests of the Raft core (``metastore.raft``)."""
