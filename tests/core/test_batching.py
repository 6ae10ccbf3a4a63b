"""Batcher: what leaves together, and when a window holds a batch back."""

from __future__ import annotations

import asyncio

from flexlog.core.batching import Batcher


async def _iteration() -> None:
    """Let call_soon callbacks scheduled so far run."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def test_items_put_in_one_iteration_leave_as_one_batch() -> None:
    async def scenario() -> list[list[bytes]]:
        sent: list[list[bytes]] = []
        b: Batcher[bytes] = Batcher(sent.append)
        for item in (b"a", b"b", b"c"):
            b.put(item)
        await _iteration()
        b.put(b"d")
        await _iteration()
        return sent

    assert asyncio.run(scenario()) == [[b"a", b"b", b"c"], [b"d"]]


def test_a_small_second_batch_waits_for_the_first_a_big_one_overlaps() -> None:
    async def scenario() -> None:
        sent: list[list[bytes]] = []
        b: Batcher[bytes] = Batcher(sent.append, limit=2, size=len, behind_min=10)
        b.put(b"x" * 3)
        await _iteration()
        assert sent == [[b"x" * 3]] and b.in_flight == 1  # nothing in flight: leaves at once
        b.put(b"y" * 4)
        b.put(b"y" * 4)
        await _iteration()
        assert len(sent) == 1  # 8 bytes behind one in flight: held back
        b.put(b"y" * 2)
        await _iteration()
        assert sent[1] == [b"y" * 4, b"y" * 4, b"y" * 2] and b.in_flight == 2  # 10 bytes: leaves
        b.put(b"z" * 50)
        await _iteration()
        assert len(sent) == 2  # the window is full whatever the size
        b.done()
        await _iteration()
        assert sent[2] == [b"z" * 50] and b.in_flight == 2

    asyncio.run(scenario())


def test_a_held_batch_leaves_when_the_one_in_flight_completes() -> None:
    async def scenario() -> None:
        sent: list[list[bytes]] = []
        b: Batcher[bytes] = Batcher(sent.append, limit=2, size=len, behind_min=1 << 20)
        b.put(b"first")
        await _iteration()
        b.put(b"second")
        b.put(b"third")
        await _iteration()
        assert sent == [[b"first"]]
        b.done()
        await _iteration()
        assert sent == [[b"first"], [b"second", b"third"]] and b.in_flight == 1
        # The size count starts again from the batch that left.
        b.put(b"fourth")
        await _iteration()
        assert len(sent) == 2

    asyncio.run(scenario())
