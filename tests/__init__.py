"""Tests for MetaStore; the layout mirrors the ``metastore`` package.

Hypothesis's default profile here has no per-example deadline and no
"input generation is slow" health check: the suite runs two trial workers
beside real member processes on two cores, where timing says nothing about
the code (the properties themselves are unchanged)."""

from hypothesis import HealthCheck, settings

settings.register_profile("metastore", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("metastore")
