"""Tests of metastore.client and metastorectl."""
