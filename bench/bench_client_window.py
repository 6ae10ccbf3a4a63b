"""What a full append window costs per append that leaves it, by how many callers wait for room.

Run: .venv/bin/python bench/bench_client_window.py [--appends 2000]

The gateway's produce requests wait in the native client's window (`wait_for_room`) when the
log is slower than the producers, one request per connection at most, so a gateway serving
thousands of producers can have thousands waiting. The client here has no cluster: a
stand-in shard writer takes each submitted append and lands it again when told, so only the
window's own work is timed. Each caller submits, then waits for room again, so the number
waiting stays the same; the bench lands `--appends` appends one at a time, each letting one
waiting caller submit, and prints the CPU per landed append and its ratio to the run with a
single waiter (the baseline, same run).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from cluster import two_level_toml
from flexlog.core import config, record_batch
from flexlog.core.append_wire import AppendOp
from flexlog.core.client import FlexLogClient
from flexlog.core.registry import ColorInfo

COLOR = ColorInfo(id=5, name="bench", owner=0, shards=(0,))
BATCH = record_batch.build([b"x" * 100])
WAITING = (1, 10, 100, 1_000, 5_000)
WINDOW = 64


class _Writer:
    def __init__(self) -> None:
        self.submitted: list[asyncio.Future[int]] = []

    def submit(self, op: AppendOp, future: asyncio.Future[int]) -> None:
        self.submitted.append(future)


async def cpu_per_landed(path: Path, waiting: int, appends: int) -> float:
    c = FlexLogClient(config.load(path), max_in_flight=WINDOW)
    writer = _Writer()
    c._writers[0] = writer  # type: ignore[assignment]
    for _ in range(WINDOW):
        await c.submit_batch(BATCH, COLOR, validated=True)

    async def caller() -> None:
        while True:
            await c.submit_batch(BATCH, COLOR, validated=True)

    tasks = [asyncio.create_task(caller()) for _ in range(waiting)]
    await asyncio.sleep(0)
    start = time.process_time()
    landed = 0
    while landed < appends:
        writer.submitted.pop(0).set_result(0)
        c._landed()
        landed += 1
        await asyncio.sleep(0)
    took = time.process_time() - start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return took / appends


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--appends", type=int, default=2_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cluster.toml"
        path.write_text(two_level_toml(Path(tmp)))
        print(f"window of {WINDOW} appends, full; {args.appends:,} appends landed one at a time")
        print(f"{'callers waiting':>16}{'CPU per landed append':>24}{'vs 1 waiting':>14}")
        base = 0.0
        for waiting in WAITING:
            per = asyncio.run(cpu_per_landed(path, waiting, args.appends))
            base = base or per
            print(f"{waiting:>16,}{per * 1e6:>21.1f} us{per / base:>14.1f}")


if __name__ == "__main__":
    main()
