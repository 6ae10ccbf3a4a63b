"""A 3-replica shard of real processes storing its log in PM pools, end to end."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster import Cluster, running_cluster
from flexlog.core import record_batch
from flexlog.core.client import FlexLogClient
from flexlog.core.status import wait_healthy

pytestmark = pytest.mark.slow


@pytest.fixture
def pm_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """Pools on /dev/shm with PMEM_IS_PMEM_FORCE=1 (the documented PM emulation)."""
    monkeypatch.setenv("PMEM_IS_PMEM_FORCE", "1")
    with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="flexlog-test-") as shm, \
            running_cluster(tmp_path, storage="pm", extra=f'pm_dir = "{shm}"') as cluster:
        yield cluster


async def append_many(cluster: Cluster, color: str, n: int, create: bool) -> dict[int, bytes]:
    async with FlexLogClient(cluster.config) as c:
        if create:
            await c.create_color(color)
        values = [os.urandom(random.randint(1, 3000)) for _ in range(n)]
        sns = await asyncio.gather(*(c.append([v], color) for v in values))
        return dict(zip(sns, values, strict=True))


async def check_every_replica(cluster: Cluster, color: str, acked: dict[int, bytes]) -> None:
    async with FlexLogClient(cluster.config) as c:
        assert await c.tail(color) == len(acked)
        for replica in range(3):
            for sn, value in acked.items():
                entry = await c.read_entry(sn, color, replica=replica)
                assert record_batch.decode(entry.payload)[0].value == value


def test_shard_on_pm_survives_replica_kill_and_cluster_restart(pm_cluster: Cluster) -> None:
    acked = asyncio.run(append_many(pm_cluster, "pm", 300, create=True))
    assert sorted(acked) == list(range(300))
    asyncio.run(check_every_replica(pm_cluster, "pm", acked))

    # A replica killed without warning reopens its pool with everything it acknowledged.
    pm_cluster.kill("shard0-r1", signal.SIGKILL)
    pm_cluster.start_process("replica", "shard0-r1")
    asyncio.run(wait_healthy(pm_cluster.config, 30))
    acked |= asyncio.run(append_many(pm_cluster, "pm", 100, create=False))
    asyncio.run(check_every_replica(pm_cluster, "pm", acked))

    # The whole cluster, stopped and started again, resumes the same log and its SNs.
    pm_cluster.stop()
    pm_cluster.start()
    acked |= asyncio.run(append_many(pm_cluster, "pm", 50, create=False))
    assert sorted(acked) == list(range(450))
    asyncio.run(check_every_replica(pm_cluster, "pm", acked))
