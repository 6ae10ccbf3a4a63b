"""Settings of CPython's cyclic garbage collector for server processes.

Every append makes a few short-lived container objects in each process it passes (the
decoded op, its grant, futures), and a server also holds many long-lived ones (modules,
a replica's recovered indexes, the memory engine's entries). With CPython's defaults a
young collection runs whenever tracked container objects allocated exceed those freed by
700, and a full collection, which walks every object the process holds, follows every
hundred young ones (once the objects that survived since the last full one are a quarter
of those it walked). In a replica under native appends that was about a seventh of its
CPU (docs/performance.md, "Per-entry cost in the replicas").

So before a server starts listening, what it holds then is collected once and frozen
(full collections no longer walk it: a replica's recovered store, every process's
modules; a gateway loads its metadata later, which is not frozen), young collections run
at YOUNG_THRESHOLD and middle ones every MIDDLE_EVERY young ones. Cyclic garbage is still
collected, in larger rounds; frozen objects that later become cyclic garbage are not
(freed by reference counting, they go as always).
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000  # net container allocations between young collections (default 700)
MIDDLE_EVERY = 20  # young collections per middle one (default 10)
OLD_EVERY = 10  # middle collections per full one, as the default


def tune_gc() -> None:
    """Collect what start-up left, freeze what remains and raise the thresholds above."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_EVERY, OLD_EVERY)
