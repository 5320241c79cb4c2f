"""Tests for the durable filesystem helpers, metastore.storage.fileutil."""

from __future__ import annotations

import errno
import os

from twisted.trial.unittest import SynchronousTestCase

from metastore.storage.fileutil import atomic_file, fsync_dir, makedirs_durable


class MakedirsTests(SynchronousTestCase):
    """makedirs_durable creates directories and fsyncs their parents."""

    def test_creates_missing_parents(self) -> None:
        """Every missing level is created, and each new entry's parent is fsynced."""
        base = self.mktemp()
        os.mkdir(base)
        synced = []
        makedirs_durable(
            os.path.join(base, "a", "b"), lambda fd: synced.append(os.fstat(fd).st_ino)
        )
        self.assertTrue(os.path.isdir(os.path.join(base, "a", "b")))
        self.assertEqual(
            synced, [os.stat(base).st_ino, os.stat(os.path.join(base, "a")).st_ino]
        )

    def test_existing_is_left_alone(self) -> None:
        """An existing directory needs no fsync."""
        base = self.mktemp()
        os.mkdir(base)
        makedirs_durable(base, lambda fd: self.fail("nothing to fsync"))

    def test_under_a_file(self) -> None:
        """A path below a regular file raises an OSError."""
        base = self.mktemp()
        with open(base, "wb"):
            pass
        self.assertRaises(OSError, makedirs_durable, os.path.join(base, "x"))


def atomic_write(path: str, data: bytes, fsync=os.fsync) -> None:
    """Write ``data`` through ``atomic_file``."""
    with atomic_file(path, fsync) as out:
        out.write(data)


class AtomicFileTests(SynchronousTestCase):
    """atomic_file replaces a file whole or not at all."""

    def test_replaces(self) -> None:
        """The file holds exactly the new bytes and no temporary file remains."""
        d = self.mktemp()
        os.mkdir(d)
        path = os.path.join(d, "f")
        atomic_write(path, b"old")
        atomic_write(path, b"new contents")
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"new contents")
        self.assertEqual(os.listdir(d), ["f"])

    def test_failed_fsync_keeps_old(self) -> None:
        """If the fsync fails the old file is untouched and the temporary file is gone."""
        d = self.mktemp()
        os.mkdir(d)
        path = os.path.join(d, "f")
        atomic_write(path, b"old")

        def fsync(fd: int) -> None:
            """Always fail, as a full disk would."""
            raise OSError(errno.ENOSPC, "injected")

        self.assertRaises(OSError, atomic_write, path, b"new", fsync)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"old")
        self.assertEqual(os.listdir(d), ["f"])

    def test_failed_writer_keeps_old(self) -> None:
        """An exception inside the block leaves the old file and no temporary file."""
        d = self.mktemp()
        os.mkdir(d)
        path = os.path.join(d, "f")
        atomic_write(path, b"old")
        with self.assertRaises(ZeroDivisionError):
            with atomic_file(path) as out:
                out.write(b"half")
                1 / 0
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"old")
        self.assertEqual(os.listdir(d), ["f"])

    def test_fsync_dir(self) -> None:
        """fsync_dir hands the fsync callable a descriptor of the directory itself."""
        d = self.mktemp()
        os.mkdir(d)
        seen = []
        fsync_dir(d, lambda fd: seen.append(os.fstat(fd).st_ino))
        self.assertEqual(seen, [os.stat(d).st_ino])
