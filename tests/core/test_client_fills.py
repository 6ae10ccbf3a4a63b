"""The native client over fill markers: folds and subscribers step over them, read says Filled."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cluster import two_level_toml
from flexlog.core import config, record_batch
from flexlog.core.append_wire import MAX_OPS
from flexlog.core.client import FlexLogClient, RangeResult
from flexlog.core.errors import Filled
from flexlog.core.registry import ColorInfo
from flexlog.core.storage import StoredEntry

COLOR = ColorInfo(id=5, name="events", owner=0, shards=(0,))
LOG = [
    StoredEntry(0, 1, record_batch.build([b"a"], base_offset=0)),
    StoredEntry(1, 2, record_batch.fill(1, 2)),
    StoredEntry(3, 1, record_batch.build([b"b"], base_offset=3)),
]


def client(tmp_path: Path) -> FlexLogClient:
    path = tmp_path / "cluster.toml"
    path.write_text(two_level_toml(tmp_path))
    c = FlexLogClient(config.load(path))

    async def read_range(color: object, sn: int, max_bytes: int, wait_ms: int = 0) -> RangeResult:
        return RangeResult([e for e in LOG if e.end > sn][:1], 0, 4)

    async def read_entry(sn: int, color: object) -> StoredEntry:
        return next(e for e in LOG if e.sn <= sn < e.end)

    c.read_range = read_range  # type: ignore[method-assign]
    c.read_entry = read_entry  # type: ignore[method-assign]
    return c


def test_a_fold_steps_over_a_fill(tmp_path: Path) -> None:
    applied: list[tuple[int, bytes | None]] = []
    upto = asyncio.run(client(tmp_path).catch_up(COLOR, 0, lambda sn, v: applied.append((sn, v))))
    assert applied == [(0, b"a"), (3, b"b")]
    assert upto == 4


def test_reading_a_filled_sn_says_so(tmp_path: Path) -> None:
    c = client(tmp_path)
    assert asyncio.run(c.read(3, COLOR)).value == b"b"
    with pytest.raises(Filled):
        asyncio.run(c.read(2, COLOR))


@pytest.mark.parametrize("max_in_flight", [0, MAX_OPS + 1])
def test_more_appends_in_flight_than_one_message_may_carry_are_refused(
        tmp_path: Path, max_in_flight: int) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(two_level_toml(tmp_path))
    with pytest.raises(ValueError, match="appends in flight"):
        FlexLogClient(config.load(path), max_in_flight=max_in_flight)
