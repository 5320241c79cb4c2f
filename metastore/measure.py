"""Durations a member's parts measure for its metrics, at no cost when off.

A part that times something (the disk worker its fsyncs, the applier its
engine commits, the snapshotter its snapshots) holds an object with an
``observe(seconds)`` method: ``UNMEASURED`` until the member is wired with
metrics (``metastore.metrics``), then a Prometheus histogram.  The parts
never import Prometheus themselves.
"""

from __future__ import annotations

from typing import Protocol


class Observer(Protocol):
    """Something that records one duration (a Prometheus ``Histogram`` is one)."""

    def observe(self, amount: float) -> None:
        """Record ``amount`` seconds."""


class Unmeasured:
    """Records nothing: the observer of a member built without metrics."""

    def observe(self, amount: float) -> None:
        """Drop ``amount``."""


UNMEASURED = Unmeasured()
