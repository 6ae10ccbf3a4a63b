"""Rejoin after two replica crashes (issue 11): real processes, the controller, native client.

Two replicas of the shard are SIGKILLed 1.0 s apart, each restarted 0.5 s after
its kill (faster than the failure timeout, as `flexlog up` would), under a light
append load. Then, within REJOIN_S, every replica must be a readable member of
the view again, and every acknowledged SN must be readable with its payload from
each replica, asked directly (`history.History.check` with every replica as a
required reader). On the code of issue 11 a replica could stay non-readable
forever (its catch-up finished at an epoch the view had left, and was never
retried), or become readable after "catching up" from the freshly restarted,
empty peer, so the log it served lacked the old records.

FLEXLOG_REJOIN_RUNS (default 3) repeats the scenario: the outcome depends on
timing (about 4 runs in 10 failed on the code of issue 11).

`test_replica_restarted_before_the_controller_first_saw_it`: r0 is paused while
the controller starts, then restarted empty; the controller has no earlier
incarnation of r0 to compare with, and r0 must still catch up before it serves
reads (found while writing these tests: it became readable with an empty store).

`test_catch_up_never_trusts_a_freshly_restarted_peer` forces the second outcome:
while r0 waits to catch up, the controller is paused (a slow controller: the view
still lists r1 readable) and r1 is SIGKILLed and restarted empty; r0 then catches
up, and r1 after it. Every replica must still end up holding every acknowledged
record.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from history import History
from native_ops import append_acked, read_back, writer

from cluster import Cluster, running_cluster
from flexlog.core.client import FlexLogClient
from flexlog.core.registry import ColorInfo
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


async def _controller_watching(cluster: Cluster) -> None:
    """Wait until the controller has seen every replica once (their incarnations are in the
    view): a restart before that is one it cannot tell from a first start."""
    everyone = {r.index for r in cluster.config.shards[0].replicas}

    async def known() -> bool:
        return set(_shard_view(cluster).incarnations) >= everyone

    await _wait_for("the controller to see every replica", known, 15.0)


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
        keep = {"epoch": st.epoch, "readable": st.readable, "caught_up_epoch": st.caught_up_epoch}
        lines.append(f"{r.name}: up={st.up} ready={st.ready} {json.dumps(keep)}")
    return "\n".join(lines)


async def _scenario(cluster: Cluster) -> tuple[History, list[str]]:
    hist = History()
    problems: list[str] = []
    async with FlexLogClient(cluster.config, timeout_ms=5000) as client:
        await client.wait_ready()
        info = await client.create_color("rejoin")
        await _controller_watching(cluster)
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
        problems += await _rejoined(cluster, client, hist, info, restarted)
    return hist, problems


async def _rejoined(cluster: Cluster, client: FlexLogClient, hist: History, info: ColorInfo,
                    restarted: float) -> list[str]:
    """Wait for every replica to be readable again, then read everything back from each."""
    replicas = {r.name: r.index for r in cluster.config.shards[0].replicas}
    everyone = tuple(sorted(replicas.values()))
    problems = []
    sv = await _settled_view(cluster, everyone, restarted + REJOIN_S)
    if (sv.members, sv.readable) != (everyone, everyone):
        problems.append(f"{REJOIN_S:.0f}s after the restarts the view is at epoch {sv.epoch} with "
                        f"members {list(sv.members)}, readable {list(sv.readable)} (expected all "
                        f"of {list(everyone)})\n{await _replicas_state(cluster)}")
    else:
        print(f"all replicas readable {time.monotonic() - restarted:.1f}s after the last "
              f"restart (epoch {sv.epoch})")
    await read_back(client, hist, info, replicas)
    return problems


async def _wait_for(what: str, check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def _forced_scenario(cluster: Cluster) -> tuple[History, list[str]]:
    hist = History()
    problems: list[str] = []
    r0, r1 = cluster.config.shards[0].replicas[:2]
    async with FlexLogClient(cluster.config, timeout_ms=5000) as client:
        await client.wait_ready()
        info = await client.create_color("rejoin")
        await _controller_watching(cluster)
        stop, gate = asyncio.Event(), asyncio.Event()
        gate.set()
        load = asyncio.create_task(writer(client, hist, "w0", info, stop, WRITE_INTERVAL_S, gate))
        await asyncio.sleep(BEFORE_S)

        cluster.kill(r0.name, signal.SIGKILL)
        await asyncio.sleep(RESTART_AFTER_S)
        cluster.start_process("replica", r0.name)

        async def r0_joining() -> bool:
            sv = _shard_view(cluster)
            return r0.index in sv.members and r0.index not in sv.readable and (
                (await replica_status(r0, 0.5)).up)

        # r0 is a member again and waits CATCHUP_GRACE_S (1 s) before it catches up:
        # pause it and the controller now, restart r1 meanwhile.
        await _wait_for("r0 to be a member again", r0_joining)
        cluster.kill(r0.name, signal.SIGSTOP)
        cluster.kill("controller", signal.SIGSTOP)
        try:
            gate.clear()  # nothing new reaches r1 after its restart: its store stays empty
            await asyncio.sleep(0.3)
            cluster.kill(r1.name, signal.SIGKILL)
            await asyncio.sleep(RESTART_AFTER_S)
            cluster.start_process("replica", r1.name)

            async def r1_up() -> bool:
                return (await replica_status(r1, 0.5)).up

            await _wait_for("r1 to answer again", r1_up)
        finally:
            cluster.kill(r0.name, signal.SIGCONT)  # its grace is over: it catches up now

        async def r0_caught_up() -> bool:
            return (await replica_status(r0, 0.5)).caught_up_epoch >= 0

        try:
            await _wait_for("r0 to catch up", r0_caught_up, 5.0)
        except AssertionError as exc:
            problems.append(str(exc))
        finally:
            cluster.kill("controller", signal.SIGCONT)
        restarted = time.monotonic()
        gate.set()
        await asyncio.sleep(AFTER_S)
        stop.set()
        await load
        problems += await _rejoined(cluster, client, hist, info, restarted)
    return hist, problems


def _verdict(what: str, cluster: Cluster, hist: History, problems: list[str]) -> None:
    report = hist.check(sorted(r.name for r in cluster.config.shards[0].replicas))
    print(report.summary())
    if not report.ok:
        problems.append(report.summary())
    if problems:
        pytest.fail(f"{what}:\n" + "\n".join(problems), pytrace=False)


@pytest.mark.parametrize("run", range(RUNS))
def test_two_replicas_sigkilled_one_second_apart_rejoin_with_every_record(
        tmp_path: Path, run: int) -> None:
    with running_cluster(tmp_path, controller=True, extra=EXTRA) as cluster:
        hist, problems = asyncio.run(_scenario(cluster))
        _verdict("two replicas SIGKILLed 1 s apart", cluster, hist, problems)


async def _unseen_restart_scenario(cluster: Cluster) -> tuple[History, list[str]]:
    """r0 is paused while the controller starts (it sees only r1 and r2), then SIGKILLed
    and restarted with an empty store: the controller's first sight of r0 is the new
    incarnation, with nothing to compare it to."""
    hist = History()
    r0 = cluster.config.shards[0].replicas[0]
    others = {r.index for r in cluster.config.shards[0].replicas} - {r0.index}
    async with FlexLogClient(cluster.config, timeout_ms=5000) as client:
        await client.wait_ready()
        info = await client.create_color("rejoin")
        n = await append_acked(client, hist, "c0", info, "before", 20, time.monotonic() + 10)
        assert n == 20, "appends failed before the fault"
        cluster.kill(r0.name, signal.SIGSTOP)
        try:
            cluster.start_process("controller", "controller")

            async def seen_others() -> bool:
                return set(_shard_view(cluster).incarnations) >= others

            await _wait_for("the controller to see r1 and r2", seen_others, 15.0)
            assert r0.index not in _shard_view(cluster).incarnations
        finally:
            cluster.kill(r0.name, signal.SIGKILL)
        await asyncio.sleep(RESTART_AFTER_S)
        cluster.start_process("replica", r0.name)
        restarted = time.monotonic()
        n = await append_acked(client, hist, "c0", info, "after", 20, time.monotonic() + 10)
        problems = [] if n == 20 else [f"only {n} of 20 appends acknowledged after the restart"]
        problems += await _rejoined(cluster, client, hist, info, restarted)
    return hist, problems


def test_replica_restarted_before_the_controller_first_saw_it(tmp_path: Path) -> None:
    with running_cluster(tmp_path, controller=False, extra=EXTRA) as cluster:
        cluster.controller = True  # started by the scenario; stopped with the rest
        hist, problems = asyncio.run(_unseen_restart_scenario(cluster))
        _verdict("r0 restarted before the controller first saw it", cluster, hist, problems)


def test_catch_up_never_trusts_a_freshly_restarted_peer(tmp_path: Path) -> None:
    with running_cluster(tmp_path, controller=True, extra=EXTRA) as cluster:
        hist, problems = asyncio.run(_forced_scenario(cluster))
        _verdict("r0 catching up while r1 restarts (controller paused)", cluster, hist, problems)
