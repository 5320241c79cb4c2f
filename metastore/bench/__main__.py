"""``python -m metastore.bench``: the same command as ``metastore-bench``, see ``--help``."""

from metastore.bench.cli import main

main()
