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


class Window(Generic[T]):
    """Adaptive batching: at most `limit` batches in flight, the rest accumulate.

    At low load every item leaves on the next loop iteration; under load the
    items that arrive while the window is full leave together once a batch
    completes, so message counts stay low exactly when throughput matters.
    The owner calls done() once per completed batch.
    """

    def __init__(self, send: Callable[[list[T]], None], limit: int = 4) -> None:
        self._send = send
        self._limit = limit
        self._items: list[T] = []
        self._scheduled = False
        self.in_flight = 0

    def put(self, item: T) -> None:
        self._items.append(item)
        self._schedule()

    def done(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        self._schedule()

    def reset(self) -> None:
        self.in_flight = 0
        self._schedule()

    def _schedule(self) -> None:
        if self._items and not self._scheduled and self.in_flight < self._limit:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._run)

    def _run(self) -> None:
        self._scheduled = False
        if not self._items or self.in_flight >= self._limit:
            return
        items, self._items = self._items, []
        self.in_flight += 1
        self._send(items)
