"""How long the event loop spent running one request's handler, for request_percentage quotas.

Kafka charges a request-rate quota with the time its request-handler threads spent on
the client's requests, not the time a request waited (a Fetch for data, a Produce for
its replicas, a JoinGroup for the rebalance: Kafka parks those in its purgatory, off
the threads). The gateway's handlers run on one event loop, so the equivalent is the
time spent inside the handler coroutine's steps: `HandlingTime` drives the coroutine
itself and adds up the clock between each resumption and the next suspension. Work
the handler hands to other tasks (e.g. one read per partition, gathered) runs outside
those steps and is not counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class HandlingTime(Generic[T]):
    """Await this instead of coro; afterwards `seconds` is the time spent running coro's own code."""

    def __init__(self, coro: Coroutine[Any, Any, T], clock: Callable[[], float] = time.perf_counter) -> None:
        self.coro = coro
        self.clock = clock
        self.seconds = 0.0

    def __await__(self) -> Generator[Any, Any, T]:
        send_value: Any = None
        error: BaseException | None = None
        while True:
            started = self.clock()
            try:
                suspended_on = self.coro.send(send_value) if error is None else self.coro.throw(error)
            except StopIteration as done:
                return done.value
            finally:
                self.seconds += self.clock() - started
            # Pass the loop's answer (or a cancellation) back into the handler, as a plain await would.
            try:
                send_value, error = (yield suspended_on), None
            except BaseException as exc:
                send_value, error = None, exc
