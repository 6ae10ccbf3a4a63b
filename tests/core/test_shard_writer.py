"""A client's shard writer: its window of append batches through resolves and resends."""

from __future__ import annotations

import asyncio

from flexlog.core.append_wire import AppendOp
from flexlog.core.client import _ShardWriter
from flexlog.core.view import ShardView, View


async def _iteration() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def _writer(sent: list[bytes]) -> _ShardWriter:
    view = View({0: ShardView(1, (0, 1, 2), (0, 1, 2))})
    writer = _ShardWriter(0, ["127.0.0.1:1"] * 3, 30.0, view, lambda: None)
    for link in writer.links:
        link.send_appends = sent.append  # type: ignore[method-assign]
        link.send_ops = lambda ops: None  # type: ignore[method-assign]
    return writer


def _op(token: int) -> AppendOp:
    return AppendOp(token=token, color=5, owner=1, count=1, payload=b"x" * 100)


def test_appends_resolved_while_held_in_the_window_do_not_cost_it_a_slot() -> None:
    """A small batch waits while another is in flight; if its appends complete meanwhile (a
    resend reached every replica, or a view change or a deadline settled them) and then the
    batch in flight completes, the window must be empty again, not wait on appends that will
    never be acknowledged a second time."""

    async def scenario() -> None:
        sent: list[bytes] = []
        writer = _writer(sent)
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in range(4)]
        writer.submit(_op(1), futures[0])
        await _iteration()
        assert writer.window.in_flight == 1 and len(sent) == 3  # one message to each replica
        writer.submit(_op(2), futures[1])
        writer.submit(_op(3), futures[2])
        await _iteration()
        assert len(sent) == 3  # 200 bytes behind a batch in flight: held
        for token, sn in ((2, 11), (3, 12), (1, 10)):
            writer.resolve(token, sn)
        await _iteration()
        assert [f.result() for f in futures[:3]] == [10, 11, 12]
        assert writer.window.in_flight == 0 and len(sent) == 3  # nothing sent twice
        writer.submit(_op(4), futures[3])
        await _iteration()
        assert writer.window.in_flight == 1 and len(sent) == 6  # leaves at once, as a first batch
        for handle in (writer._timer, writer._retry):
            if handle is not None:
                handle.cancel()

    asyncio.run(scenario())
