"""Transactions with the other clients: aiokafka's and kafka-python's transactional producers,
each read back by a read_committed consumer of the same library (a committed transaction once,
an aborted one never, while a read_uncommitted consumer does see the aborted records), and each
library's consume-transform-produce (send_offsets_to_transaction: the group's offsets are
committed with the output, and an aborted transaction commits neither); kcat's read_committed
consumer (Debian's librdkafka 2.0.2) reading what confluent-kafka's transactional producer
committed and aborted."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import TopicPartition as AioTopicPartition
from group_helpers import PARTITIONS, create_topic, produce, unique
from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata
from kafka import TopicPartition as KpTopicPartition
from txn_helpers import READ_COMMITTED, READ_UNCOMMITTED, send_aborted, send_committed

COMMITTED = [b"c-%02d" % i for i in range(12)]  # two on each partition
ABORTED = [b"a-%02d" % i for i in range(12)]
LATER = [b"z-%d" % q for q in range(PARTITIONS)]  # one on each partition, committed last
INPUTS = [b"in-%02d" % i for i in range(30)]  # five on each partition
OUTPUTS = [b"out-" + v for v in INPUTS]


class Abandon(Exception):
    """Raised inside aiokafka's transaction context, which aborts the transaction."""


async def aiokafka_read(bootstrap: str, topic: str, isolation: str, until: set[bytes]) -> list[bytes]:
    """Every value of topic, from the beginning, until all of `until` were read (and a little
    longer, for anything that should not be there)."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level=isolation)
    await c.start()
    got: list[bytes] = []
    try:
        c.assign([AioTopicPartition(topic, q) for q in range(PARTITIONS)])
        await c.seek_to_beginning()
        settle_until = None
        async with asyncio.timeout(30):
            while settle_until is None or time.monotonic() < settle_until:
                batches = await c.getmany(timeout_ms=200)
                got += [m.value for msgs in batches.values() for m in msgs]
                if settle_until is None and until <= set(got):
                    settle_until = time.monotonic() + 0.5
    finally:
        await c.stop()
    return got


async def test_aiokafka_transactions(bootstrap):
    topic = create_topic(bootstrap)
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=unique("tx-aio"))
    await p.start()
    try:
        async with p.transaction():
            for i, v in enumerate(COMMITTED):
                await p.send(topic, value=v, partition=i % PARTITIONS)
        with pytest.raises(Abandon):
            async with p.transaction():
                sent = [await p.send(topic, value=v, partition=i % PARTITIONS)
                        for i, v in enumerate(ABORTED)]
                await asyncio.gather(*sent)  # acknowledged: in the log when the abort comes
                raise Abandon
        async with p.transaction():
            for q, v in enumerate(LATER):
                await p.send(topic, value=v, partition=q)
    finally:
        await p.stop()
    committed = await aiokafka_read(bootstrap, topic, READ_COMMITTED, set(LATER))
    assert sorted(committed) == sorted(COMMITTED + LATER)
    everything = await aiokafka_read(bootstrap, topic, READ_UNCOMMITTED, set(LATER))
    assert sorted(everything) == sorted(COMMITTED + ABORTED + LATER)


async def test_aiokafka_consume_transform_produce(bootstrap):
    source, sink = create_topic(bootstrap), create_topic(bootstrap)
    group = unique("ctp-aio")
    produce(bootstrap, source, INPUTS)
    c = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                         isolation_level=READ_COMMITTED, auto_offset_reset="earliest")
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=unique("tx-aio"))
    await c.start()
    await p.start()
    partitions = [AioTopicPartition(source, q) for q in range(PARTITIONS)]
    try:
        got: list = []
        async with asyncio.timeout(30):
            while len(got) < len(INPUTS):
                batches = await c.getmany(timeout_ms=200)
                got += [m for msgs in batches.values() for m in msgs]
        offsets = {tp: 1 + max(m.offset for m in got if m.partition == tp.partition) for tp in partitions}

        async def transform() -> None:
            sent = [await p.send(sink, value=b"out-" + m.value, partition=m.partition) for m in got]
            await asyncio.gather(*sent)
            await p.send_offsets_to_transaction(offsets, group)

        with pytest.raises(Abandon):
            async with p.transaction():
                await transform()
                raise Abandon
        assert [await c.committed(tp) for tp in partitions] == [None] * PARTITIONS
        async with p.transaction():
            await transform()
        async with asyncio.timeout(15):  # committed once the transaction's marker is written
            while [await c.committed(tp) for tp in partitions] != [5] * PARTITIONS:
                await asyncio.sleep(0.1)
    finally:
        await p.stop()
        await c.stop()
    out = await aiokafka_read(bootstrap, sink, READ_COMMITTED, set(OUTPUTS))
    assert sorted(out) == sorted(OUTPUTS)


def kafka_python_read(bootstrap: str, topic: str, isolation: str, until: set[bytes]) -> list[bytes]:
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level=isolation)
    got: list[bytes] = []
    try:
        c.assign([KpTopicPartition(topic, q) for q in range(PARTITIONS)])
        c.seek_to_beginning()
        deadline = time.monotonic() + 30
        settle_until = None
        while settle_until is None or time.monotonic() < settle_until:
            assert time.monotonic() < deadline, f"timed out; read {got}"
            batches = c.poll(timeout_ms=200)
            got += [m.value for msgs in batches.values() for m in msgs]
            if settle_until is None and until <= set(got):
                settle_until = time.monotonic() + 0.5
    finally:
        c.close()
    return got


def test_kafka_python_transactions(bootstrap):
    topic = create_topic(bootstrap)
    p = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=unique("tx-kp"))
    try:
        p.init_transactions()
        p.begin_transaction()
        for i, v in enumerate(COMMITTED):
            p.send(topic, value=v, partition=i % PARTITIONS)
        p.commit_transaction()
        p.begin_transaction()
        for i, v in enumerate(ABORTED):
            p.send(topic, value=v, partition=i % PARTITIONS)
        p.flush(30)  # in the log when the abort comes
        p.abort_transaction()
        p.begin_transaction()
        for q, v in enumerate(LATER):
            p.send(topic, value=v, partition=q)
        p.commit_transaction()
    finally:
        p.close(timeout=10)
    committed = kafka_python_read(bootstrap, topic, READ_COMMITTED, set(LATER))
    assert sorted(committed) == sorted(COMMITTED + LATER)
    everything = kafka_python_read(bootstrap, topic, READ_UNCOMMITTED, set(LATER))
    assert sorted(everything) == sorted(COMMITTED + ABORTED + LATER)


def test_kafka_python_consume_transform_produce(bootstrap):
    source, sink = create_topic(bootstrap), create_topic(bootstrap)
    group = unique("ctp-kp")
    produce(bootstrap, source, INPUTS)
    c = KafkaConsumer(source, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                      isolation_level=READ_COMMITTED, auto_offset_reset="earliest")
    p = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=unique("tx-kp"))
    partitions = [KpTopicPartition(source, q) for q in range(PARTITIONS)]
    try:
        got: list = []
        deadline = time.monotonic() + 30
        while len(got) < len(INPUTS):
            assert time.monotonic() < deadline, f"read {len(got)}"
            got += [m for msgs in c.poll(timeout_ms=200).values() for m in msgs]
        ends = {tp: 1 + max(m.offset for m in got if m.partition == tp.partition) for tp in partitions}
        offsets = {tp: OffsetAndMetadata(end, "", -1) for tp, end in ends.items()}
        p.init_transactions()

        def transform() -> None:
            p.begin_transaction()
            for m in got:
                p.send(sink, value=b"out-" + m.value, partition=m.partition)
            p.send_offsets_to_transaction(offsets, c.group_metadata())

        transform()
        p.flush(30)
        p.abort_transaction()
        assert [c.committed(tp) for tp in partitions] == [None] * PARTITIONS
        transform()
        p.commit_transaction()
        deadline = time.monotonic() + 15  # committed once the transaction's marker is written
        while [c.committed(tp) for tp in partitions] != [5] * PARTITIONS:
            assert time.monotonic() < deadline, [c.committed(tp) for tp in partitions]
            time.sleep(0.1)
    finally:
        p.close(timeout=10)
        c.close()
    out = kafka_python_read(bootstrap, sink, READ_COMMITTED, set(OUTPUTS))
    assert sorted(out) == sorted(OUTPUTS)


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed")
def test_kcat_read_committed(bootstrap):
    topic = create_topic(bootstrap)
    send_committed(bootstrap, [(topic, 0, v) for v in COMMITTED[:5]])
    send_aborted(bootstrap, [(topic, 0, v) for v in ABORTED[:5]])
    send_committed(bootstrap, [(topic, 0, LATER[0])])

    def kcat(isolation: str) -> list[tuple[int, bytes]]:
        done = subprocess.run(["kcat", "-b", bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning",
                               "-e", "-X", f"isolation.level={isolation}", "-f", "%o|%s\\n"],
                              capture_output=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr.decode()
        return [(int(o), v) for o, v in (line.split(b"|", 1) for line in done.stdout.splitlines())]

    committed = kcat(READ_COMMITTED)
    everything = kcat(READ_UNCOMMITTED)
    assert [v for _, v in committed] == [*COMMITTED[:5], LATER[0]]
    assert [v for _, v in everything] == [*COMMITTED[:5], *ABORTED[:5], LATER[0]]
    # The same offsets; read_committed skips the aborted ones.
    assert set(committed) <= set(everything)
