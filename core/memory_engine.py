"""An in-memory StorageEngine: fast, volatile, for unit tests and throwaway clusters."""

from __future__ import annotations

import bisect
from collections.abc import Collection, Sequence

from flexlog.core.record_batch import with_base_offset
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


class _ColorLog:
    __slots__ = ("entries", "log_start", "sns", "tail", "tokens")

    def __init__(self) -> None:
        self.sns: list[int] = []  # sorted start SNs of committed entries
        self.entries: dict[int, StoredEntry] = {}
        self.tokens: dict[int, int] = {}  # start SN -> the token it was committed under
        self.log_start = 0
        self.tail = 0


class MemoryEngine:
    def __init__(self, capacity_bytes: int = 1 << 40) -> None:
        self._capacity = capacity_bytes
        self._used = 0
        self._prepared: dict[int, tuple[int, bytes | memoryview, int]] = {}
        self._colors: dict[int, _ColorLog] = {}

    def prepare(self, token: int, color: int, payload: bytes | memoryview, count: int) -> None:
        if token in self._prepared:
            return  # a retry: it takes no space, so a full store must not refuse it
        if self._used + len(payload) > self._capacity:
            raise StoreFull(f"memory store full ({self._used} of {self._capacity} bytes): trim the log, "
                            "resolve prepared entries, or raise pool_size_bytes")
        self._prepared[token] = (color, payload, count)
        self._used += len(payload)

    def commit(self, token: int, sn: int) -> Committed:
        try:
            color, payload, count = self._prepared.pop(token)
        except KeyError:
            raise UnknownToken(token) from None
        entry = StoredEntry(sn, count, with_base_offset(payload, sn))
        log = self._colors.get(color)
        if log is None:
            log = self._colors[color] = _ColorLog()
        if not log.sns or sn > log.sns[-1]:
            log.sns.append(sn)
        else:
            bisect.insort(log.sns, sn)
        log.entries[sn] = entry
        log.tokens[sn] = token
        log.tail = max(log.tail, sn + count)
        return Committed(sn, count)

    def prepare_many(self, items: Sequence[PrepareItem]) -> list[Exception | None]:
        results: list[Exception | None] = []
        for item in items:
            try:
                self.prepare(*item)
            except StoreFull as exc:
                results.append(exc)
            else:
                results.append(None)
        return results

    def commit_many(self, items: Sequence[CommitItem]) -> list[Committed | Exception]:
        results: list[Committed | Exception] = []
        for token, sn in items:
            try:
                results.append(self.commit(token, sn))
            except UnknownToken as exc:
                results.append(exc)
        return results

    def abort(self, token: int) -> None:
        item = self._prepared.pop(token, None)
        if item is not None:
            self._used -= len(item[1])

    def _index_of(self, log: _ColorLog, sn: int) -> int:
        """Index in log.sns of the entry containing sn, or of the first entry after it."""
        i = bisect.bisect_right(log.sns, sn) - 1
        if i >= 0 and log.entries[log.sns[i]].end > sn:
            return i
        return i + 1

    def read(self, color: int, sn: int) -> StoredEntry | None:
        log = self._colors.get(color)
        if log is None or sn < log.log_start:
            return None
        i = bisect.bisect_right(log.sns, sn) - 1
        if i < 0:
            return None
        entry = log.entries[log.sns[i]]
        return entry if entry.end > sn else None

    def token_of(self, color: int, sn: int) -> int:
        log = self._colors.get(color)
        return log.tokens.get(sn, 0) if log is not None else 0

    def read_range(self, color: int, from_sn: int, max_bytes: int) -> list[StoredEntry]:
        log = self._colors.get(color)
        if log is None:
            return []
        out: list[StoredEntry] = []
        size = 0
        i = self._index_of(log, max(from_sn, log.log_start))
        while i < len(log.sns):
            entry = log.entries[log.sns[i]]
            size += len(entry.payload)
            if out and size > max_bytes:
                break
            out.append(entry)
            i += 1
        return out

    def trim(self, color: int, sn: int) -> None:
        log = self._colors.get(color)
        if log is None:
            log = self._colors[color] = _ColorLog()
        if sn + 1 <= log.log_start:
            return
        log.log_start = sn + 1
        log.tail = max(log.tail, log.log_start)
        drop = 0
        while drop < len(log.sns) and log.entries[log.sns[drop]].end <= log.log_start:
            entry = log.entries.pop(log.sns[drop])
            del log.tokens[entry.sn]
            self._used -= len(entry.payload)
            drop += 1
        del log.sns[:drop]

    def state(self, color: int) -> ColorState:
        log = self._colors.get(color)
        if log is None:
            return ColorState(0, 0)
        return ColorState(log.log_start, log.tail)

    def prepared_payload(self, token: int) -> bytes:
        try:
            return bytes(self._prepared[token][1])
        except KeyError:
            raise UnknownToken(token) from None

    def recover(self) -> RecoveredState:
        prepared = [PreparedEntry(t, c, n) for t, (c, _, n) in self._prepared.items()]
        colors = {c: ColorState(log.log_start, log.tail) for c, log in self._colors.items()}
        recent = [CommittedToken(log.tokens[sn], c, sn, log.entries[sn].count)
                  for c, log in self._colors.items()
                  for sn in log.sns[-RECOVERED_TOKENS_PER_COLOR:]]
        return RecoveredState(prepared, colors, recent)

    def stats(self) -> dict[str, float]:
        return {STORE_USED_BYTES: self._used, STORE_FREE_BYTES: self._capacity - self._used}

    def tiers(self) -> list[Tier]:
        return [Tier("memory", "", self._used, self._capacity)]

    def color_bytes(self, colors: Collection[int]) -> dict[int, list[int]]:
        out = {}
        for color in colors:
            log = self._colors.get(color)
            # An entry committed below log_start after a trim is kept but never read: not counted.
            out[color] = [sum(len(e.payload) for e in log.entries.values() if e.end > log.log_start)
                          if log else 0]
        return out

    def close(self) -> None:
        self._prepared.clear()
        self._colors.clear()
