"""The service's garbage-collector policy: freeze what start-up built, and let
the young generation grow past one socket read's worth of events.

Why (measured with ``benchmarks/``, Binance Spot stream, 1000-level books):
with CPython's defaults (a young collection every 700 net container
allocations) a socket read's batch of ~200 parsed frames — each a few dicts
and lists that live until the book task applied them — outlives several young
collections, gets promoted, and the promotions trigger full collections every
few thousand frames. Those scanned every object start-up made (modules,
classes, functions: ~58k objects) and paused the process for up to ~40 ms;
all collections together took ~2.4 µs of a ~15 µs frame.

After :func:`tune_gc` the objects that exist at start are frozen (never
scanned again; still freed by reference counting) and a young collection
runs only after ``young`` net allocations. A batch then dies before the
collector sees it, so at full speed collections almost never run, and the
full ones that remain scan only what was made since start.

The ``trio-books`` service applies it at start (``service.gc_threshold``; 0
leaves Python's settings alone). A library user decides for their own process:
``trio_books.tune_gc()`` once, after start-up and before the feeds run.
"""

from __future__ import annotations

import gc

DEFAULT_YOUNG_THRESHOLD = 10_000
"""Net container allocations between young collections (CPython's default is 700)."""


def tune_gc(young: int = DEFAULT_YOUNG_THRESHOLD) -> None:
    """Collect once, freeze every object that exists now, and set the young
    generation's threshold to ``young`` (the older generations keep theirs)."""
    if young < 1:
        raise ValueError(f"young threshold must be positive, got {young}")
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young, older, oldest)
