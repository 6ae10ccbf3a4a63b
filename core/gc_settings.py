"""Settings of CPython's cyclic garbage collector for server processes.

Every append makes a few short-lived container objects in each process it passes (the
decoded op, its grant, futures), and a replica or gateway also holds many long-lived ones
(modules, recovered indexes, the memory engine's entries). With CPython's defaults a
young collection runs every 700 allocations, and every hundred or so of those a full
collection walks every object the process holds: in a replica under native appends that
was about a seventh of its CPU (docs/performance.md, "Garbage collector").

So once a server is up, what it holds then is frozen (full collections no longer walk it)
and young collections run every YOUNG_THRESHOLD allocations. Cyclic garbage is still
collected, only in larger rounds; objects in the frozen set that later become cyclic
garbage are not (freed by reference counting, they go as always).
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000  # allocations between young collections (CPython's default: 700)
MIDDLE_EVERY = 20  # young collections per middle one (default 10)
OLD_EVERY = 10  # middle collections per full one, as the default


def tune_gc() -> None:
    """Collect what start-up left, freeze what remains and raise the thresholds above."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_EVERY, OLD_EVERY)
