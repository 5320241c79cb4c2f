"""Throughput against clients, from the JSON of ``python -m
metastore.bench.compare --clients … --json FILE`` (issue 17's plot).

``python scripts/plot-throughput.py FILE [--out PNG]`` draws one panel per
cluster size and workload kind (put, linearizable get, serializable get),
requests/s against clients on a log axis, one line per column of the
comparison (etcd, and each MetaStore engine and API).  matplotlib is an
optional extra (``pip install 'metastore[plot]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from metastore.bench.plotting import PlottingUnavailable, pyplot
from metastore.bench.servers import CHECKOUT

DEFAULT_PNG = os.path.join(CHECKOUT, "docs", "images", "throughput-vs-clients.png")

Panel = tuple[int, str]
"""A panel of the figure: (cluster size, workload kind)."""


def throughput_series(document: dict) -> dict[Panel, dict[str, list[tuple[int, float]]]]:
    """Per panel, per column, the (clients, requests/s) points in client
    order; panels and columns in the order the document has them."""
    panels: dict[Panel, dict[str, list[tuple[int, float]]]] = {}
    for size in document["sizes"]:
        for row in size["rows"]:
            lines = panels.setdefault((size["members"], row["kind"]), {})
            lines.setdefault(row["column"], []).append((row["clients"], row["requests_per_second"]))
    for lines in panels.values():
        for points in lines.values():
            points.sort()
    return panels


def plot_throughput(document: dict, path: str) -> None:
    """Draw :func:`throughput_series` of ``document`` to the PNG ``path``
    (:class:`~metastore.bench.plotting.PlottingUnavailable` without matplotlib)."""
    panels = throughput_series(document)
    if not panels:
        raise ValueError("the document holds no figures to plot")
    sizes = sorted({size for size, _ in panels})
    kinds = list(dict.fromkeys(kind for _, kind in panels))
    plt = pyplot()
    width, height = max(9.0, 4.6 * len(kinds)), 3.6 * len(sizes) + 1.2
    figure, axes = plt.subplots(len(sizes), len(kinds), figsize=(width, height), squeeze=False)
    colours = {}
    for (size, kind), lines in panels.items():
        ax = axes[sizes.index(size)][kinds.index(kind)]
        for column, points in lines.items():
            colour = colours.setdefault(column, f"C{len(colours) % 10}")
            ax.plot([c for c, _ in points], [r for _, r in points], marker="o", color=colour, label=column,
                    linestyle="--" if column == "etcd" else "-")
        clients = sorted({c for points in lines.values() for c, _ in points})
        ax.set_xscale("log", base=2)
        ax.set_xticks(clients, [str(c) for c in clients])
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.set_title(f"{size} member{'s' if size > 1 else ''}: {kind}")
        ax.set_xlabel("clients")
        ax.set_ylabel("requests/s")
    for row in axes:
        for ax in row:
            if not ax.has_data():
                ax.set_visible(False)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=max(1, min(len(labels), int(width // 3.2))),
                  frameon=False)
    settings = document.get("settings", {})
    figure.suptitle(f"Throughput against clients (median of {settings.get('runs', '?')} × "
                    f"{settings.get('duration', '?')} s, {settings.get('cores', '?')} cores)")
    legend_rows = -(-len(labels) // max(1, min(len(labels), int(width // 3.2))))
    figure.tight_layout(rect=(0, (0.35 * legend_rows + 0.1) / height, 1, 1 - 0.45 / height))
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    """Read the JSON, draw the PNG; exit 2 with a clear message without matplotlib."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", help="the file written by `python -m metastore.bench.compare … --json FILE`")
    parser.add_argument("--out", default=DEFAULT_PNG, help="the PNG (default: docs/images/throughput-vs-clients.png)")
    arguments = parser.parse_args(argv)
    with open(arguments.json) as f:
        document = json.load(f)
    try:
        plot_throughput(document, arguments.out)
    except PlottingUnavailable as e:
        print(e, file=sys.stderr)
        raise SystemExit(2) from None
    print(arguments.out)


if __name__ == "__main__":
    main()
