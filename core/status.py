"""Asking the log's processes how they are: sequencers and replicas answer the Status RPC.

What the command line adds on top (gateways over the Kafka protocol, the
log's offsets, consumer lag) is `cli/status.py`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import grpc

from flexlog.core import rpc
from flexlog.core.config import ClusterConfig, ReplicaConfig
from flexlog.core.errors import Unavailable
from flexlog.core.proto import flexlog_pb2 as pb
from flexlog.core.storage import Tier

COLORS_PAGE = 1024


@dataclass
class ProcessStatus:
    role: str
    name: str
    address: str
    up: bool
    ready: bool
    detail: dict[str, Any]  # for people; filled only when asked for
    incarnation: int | None = None  # replicas: what programs read is typed
    epoch: int = 0
    caught_up_epoch: int = -1
    readable: bool = False
    tiers: list[Tier] = field(default_factory=list)  # replicas: where the engine keeps entries


@dataclass(frozen=True)
class ColorUsage:
    """A color as one replica stores it."""

    tail: int  # the committed prefix this replica holds
    tier_bytes: list[int]  # bytes of its entries per tier, in ProcessStatus.tiers' order


async def ask_process(role: str, name: str, address: str, timeout_s: float,
                      detail: bool = False) -> ProcessStatus:
    service = "flexlog.Sequencer" if role == "sequencer" else "flexlog.Replica"
    try:
        async with rpc.channel(address) as ch:
            stub = ch.unary_unary(f"/{service}/Status",
                                  request_serializer=pb.StatusRequest.SerializeToString,
                                  response_deserializer=pb.StatusReply.FromString)
            reply = await stub(pb.StatusRequest(detail=detail), timeout=timeout_s)
    except grpc.aio.AioRpcError:
        return ProcessStatus(role, name, address, False, False, {})
    return ProcessStatus(role, name, address, True, reply.ready, json.loads(reply.detail or "{}"),
                         reply.incarnation if role == "replica" else None, reply.epoch,
                         reply.caught_up_epoch, reply.readable,
                         [Tier(t.name, t.path, t.used_bytes, t.capacity_bytes) for t in reply.tiers])


async def color_usage(address: str, colors: Collection[int],
                      timeout_s: float) -> dict[int, ColorUsage] | None:
    """How a replica stores each of colors it holds (colors it lacks are left out); None when
    it cannot be reached. Pages through the Colors RPC from the lowest color asked for."""
    wanted = set(colors)
    found: dict[int, ColorUsage] = {}
    start, last = min(wanted, default=0), max(wanted, default=-1)
    try:
        async with rpc.channel(address) as ch:
            page_of = ch.unary_unary("/flexlog.Replica/Colors",
                                     request_serializer=pb.ColorsRequest.SerializeToString,
                                     response_deserializer=pb.ColorsReply.FromString)
            while start <= last:
                page = await page_of(pb.ColorsRequest(start=start, limit=COLORS_PAGE, bytes_of=wanted),
                                     timeout=timeout_s)
                for c in page.colors:
                    if c.color in wanted:
                        found[c.color] = ColorUsage(c.tail, list(c.tier_bytes))
                if not page.more or not page.colors:
                    break
                start = page.colors[-1].color + 1
    except grpc.aio.AioRpcError:
        return None
    return found


async def replica_status(replica: ReplicaConfig, timeout_s: float = 2.0) -> ProcessStatus:
    return await ask_process("replica", replica.name, replica.address, timeout_s)


async def cluster_status(config: ClusterConfig, timeout_s: float = 2.0,
                         detail: bool = False) -> list[ProcessStatus]:
    asks = [ask_process("sequencer", s.name, s.address, timeout_s, detail)
            for s in config.sequencers]
    asks += [ask_process("replica", r.name, r.address, timeout_s, detail)
             for shard in config.shards for r in shard.replicas]
    return list(await asyncio.gather(*asks))


def _needed(config: ClusterConfig, statuses: list[ProcessStatus]) -> list[ProcessStatus]:
    """Every sequencer and the readable replicas of the current view: a replica the
    controller removed does not keep the cluster from being usable."""
    from flexlog.core.view import open_store

    store = open_store(config)
    try:
        view, _ = store.get()
    finally:
        store.close()
    readable = {config.replica(name).address for name in
                (r.name for s in config.shards for r in s.replicas
                 if r.index in view.shard(s.id).readable)}
    return [s for s in statuses if s.role != "replica" or s.address in readable]


async def wait_healthy(config: ClusterConfig, timeout_s: float = 30.0) -> None:
    async def probe() -> tuple[bool, list[str]]:
        statuses = await cluster_status(config, timeout_s=1.0)
        needed = await asyncio.to_thread(_needed, config, statuses)
        return all(s.ready for s in needed), [s.name for s in statuses if not s.ready]
    await wait_ready("cluster", probe, timeout_s, interval_s=0.1)


async def wait_ready(what: str, probe: Callable[[], Awaitable[tuple[bool, list[str]]]],
                     timeout_s: float, interval_s: float) -> None:
    """Ask probe (ready?, names of what is not) until it is ready; after timeout_s raise
    Unavailable naming what is still down."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        ready, down = await probe()
        if ready:
            return
        if loop.time() > deadline:
            raise Unavailable(f"{what} not ready after {timeout_s:.0f}s: {', '.join(down)}")
        await asyncio.sleep(interval_s)
