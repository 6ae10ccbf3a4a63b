"""Turning many small operations into few stream messages.

Everything put into a Batcher during one event-loop iteration is handed to
its flush callback together on the next iteration (or after interval_s), so a
burst of appends becomes one gRPC message without adding a fixed delay.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Batcher(Generic[T]):
    def __init__(self, flush: Callable[[list[T]], None], interval_s: float = 0.0) -> None:
        self._flush = flush
        self._interval = interval_s
        self._items: list[T] = []
        self._scheduled = False

    def put(self, item: T) -> None:
        self._items.append(item)
        if not self._scheduled:
            self._scheduled = True
            loop = asyncio.get_running_loop()
            if self._interval > 0:
                loop.call_later(self._interval, self._run)
            else:
                loop.call_soon(self._run)

    def _run(self) -> None:
        self._scheduled = False
        items, self._items = self._items, []
        if items:
            self._flush(items)


class ByteQueue:
    """Serialized messages waiting for one stream; closed when the stream ends."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = False

    def put(self, data: bytes) -> None:
        if not self.closed:
            self._queue.put_nowait(data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._queue.put_nowait(None)

    async def drain(self) -> AsyncIterator[bytes]:
        while True:
            data = await self._queue.get()
            if data is None:
                return
            yield data
