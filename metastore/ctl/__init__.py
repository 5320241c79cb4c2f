"""``metastorectl``: etcdctl's commands for MetaStore, over ``metastore.client``."""
