"""The ``twistd metastore`` plugin: one line, the work is in ``metastore.tap``."""

from twisted.application.service import ServiceMaker

metastore = ServiceMaker(
    "MetaStore", "metastore.tap", "A strongly consistent, replicated metadata store.", "metastore"
)
