"""ProducerStates alone: sequence checks, duplicates, and pipelined batches that fail."""

from __future__ import annotations

import asyncio

from flexlog.core import record_batch
from flexlog.core.record_batch import BatchHeader
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
