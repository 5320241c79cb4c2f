"""``metastore-chaos``: placeholder until the chaos runner lands."""


def main() -> None:
    """Say that the chaos runner is not built yet."""
    raise SystemExit("metastore-chaos is not available yet")
