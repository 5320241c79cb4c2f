"""Tests for MetaStore; the layout mirrors the ``metastore`` package."""
