#!/usr/bin/env python3
"""RSS of one MetaStore and one etcd member over 10 minutes of puts at 70 %
of each one's maximum (issue 17); see ``metastore/bench/soak.py``.

    python scripts/rss-soak.py [--minutes 10] [--share 0.7] [--storage memory] [--json FILE] [--plot PNG]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from metastore.bench.soak import main  # noqa: E402

main()
