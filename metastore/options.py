"""What every MetaStore command line shares: ``--version`` prints
MetaStore's version (not Twisted's, which ``usage.Options`` would)."""

from __future__ import annotations

import sys

from metastore import __version__


class VersionOption:
    """Mix into a ``usage.Options``: ``--version`` prints MetaStore's version and exits 0."""

    def opt_version(self) -> None:
        """Print MetaStore's version and exit."""
        sys.stdout.write(f"MetaStore {__version__}\n")
        sys.stdout.flush()
        raise SystemExit(0)
