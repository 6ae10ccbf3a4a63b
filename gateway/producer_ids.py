"""Producer ids unique across gateways and restarts, allocated through the log.

A gateway claims a block of ids by appending a record to the color
``__producer_ids`` (owned by the root, so one sequencer orders every claim):
the record's SN n gives it the ids [n * BLOCK_SIZE, (n + 1) * BLOCK_SIZE). SNs
are never reused, so no two claims, by any gateway, ever overlap, and nothing
needs to be read back after a restart.
"""

from __future__ import annotations

import asyncio
import json

from flexlog.core.client import FlexLogClient
from flexlog.core.config import ClusterConfig
from flexlog.core.record_batch import Record
from flexlog.core.registry import ColorInfo

PRODUCER_IDS_COLOR = "__producer_ids"
BLOCK_SIZE = 1000


class ProducerIdAllocator:
    def __init__(self, client: FlexLogClient, config: ClusterConfig, gateway: str) -> None:
        self.client = client
        self.config = config
        self.gateway = gateway
        self._next = 0
        self._end = 0  # the current block is [_next, _end)
        self._lock = asyncio.Lock()

    async def _color(self) -> ColorInfo:
        return await self.client.ensure_system_color(PRODUCER_IDS_COLOR)

    async def allocate(self) -> int:
        async with self._lock:
            if self._next >= self._end:
                claim = json.dumps({"gateway": self.gateway, "block_size": BLOCK_SIZE}).encode()
                color = await self._color()
                sn = await self.client.append([Record(claim)], color)
                # Claims are never read back (SNs alone keep them apart), so none is kept.
                await self.client.trim(sn, color)
                self._next, self._end = sn * BLOCK_SIZE, (sn + 1) * BLOCK_SIZE
            pid = self._next
            self._next += 1
            return pid
