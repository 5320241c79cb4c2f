"""Small durable-filesystem helpers shared by the WAL and snapshot files.

Each takes the ``fsync`` callable to use, so tests can inject failures.
"""

from __future__ import annotations

import contextlib
import os
from typing import BinaryIO, Callable, Iterator

Fsync = Callable[[int], None]


def fsync_dir(path: str, fsync: Fsync = os.fsync) -> None:
    """Make the entries of directory ``path`` (creations, renames, unlinks) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fsync(fd)
    finally:
        os.close(fd)


def makedirs_durable(path: str, fsync: Fsync = os.fsync) -> None:
    """Create directory ``path`` and any missing parents, durably.

    After it returns, ``path`` exists and every directory it created is
    recorded in its parent on disk (each such parent is fsynced).  Existing
    directories are left alone.  Raises ``OSError`` (e.g. ``NotADirectoryError``
    when a parent is a regular file) if ``path`` cannot be a directory.
    """
    path = os.path.abspath(path)
    missing = []
    probe = path
    while not os.path.isdir(probe):
        missing.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise NotADirectoryError(
                    f"{directory!r} exists and is not a directory"
                ) from None
        fsync_dir(os.path.dirname(directory), fsync)


@contextlib.contextmanager
def atomic_file(path: str, fsync: Fsync = os.fsync, buffering: int = -1) -> Iterator[BinaryIO]:
    """Write a file that appears at ``path`` whole or not at all.

    Yields a binary file open on ``<path>.tmp``; when the block ends without
    an exception the file is flushed, fsynced, renamed over ``path`` and the
    directory fsynced.  On any failure the temporary file is removed and the
    error propagates, leaving whatever ``path`` held before.
    """
    directory = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "wb", buffering=buffering) as out:
            yield out
            out.flush()
            fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(directory, fsync)
