"""Tests for the key-value state machine."""
