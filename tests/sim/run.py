"""Run simulated schedules: `python tests/sim/run.py --seed N` replays one seed;
`--schedules M` runs M seeds from --seed on (the soak, `scripts/sim-soak`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from cluster_sim import ClusterSim, Violation


def replay_command(seed: int) -> str:
    return f"python tests/sim/run.py --seed {seed} -v"


def run_one(seed: int) -> ClusterSim:
    sim = ClusterSim(seed)
    try:
        sim.run()
    except Violation as exc:
        raise Violation(f"seed {seed} ({'pm' if sim.persistent else 'memory'}, faults "
                        f"{sim.faults}): {exc}\n  replay: {replay_command(seed)}") from exc
    return sim


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--schedules", type=int, default=1)
    parser.add_argument("-v", action="store_true", help="log the protocol's decisions")
    args = parser.parse_args()
    if args.v:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
    start = time.monotonic()
    failures = 0
    events = acked = fills = 0
    for seed in range(args.seed, args.seed + args.schedules):
        try:
            sim = run_one(seed)
        except Violation as exc:
            failures += 1
            print(f"VIOLATION {exc}", flush=True)
            continue
        events += sim.world.events_run
        acked += sim.checker.completions
        fills += sum(r.protocol.stats["fills"] for r in sim.replicas.values())
        if args.schedules == 1:
            print(f"seed {seed}: {'pm' if sim.persistent else 'memory'}, faults {sim.faults}, "
                  f"{sim.world.events_run} events, {sim.checker.completions} acknowledged, "
                  f"{sim.checker.failures} failed, {sim.checker.reads} read, fills {fills}")
    took = time.monotonic() - start
    print(f"{args.schedules} schedules, {events} events, {acked} acknowledged appends, "
          f"{fills} fills, {failures} violations in {took:.1f}s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
