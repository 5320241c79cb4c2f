"""Calling a function every so many seconds on an injected clock."""

from __future__ import annotations

from typing import Callable

from twisted.internet import task


def start_periodic(function: Callable[[], object], seconds: float, clock) -> task.LoopingCall:
    """Call ``function`` every ``seconds`` on ``clock`` (a reactor or a
    ``task.Clock``), the first time ``seconds`` from now."""
    loop = task.LoopingCall(function)
    loop.clock = clock
    loop.start(seconds, now=False)
    return loop


def stop_periodic(loop: task.LoopingCall | None) -> None:
    """Stop ``loop`` if it runs (None: nothing to stop)."""
    if loop is not None and loop.running:
        loop.stop()
