"""Network partitions (issue 11): one replica, or the leaf, cut off from every other process.

The isolated process runs in its own network namespace (`netpart.py`); the
partition lasts PARTITION_S (longer than the failure timeout, so the controller
reconfigures around a replica), then heals. Writers append throughout to a
leaf-owned and a root-owned color. After the heal, within REJOIN_S, every
replica must be a readable member again, and every acknowledged SN must be
readable with its payload from every replica (`history.History.check`).

Skipped where `ip netns` is not available (needs root).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import netpart
import pytest
from history import History
from native_ops import read_back, writer

from flexlog.core.client import FlexLogClient
from flexlog.core.view import open_store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

EXTRA = "failure_timeout_ms = 2000\nrequest_timeout_ms = 5000"
BEFORE_S = 1.0
PARTITION_S = 4.0
AFTER_S = 3.0  # load after the heal
REJOIN_S = 15.0
SETTLE_S = 0.5
MIN_AFTER = 20  # acknowledged appends after the heal, at least


@pytest.fixture(scope="module", autouse=True)
def _needs_netns() -> None:
    if not netpart.available():
        pytest.skip("needs root and `ip netns`")


def _readable(cluster: netpart.PartitionableCluster) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    store = open_store(cluster.config)
    try:
        sv = store.get()[0].shard(0)
    finally:
        store.close()
    return sv.epoch, sv.members, sv.readable


async def _scenario(cluster: netpart.PartitionableCluster) -> tuple[History, list[str]]:
    hist = History()
    problems: list[str] = []
    replicas = {r.name: r.index for r in cluster.config.shards[0].replicas}
    everyone = tuple(sorted(replicas.values()))
    async with FlexLogClient(cluster.config, timeout_ms=5000) as client:
        await client.wait_ready()
        colors = [await client.create_color("leaf-owned"),
                  await client.create_color("root-owned", owner=cluster.config.root)]
        stop = asyncio.Event()
        load = [asyncio.create_task(writer(client, hist, f"w-{c.name}", c, stop, 0.02))
                for c in colors]
        await asyncio.sleep(BEFORE_S)
        await asyncio.to_thread(cluster.partition)
        cut = time.monotonic()
        await asyncio.sleep(PARTITION_S)
        during = _readable(cluster)
        stalled = hist.acked_after(cut + 1.0)  # appends invoked once the partition had set in
        await asyncio.to_thread(cluster.heal)
        healed = time.monotonic()
        deadline = healed + REJOIN_S
        await asyncio.sleep(AFTER_S)
        while hist.acked_after(healed) < MIN_AFTER and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*load)
        print(f"during the partition: view (epoch, members, readable) {during}, "
              f"{stalled} appends invoked after the first second of it were acknowledged")
        if cluster.isolated in replicas and replicas[cluster.isolated] in during[2]:
            problems.append(f"the partition did not take effect: the view kept {cluster.isolated} "
                            f"readable {PARTITION_S}s into it: {during}")
        if hist.acked_after(healed) < MIN_AFTER:
            problems.append(f"only {hist.acked_after(healed)} appends acknowledged within "
                            f"{REJOIN_S:.0f}s of the heal")
        since = None
        while True:  # all readable, and for SETTLE_S (the replicas poll the view every 100 ms)
            epoch, members, readable = _readable(cluster)
            if (members, readable) == (everyone, everyone):
                since = since or time.monotonic()
                if time.monotonic() - since >= SETTLE_S:
                    break
            else:
                since = None
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.1)
        if (members, readable) != (everyone, everyone):
            problems.append(f"{REJOIN_S:.0f}s after the heal the view is at epoch {epoch} with "
                            f"members {list(members)}, readable {list(readable)}")
        else:
            print(f"all replicas readable {time.monotonic() - healed:.1f}s after the heal "
                  f"(epoch {epoch})")
        for info in colors:
            await read_back(client, hist, info, replicas)
    return hist, problems


@pytest.mark.parametrize("isolated", ["shard0-r2", "leaf0"], ids=["replica", "leaf"])
def test_partition_one_process_from_the_rest(tmp_path: Path, isolated: str) -> None:
    with netpart.partitionable_cluster(tmp_path, isolated, extra=EXTRA) as cluster:
        hist, problems = asyncio.run(_scenario(cluster))
        report = hist.check(sorted(r.name for r in cluster.config.shards[0].replicas))
        print(report.summary())
        if not report.ok:
            problems.append(report.summary())
        if problems:
            pytest.fail(f"{isolated} partitioned for {PARTITION_S}s:\n" + "\n".join(problems),
                        pytrace=False)
