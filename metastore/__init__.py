"""MetaStore: a small, strongly consistent, replicated metadata store."""

__version__ = "0.1.0"
