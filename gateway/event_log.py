"""A color holding JSON events that every gateway folds in SN order (users, ACLs).

The same scheme as ``__topics`` (gateway/topics.py): the color is owned by the
root so one sequencer orders all events, each gateway applies them in SN order
and so agrees with every other gateway and with itself after a restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from flexlog.core.client import FlexLogClient
from flexlog.core.config import ClusterConfig
from flexlog.core.errors import FlexLogError
from flexlog.core.record_batch import Record
from flexlog.core.registry import ColorInfo

log = logging.getLogger("flexlog.gateway.event_log")

WATCH_WAIT_MS = 5_000

Apply = Callable[[dict[str, Any]], None]


class EventLog:
    def __init__(self, client: FlexLogClient, config: ClusterConfig, color: str, apply: Apply) -> None:
        self.client = client
        self.config = config
        self.name = color
        self._apply = apply
        self.applied = 0  # next SN to apply
        self._lock = asyncio.Lock()
        self._color: ColorInfo | None = None

    async def open(self) -> None:
        self._color = await self.client.ensure_system_color(self.name)
        await self.sync()

    async def sync(self) -> None:
        """Apply every event up to the current tail."""
        assert self._color is not None, "open() first"
        async with self._lock:
            self.applied = await self.client.catch_up(self._color, self.applied, self._apply_one)

    def _apply_one(self, sn: int, value: bytes | None) -> None:
        try:
            event = json.loads(value or b"")
            if not isinstance(event, dict):
                raise ValueError("not an object")
            self._apply(event)
        except (KeyError, TypeError, ValueError):
            # Never log the event itself: it may hold credentials.
            log.warning("ignoring malformed event at SN %d of %s", sn, self.name)

    async def watch(self) -> None:
        """Follow events appended by other processes until cancelled."""
        assert self._color is not None, "open() first"
        while True:
            try:
                await self.client.read_range(self._color, self.applied, 1, wait_ms=WATCH_WAIT_MS)
                await self.sync()
            except FlexLogError as exc:
                log.warning("following %s failed, retrying: %s", self.name, exc)
                await asyncio.sleep(1.0)

    async def append(self, event: dict[str, Any]) -> None:
        """Append one event and return once it is applied here."""
        assert self._color is not None, "open() first"
        sn = await self.client.append([Record(json.dumps(event).encode())], self._color)
        while self.applied <= sn:
            await self.sync()
