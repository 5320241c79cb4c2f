"""matplotlib for the benchmark scripts' PNGs, an optional extra (``pip
install 'metastore[plot]'``): imported only when a plot is drawn."""

from __future__ import annotations


class PlottingUnavailable(RuntimeError):
    """matplotlib is not installed; the message says how to install it."""


def pyplot():
    """matplotlib's ``pyplot`` on the file-only Agg backend, or
    :class:`PlottingUnavailable` with the command that installs it."""
    try:
        import matplotlib
    except ImportError:
        raise PlottingUnavailable(
            "drawing the PNG needs matplotlib, an optional extra: pip install 'metastore[plot]' "
            "(or pip install matplotlib); the figures themselves were measured and written without it"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot

    return matplotlib.pyplot
