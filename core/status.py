"""Asking a cluster how it is: each process's health, the log's offsets, consumer lag.

Sequencers and replicas answer the Status RPC; gateways are asked over the
Kafka protocol, as a client would ask them.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from dataclasses import dataclass
from typing import Any

import grpc
from prometheus_client.parser import text_string_to_metric_families

from flexlog.core import rpc
from flexlog.core.config import ClusterConfig, ReplicaConfig
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


async def replica_status(replica: ReplicaConfig, timeout_s: float = 2.0) -> ProcessStatus:
    return await _ask("replica", replica.name, replica.address, timeout_s)


async def cluster_status(config: ClusterConfig, timeout_s: float = 2.0) -> list[ProcessStatus]:
    asks = [_ask("sequencer", s.name, s.address, timeout_s) for s in config.sequencers]
    asks += [_ask("replica", r.name, r.address, timeout_s)
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
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        statuses = await cluster_status(config, timeout_s=1.0)
        needed = await asyncio.to_thread(_needed, config, statuses)
        if all(s.ready for s in needed):
            return
        if loop.time() > deadline:
            down = ", ".join(s.name for s in statuses if not s.ready)
            raise Unavailable(f"cluster not ready after {timeout_s:.0f}s: {down}")
        await asyncio.sleep(0.1)


# ---- gateways: asked over the Kafka protocol, as a client would ----------------------


async def _kafka_call(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, api_key: int,
                      version: int, correlation_id: int, body: dict[str, Any]) -> dict[str, Any]:
    from flexlog.gateway.protocol import FrameReader, decode_response, encode_request

    writer.write(encode_request(api_key, version, correlation_id, body, client_id="flexlog-status"))
    frames = FrameReader()
    while True:
        data = await reader.read(1 << 16)
        if not data:
            raise ConnectionError("the gateway closed the connection")
        for frame in frames.feed(data):
            return decode_response(api_key, version, frame).body


async def _ask_gateway(name: str, address: str, timeout_s: float) -> ProcessStatus:
    """Up once it answers ApiVersions; ready once it answers Metadata (topic metadata loaded)."""
    from flexlog.gateway.protocol import ApiKey

    host, _, port = address.rpartition(":")
    up = False
    detail: dict[str, Any] = {}
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, int(port))
            try:
                versions = await _kafka_call(reader, writer, ApiKey.API_VERSIONS, 0, 1, {})
                up = versions["error_code"] == 0
                detail["api_keys"] = [k["api_key"] for k in versions["api_keys"]]
                metadata = await _kafka_call(reader, writer, ApiKey.METADATA, 1, 2, {"topics": []})
                detail["brokers"] = len(metadata["brokers"])
            finally:
                writer.close()
    except (OSError, TimeoutError, ConnectionError):
        return ProcessStatus("gateway", name, address, up, False, detail)
    return ProcessStatus("gateway", name, address, up, up, detail)


async def gateway_status(config: ClusterConfig, timeout_s: float = 2.0) -> list[ProcessStatus]:
    return list(await asyncio.gather(*(_ask_gateway(g.name, g.address, timeout_s)
                                       for g in config.gateways)))


async def process_status(config: ClusterConfig, name: str, timeout_s: float = 2.0) -> ProcessStatus:
    """The status of the one process called name (what a container healthcheck asks)."""
    for seq in config.sequencers:
        if seq.name == name:
            return await _ask("sequencer", name, seq.address, timeout_s)
    for gw in config.gateways:
        if gw.name == name:
            return await _ask_gateway(name, gw.address, timeout_s)
    rep = config.replica(name)
    return await _ask("replica", name, rep.address, timeout_s)


# ---- what the log holds: colors and topics with their offsets ------------------------


@dataclass
class LogOffsets:
    name: str
    log_start: int
    tail: int  # one past the last readable SN: Kafka's high watermark


@dataclass
class TopicOffsets:
    name: str
    partitions: list[LogOffsets]


async def log_offsets(config: ClusterConfig) -> tuple[list[LogOffsets], list[TopicOffsets]]:
    """(native colors, Kafka topics), each with log start and tail, via the native client."""
    from flexlog.core.client import FlexLogClient
    from flexlog.gateway.topics import COLOR_PREFIX, TOPICS_COLOR, TopicStore, partition_color

    async with FlexLogClient(config, timeout_ms=5_000) as client:
        await client.sync_registry()

        async def offsets(name: str) -> LogOffsets:
            return LogOffsets(name, *await client.state(name))

        colors = await asyncio.gather(*(offsets(c.name) for c in client.colors()
                                        if not c.name.startswith(COLOR_PREFIX)))
        topics = []
        if TOPICS_COLOR in client.registry.by_name:
            # Only opened when the gateways created __topics: open() would create it otherwise.
            store = TopicStore(client, config)
            await store.open()
            for topic in store.all():
                parts = await asyncio.gather(*(offsets(partition_color(topic.name, p))
                                               for p in range(topic.partitions)))
                topics.append(TopicOffsets(topic.name, list(parts)))
    return list(colors), topics


# ---- consumer groups: the lag every gateway exports --------------------------------


@dataclass
class GroupLag:
    group: str
    topic: str
    partition: int
    lag: int
    gateway: str


def _scrape(host: str, port: int, timeout_s: float) -> str:
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout_s) as resp:
        return resp.read().decode()


def parse_lag(text: str, gateway: str) -> list[GroupLag]:
    """flexlog_gateway_consumer_lag_records samples of one gateway's /metrics text."""
    lags = []
    for family in text_string_to_metric_families(text):
        if family.name != "flexlog_gateway_consumer_lag_records":
            continue
        for sample in family.samples:
            labels = sample.labels
            lags.append(GroupLag(labels["group"], labels["topic"], int(labels["partition"]),
                                 int(sample.value), gateway))
    return lags


def consumer_lag(config: ClusterConfig, timeout_s: float = 2.0) -> tuple[list[GroupLag], list[str]]:
    """(lag of every group some gateway coordinates, gateways whose metrics were unreachable).

    Each gateway exports the lag of the groups it coordinates, so asking all of
    them gives every group once.
    """
    lags: list[GroupLag] = []
    unreachable = []
    for gw in config.gateways:
        if not gw.metrics_port:
            unreachable.append(f"{gw.name} (no metrics_port)")
            continue
        try:
            text = _scrape(gw.address.rpartition(":")[0], gw.metrics_port, timeout_s)
        except OSError:
            unreachable.append(gw.name)
            continue
        lags += parse_lag(text, gw.name)
    return sorted(lags, key=lambda g: (g.group, g.topic, g.partition)), unreachable
