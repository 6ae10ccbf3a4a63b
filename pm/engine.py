"""PmEngine: the replica StorageEngine on a libpmemobj pool, a DRAM cache and an SSD tier.

Semantics are MemoryEngine's (core/memory_engine.py). Durability lives in PM:
every mutating method is one C helper call (see pmem_log.c) ending at an
8-byte commit point; prepare_many and commit_many take a whole batch in one
call with one persistence barrier (group commit). Everything else here (the per-color index, the cache,
the list of prepared tokens) is DRAM, rebuilt at open from the pool and the
segment footers. docs/storage.md has the layout and the crash argument.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Collection, Sequence
from pathlib import Path

from flexlog.core.storage import (
    RECOVERED_TOKENS_PER_COLOR,
    STORE_FREE_BYTES,
    STORE_USED_BYTES,
    ColorState,
    CommitItem,
    Committed,
    CommittedToken,
    PreparedEntry,
    PrepareItem,
    RecoveredState,
    StoredEntry,
    StoreFull,
    Tier,
    UnknownToken,
)
from flexlog.pm._pmem import ffi, lib
from flexlog.pm.cache import EntryCache
from flexlog.pm.index import ColorIndex, Run, merge_runs, segment_run, split_ssd_loc, ssd_loc
from flexlog.pm.pool import ENTRY_HDR, Pool, check, error, slot_bytes
from flexlog.pm.segments import FILE_OVERHEAD, RECORD_OVERHEAD, Segment, SegmentStore

DEFAULT_POOL_BYTES = 256 << 20
DEFAULT_CACHE_BYTES = 64 << 20
DEFAULT_SSD_MAX_BYTES = 4 << 30
DEFAULT_MAX_COLORS = 16384
POOL_FILE = "pm.pool"
SSD_DIR = "ssd"
# A checkpoint started by prepare blocks the replica; moving at most this much bounds the stall.
_MAX_RELIEF_BYTES = 32 << 20
_MIN_PAYLOAD = 8  # baseOffset, which commit rewrites
_MAX_PAYLOAD = 1 << 31  # entry sizes are u32 in the pool

# token -> (arena position, color, count, payload length)
_Prepared = tuple[int, int, int, int]
# Entries of one color on their way to SSD: (sn, count, payload length, arena position).
_Batch = list[tuple[int, int, int, int]]
_Written = list[tuple[int, _Batch, Segment]]


class PmEngine:
    def __init__(
        self,
        data_dir: str | Path,
        pool_size_bytes: int = DEFAULT_POOL_BYTES,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        ssd_high_water: float = 0.75,
        ssd_max_bytes: int = DEFAULT_SSD_MAX_BYTES,
        *,
        ssd_dir: str | Path | None = None,
        max_colors: int = DEFAULT_MAX_COLORS,
    ) -> None:
        """Open the store in data_dir, creating the pool on first use.

        pool_size_bytes and max_colors only apply when the pool is created. The
        SSD tier goes to ssd_dir (default data_dir/ssd); checkpoints start when
        PM use passes ssd_high_water of the arena.
        """
        if not 0.0 < ssd_high_water <= 1.0:
            raise ValueError(f"the SSD tier's high-water mark is a fraction in (0, 1], not {ssd_high_water}")
        started = time.perf_counter()
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self._pool_path = (data_dir / POOL_FILE).resolve()
        self._pool = Pool(data_dir / POOL_FILE, pool_size_bytes, max_colors)
        self._log = self._pool.log
        self._root = self._pool.root
        self._cap = self._pool.cap
        self._buf = self._pool.buf
        self._high_water = int(self._cap * ssd_high_water)
        self._relief = min(self._cap // 8, _MAX_RELIEF_BYTES)
        self._cache = EntryCache(cache_bytes)
        self._colors: dict[int, ColorIndex] = {}
        self._prepared: dict[int, _Prepared] = {}
        self._checkpoints = 0
        self._last_checkpoint_seconds = 0.0
        self._trims = 0
        try:
            self._ssd = SegmentStore(Path(ssd_dir) if ssd_dir else data_dir / SSD_DIR, ssd_max_bytes)
            self._rebuild()
        except BaseException:
            self._pool.close()
            raise
        self.open_seconds = time.perf_counter() - started

    # -- open ---------------------------------------------------------------

    def _rebuild(self) -> None:
        """Rebuild the DRAM view from the arena between head and tail, then the segments."""
        pool = self._pool
        runs: defaultdict[int, list[Run]] = defaultdict(list)
        pm_runs, prepared = pool.scan()
        for slot, color, log_start, tail in pool.colors():
            self._colors[color] = ColorIndex(slot, log_start, tail)
            if slot in pm_runs:
                runs[color].append(pm_runs[slot])
        retired = []
        for pos in prepared:
            h = pool.header(pos)
            # Two copies of a token: a relocation was cut short; the later copy is whole.
            older = self._prepared.get(h.token)
            if older is not None:
                retired.append((older[0], h.token))
            self._prepared[h.token] = (pos, h.color, h.count, h.length)
        for loaded in self._ssd.load(pool.head):
            seg = loaded.segment
            idx = self._colors[seg.color]
            if seg.max_end <= idx.log_start:  # trimmed before a crash let the file go
                self._ssd.delete(seg.id)
                continue
            idx.segments.add(seg.id)
            runs[seg.color].append(segment_run(seg.id, loaded.sns, loaded.counts, loaded.lengths))
        for color, color_runs in runs.items():
            self._colors[color].adopt(merge_runs(color_runs))
        # Only now: retiring a copy may move the head, which judged the segments above.
        for pos, token in retired:
            check(lib.pm_abort(self._log, pos, token), "retire a prepared copy")

    # -- StorageEngine ------------------------------------------------------

    def prepare(self, token: int, color: int, payload: bytes | memoryview, count: int) -> None:
        if token in self._prepared:
            return
        if not isinstance(payload, bytes):
            payload = bytes(payload)
        length = len(payload)
        need = self._slot_for(length)
        self._make_room(need)
        pos = lib.pm_prepare(self._log, token, color, payload, length, count)
        if pos == lib.PM_EFULL:
            # Below the high-water mark PM can still be too fragmented at the ring's end.
            self.checkpoint(max(0, self._cap - 2 * need - self._relief))
            pos = lib.pm_prepare(self._log, token, color, payload, length, count)
            if pos == lib.PM_EFULL:
                raise StoreFull(self._full_message(length))
        self._prepared[token] = (check(pos, "prepare"), color, count, length)

    def _slot_for(self, length: int) -> int:
        """Arena bytes an entry of this payload length takes; raises if it can never be stored."""
        if not _MIN_PAYLOAD <= length < _MAX_PAYLOAD:
            raise ValueError(f"an entry is a RecordBatch of 8 bytes to 2 GiB, not {length}")
        need = slot_bytes(length)
        if need > self._cap:
            raise StoreFull(f"an entry of {length} bytes can never fit a {self._cap}-byte arena")
        return need

    def _make_room(self, need: int) -> None:
        """Checkpoint first if storing need more bytes would pass the high-water mark."""
        root = self._root
        if root.tail - root.head + need > self._high_water:
            self.checkpoint(max(0, self._high_water - need - self._relief))

    def prepare_many(self, items: Sequence[PrepareItem]) -> list[Exception | None]:
        results: list[Exception | None] = [None] * len(items)
        batch: list[int] = []  # indices of the items to store, each token once
        tokens: set[int] = set()
        need = 0
        for i, (token, _, payload, _) in enumerate(items):
            if token in self._prepared or token in tokens:
                continue  # prepare() of a prepared token is a no-op
            try:
                need += self._slot_for(len(payload))
            except (ValueError, StoreFull) as exc:
                results[i] = exc
                continue
            tokens.add(token)
            batch.append(i)
        if not batch:
            return results
        self._make_room(need)
        rows = [items[i] for i in batch]
        payloads = [row[2] for row in rows]
        positions = ffi.new("int64_t[]", len(rows))
        # Payloads are read in place (views of the message they came in), one pointer each.
        lib.pm_prepare_many(
            self._log, len(rows), [row[0] for row in rows], [row[1] for row in rows],
            [ffi.from_buffer(p) for p in payloads], [len(p) for p in payloads],
            [row[3] for row in rows], positions,
        )
        retry = []
        for i, (token, color, payload, count), pos in zip(batch, rows, positions, strict=True):
            if pos >= 0:
                self._prepared[token] = (pos, color, count, len(payload))
            elif pos == lib.PM_EFULL:
                retry.append(i)
            else:
                results[i] = error(pos, "prepare")
        # prepare() checkpoints harder than the batch's up-front check before giving up.
        for i in retry:
            try:
                self.prepare(*items[i])
            except StoreFull as exc:
                results[i] = exc
        return results

    def commit_many(self, items: Sequence[CommitItem]) -> list[Committed | Exception]:
        results: list[Committed | Exception | None] = [None] * len(items)
        # (result index, token, sn, prepared item, color slot) of each item sent to C
        batch: list[tuple[int, int, int, _Prepared, int]] = []
        new_slots: dict[int, int] = {}  # colors first committed in this batch claim slots in order
        for i, (token, sn) in enumerate(items):
            item = self._prepared.pop(token, None)
            if item is None:
                results[i] = UnknownToken(token)
                continue
            idx = self._colors.get(item[1])
            if idx is not None:
                slot = idx.slot
            else:
                slot = new_slots.setdefault(item[1], self._root.n_colors + len(new_slots))
            batch.append((i, token, sn, item, slot))
        if batch:
            status = ffi.new("int32_t[]", len(batch))
            lib.pm_commit_many(
                self._log, len(batch), [b[3][0] for b in batch], [b[1] for b in batch],
                [b[2] for b in batch], [b[4] for b in batch], status,
            )
            for (i, token, sn, item, slot), rc in zip(batch, status, strict=True):
                if rc:
                    self._prepared[token] = item
                    results[i] = error(rc, "commit")
                else:
                    results[i] = self._committed(sn, item, slot)
        return results  # type: ignore[return-value]  # every item got a result above

    def _committed(self, sn: int, item: _Prepared, slot: int) -> Committed:
        """Index an entry the pool has just committed. It reaches the cache when it is first
        read: copying every commit out of PM would be wasted on the replicas that never
        serve it, and would push out of the cache what readers are using."""
        pos, color, count, length = item
        idx = self._colors.get(color)
        if idx is None:
            idx = self._colors[color] = ColorIndex(slot)
        idx.add(sn, count, length, pos)
        return Committed(sn, count)

    def commit(self, token: int, sn: int) -> Committed:
        item = self._prepared.pop(token, None)
        if item is None:
            raise UnknownToken(token)
        idx = self._colors.get(item[1])
        slot = idx.slot if idx is not None else self._root.n_colors
        rc = lib.pm_commit(self._log, item[0], token, sn, slot)
        if rc:
            self._prepared[token] = item
            check(rc, "commit")
        return self._committed(sn, item, slot)

    def abort(self, token: int) -> None:
        item = self._prepared.pop(token, None)
        if item is not None:
            check(lib.pm_abort(self._log, item[0], token), "abort")

    def read(self, color: int, sn: int) -> StoredEntry | None:
        idx = self._colors.get(color)
        if idx is None or sn < idx.log_start:
            return None
        i = idx.find(sn)
        return self._entry(color, idx, i) if i >= 0 else None

    def token_of(self, color: int, sn: int) -> int:
        idx = self._colors.get(color)
        if idx is None:
            return 0
        i = idx.find(sn)
        if i < 0 or idx.sns[i] != sn or idx.locs[i] < 0:
            return 0
        return self._pool.header(idx.locs[i]).token

    def read_range(self, color: int, from_sn: int, max_bytes: int) -> list[StoredEntry]:
        idx = self._colors.get(color)
        if idx is None:
            return []
        out: list[StoredEntry] = []
        size = 0
        lengths = idx.lengths
        i = idx.first_from(max(from_sn, idx.log_start))
        while i < len(idx):
            size += lengths[i]
            if out and size > max_bytes:
                break
            out.append(self._entry(color, idx, i))
            i += 1
        return out

    def trim(self, color: int, sn: int) -> None:
        log_start = sn + 1
        idx = self._colors.get(color)
        if idx is not None and log_start <= idx.log_start:
            return
        slot = idx.slot if idx is not None else self._root.n_colors
        check(lib.pm_trim(self._log, slot, color, max(log_start, 0)), "trim")
        if idx is None:
            idx = self._colors[color] = ColorIndex(slot)
            if log_start <= 0:
                return
        idx.log_start = log_start
        idx.tail = max(idx.tail, log_start)
        idx.drop_below(log_start)
        # Files go after the pool says so: a crash in between leaves files the next open drops.
        for seg_id in [s for s in idx.segments if self._ssd.segments[s].max_end <= log_start]:
            idx.segments.discard(seg_id)
            self._ssd.delete(seg_id)
        self._trims += 1

    def state(self, color: int) -> ColorState:
        idx = self._colors.get(color)
        if idx is None:
            return ColorState(0, 0)
        return ColorState(idx.log_start, idx.tail)

    def prepared_payload(self, token: int) -> bytes:
        try:
            pos, _, _, length = self._prepared[token]
        except KeyError:
            raise UnknownToken(token) from None
        return self._pool.payload(pos, length)

    def recover(self) -> RecoveredState:
        prepared = [PreparedEntry(t, c, n) for t, (_, c, n, _) in self._prepared.items()]
        colors = {c: ColorState(idx.log_start, idx.tail) for c, idx in self._colors.items()}
        recent = []
        for color, idx in self._colors.items():
            for i in range(max(0, len(idx) - RECOVERED_TOKENS_PER_COLOR), len(idx)):
                loc = idx.locs[i]
                if loc >= 0:  # the SSD tier keeps no tokens; entries there are long settled
                    token = self._pool.header(loc).token
                    recent.append(CommittedToken(token, color, idx.sns[i], idx.counts[i]))
        return RecoveredState(prepared, colors, recent)

    def tiers(self) -> list[Tier]:
        # The cache lives in no file; it is named after the pool whose entries it copies.
        return [Tier("pm", str(self._pool_path), self._pool.used, self._cap),
                Tier("cache", f"dram:{self._pool_path}", self._cache.used, self._cache.budget),
                Tier("ssd", str(self._ssd.directory.resolve()), self._ssd.used_bytes,
                     self._ssd.max_bytes)]

    def color_bytes(self, colors: Collection[int]) -> dict[int, list[int]]:
        cached = self._cache.bytes_by_color(colors)
        out = {}
        for color in colors:
            pm = ssd = 0
            idx = self._colors.get(color)
            if idx is not None:
                # locs >= 0 are arena positions, < 0 SSD records (pm/index.py). An entry
                # committed below log_start after a trim is never read: not counted.
                for sn, count, length, loc in zip(idx.sns, idx.counts, idx.lengths, idx.locs,
                                                  strict=True):
                    if sn + count <= idx.log_start:
                        continue
                    if loc >= 0:
                        pm += length
                    else:
                        ssd += length
            out[color] = [pm, cached.get(color, 0), ssd]
        return out

    def close(self) -> None:
        if self._pool is None:
            return
        self._ssd.close()
        self._cache.clear()
        self._pool.close()
        # Drop every alias of the C handle: using it after close must fail in Python, not in C.
        self._pool = self._log = self._root = self._buf = None  # type: ignore[assignment]

    # -- tiering --------------------------------------------------------------

    def checkpoint(self, target_used: int = 0) -> int:
        """Move the oldest entries out of PM until it holds at most target_used bytes.

        Committed entries go to SSD segments, prepared ones are copied to the
        tail, trimmed and aborted ones are skipped. Stops early when the SSD
        tier is full or a prepared entry finds no room. Returns bytes freed.
        """
        started = time.perf_counter()
        pool = self._pool
        head, tail = pool.head, pool.tail
        goal = tail - head - target_used
        if goal > 0:
            # The last commit batch's entries read COMMITTED from here on, so the walk copies them.
            lib.pm_settle_commits(self._log)
        batches: dict[int, _Batch] = {}
        ssd_room = self._ssd.max_bytes - self._ssd.used_bytes
        pos = head
        while pos < tail and pos - head < goal:
            h = pool.header(pos)
            if h.state == lib.PM_ST_PREPARED:
                moved = lib.pm_relocate(self._log, pos)
                if moved < 0:
                    break
                self._prepared[h.token] = (moved, h.color, h.count, h.length)
            elif h.state == lib.PM_ST_COMMITTED and h.sn + h.count > self._log_start(h.color):
                batch = batches.get(h.color)
                cost = h.length + RECORD_OVERHEAD + (FILE_OVERHEAD if batch is None else 0)
                if cost > ssd_room:
                    break
                ssd_room -= cost
                batches.setdefault(h.color, []).append((h.sn, h.count, h.length, pos))
            pos += h.size
        if pos == head:
            return 0
        self._move_to_ssd(batches, pos)
        self._checkpoints += 1
        self._last_checkpoint_seconds = time.perf_counter() - started
        return pool.head - head

    def _log_start(self, color: int) -> int:
        return self._colors[color].log_start

    def _move_to_ssd(self, batches: dict[int, _Batch], new_head: int) -> None:
        """Write the segments, make them durable, then move the head: the commit point."""
        pool = self._pool
        written: _Written = []
        try:
            for color, items in batches.items():
                items.sort()  # segments keep records in SN order
                records = [(sn, n, pool.payload_view(p, length)) for sn, n, length, p in items]
                written.append((color, items, self._ssd.write(color, new_head, records)))
            self._ssd.sync()
        except BaseException:
            self._drop_segments(written)
            raise
        rc = lib.pm_advance(self._log, new_head)
        if rc:  # the head did not move: the files must not count
            self._drop_segments(written)
            check(rc, "checkpoint")
        for color, items, seg in written:
            idx = self._colors[color]
            idx.segments.add(seg.id)
            for record, (sn, _, _, _) in enumerate(items):
                idx.locs[idx.position(sn)] = ssd_loc(seg.id, record)

    def _drop_segments(self, written: _Written) -> None:
        for _, _, seg in written:
            self._ssd.delete(seg.id)

    def _entry(self, color: int, idx: ColorIndex, i: int) -> StoredEntry:
        sn = idx.sns[i]
        entry = self._cache.get(color, sn)
        if entry is None:
            loc = idx.locs[i]
            if loc >= 0:
                start = loc % self._cap + ENTRY_HDR
                payload = self._buf[start : start + idx.lengths[i]]
            else:
                payload = self._ssd.read(*split_ssd_loc(loc), sn, idx.lengths[i])
            entry = StoredEntry(sn, idx.counts[i], payload)
            self._cache.put(color, sn, entry)
        return entry

    def _full_message(self, length: int) -> str:
        pool, ssd = self._pool, self._ssd
        return (
            f"store full: cannot take a {length}-byte entry; persistent memory holds "
            f"{pool.used} of {self._cap} bytes ({len(self._prepared)} prepared entries), "
            f"SSD tier {ssd.used_bytes} of {ssd.max_bytes} bytes. Trim the log or resolve "
            "prepared entries; a larger pool_size_bytes applies only to a pool created anew."
        )

    def stats(self) -> dict[str, float]:
        used = self._pool.used
        return {
            STORE_USED_BYTES: used,
            STORE_FREE_BYTES: self._cap - used,
            # Also under their PM names, which are exported metrics of their own (docs/operations.md).
            "pm_used_bytes": used,
            "pm_free_bytes": self._cap - used,
            "cache_hits": self._cache.hits,
            "cache_misses": self._cache.misses,
            "ssd_bytes": self._ssd.used_bytes,
            "checkpoints": self._checkpoints,
            "last_checkpoint_seconds": self._last_checkpoint_seconds,
            "trims": self._trims,
        }
