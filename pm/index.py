"""The DRAM index of one color: which committed entry holds an SN, and where it lives.

Rebuilt at open from the arena and the segment footers, never persisted.
Parallel typed arrays instead of per-entry objects keep it at 24 bytes per
entry and let the rebuild fill it in bulk (from C for the arena).

A location is an int: >= 0 is a logical arena position in PM; < 0 encodes
(segment id, record number) of the SSD tier.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from itertools import pairwise

_RECORD_BITS = 32

# Parallel arrays in SN order: sns ("Q"), counts ("I"), lengths ("I"), locations ("q").
Run = tuple[array, array, array, array]


def ssd_loc(segment_id: int, record: int) -> int:
    return -1 - ((segment_id << _RECORD_BITS) | record)


def split_ssd_loc(loc: int) -> tuple[int, int]:
    v = -1 - loc
    return v >> _RECORD_BITS, v & ((1 << _RECORD_BITS) - 1)


def new_run(n: int = 0) -> Run:
    return array("Q", bytes(8 * n)), array("I", bytes(4 * n)), array("I", bytes(4 * n)), array(
        "q", bytes(8 * n)
    )


def segment_run(segment_id: int, sns: array, counts: array, lengths: array) -> Run:
    first = ssd_loc(segment_id, 0)
    return sns, counts, lengths, array("q", range(first, first - len(sns), -1))


def _from_rows(rows: list[tuple[int, int, int, int]]) -> Run:
    run = new_run()
    for column, values in zip(run, zip(*rows, strict=True), strict=False):
        column.extend(values)
    return run


def sort_run(run: Run) -> Run:
    return _from_rows(sorted(zip(*run, strict=True)))


def merge_runs(runs: list[Run]) -> Run:
    """One run in SN order from runs that each are in SN order."""
    runs = sorted((r for r in runs if r[0]), key=lambda r: r[0][0])
    if all(a[0][-1] < b[0][0] for a, b in pairwise(runs)):
        merged = new_run()
        for run in runs:
            for column, part in zip(merged, run, strict=True):
                column.extend(part)
        return merged
    # Interleaved runs (commits far out of SN order around a checkpoint): rare, so sort rows.
    return _from_rows(sorted(row for run in runs for row in zip(*run, strict=True)))


class ColorIndex:
    __slots__ = ("counts", "lengths", "locs", "log_start", "segments", "slot", "sns", "tail")

    def __init__(self, slot: int, log_start: int = 0, tail: int = 0) -> None:
        self.slot = slot  # the color's metadata slot in the pool
        self.log_start = log_start
        self.tail = max(tail, log_start)
        self.sns, self.counts, self.lengths, self.locs = new_run()
        self.segments: set[int] = set()  # ids of SSD segments holding entries of this color

    def __len__(self) -> int:
        return len(self.sns)

    def adopt(self, run: Run) -> None:
        """Take an SN-ordered run as the whole index (at open), minus what is trimmed."""
        self.sns, self.counts, self.lengths, self.locs = run
        self.drop_below(self.log_start)
        if self.sns:
            self.tail = max(self.tail, self.sns[-1] + self.counts[-1])

    def add(self, sn: int, count: int, length: int, loc: int) -> None:
        sns = self.sns
        if not sns or sn > sns[-1]:
            sns.append(sn)
            self.counts.append(count)
            self.lengths.append(length)
            self.locs.append(loc)
        else:  # committed out of SN order: rare, so a linear insert is fine
            i = bisect_left(sns, sn)
            sns.insert(i, sn)
            self.counts.insert(i, count)
            self.lengths.insert(i, length)
            self.locs.insert(i, loc)
        if sn + count > self.tail:
            self.tail = sn + count

    def find(self, sn: int) -> int:
        """Position of the entry containing sn, or -1."""
        i = bisect_right(self.sns, sn) - 1
        if i >= 0 and self.sns[i] + self.counts[i] > sn:
            return i
        return -1

    def first_from(self, sn: int) -> int:
        """Position of the entry containing sn, else of the first entry after it."""
        i = bisect_right(self.sns, sn) - 1
        if i >= 0 and self.sns[i] + self.counts[i] > sn:
            return i
        return i + 1

    def position(self, sn: int) -> int:
        """Position of the entry starting exactly at sn (which must exist)."""
        i = bisect_left(self.sns, sn)
        if i == len(self.sns) or self.sns[i] != sn:
            raise KeyError(sn)
        return i

    def drop_below(self, log_start: int) -> None:
        """Forget entries wholly below log_start; one straddling it stays."""
        k = bisect_left(self.sns, log_start)
        if k and self.sns[k - 1] + self.counts[k - 1] > log_start:
            k -= 1
        if k:
            del self.sns[:k]
            del self.counts[:k]
            del self.lengths[:k]
            del self.locs[:k]
