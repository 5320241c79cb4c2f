"""Benchmarks: load generators run by hand, never as timed tests."""
