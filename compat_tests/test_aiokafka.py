"""aiokafka 0.14 (ApiVersions v0, non-flexible versions) against the gateway."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from compat_data import payloads

CODECS = [None, "gzip", "snappy", "lz4", "zstd"]


async def consume(c: AIOKafkaConsumer, n: int) -> list:
    out = []
    async with asyncio.timeout(15):
        while len(out) < n:
            out.append(await c.getone())
    return out


@pytest.mark.parametrize("codec", CODECS)
async def test_round_trip_every_codec(bootstrap, topic, codec):
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type=codec,
                         max_request_size=4_000_000)
    await p.start()
    sent = []
    try:
        for i, value in enumerate(payloads(30)):
            key = None if i % 3 == 0 else b"k%d" % i
            headers = [("h", b"v%d" % i)] if i % 2 else []
            value = b"" if i == 5 else value
            sent.append((key, value, headers, 1_650_000_000_000 + i))
            await p.send(topic, value=value, key=key, headers=headers, partition=0,
                         timestamp_ms=1_650_000_000_000 + i)
        await p.send_and_wait(topic, value=b"y" * 1_200_000, partition=0)
    finally:
        await p.stop()
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                         max_partition_fetch_bytes=4_000_000)
    await c.start()
    try:
        c.assign([TopicPartition(topic, 0)])
        await c.seek_to_beginning()
        got = await consume(c, len(sent) + 1)
    finally:
        await c.stop()
    for i, (m, (key, value, headers, ts)) in enumerate(zip(got, sent, strict=False)):
        assert (m.offset, m.key, m.value, m.timestamp) == (i, key, value, ts)
        assert list(m.headers) == headers
    assert got[-1].value == b"y" * 1_200_000


async def test_seeks_and_tail_wakeup(bootstrap, topic):
    p = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await p.start()
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                         fetch_max_wait_ms=10_000)
    await c.start()
    try:
        for i in range(6):
            await p.send_and_wait(topic, value=b"m%d" % i, partition=0, timestamp_ms=3_000_000 + i * 10)
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        found = await c.offsets_for_times({tp: 3_000_035})
        assert found[tp].offset == 4
        c.seek(tp, found[tp].offset)
        assert [m.value for m in await consume(c, 2)] == [b"m4", b"m5"]
        await c.seek_to_beginning(tp)
        assert (await consume(c, 1))[0].value == b"m0"
        await c.seek_to_end(tp)
        waiter = asyncio.ensure_future(c.getone())
        await asyncio.sleep(0.5)
        sent_at = time.monotonic()
        await p.send_and_wait(topic, value=b"wake", partition=0)
        async with asyncio.timeout(5):
            m = await waiter
        assert m.value == b"wake"
        assert time.monotonic() - sent_at < 2.0
    finally:
        await c.stop()
        await p.stop()


async def test_admin(bootstrap, topic):
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
        # aiokafka hands back the response instead of raising.
        again = await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
        assert again.topic_errors[0][1] == TopicAlreadyExistsError.errno
        await admin.create_partitions({topic: NewPartitions(5)})
        described = await admin.describe_topics([topic])
        assert len(described[0]["partitions"]) == 5
        await admin.delete_topics([topic])
        assert topic not in await admin.list_topics()
    finally:
        await admin.close()
