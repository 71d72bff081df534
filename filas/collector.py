"""Fewer garbage-collector passes for a long-running hot loop (decisions 0123, 0131).

The sink's bulk fetch and the ingress's accepts allocate several tracked objects per record or
request (messages, dicts, coroutines, futures). At Python's default first threshold (700) the
collector runs every few dozen of them, and each pass also walks the survivors: the requests in
flight, and in the ingress the status view that only grows. The objects alive when the loop
starts (modules, the view loaded at start) are frozen out of every pass, and the youngest
generation collects every ``threshold`` allocations instead. Cycles still get collected, later.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

THRESHOLD = 50_000


@contextmanager
def fewer_collections(threshold: int = THRESHOLD) -> Iterator[None]:
    """Freeze what is alive now and raise the first threshold; both restored on exit.

    Process-wide: two loops in one process (tests host several services) may overlap; the last
    one to exit restores the thresholds it found, and ``gc.unfreeze`` returns every frozen object
    to the oldest generation (a cost in collector time, not in correctness)."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(threshold, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
