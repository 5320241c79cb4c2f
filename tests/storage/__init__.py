"""Tests for metastore.storage."""
