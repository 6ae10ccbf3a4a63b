"""Background tasks log their failures, and supervised loops come back."""

from __future__ import annotations

import asyncio
import logging

import pytest

from flexlog.core import tasks


def test_a_crashed_loop_is_logged_and_started_again(caplog: pytest.LogCaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks, "RESTART_DELAY_S", 0.0)
    runs = []

    async def loop() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("bad message")

    async def main() -> None:
        running: set[asyncio.Task[None]] = set()
        task = tasks.supervise(loop, "the sweep", logging.getLogger("t"), running)
        await asyncio.wait_for(task, 2)
        assert not running

    asyncio.run(main())
    assert len(runs) == 3
    assert [r.getMessage() for r in caplog.records].count(
        "the sweep crashed; starting it again in 0.0s") == 2


def test_a_failed_task_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    async def work() -> None:
        raise ValueError("peer answered garbage")

    async def main() -> None:
        running: set[asyncio.Task[None]] = set()
        await tasks.spawn(work(), "a repair", logging.getLogger("t"), running)
        assert not running

    asyncio.run(main())
    failures = [r for r in caplog.records if r.getMessage() == "a repair failed"]
    assert len(failures) == 1 and failures[0].exc_info is not None
