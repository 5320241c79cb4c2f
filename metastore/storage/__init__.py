"""Durable bytes: the WAL, snapshot files, and the storage engines."""
