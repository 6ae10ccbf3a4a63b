"""Fetch steps over fill markers (SNs ordered and lost, see docs/reliability.md)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from flexlog.core import record_batch
from flexlog.core.client import RangeResult
from flexlog.core.registry import ColorInfo
from flexlog.core.storage import StoredEntry
from flexlog.gateway.handlers import fetch
from flexlog.gateway.partition_starts import PartitionStarts


class FakeClient:
    """A partition holding a batch at 0, a fill over 1-3 and a batch at 4."""

    def __init__(self) -> None:
        self.entries = [
            StoredEntry(0, 1, record_batch.build([b"a"], base_offset=0)),
            StoredEntry(1, 3, record_batch.fill(1, 3)),
            StoredEntry(4, 1, record_batch.build([b"b"], base_offset=4)),
        ]
        self.asked: list[tuple[int, int]] = []

    async def read_range(self, color: ColorInfo, sn: int, max_bytes: int,
                         wait_ms: int = 0) -> RangeResult:
        self.asked.append((sn, wait_ms))
        return RangeResult([e for e in self.entries if e.end > sn][:1], 0, 5)


def _read(offset: int) -> tuple[fetch._Partition, FakeClient]:
    client = FakeClient()
    broker = SimpleNamespace(client=client, log_starts={},
                             partition_starts=PartitionStarts(client))  # type: ignore[arg-type]
    part = fetch._Partition("t", 0, offset, 1 << 20,
                            color=ColorInfo(id=9, name="t-0", owner=1, shards=(0,)))
    asyncio.run(fetch._read(broker, part, wait_ms=100))  # type: ignore[arg-type]
    return part, client


def test_a_fetch_inside_a_fill_answers_what_follows_it() -> None:
    part, client = _read(2)
    assert part.result is not None
    assert [e.sn for e in part.result.entries] == [4]
    assert client.asked == [(2, 100), (4, 100)]


def test_a_fill_marker_is_never_sent_to_a_consumer() -> None:
    part, _ = _read(0)
    assert part.result is not None
    assert [e.sn for e in part.result.entries] == [0]


def test_a_fill_decodes_to_no_records() -> None:
    batch = record_batch.fill(10, 5)
    assert record_batch.is_fill(batch)
    assert record_batch.decode(batch) == []
    header = record_batch.parse_header(batch)
    assert (header.base_offset, header.last_offset_delta, header.records_count) == (10, 4, 0)
    assert header.is_control and header.max_timestamp == -1
    assert not record_batch.is_fill(record_batch.build([b"x"]))
