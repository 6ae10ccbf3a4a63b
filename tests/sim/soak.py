"""Many simulated schedules over every core (`scripts/sim-soak SCHEDULES FIRST_SEED`)."""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from test_simulation import _run_seeds

CHUNK = 500


def main() -> int:
    schedules, first = int(sys.argv[1]), int(sys.argv[2])
    start = time.monotonic()
    done = violations = 0
    chunks = [range(s, min(s + CHUNK, first + schedules)) for s in range(first, first + schedules, CHUNK)]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        for failures, totals in pool.map(_run_seeds, chunks):
            done += totals["schedules"] + len(failures)
            violations += len(failures)
            for f in failures:
                print(f"VIOLATION {f}", flush=True)
            rate = done / (time.monotonic() - start)
            print(f"{done} schedules from seed {first}, {violations} violations, {rate:.0f}/s",
                  flush=True)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
