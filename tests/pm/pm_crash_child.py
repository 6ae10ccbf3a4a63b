"""Crash-test child: appends, commits, aborts, trims and checkpoints until SIGKILLed.

Usage: pm_crash_child.py DATA_DIR REPORT SEED INJECT HIGH_WATER

Every outcome is appended to REPORT only after the engine call returned, one
os.write per line, so a line on disk means the operation completed:
    P token color        prepared          C token color sn count   committed
    a token / A token    abort started/done   t color sn / T color sn  trim started/done
    X site               about to SIGKILL itself at an injected crash site
With INJECT > 0 the child also picks one of the windows that matter most
(CRASH_SITES: between writing segments and moving the PM head, after a
relocation, between a trim's pool update and its file deletions) and kills
itself there, with that probability each time it passes.
"""

from __future__ import annotations

import os
import random
import signal
import sys
from collections.abc import Callable
from typing import Any

from pm_helpers import batch

from flexlog.core.storage import StoreFull
from flexlog.pm import engine as engine_module
from flexlog.pm import segments

COLORS = 4
CRASH_SITES = (
    "segment-written",
    "before-pm_advance",
    "after-pm_advance",
    "after-pm_relocate",
    "after-pm_trim",
    "segment-deleted",
)
POOL_BYTES = 8 << 20


def payload_for(token: int) -> tuple[bytes, int]:
    """The entry a token always stands for, so the parent can check bytes from the token."""
    rng = random.Random(token)
    records = rng.randint(1, 4)
    return batch(token, records, rng.choice((40, 300, 1500, 6000))), records


def open_engine(data_dir: str, high_water: float) -> engine_module.PmEngine:
    return engine_module.PmEngine(
        data_dir,
        pool_size_bytes=POOL_BYTES,
        cache_bytes=256 << 10,
        ssd_high_water=high_water,
        ssd_max_bytes=32 << 20,
        max_colors=16,
    )


class Reporter:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def __call__(self, *fields: object) -> None:
        os.write(self.fd, (" ".join(map(str, fields)) + "\n").encode())


def install_crash_site(report: Reporter, prob: float, rng: random.Random) -> None:
    target = rng.choice(CRASH_SITES)

    def maybe_die(site: str) -> None:
        if site == target and rng.random() < prob:
            report("X", site)
            os.kill(os.getpid(), signal.SIGKILL)

    real_lib = engine_module.lib

    class KillingLib:
        def __getattr__(self, name: str) -> Any:
            attr = getattr(real_lib, name)
            if name not in ("pm_advance", "pm_relocate", "pm_trim"):
                return attr

            def call(*args: Any) -> Any:
                maybe_die(f"before-{name}")
                result = attr(*args)
                maybe_die(f"after-{name}")
                return result

            return call

    engine_module.lib = KillingLib()

    def after(method: Callable[..., Any], site: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            maybe_die(site)
            return result

        return call

    segments.SegmentStore.write = after(segments.SegmentStore.write, "segment-written")
    segments.SegmentStore.delete = after(segments.SegmentStore.delete, "segment-deleted")


def main() -> None:
    data_dir, report_path, seed, inject, high_water = sys.argv[1:6]
    rng = random.Random(int(seed))
    report = Reporter(report_path)
    eng = open_engine(data_dir, float(high_water))
    if float(inject) > 0:
        install_crash_site(report, float(inject), rng)
    pending: list[tuple[int, int]] = [(p.token, p.color) for p in eng.recover().prepared]
    print("ready", flush=True)

    def commit(token: int, color: int) -> None:
        sn = eng.state(color).tail
        entry = eng.commit(token, sn)
        report("C", token, color, sn, entry.count)

    def trim(color: int) -> None:
        start, tail = eng.state(color)
        sn = rng.randint(start - 1, tail - 1) if rng.random() < 0.8 else tail - 1
        if sn < start:
            return
        report("t", color, sn)
        eng.trim(color, sn)
        report("T", color, sn)

    while True:
        roll = rng.random()
        if roll < 0.5 or not pending:
            token, color = rng.getrandbits(62), rng.randrange(COLORS)
            payload, records = payload_for(token)
            try:
                eng.prepare(token, color, payload, records)
            except StoreFull:
                trim(color)
                continue
            report("P", token, color)
            pending.append((token, color))
        elif roll < 0.93:
            # Mostly the newest, sometimes an old one: old prepared entries get relocated.
            i = len(pending) - 1 if rng.random() < 0.9 else rng.randrange(len(pending))
            commit(*pending.pop(i))
        elif roll < 0.95:
            token, _ = pending.pop(rng.randrange(len(pending)))
            report("a", token)
            eng.abort(token)
            report("A", token)
        elif roll < 0.99:
            trim(rng.randrange(COLORS))
        else:
            eng.checkpoint()


if __name__ == "__main__":
    main()
