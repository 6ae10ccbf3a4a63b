"""Turning many small operations into few stream messages, and serving a stream's replies.

Everything put into a Batcher during one event-loop iteration is handed to
its flush callback together on the next iteration (or after interval_s), so a
burst of appends becomes one gRPC message without adding a fixed delay. With
a window (`limit`), at most that many batches are in flight and what arrives
meanwhile leaves together once one completes: message counts stay low exactly
when throughput matters. A batch may also be held back while another is in
flight until it is big enough (`behind_min`), so small items travel in fewer,
bigger messages and big ones still overlap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

from flexlog.core import tasks

log = logging.getLogger("flexlog.rpc")

T = TypeVar("T")
_readers: set[asyncio.Task[None]] = set()  # request readers of the streams being served


class Batcher(Generic[T]):
    def __init__(self, flush: Callable[[list[T]], None], interval_s: float = 0.0,
                 limit: int | None = None, size: Callable[[T], int] | None = None,
                 behind_min: int = 0) -> None:
        """limit: batches in flight at most; the owner calls done() once per completed batch.
        behind_min: while a batch is in flight, the next one leaves early only once its
        items' sizes (size(item)) add up to this; otherwise when a batch completes."""
        self._flush = flush
        self._interval = interval_s
        self._limit = limit
        self._size = size
        self._behind_min = behind_min
        self._items: list[T] = []
        self._pending = 0  # the items' sizes, when size is given
        self._scheduled = False
        self.in_flight = 0

    def put(self, item: T) -> None:
        self._items.append(item)
        if self._size is not None:
            self._pending += self._size(item)
        self._schedule()

    def done(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        self._schedule()

    def _may_leave(self) -> bool:
        if self._limit is None or self.in_flight == 0:
            return True
        return self.in_flight < self._limit and self._pending >= self._behind_min

    def _schedule(self) -> None:
        if not self._items or self._scheduled or not self._may_leave():
            return
        self._scheduled = True
        loop = asyncio.get_running_loop()
        if self._interval > 0:
            loop.call_later(self._interval, self._run)
        else:
            loop.call_soon(self._run)

    def _run(self) -> None:
        self._scheduled = False
        if not self._items or not self._may_leave():
            return
        items, self._items = self._items, []
        self._pending = 0
        if self._limit is not None:
            self.in_flight += 1
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


async def serve_stream(read: Callable[[ByteQueue], Awaitable[None]], what: str,
                       on_end: Callable[[ByteQueue], None] | None = None) -> AsyncIterator[bytes]:
    """The reply side of a bidirectional stream handler: read(queue) consumes the requests
    (in a task of its own, whose failure is logged) and puts replies on queue, closing it when
    done; the stream ends when the queue is closed, then the reader is cancelled and on_end runs."""
    queue = ByteQueue()
    reader = tasks.spawn(read(queue), what, log, _readers)
    try:
        async for data in queue.drain():
            yield data
    finally:
        reader.cancel()
        if on_end is not None:
            on_end(queue)


R = TypeVar("R", bound=tuple[int, ...])
E = TypeVar("E")


class RowsAndErrors(Generic[R, E]):
    """Rows of ints and error messages owed to a stream, sent as one message per loop iteration.

    Acks and grants travel as packed columns (one repeated field per row position),
    which protobuf builds and parses in bulk; subclasses say how a message is made
    and where it goes.
    """

    def __init__(self) -> None:
        self._out: Batcher[R | E] = Batcher(self._flush)

    def add_row(self, row: R) -> None:
        self._out.put(row)

    def add_error(self, error: E) -> None:
        self._out.put(error)

    def _flush(self, items: list[R | E]) -> None:
        rows = [i for i in items if isinstance(i, tuple)]
        errors = [i for i in items if not isinstance(i, tuple)]
        self.send(list(zip(*rows, strict=True)), errors)  # type: ignore[arg-type]

    def send(self, columns: list[tuple[int, ...]], errors: list[E]) -> None:
        """Send one message: columns[i] holds position i of every row (empty when no rows)."""
        raise NotImplementedError
