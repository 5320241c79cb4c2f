"""Tests of metastore.auth."""
