"""DeleteRecords and retention on ordered topics (docs/ordering.md, "Trims") with confluent-kafka
over real sockets: each partition gets its own log start, the other partitions keep their
records, and the family's storage is trimmed once every partition has moved past."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic
from group_helpers import restart_gateway, wait_for, wait_ready

from cluster import Cluster, running_cluster
from flexlog.cli.status import log_offsets
from flexlog.core.client import FlexLogClient
from flexlog.gateway.partition_starts import LOG_STARTS_COLOR, PartitionStarts
from flexlog.gateway.topics import partition_color

pytestmark = pytest.mark.slow

CHECK_INTERVAL_MS = 200
HOUR_MS = 3_600_000


@pytest.fixture(scope="module")
def ordered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, str]]:
    """Two shards (the family spans both) and two gateways (partitions alternate between them,
    so moves made by both must meet in one trim); retention checks five times a second."""
    extra = f"log_retention_check_interval_ms = {CHECK_INTERVAL_MS}"
    with running_cluster(tmp_path_factory.mktemp("ordered-retention"), storage="memory", shards=2,
                         gateways=2, extra=extra) as cluster:
        for gw in cluster.config.gateways:
            wait_ready(gw.advertised)
        yield cluster, cluster.config.gateways[0].advertised


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create(bootstrap: str, topics: dict[str, int], ordering: str,
           configs: dict[str, str] | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(t, n, config={"flexlog.ordering": ordering, **(configs or {})})
                                  for t, n in topics.items()]).values():
        f.result(15)


def produce(bootstrap: str, records: list[tuple[str, int, bytes]], timestamp_ms: int = 0) -> None:
    """One record at a time, so the offsets follow the list's order."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for topic, partition, value in records:
        p.produce(topic, value, partition=partition, timestamp=timestamp_ms)
        assert p.flush(10) == 0


def read(bootstrap: str, topic: str, partition: int, start: int = OFFSET_BEGINNING,
         reset: str = "earliest") -> list[tuple[int, bytes]]:
    """(offset, value) of the partition's records from start up to its high watermark; an
    offset below the log start resets as `reset` says ("error": the test fails)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("g"),
                  "enable.auto.commit": False, "auto.offset.reset": reset,
                  "enable.partition.eof": True})
    _, high = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    c.assign([TopicPartition(topic, partition, start)])
    out: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
            if m.offset() >= high:
                break
            continue
        out.append((m.offset(), m.value()))
    c.close()
    return out


def watermarks(bootstrap: str, topic: str, partition: int) -> tuple[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("w")})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        c.close()


def family_log_start(cluster: Cluster, topic: str) -> int:
    """Where the family's storage starts, as the native client sees it."""
    async def ask() -> int:
        async with FlexLogClient(cluster.config) as client:
            return (await client.state(partition_color(topic, 0)))[0]

    return asyncio.run(ask())


