"""The node's parts stay behind the node: an import rule, checked on the source.

Only ``metastore/node.py`` and the collaborators it is given touch the
Raft core's ``rawnode``, raft's log storage (``raft_storage``) or a storage
engine (``.engine``); the HTTP APIs import only the facade (and plain
value types), never the node or its parts.
"""

from __future__ import annotations

import ast
import pathlib

from twisted.trial.unittest import SynchronousTestCase

import metastore

PACKAGE = pathlib.Path(metastore.__file__).parent

NODE_PARTS = {"rawnode", "raft_storage", "engine"}

NODE_AND_COLLABORATORS = {
    "node.py",
    "requests.py",
    "applier.py",
    "facade.py",
    "snapshots/compaction.py",
    "kv/store.py",  # the state machine owns its engine
    "bench/reactor_lag.py",  # a diagnostic: wraps the engine's methods to time them
}
"""Where the node's parts may be touched."""

API_MAY_IMPORT = {
    "metastore",  # __version__
    "metastore.facade",
    "metastore.errors",
    "metastore.config",
    "metastore.kv.commands",  # the command and result value types
    "metastore.kv.messages",  # etcd's request and response value types
    "metastore.kv.errors",  # etcd's key-value errors
    "metastore.snapshots.stream",  # the bytes of a streamed snapshot (no node parts)
    "metastore.auth.errors",  # etcd's auth errors
    "metastore.auth.messages",  # etcd's auth request value types
    "metastore.auth.passwords",  # hashing a password at the API edge (a pure function)
}
"""What ``metastore/api/`` may import from ``metastore`` besides itself."""


def touched_parts(source: str) -> set[str]:
    """The node parts a module's source reaches through an attribute."""
    return {
        node.attr
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute) and node.attr in NODE_PARTS
    }


def metastore_imports(source: str) -> set[str]:
    """The ``metastore`` modules a module's source imports (absolute imports)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "metastore")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "metastore":
                found.add(node.module)
    return found


def _modules(under: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in under.rglob("*.py") if "raft" not in p.relative_to(PACKAGE).parts[:1])


class ImportRuleTests(SynchronousTestCase):
    """The rule holds across ``metastore/``."""

    def test_only_the_node_touches_its_parts(self) -> None:
        """No module but node.py and its collaborators reaches for
        ``.rawnode``, ``.raft_storage`` or ``.engine`` (storage engines
        themselves excepted)."""
        offenders = {}
        for path in _modules(PACKAGE):
            name = path.relative_to(PACKAGE).as_posix()
            if name in NODE_AND_COLLABORATORS or name.startswith("storage/"):
                continue
            touched = touched_parts(path.read_text())
            if touched:
                offenders[name] = sorted(touched)
        self.assertEqual(offenders, {})

    def test_apis_import_only_the_facade(self) -> None:
        """``metastore/api/`` imports the facade and value types, never the
        node, raft, engines, snapshots or membership internals."""
        modules = _modules(PACKAGE / "api")
        self.assertTrue(modules)
        offenders = {}
        for path in modules:
            bad = {
                m for m in metastore_imports(path.read_text())
                if m not in API_MAY_IMPORT and not m.startswith("metastore.api")
            }
            if bad:
                offenders[path.name] = sorted(bad)
        self.assertEqual(offenders, {})

    def test_detectors_see_what_they_look_for(self) -> None:
        """The scanners catch attribute access and both import forms."""
        self.assertEqual(touched_parts("x = node.rawnode.status()\ny = a.store.engine\n"), {"rawnode", "engine"})
        self.assertEqual(
            metastore_imports("import metastore.node\nfrom metastore.raft import types\nimport os\n"),
            {"metastore.node", "metastore.raft"},
        )
