"""The native client's append window: callers waiting for room get it in the order they asked,
one per append that leaves, a slot handed to a caller that does not use it goes on, and a
closed client fails what waits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from cluster import two_level_toml
from flexlog.core import config, record_batch
from flexlog.core.append_wire import AppendOp
from flexlog.core.client import FlexLogClient, _ShardWriter
from flexlog.core.errors import Unavailable
from flexlog.core.registry import ColorInfo

COLOR = ColorInfo(id=5, name="events", owner=0, shards=(0,))
BATCH = record_batch.build([b"x"])


class _Writer:
    """Stands in for the shard writer: records what is submitted, lands it on demand."""

    def __init__(self, landed: Callable[[], None]) -> None:
        self.landed = landed
        self.submitted: list[asyncio.Future[int]] = []

    def submit(self, op: AppendOp, future: asyncio.Future[int]) -> None:
        self.submitted.append(future)

    def land(self, n: int = 1) -> None:
        for _ in range(n):
            self.submitted.pop(0).set_result(0)
            self.landed()


def _new_client(tmp_path: Path, max_in_flight: int) -> FlexLogClient:
    path = tmp_path / "cluster.toml"
    path.write_text(two_level_toml(tmp_path))
    return FlexLogClient(config.load(path), max_in_flight=max_in_flight)


def _client(tmp_path: Path, max_in_flight: int) -> tuple[FlexLogClient, _Writer]:
    c = _new_client(tmp_path, max_in_flight)
    writer = _Writer(c._landed)
    c._writers[0] = writer  # type: ignore[assignment]
    return c, writer


def _client_with_a_real_writer(tmp_path: Path) -> tuple[FlexLogClient, _ShardWriter, list[bytes]]:
    """A client with a window of one whose shard writer is its own; what the writer sends to
    the replicas is collected instead."""
    c = _new_client(tmp_path, max_in_flight=1)
    sent: list[bytes] = []
    writer = c._writer(0)
    for link in writer.links:
        link.send_appends = sent.append  # type: ignore[method-assign]
    return c, writer, sent


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def _count_calls(loop: asyncio.AbstractEventLoop) -> list[int]:
    """Counts the callbacks (task steps among them) the loop is asked to run from now on."""
    count = [0]
    call_soon = loop.call_soon

    def counted(*args: object, **kwargs: object) -> object:
        count[0] += 1
        return call_soon(*args, **kwargs)  # type: ignore[arg-type]

    loop.call_soon = counted  # type: ignore[method-assign]
    return count


async def _caller(c: FlexLogClient, name: int, order: list[int]) -> None:
    """Waits for room, notes that it got it, and submits."""
    await c.wait_for_room()
    order.append(name)
    await c.submit_batch(BATCH, COLOR, validated=True)


def test_callers_get_room_in_the_order_they_asked_and_one_slot_wakes_one(tmp_path: Path) -> None:
    async def scenario() -> None:
        c, writer = _client(tmp_path, max_in_flight=2)
        for _ in range(2):
            await c.submit_batch(BATCH, COLOR, validated=True)
        order: list[int] = []
        tasks = [asyncio.create_task(_caller(c, i, order)) for i in range(50)]
        await _settle()
        assert order == [] and len(writer.submitted) == 2  # the window is full

        loop = asyncio.get_running_loop()
        scheduled = _count_calls(loop)
        writer.land()
        await _settle()
        assert order == [0]  # one slot, one caller: the first to ask
        # Waking every waiter to let one through scheduled 50 task steps here, each to go back
        # to sleep; with thousands of produce requests waiting that is the whole CPU.
        assert scheduled[0] < 10
        del loop.call_soon

        writer.land(2)
        await _settle()
        assert order == [0, 1, 2]
        assert len(writer.submitted) == 2  # never more than the window

        for _ in range(47):
            writer.land()
            await _settle()
        await asyncio.gather(*tasks)
        assert order == list(range(50))

    asyncio.run(scenario())


def test_a_slot_handed_to_a_caller_that_does_not_submit_goes_to_the_next(tmp_path: Path) -> None:
    """A gateway produce waits for room and then may answer an error without submitting (a
    producer's sequence check failed): whoever waits behind it must not wait forever."""

    async def scenario() -> None:
        c, writer = _client(tmp_path, max_in_flight=1)
        await c.submit_batch(BATCH, COLOR, validated=True)
        declined = asyncio.create_task(c.wait_for_room())
        behind = asyncio.create_task(c.submit_batch(BATCH, COLOR, validated=True))
        await _settle()
        assert not declined.done() and not behind.done()
        writer.land()  # nothing else is in flight after this
        await _settle()
        assert declined.done() and behind.done()
        assert len(writer.submitted) == 1

    asyncio.run(scenario())


def test_a_cancelled_waiter_neither_takes_a_slot_nor_loses_one(tmp_path: Path) -> None:
    async def scenario() -> None:
        c, writer = _client(tmp_path, max_in_flight=1)
        await c.submit_batch(BATCH, COLOR, validated=True)
        gone_early = asyncio.create_task(c.wait_for_room())
        handed_then_gone = asyncio.create_task(c.wait_for_room())
        behind = asyncio.create_task(c.submit_batch(BATCH, COLOR, validated=True))
        await _settle()
        gone_early.cancel()
        await _settle()
        writer.land()  # hands the slot to handed_then_gone, which is cancelled before it runs
        handed_then_gone.cancel()
        await _settle()
        assert gone_early.cancelled() and handed_then_gone.cancelled()
        assert behind.done() and len(writer.submitted) == 1

    asyncio.run(scenario())


def test_a_newcomer_waits_behind_the_callers_already_waiting(tmp_path: Path) -> None:
    """A slot that frees goes to the first caller waiting, even if another caller asks for room
    before that one has run."""

    async def scenario() -> None:
        c, writer = _client(tmp_path, max_in_flight=1)
        await c.submit_batch(BATCH, COLOR, validated=True)
        order: list[int] = []
        waiting = asyncio.create_task(_caller(c, 0, order))
        await _settle()
        newcomer = asyncio.create_task(_caller(c, 1, order))  # runs before the waiter resumes
        writer.land()
        await _settle()
        assert order == [0] and not newcomer.done()
        writer.land()
        await _settle()
        assert order == [0, 1]
        await asyncio.gather(waiting, newcomer)

    asyncio.run(scenario())


def test_closing_the_client_fails_what_waits_for_room_and_what_is_pending(tmp_path: Path) -> None:
    """A caller of a closed client gets an error, not a wait that never ends, and nothing is
    sent or resent after the close."""

    async def scenario() -> None:
        c, writer, sent = _client_with_a_real_writer(tmp_path)
        pending = await c.submit_batch(BATCH, COLOR, validated=True)
        waiting = asyncio.create_task(c.submit_batch(BATCH, COLOR, validated=True))
        await _settle()
        assert len(sent) == 3 and not waiting.done()
        await c.close()
        await _settle()
        with pytest.raises(Unavailable):
            await asyncio.wait_for(pending, 5)
        with pytest.raises(Unavailable):
            await asyncio.wait_for(waiting, 5)
        with pytest.raises(Unavailable):
            await c.submit_batch(BATCH, COLOR, validated=True)
        assert writer._timer is None and writer._retry is None and len(sent) == 3

    asyncio.run(scenario())


def test_a_caller_handed_a_slot_just_before_the_close_sends_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        c, writer, sent = _client_with_a_real_writer(tmp_path)
        first = await c.submit_batch(BATCH, COLOR, validated=True)
        waiting = asyncio.create_task(c.submit_batch(BATCH, COLOR, validated=True))
        await _settle()
        (token,) = writer.pending
        writer.resolve(token, 0)  # hands the slot to the waiting caller, which has not run yet
        await c.close()
        assert await first == 0
        with pytest.raises(Unavailable):
            await asyncio.wait_for(waiting, 5)
        assert len(sent) == 3 and not c._writers  # no writer made again on the closed client
        with pytest.raises(Unavailable):
            await c.read_range(COLOR, 0, 1024)

    asyncio.run(scenario())
