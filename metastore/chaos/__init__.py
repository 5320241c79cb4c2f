"""Fault injection against real members, and a linearizability checker."""
