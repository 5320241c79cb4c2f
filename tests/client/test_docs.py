"""docs/client.md's examples run as written against a real 3-member cluster:
every ``python`` block as a script, every ``$ metastorectl`` line of the
``console`` blocks with its output compared."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from twisted.trial.unittest import TestCase

from tests.process import REPO_ROOT, Cluster, child_env

DOC = os.path.join(REPO_ROOT, "docs", "client.md")


def code_blocks(language: str) -> list[str]:
    """The bodies of the doc's fenced blocks in ``language``."""
    with open(DOC) as f:
        text = f.read()
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.S | re.M)


def console_steps(block: str) -> list[tuple[str, str]]:
    """``(command, expected output)`` for each ``$ `` line of a console block."""
    steps: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    return [(command, "".join(out + "\n" for out in output)) for command, output in steps]


class ClientDocTests(TestCase):
    """What docs/client.md shows works as written."""

    timeout = 240

    def setUp(self):
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)
        shim = os.path.join(self.workdir, "metastorectl")
        with open(shim, "w") as f:
            f.write(f'#!/bin/sh\nexec "{sys.executable}" -m metastore.ctl "$@"\n')
        os.chmod(shim, 0o755)

    async def env(self) -> dict:
        """The examples' environment: a started cluster's URLs, ``metastorectl`` on the PATH."""
        cluster = Cluster(self, 3)
        cluster.start()
        await cluster.leader()
        urls = ",".join(m.url for m in cluster.members.values())
        env = child_env()
        env.update(METASTORE_ENDPOINTS=urls, METASTORECTL_ENDPOINTS=urls, PATH=self.workdir + os.pathsep + env["PATH"])
        return env

    async def test_python_examples_run(self):
        """Every python block exits 0 (its asserts hold)."""
        env = await self.env()
        blocks = code_blocks("python")
        self.assertGreaterEqual(len(blocks), 5)
        for number, code in enumerate(blocks, start=1):
            script = os.path.join(self.workdir, f"example{number}.py")
            with open(script, "w") as f:
                f.write(code)
            done = subprocess.run([sys.executable, script], cwd=self.workdir, env=env, capture_output=True,
                                  text=True, timeout=60)
            self.assertEqual(done.returncode, 0, f"example {number}:\n{code}\n{done.stderr}")

    async def test_console_examples_print_what_the_doc_shows(self):
        """Each ``$ metastorectl`` command prints the lines under it."""
        env = await self.env()
        steps = [step for block in code_blocks("console") for step in console_steps(block)]
        self.assertGreaterEqual(len(steps), 5)
        for command, expected in steps:
            done = subprocess.run(["sh", "-c", command], cwd=self.workdir, env=env, capture_output=True, text=True,
                                  timeout=30)
            self.assertEqual((done.returncode, done.stdout), (0, expected), f"$ {command}\n{done.stderr}")
