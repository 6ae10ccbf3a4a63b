"""Transactions with the other clients: aiokafka's and kafka-python's transactional producers,
each read back by a read_committed consumer of the same library (a committed transaction once,
an aborted one never, while a read_uncommitted consumer does see the aborted records), and
kcat's read_committed consumer (Debian's librdkafka 2.0.2) reading what confluent-kafka's
transactional producer committed and aborted."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import TopicPartition as AioTopicPartition
from group_helpers import PARTITIONS, create_topic, unique
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition
from txn_helpers import READ_COMMITTED, READ_UNCOMMITTED, send_aborted, send_committed

COMMITTED = [b"c-%02d" % i for i in range(12)]  # two on each partition
ABORTED = [b"a-%02d" % i for i in range(12)]
LATER = [b"z-%d" % q for q in range(PARTITIONS)]  # one on each partition, committed last


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
