"""Asking a whole cluster how it is, for `flexlog status|topics|groups` and the launcher:
gateways over the Kafka protocol (as a client would ask them), the log's offsets, consumer lag.

Sequencers and replicas are asked by `core/status.py`.
"""

from __future__ import annotations

import asyncio
import urllib.request
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from flexlog.core import tls
from flexlog.core.client import FlexLogClient
from flexlog.core.config import ClusterConfig, GatewayConfig, SecurityConfig
from flexlog.core.status import ProcessStatus, ask_process
from flexlog.gateway import scram
from flexlog.gateway.partition_starts import LOG_STARTS_COLOR, PartitionStarts
from flexlog.gateway.protocol import ApiKey, FrameReader, decode_response, encode_request
from flexlog.gateway.topics import COLOR_PREFIX, TOPICS_COLOR, TopicStore, partition_color

# ---- gateways: asked over the Kafka protocol, as a client would ----------------------


async def _kafka_call(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, api_key: int,
                      version: int, correlation_id: int, body: dict[str, Any]) -> dict[str, Any]:
    writer.write(encode_request(api_key, version, correlation_id, body, client_id="flexlog-status"))
    frames = FrameReader()
    while True:
        data = await reader.read(1 << 16)
        if not data:
            raise ConnectionError("the gateway closed the connection")
        for frame in frames.feed(data):
            return decode_response(api_key, version, frame).body


async def _log_in(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  security: SecurityConfig) -> None:
    """SaslHandshake and SaslAuthenticate as the configured admin; ConnectionError if refused."""
    assert security.admin_user is not None, "the parser requires admin_user for SASL at `address`"
    mechanism, user, password = security.admin_sasl_mechanism, security.admin_user, security.admin_password()
    handshake = await _kafka_call(reader, writer, ApiKey.SASL_HANDSHAKE, 1, 2, {"mechanism": mechanism})
    if handshake["error_code"]:
        raise ConnectionError(f"SASL mechanism {mechanism} refused: error {handshake['error_code']}")
    if mechanism == "PLAIN":
        await _authenticate(reader, writer, 3, f"\0{user}\0{password}".encode(), user)
        return
    client = scram.ScramClient(mechanism, user, password)
    server_first = await _authenticate(reader, writer, 3, client.first(), user)
    client.verify(await _authenticate(reader, writer, 4, client.final(server_first), user))


async def _authenticate(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, correlation_id: int,
                        token: bytes, user: str) -> bytes:
    reply = await _kafka_call(reader, writer, ApiKey.SASL_AUTHENTICATE, 2, correlation_id,
                              {"auth_bytes": token})
    if reply["error_code"]:
        raise ConnectionError(f"logging in as {user} failed: {reply['error_message']}")
    return reply["auth_bytes"]


async def _ask_gateway(config: ClusterConfig, gw: GatewayConfig, timeout_s: float) -> ProcessStatus:
    """Up once it answers ApiVersions; ready once it answers Metadata (topic metadata loaded).

    Asked on the listener at `address`, in its protocol: over TLS, and logged in as the
    configured admin on a SASL listener.
    """
    listener = gw.listeners[0]
    host, _, port = gw.address.rpartition(":")
    up = False
    detail: dict[str, Any] = {}
    try:
        async with asyncio.timeout(timeout_s):
            context = None
            if listener.tls:
                assert config.tls is not None, "the parser requires [tls] for SSL listeners"
                context = tls.client_context(config.tls)
            reader, writer = await asyncio.open_connection(host, int(port), ssl=context)
            try:
                versions = await _kafka_call(reader, writer, ApiKey.API_VERSIONS, 0, 1, {})
                up = versions["error_code"] == 0
                detail["api_keys"] = [k["api_key"] for k in versions["api_keys"]]
                if listener.sasl:
                    await _log_in(reader, writer, config.security)
                metadata = await _kafka_call(reader, writer, ApiKey.METADATA, 1, 9, {"topics": []})
                detail["brokers"] = len(metadata["brokers"])
            finally:
                writer.close()
    except (OSError, TimeoutError, ConnectionError, scram.ScramError) as exc:
        detail["error"] = str(exc)
        return ProcessStatus("gateway", gw.name, gw.address, up, False, detail)
    return ProcessStatus("gateway", gw.name, gw.address, up, up, detail)


async def gateway_status(config: ClusterConfig, timeout_s: float = 2.0) -> list[ProcessStatus]:
    return list(await asyncio.gather(*(_ask_gateway(config, g, timeout_s) for g in config.gateways)))


async def process_status(config: ClusterConfig, name: str, timeout_s: float = 2.0) -> ProcessStatus:
    """The status of the one process called name (what a container healthcheck asks)."""
    for seq in config.sequencers:
        if seq.name == name:
            return await ask_process("sequencer", name, seq.address, timeout_s)
    for gw in config.gateways:
        if gw.name == name:
            return await _ask_gateway(config, gw, timeout_s)
    rep = config.replica(name)
    return await ask_process("replica", name, rep.address, timeout_s)


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
            starts = PartitionStarts(client)
            if LOG_STARTS_COLOR in client.registry.by_name:
                await starts.open()

            async def partition(name: str) -> LogOffsets:
                # An ordered topic's partition may start above its color, as Kafka clients see it.
                color = await client.color(name)
                log_start, tail = await client.state(color)
                return LogOffsets(name, starts.start(color, log_start), tail)

            for topic in store.all():
                parts = await asyncio.gather(*(partition(partition_color(topic.name, p))
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
