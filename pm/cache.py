"""DRAM cache of committed entries, least recently used first out, bounded in bytes."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection

from flexlog.core.storage import StoredEntry


class EntryCache:
    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.used = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple[int, int], StoredEntry] = OrderedDict()

    def get(self, color: int, sn: int) -> StoredEntry | None:
        entry = self._entries.get((color, sn))
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end((color, sn))
        return entry

    def put(self, color: int, sn: int, entry: StoredEntry) -> None:
        size = len(entry.payload)
        if size > self.budget:
            return
        key = (color, sn)
        old = self._entries.pop(key, None)
        if old is not None:
            self.used -= len(old.payload)
        self._entries[key] = entry
        self.used += size
        while self.used > self.budget:
            _, evicted = self._entries.popitem(last=False)
            self.used -= len(evicted.payload)

    def bytes_by_color(self, colors: Collection[int]) -> dict[int, int]:
        """Cached payload bytes of each of colors that has any: one pass over the cache."""
        wanted = set(colors)
        out: dict[int, int] = {}
        for (color, _), entry in self._entries.items():
            if color in wanted:
                out[color] = out.get(color, 0) + len(entry.payload)
        return out

    def clear(self) -> None:
        self._entries.clear()
        self.used = 0
