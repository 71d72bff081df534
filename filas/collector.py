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
import threading
from collections.abc import Iterator
from contextlib import contextmanager

THRESHOLD = 50_000

_lock = threading.Lock()
_active = 0
_saved: tuple[int, ...] = ()


@contextmanager
def fewer_collections(threshold: int = THRESHOLD) -> Iterator[None]:
    """Freeze what is alive now and raise the first threshold; undone when the last user exits.

    Process-wide, so counted: tests host several services in one process and their loops
    overlap in any order; the first to enter saves the thresholds, the last to exit restores
    them and unfreezes."""
    global _active, _saved
    with _lock:
        if not _active:
            _saved = gc.get_threshold()
        _active += 1
        gc.freeze()
        gc.set_threshold(threshold, *_saved[1:])
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if not _active:
                gc.set_threshold(*_saved)
                gc.unfreeze()
