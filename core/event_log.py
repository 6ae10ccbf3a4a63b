"""A color of events that every process folds into the same state, in SN order.

The color registry (system color 0), the gateways' topics, committed offsets,
users and ACLs are all kept this way: each change is one record appended to a
root-owned color (one sequencer orders them all), and every process applies
the records in SN order, so all of them, and each one after a restart, agree.
`EventLog` is the one piece that reads such a color to its tail, follows it,
and appends to it; what a record means is the fold's business (`Fold`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from flexlog.core.errors import FlexLogError, Trimmed
from flexlog.core.registry import ColorInfo

if TYPE_CHECKING:
    from flexlog.core.client import FlexLogClient

log = logging.getLogger("flexlog.event_log")

WATCH_WAIT_MS = 5_000
RETRY_S = 1.0


class Fold(Protocol):
    """State folded from a log: `applied` is the next SN it has not seen."""

    applied: int

    def apply(self, sn: int, value: bytes | None) -> None: ...


class JsonEvents:
    """A fold of JSON-object events handed to `apply_event` one by one; a malformed one is
    logged without its content (it may hold credentials) and skipped."""

    def __init__(self, apply_event: Callable[[dict[str, Any]], None], name: str) -> None:
        self.applied = 0
        self._apply_event = apply_event
        self._name = name

    def apply(self, sn: int, value: bytes | None) -> None:
        self.applied = max(self.applied, sn + 1)
        try:
            event = json.loads(value or b"")
            if not isinstance(event, dict):
                raise ValueError("not an object")
            self._apply_event(event)
        except (KeyError, TypeError, ValueError):
            log.warning("ignoring malformed event at SN %d of %s", sn, self._name)


def json_record(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


class EventLog:
    def __init__(self, client: FlexLogClient, fold: Fold, color: str | ColorInfo,
                 on_change: Callable[[], Awaitable[None]] | None = None) -> None:
        """color: a ColorInfo, or the name of a system color created on open() if missing.
        on_change runs after a sync that applied something."""
        self.client = client
        self.fold = fold
        self.name = color if isinstance(color, str) else color.name
        self._color = color if isinstance(color, ColorInfo) else None
        self._on_change = on_change
        self._lock = asyncio.Lock()

    @property
    def opened(self) -> bool:
        return self._color is not None

    @property
    def color(self) -> ColorInfo:
        assert self._color is not None, "open() first"
        return self._color

    async def open(self) -> None:
        if self._color is None:
            self._color = await self.client.ensure_system_color(self.name)
        await self.sync()

    async def sync(self) -> bool:
        """Apply every record up to the current tail; whether anything was applied."""
        color = self.color
        async with self._lock:
            before = self.fold.applied
            while True:
                try:
                    upto = await self.client.catch_up(color, self.fold.applied, self.fold.apply)
                except Trimmed:
                    # Trimmed past what was applied: only a log that snapshots itself is
                    # trimmed (committed offsets), and the snapshot lies ahead.
                    log_start, _ = await self.client.state(color)
                    self.fold.applied = max(self.fold.applied, log_start)
                    continue
                # Fill markers hold no records: the fold never saw their SNs.
                self.fold.applied = max(self.fold.applied, upto)
                break
            changed = self.fold.applied > before
        if changed and self._on_change is not None:
            await self._on_change()
        return changed

    async def watch(self) -> None:
        """Follow records appended by other processes until cancelled."""
        while True:
            try:
                # The wait happens outside sync's lock, so syncs meanwhile are not held up.
                await self.client.read_range(self.color, self.fold.applied, 1,
                                             wait_ms=WATCH_WAIT_MS)
                await self.sync()
            except FlexLogError as exc:
                log.warning("following %s failed, retrying: %s", self.name, exc)
                await asyncio.sleep(RETRY_S)

    async def append(self, value: bytes, wait_applied: bool = True) -> int:
        """Append one record; its SN. With wait_applied, returns once the fold applied it."""
        sn = await self.client.append([value], self.color)
        while wait_applied and self.fold.applied <= sn:
            await self.sync()
        return sn
