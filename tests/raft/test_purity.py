"""The Raft core stays pure: no I/O, clock, threads or global randomness."""

from __future__ import annotations

import ast
import pathlib

from twisted.trial.unittest import SynchronousTestCase

import metastore.raft

FORBIDDEN_MODULES = {"twisted", "socket", "time", "threading", "asyncio", "os", "random"}


def imported_roots(source: str) -> set[str]:
    """The top-level package names a module's source imports."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


class PurityTests(SynchronousTestCase):
    """Nothing under ``metastore/raft/`` may reach the outside world."""

    def test_no_forbidden_imports(self) -> None:
        """No module under metastore/raft imports twisted, socket, time,
        threading, asyncio, os or random (randomness is injected)."""
        package = pathlib.Path(metastore.raft.__file__).parent
        modules = sorted(package.rglob("*.py"))
        self.assertTrue(modules)
        offenders = {}
        for path in modules:
            bad = imported_roots(path.read_text()) & FORBIDDEN_MODULES
            if bad:
                offenders[str(path.relative_to(package))] = sorted(bad)
        self.assertEqual(offenders, {})

    def test_detector_sees_imports(self) -> None:
        """The import scanner itself catches both import forms."""
        self.assertEqual(
            imported_roots("import os.path\nfrom twisted.internet import reactor\n"),
            {"os", "twisted"},
        )
