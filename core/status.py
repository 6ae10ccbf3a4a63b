"""Asking every process of a cluster how it is, over the Status RPC."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import grpc

from flexlog.core import rpc
from flexlog.core.config import ClusterConfig
from flexlog.core.errors import Unavailable
from flexlog.core.proto import flexlog_pb2 as pb


@dataclass
class ProcessStatus:
    role: str
    name: str
    address: str
    up: bool
    ready: bool
    detail: dict[str, Any]


async def _ask(role: str, name: str, address: str, timeout_s: float) -> ProcessStatus:
    service = "flexlog.Sequencer" if role == "sequencer" else "flexlog.Replica"
    try:
        async with rpc.channel(address) as ch:
            stub = ch.unary_unary(f"/{service}/Status",
                                  request_serializer=pb.StatusRequest.SerializeToString,
                                  response_deserializer=pb.StatusReply.FromString)
            reply = await stub(pb.StatusRequest(), timeout=timeout_s)
    except grpc.aio.AioRpcError:
        return ProcessStatus(role, name, address, False, False, {})
    return ProcessStatus(role, name, address, True, reply.ready, json.loads(reply.detail or "{}"))


async def cluster_status(config: ClusterConfig, timeout_s: float = 2.0) -> list[ProcessStatus]:
    asks = [_ask("sequencer", s.name, s.address, timeout_s) for s in config.sequencers]
    asks += [_ask("replica", r.name, r.address, timeout_s)
             for shard in config.shards for r in shard.replicas]
    return list(await asyncio.gather(*asks))


async def wait_healthy(config: ClusterConfig, timeout_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        statuses = await cluster_status(config, timeout_s=1.0)
        if all(s.ready for s in statuses):
            return
        if loop.time() > deadline:
            down = ", ".join(s.name for s in statuses if not s.ready)
            raise Unavailable(f"cluster not ready after {timeout_s:.0f}s: {down}")
        await asyncio.sleep(0.1)
