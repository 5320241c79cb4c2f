"""The ``metastore`` console script: ``twistd -n metastore`` in one word.

For users of the original's single binary: the same flags, in the
foreground, logging to standard output, with no pid file.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Run one member in the foreground with the given MetaStore flags."""
    from twisted.scripts.twistd import run

    args = sys.argv[1:] if argv is None else argv
    sys.argv = ["metastore", "--nodaemon", "--pidfile=", "--logfile=-", "metastore", *args]
    run()


if __name__ == "__main__":
    main()
