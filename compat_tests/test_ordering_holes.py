"""An offset of an ordered topic that was ordered and never stored (a leaf died holding it):
the family's readers fill it (core/family_fill.py), so no partition of the topic stops there,
and the Kafka producer whose append it was retries it under a new offset."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from group_helpers import wait_ready

from cluster import Cluster, running_cluster
from flexlog.core.client import FlexLogClient
from flexlog.core.proto import flexlog_pb2 as pb
from flexlog.gateway.topics import partition_color

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ordered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, str]]:
    with running_cluster(tmp_path_factory.mktemp("holes"), storage="memory", shards=2,
                         gateways=1) as cluster:
        address = cluster.config.gateways[0].advertised
        wait_ready(address)
        yield cluster, address


def seal_next_offset(cluster: Cluster, topic: str, partition: int) -> int:
    """Make the partition's next offset one that is ordered and never stored: every replica of
    its shard refuses grants there, as if the leaf relaying the grant had died."""
    async def seal() -> int:
        async with FlexLogClient(cluster.config) as c:
            member = await c.color(partition_color(topic, partition))
            sn = await c.tail(member)
            writer = c._writer(member.shards[0])
            for i in writer.members:
                r = await writer.links[i].query(pb.QueryOp(kind=pb.QueryOp.SEAL, color=member.id,
                                                           sn=sn, end=sn + 1))
                assert not r.error
            return sn

    return asyncio.run(seal())


def consume(bootstrap: str, topic: str, partition: int, n: int) -> tuple[list[tuple[int, bytes]], int, int]:
    """n records of the partition from the start, then the offset where librdkafka said the
    partition was at its end, and the high watermark."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                  "enable.auto.commit": False, "enable.partition.eof": True})
    c.assign([TopicPartition(topic, partition, 0)])
    out: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 30
    eof = -1
    while (len(out) < n or eof < 0) and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error() is not None:
            eof = m.offset()
            continue
        eof = -1
        out.append((m.offset(), m.value()))
    _, high = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    c.close()
    return out, eof, high


def test_a_lost_offset_stops_no_partition_and_its_producer_retries(
        ordered: tuple[Cluster, str]) -> None:
    cluster, bootstrap = ordered
    topic = f"holes-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 2, config={"flexlog.ordering": "topic"})])[topic].result(15)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "linger.ms": 0})
    delivered: list[tuple[int, int, bytes]] = []

    def done(err: object, m: object) -> None:
        assert err is None, err
        delivered.append((m.partition(), m.offset(), m.value()))  # type: ignore[attr-defined]

    for p in (0, 1):
        producer.produce(topic, b"first-%d" % p, partition=p, on_delivery=done)
    assert producer.flush(15) == 0
    hole = seal_next_offset(cluster, topic, 0)
    producer.produce(topic, b"retried", partition=0, on_delivery=done)
    producer.poll(0.5)  # its first attempt takes the sealed offset and waits for the fill
    producer.produce(topic, b"after", partition=1, on_delivery=done)
    records = {p: consume(bootstrap, topic, p, 2) for p in (0, 1)}
    assert producer.flush(30) == 0
    for p in (0, 1):
        got, eof, high = records[p]
        assert [v for _, v in got] == [v for q, _, v in sorted(delivered, key=lambda d: d[1])
                                      if q == p], f"partition {p}"
        assert eof == high, "the fetch position reached the high watermark: no lag is left"
    retried = next(o for _, o, v in delivered if v == b"retried")
    after = next(o for _, o, v in delivered if v == b"after")
    assert hole < after < retried, "the lost offset stays empty; the producer's retry came later"
    assert hole not in {o for _, o, _ in delivered}
