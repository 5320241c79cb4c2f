"""Tests for ``metastore.transport``: codec, URLs, framing, peer links."""
