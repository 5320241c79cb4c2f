"""``python -m metastore.bench``: the HTTP load generator, see ``--help``."""

from metastore.bench.http import main

main()
