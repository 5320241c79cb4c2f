#!/usr/bin/env python3
"""Throughput against clients as a PNG, from ``python -m
metastore.bench.compare --clients 1,16,64,256 --json FILE`` (issue 17); see
``metastore/bench/plot_throughput.py``.

    python scripts/plot-throughput.py FILE [--out docs/images/throughput-vs-clients.png]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from metastore.bench.plot_throughput import main  # noqa: E402

main()
