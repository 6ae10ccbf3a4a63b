"""Crash-test child: appends, commits, aborts, trims and checkpoints until SIGKILLed.

Usage: pm_crash_child.py DATA_DIR REPORT SEED INJECT HIGH_WATER [batch]

Every outcome is appended to REPORT only after the engine call returned, one
os.write per line, so a line on disk means the operation completed:
    P token color        prepared          C token color sn count   committed
    a token / A token    abort started/done   t color sn / T color sn  trim started/done
    X site               about to SIGKILL itself at an injected crash site
With INJECT > 0 the child also picks one of the windows that matter most
(CRASH_SITES: between writing segments and moving the PM head, after a
relocation, between a trim's pool update and its file deletions) and kills
itself there, with that probability each time it passes.
With "batch", entries are prepared with prepare_many and committed with
commit_many, up to 64 at a time (a line is still reported per entry, after the
batch call returned), so most kills land inside or between batches.
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
    """One line per event, each ending in END: a SIGKILL can tear a write where it crosses
    a page of the file (seen: "C" written, the rest of the line not), so the reader takes
    only lines that end in END, and each child starts with a newline to end a line its
    predecessor tore."""

    END = "."

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.write(self.fd, b"\n")

    def __call__(self, *fields: object) -> None:
        os.write(self.fd, (" ".join(map(str, (*fields, self.END))) + "\n").encode())


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
    batches = sys.argv[6:] == ["batch"]
    rng = random.Random(int(seed))
    report = Reporter(report_path)
    eng = open_engine(data_dir, float(high_water))
    if float(inject) > 0:
        install_crash_site(report, float(inject), rng)
    pending: list[tuple[int, int]] = [(p.token, p.color) for p in eng.recover().prepared]
    print("ready", flush=True)

    def prepare() -> None:
        items = []
        for _ in range(rng.randint(1, 64) if batches else 1):
            token = rng.getrandbits(62)
            payload, records = payload_for(token)
            items.append((token, rng.randrange(COLORS), payload, records))
        if batches:
            results = eng.prepare_many(items)
        else:
            try:
                eng.prepare(*items[0])
                results = [None]
            except StoreFull as exc:
                results = [exc]
        for (token, color, _, _), error in zip(items, results, strict=True):
            if error is None:
                report("P", token, color)
                pending.append((token, color))
            elif isinstance(error, StoreFull):
                trim(color)
            else:
                raise error

    def commit() -> None:
        n = rng.randint(1, 64) if batches else 1
        take = [pending.pop() for _ in range(min(n, len(pending)))]
        # Mostly the newest, sometimes an old one: old prepared entries get relocated.
        if rng.random() < 0.1:
            pending.append(take.pop())
            take.append(pending.pop(rng.randrange(len(pending))))
        next_sn: dict[int, int] = {}  # SNs in batch order per color, so they stay dense
        items = []
        for token, color in take:
            sn = next_sn.get(color, eng.state(color).tail)
            items.append((token, sn))
            next_sn[color] = sn + payload_for(token)[1]
        entries = eng.commit_many(items) if batches else [eng.commit(*items[0])]
        for (token, sn), (_, color), entry in zip(items, take, entries, strict=True):
            if isinstance(entry, Exception):
                raise entry
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
            prepare()
        elif roll < 0.93:
            commit()
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
