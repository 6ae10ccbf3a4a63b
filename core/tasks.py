"""Background tasks that never die silently.

A task's exception is logged once with its traceback; a long-running loop
(`supervise`) is started again after a pause, so one bad message or a peer's
hiccup cannot quietly switch off a leaf link, a sweep or a watcher.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

RESTART_DELAY_S = 0.5


def spawn(work: Awaitable[None], what: str, log: logging.Logger,
          tasks: set[asyncio.Task[None]]) -> asyncio.Task[None]:
    """Run work in the background; a failure is logged. The task stays in tasks until done."""
    async def run() -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed", what)

    task = asyncio.create_task(run())
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return task


def supervise(loop_fn: Callable[[], Awaitable[None]], what: str, log: logging.Logger,
              tasks: set[asyncio.Task[None]]) -> asyncio.Task[None]:
    """Keep a long-running loop alive: an exception is logged and the loop started again."""
    async def run() -> None:
        while True:
            try:
                await loop_fn()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s crashed; starting it again in %.1fs", what, RESTART_DELAY_S)
                await asyncio.sleep(RESTART_DELAY_S)

    task = asyncio.create_task(run())
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return task
