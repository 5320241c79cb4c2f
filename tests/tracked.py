"""Counting the objects the garbage collector tracks, for tests that
check what a data structure leaves for the collector to walk."""

import gc
from typing import Callable


def tracked_objects_left_by(action: Callable[[], object]) -> int:
    """How many more objects the collector tracks after ``action`` than
    before it, with no collection in between (a collection would untrack
    tuples of plain values and hide that they were tracked until then).
    ``action``'s return value is kept alive until the count is taken."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        before = len(gc.get_objects())
        kept = action()
        after = len(gc.get_objects())
    finally:
        if enabled:
            gc.enable()
    del kept
    return after - before
