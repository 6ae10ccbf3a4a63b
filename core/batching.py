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


R = TypeVar("R", bound=tuple[int, ...])
E = TypeVar("E")


class RowsAndErrors(Generic[R, E]):
    """Rows of ints and error messages owed to a stream, sent as one message per loop iteration.

    Acks and grants travel as packed columns (one repeated field per row position),
    which protobuf builds and parses in bulk; subclasses say how a message is made
    and where it goes.
    """

    def __init__(self) -> None:
        self._rows: list[R] = []
        self._errors: list[E] = []
        self._scheduled = False

    def add_row(self, row: R) -> None:
        self._rows.append(row)
        self._schedule()

    def add_error(self, error: E) -> None:
        self._errors.append(error)
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        rows, errors = self._rows, self._errors
        self._rows, self._errors = [], []
        self.send(list(zip(*rows, strict=True)), errors)

    def send(self, columns: list[tuple[int, ...]], errors: list[E]) -> None:
        """Send one message: columns[i] holds position i of every row (empty when no rows)."""
        raise NotImplementedError
