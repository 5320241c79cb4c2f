#!/usr/bin/env python3
"""RSS idle and after 1,000,000 v3 puts, one etcd member next to one
MetaStore member (issues 12 and 17); see ``metastore/bench/memory_after_puts.py``.

    python scripts/memory-1m.py [--puts 1000000] [--keys 10000] [--clients 64] [--storage memory]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from metastore.bench.memory_after_puts import main  # noqa: E402

main()
