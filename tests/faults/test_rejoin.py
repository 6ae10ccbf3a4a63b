"""Rejoin after two replica crashes (issue 11): real processes, the controller, native client.

Two replicas of the shard are SIGKILLed 1.0 s apart, each restarted 0.5 s after
its kill (faster than the failure timeout, as `flexlog up` would), under a light
append load. Then, within REJOIN_S, every replica must be a readable member of
the view again, and every acknowledged SN must be readable with its payload from
each replica, asked directly (`history.History.check` with every replica as a
required reader). Today a replica can stay non-readable forever (its catch-up
finished at an epoch the view has left, and is never retried), or become
readable after "catching up" from the freshly restarted, empty peer, so the log
it serves lacks the old records.

FLEXLOG_REJOIN_RUNS (default 3) repeats the scenario: the outcome depends on
timing.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest
from history import History
from native_ops import read_back, writer

from cluster import Cluster, running_cluster
from flexlog.core.client import FlexLogClient
from flexlog.core.status import replica_status
from flexlog.core.view import ShardView, open_store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

RUNS = int(os.environ.get("FLEXLOG_REJOIN_RUNS", "3"))
EXTRA = "failure_timeout_ms = 2000\nrequest_timeout_ms = 5000"
BEFORE_S = 1.0  # load before the first kill
KILL_APART_S = 1.0
RESTART_AFTER_S = 0.5
AFTER_S = 2.0  # load after the second restart
REJOIN_S = 15.0  # every replica readable again within this, after the second restart
SETTLE_S = 0.5  # ...and for this long, so that the replicas themselves know it
WRITE_INTERVAL_S = 0.02  # light load: one writer, ~40 appends/s


def _shard_view(cluster: Cluster) -> ShardView:
    store = open_store(cluster.config)
    try:
        return store.get()[0].shard(0)
    finally:
        store.close()


async def _settled_view(cluster: Cluster, everyone: tuple[int, ...], deadline: float) -> ShardView:
    """The shard's view once every replica is a readable member and has stayed so for
    SETTLE_S (every process polls the view every 100 ms: the replicas know it by then),
    or the view at the deadline."""
    since = None
    while True:
        sv = _shard_view(cluster)
        if (sv.members, sv.readable) == (everyone, everyone):
            since = since or time.monotonic()
            if time.monotonic() - since >= SETTLE_S:
                return sv
        else:
            since = None
        if time.monotonic() >= deadline:
            return sv
        await asyncio.sleep(0.1)


def _kill_two(cluster: Cluster, first: str, second: str) -> None:
    start = time.monotonic()
    cluster.kill(first, signal.SIGKILL)
    time.sleep(RESTART_AFTER_S)
    cluster.start_process("replica", first)
    time.sleep(max(0.0, start + KILL_APART_S - time.monotonic()))
    cluster.kill(second, signal.SIGKILL)
    time.sleep(RESTART_AFTER_S)
    cluster.start_process("replica", second)


async def _replicas_state(cluster: Cluster) -> str:
    lines = []
    for r in cluster.config.shards[0].replicas:
        st = await replica_status(r, timeout_s=2.0)
        keep = {k: st.detail.get(k) for k in ("epoch", "readable", "caught_up_epoch", "attached")
                if k in st.detail}
        lines.append(f"{r.name}: up={st.up} ready={st.ready} {json.dumps(keep)}")
    return "\n".join(lines)


async def _scenario(cluster: Cluster) -> tuple[History, list[str]]:
    hist = History()
    problems: list[str] = []
    replicas = {r.name: r.index for r in cluster.config.shards[0].replicas}
    everyone = tuple(sorted(replicas.values()))
    async with FlexLogClient(cluster.config, timeout_ms=5000) as client:
        await client.wait_ready()
        info = await client.create_color("rejoin")
        stop = asyncio.Event()
        load = asyncio.create_task(writer(client, hist, "w0", info, stop, WRITE_INTERVAL_S))
        await asyncio.sleep(BEFORE_S)
        await asyncio.to_thread(_kill_two, cluster, "shard0-r0", "shard0-r1")
        restarted = time.monotonic()
        await asyncio.sleep(AFTER_S)
        stop.set()
        await load
        if not hist.acked_after(restarted):
            problems.append(f"no append acknowledged in the {AFTER_S}s after the second restart")

        deadline = restarted + REJOIN_S
        sv = await _settled_view(cluster, everyone, deadline)
        if (sv.members, sv.readable) != (everyone, everyone):
            problems.append(f"{REJOIN_S:.0f}s after the restarts the view is at epoch {sv.epoch} with "
                            f"members {list(sv.members)}, readable {list(sv.readable)} (expected all "
                            f"of {list(everyone)})\n{await _replicas_state(cluster)}")
        else:
            print(f"all replicas readable {time.monotonic() - restarted:.1f}s after the second "
                  f"restart (epoch {sv.epoch})")
        await read_back(client, hist, info, replicas)
    return hist, problems


@pytest.mark.parametrize("run", range(RUNS))
def test_two_replicas_sigkilled_one_second_apart_rejoin_with_every_record(
        tmp_path: Path, run: int) -> None:
    with running_cluster(tmp_path, controller=True, extra=EXTRA) as cluster:
        hist, problems = asyncio.run(_scenario(cluster))
        report = hist.check(sorted(r.name for r in cluster.config.shards[0].replicas))
        print(report.summary())
        if not report.ok:
            problems.append(report.summary())
        if problems:
            pytest.fail("two replicas SIGKILLed 1 s apart:\n" + "\n".join(problems), pytrace=False)