def test_delete_records_moves_one_partition_of_an_ordered_topic(ordered):
    cluster, bootstrap = ordered
    topic = unique("ordered")
    # Without retention, only DeleteRecords moves anything.
    create(bootstrap, {topic: 3}, "topic", {"retention.ms": "-1"})
    produce(bootstrap, [(topic, i % 3, b"v%d" % i) for i in range(30)])
    before = {p: read(bootstrap, topic, p) for p in range(3)}
    assert sorted(o for records in before.values() for o, _ in records) == list(range(30))

    admin = AdminClient({"bootstrap.servers": bootstrap})
    cut = before[0][4][0]  # partition 0 holds 0, 3, 6, ...: its fifth record is at 12
    deleted = admin.delete_records([TopicPartition(topic, 0, cut)])
    assert next(iter(deleted.values())).result(10).low_watermark == cut
    assert watermarks(bootstrap, topic, 0) == (cut, 30)
    assert watermarks(bootstrap, topic, 1) == (0, 30)

    # The deleted partition starts at the cut; the others keep every record, and what is left
    # still merges into the order the records were produced in.
    after = {p: read(bootstrap, topic, p) for p in range(3)}
    assert after[0] == [r for r in before[0] if r[0] >= cut]
    assert (after[1], after[2]) == (before[1], before[2])
    merged = sorted((o, v) for records in after.values() for o, v in records)
    assert merged == [(o, b"v%d" % o) for o in range(30) if o >= cut or o % 3]
    # A consumer below the log start is reset to it (auto.offset.reset=earliest).
    assert read(bootstrap, topic, 0, start=3)[0] == (cut, b"v%d" % cut)
    # Storage stays: partitions 1 and 2 still need the family's entries below the cut.
    assert family_log_start(cluster, topic) == 0

    # Bad input keeps Kafka's answers: beyond the high watermark, and below the log start.
    with pytest.raises(KafkaException) as err:
        next(iter(admin.delete_records([TopicPartition(topic, 1, 31)]).values())).result(10)
    assert err.value.args[0].name() == "OFFSET_OUT_OF_RANGE"
    earlier = admin.delete_records([TopicPartition(topic, 0, 3)])
    assert next(iter(earlier.values())).result(10).low_watermark == cut

    # Partitions 1 and 2 (led by the other gateway and this one) move too: the family's
    # storage now starts at the lowest of the three log starts.
    for p, offset in ((1, 20), (2, 8)):
        moved = admin.delete_records([TopicPartition(topic, p, offset)])
        assert next(iter(moved.values())).result(10).low_watermark == offset
    wait_for(lambda: family_log_start(cluster, topic) == 8, timeout=10)
    assert read(bootstrap, topic, 2) == [r for r in before[2] if r[0] >= 8]
    assert read(bootstrap, topic, 1) == [r for r in before[1] if r[0] >= 20]

    # The log starts are stored, not kept by the gateways: they survive a restart of both.
    for index in range(2):
        restart_gateway(cluster, index)
    assert [watermarks(bootstrap, topic, p)[0] for p in range(3)] == [cut, 20, 8]
    # `flexlog topics` and `flexlog status` show the partitions' log starts too.
    shown = next(t for t in asyncio.run(log_offsets(cluster.config))[1] if t.name == topic)
    assert [p.log_start for p in shown.partitions] == [cut, 20, 8]

    # A snapshot of __log_starts (the controller writes one once it has grown) keeps them,
    # and what it covers is trimmed.
    async def compact_and_reload() -> tuple[list[int], int]:
        async with FlexLogClient(cluster.config) as client:
            compactor = PartitionStarts(client)
            await compactor.open()
            await compactor.compact()
            fresh = PartitionStarts(client)
            await fresh.open()
            colors = [await client.color(partition_color(topic, p)) for p in range(3)]
            return [fresh.start(c, 0) for c in colors], (await client.state(LOG_STARTS_COLOR))[0]

    starts, snapshot_log_start = asyncio.run(compact_and_reload())
    assert starts == [cut, 20, 8] and snapshot_log_start > 0
    assert [watermarks(bootstrap, topic, p)[0] for p in range(3)] == [cut, 20, 8]
    assert read(bootstrap, topic, 1, start=9)[0] == (22, b"v22")


def test_retention_trims_each_partition_of_an_ordering_group(ordered):
    cluster, bootstrap = ordered
    group = unique("shop")
    orders, payments = unique("orders"), unique("payments")
    create(bootstrap, {orders: 2, payments: 1}, f"group:{group}", {"retention.ms": "60000"})
    old_ms = int(time.time() * 1000) - HOUR_MS
    # Offsets 0-3 old records of orders-0, 4-7 of orders-1; then current records of both
    # (8-15). payments-0 gets one current record at 16.
    produce(bootstrap, [(orders, 0, b"old0-%d" % i) for i in range(4)], old_ms)
    produce(bootstrap, [(orders, 1, b"old1-%d" % i) for i in range(4)], old_ms)
    produce(bootstrap, [(orders, i % 2, b"new%d-%d" % (i % 2, i)) for i in range(8)])
    produce(bootstrap, [(payments, 0, b"pay")])

    # Retention moves orders-0 past its old records and orders-1 past its own; payments-0,
    # which keeps nothing below 16, lets the family go too: the group's storage starts at
    # the first record kept anywhere (8), and so does every partition's log start.
    wait_for(lambda: family_log_start(cluster, orders) == 8, timeout=10)
    assert [watermarks(bootstrap, t, p) for t, p in ((orders, 0), (orders, 1), (payments, 0))] \
        == [(8, 17)] * 3
    assert [o for o, _ in read(bootstrap, orders, 0)] == [8, 10, 12, 14]
    assert [o for o, _ in read(bootstrap, orders, 1)] == [9, 11, 13, 15]
    # A consumer of orders-0 below its log start (4) resets to the earliest offset; one of
    # payments-0 at 2, below the storage's start but where payments-0 never dropped a record,
    # reads on without a reset.
    assert read(bootstrap, orders, 0, start=2)[0] == (8, b"new0-0")
    assert read(bootstrap, payments, 0, start=2, reset="error") == [(16, b"pay")]

    # A partition added now starts where the family does; it has nothing to keep either.
    admin = AdminClient({"bootstrap.servers": bootstrap})
    next(iter(admin.create_partitions([NewPartitions(orders, 3)]).values())).result(10)
    assert watermarks(bootstrap, orders, 2) == (8, 17)
    produce(bootstrap, [(orders, 2, b"late")])
    assert read(bootstrap, orders, 2) == [(17, b"late")]
    assert family_log_start(cluster, orders) == 8
