"""ProducerStates alone: sequence checks, duplicates, and pipelined batches that fail."""

from __future__ import annotations

import asyncio

from flexlog.core import record_batch
from flexlog.core.record_batch import BatchHeader
from flexlog.core.registry import ColorInfo
from flexlog.gateway.handlers import produce
from flexlog.gateway.idempotence import ProducerStates
from flexlog.gateway.protocol import ErrorCode

COLOR = 7


def header(first: int, count: int = 2, producer: int = 42, epoch: int = 0) -> BatchHeader:
    h = record_batch.parse_header(record_batch.build([b"x"] * count))
    return h._replace(producer_id=producer, producer_epoch=epoch, base_sequence=first,
                      last_offset_delta=count - 1, records_count=count)


def test_in_order_batches_pass_and_gaps_are_refused() -> None:
    s = ProducerStates()
    assert s.check(COLOR, header(0)).error == ErrorCode.NONE
    s.record(COLOR, header(0), 100)
    assert s.check(COLOR, header(2)).error == ErrorCode.NONE
    assert s.check(COLOR, header(4)).error == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert s.check(COLOR, header(0)).duplicate_of == 100
    assert s.check(COLOR, header(2, epoch=-1)).error == ErrorCode.INVALID_PRODUCER_EPOCH
    assert s.check(COLOR, header(0, epoch=1)).error == ErrorCode.NONE
    assert s.check(COLOR, header(5, epoch=1)).error == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


async def test_pipelined_batches_check_against_batches_still_in_flight() -> None:
    loop = asyncio.get_running_loop()
    s = ProducerStates()
    first: asyncio.Future[int] = loop.create_future()
    s.record(COLOR, header(0), first)
    assert s.check(COLOR, header(2)).error == ErrorCode.NONE, "the next batch need not wait"
    assert s.check(COLOR, header(0)).duplicate_of is first, "a retry waits for the original"


async def test_a_failed_batch_can_be_retried_even_after_later_ones() -> None:
    loop = asyncio.get_running_loop()
    s = ProducerStates()
    s.record(COLOR, header(0), 10)
    s.record(COLOR, header(2), loop.create_future())
    s.record(COLOR, header(4), loop.create_future())
    s.retract(COLOR, header(2))
    assert s.check(COLOR, header(2)).error == ErrorCode.NONE
    assert s.check(COLOR, header(2)).duplicate_of is None
    s.record(COLOR, header(2), 30)
    assert s.check(COLOR, header(6)).error == ErrorCode.NONE, "the sequence goes on after batch 4"
    assert s.check(COLOR, header(2)).duplicate_of == 30


def test_the_newest_batch_failing_rolls_the_sequence_back() -> None:
    s = ProducerStates()
    s.record(COLOR, header(0), 10)
    s.record(COLOR, header(2), 20)
    s.retract(COLOR, header(2))
    assert s.check(COLOR, header(2)).error == ErrorCode.NONE
    assert s.check(COLOR, header(4)).error == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


class _FullWindowClient:
    """A log client whose window of appends in flight is full until `room` is set."""

    def __init__(self) -> None:
        self.room = asyncio.Event()
        self.submitted: list[asyncio.Future[int]] = []

    async def wait_for_room(self) -> None:
        await self.room.wait()

    async def submit_batch(self, batch: bytes, color: ColorInfo, *,
                           validated: bool = False) -> asyncio.Future[int]:
        await self.wait_for_room()
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.submitted.append(fut)
        return fut


class _Idempotence:
    def __init__(self) -> None:
        self.states = ProducerStates()

    async def ensure_loaded(self, color: ColorInfo) -> None:
        pass


class _Broker:
    def __init__(self) -> None:
        self.client = _FullWindowClient()
        self.idempotence = _Idempotence()
        self.transactions = None  # the batches here are not transactional


async def test_a_retry_racing_its_batch_for_room_in_the_window_is_not_stored_twice() -> None:
    """A producer whose request timed out while the gateway's append window was full retries
    on a new connection: both copies wait for room. The first to get it is submitted and
    recorded before the other is checked, which then waits for the first's offset."""
    broker = _Broker()
    color = ColorInfo(id=COLOR, name="kafka/t/0", owner=1, shards=(0,))
    h = header(0)
    batch = record_batch.build([b"x"] * 2)
    first = asyncio.ensure_future(produce._submit_idempotent(broker, color, h, batch))  # type: ignore[arg-type]
    retry = asyncio.ensure_future(produce._submit_idempotent(broker, color, h, batch))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    broker.client.room.set()
    appended, retried = await asyncio.gather(first, retry)
    assert len(broker.client.submitted) == 1
    assert appended is broker.client.submitted[0] and retried is appended
