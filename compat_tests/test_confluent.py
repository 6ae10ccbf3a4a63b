"""confluent-kafka (librdkafka 2.16) against the gateway."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from compat_data import payloads

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
BIG = 1_500_000


def producer(bootstrap: str, **conf: object) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "linger.ms": 2, "message.max.bytes": 4_000_000,
                     **conf})


def consumer(bootstrap: str, **conf: object) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": "compat", "enable.auto.commit": False,
                     "receive.message.max.bytes": 60_000_000, **conf})


def deliver(p: Producer) -> None:
    assert p.flush(15) == 0


def consume(c: Consumer, n: int, timeout_s: float = 15.0) -> list:
    out = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        assert m.error() is None, m.error()
        out.append(m)
    assert len(out) == n
    return out


@pytest.mark.parametrize("codec", CODECS)
def test_round_trip_every_codec(bootstrap, topic, codec):
    p = producer(bootstrap, **{"compression.type": codec})
    sent = []
    errors = []
    for i, value in enumerate(payloads(50)):
        key = None if i % 5 == 0 else b"key-%d" % i
        headers = [("h", b"v%d" % i), ("empty", b"")] if i % 2 else None
        value = b"" if i == 7 else value
        sent.append((key, value, headers, 1_700_000_000_000 + i))
        p.produce(topic, value=value, key=key, headers=headers, timestamp=1_700_000_000_000 + i,
                  on_delivery=lambda err, msg: err and errors.append(err))
    deliver(p)
    assert not errors
    c = consumer(bootstrap)
    c.assign([TopicPartition(topic, 0, 0)])
    got = consume(c, len(sent))
    c.close()
    for i, (m, (key, value, headers, ts)) in enumerate(zip(got, sent, strict=True)):
        assert m.offset() == i
        assert m.key() == key
        assert m.value() == value
        assert (m.headers() or None) == headers
        assert m.timestamp() == (1, ts)


def test_large_message(bootstrap, topic):
    p = producer(bootstrap)
    big = bytes(range(256)) * (BIG // 256)
    p.produce(topic, value=big)
    deliver(p)
    c = consumer(bootstrap)
    c.assign([TopicPartition(topic, 0, 0)])
    assert consume(c, 1)[0].value() == big
    c.close()


def test_seek_earliest_latest_timestamp(bootstrap, topic):
    p = producer(bootstrap)
    for i in range(10):
        p.produce(topic, value=b"m%d" % i, timestamp=1_000_000 + i * 1000)
        p.flush(10)
    c = consumer(bootstrap)
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    assert (lo, hi) == (0, 10)
    found = c.offsets_for_times([TopicPartition(topic, 0, 1_004_500)], timeout=10)
    assert found[0].offset == 5
    c.assign([TopicPartition(topic, 0, found[0].offset)])
    assert consume(c, 1)[0].value() == b"m5"
    c.seek(TopicPartition(topic, 0, -2))  # OFFSET_BEGINNING
    assert consume(c, 1)[0].value() == b"m0"
    c.close()
    c = consumer(bootstrap)
    c.assign([TopicPartition(topic, 0, -1)])  # OFFSET_END
    c.poll(1.0)
    p.produce(topic, value=b"after-end")
    deliver(p)
    assert consume(c, 1)[0].value() == b"after-end"
    c.close()


def test_consumer_at_tail_wakes_early(bootstrap, topic):
    p = producer(bootstrap)
    p.produce(topic, value=b"first")
    deliver(p)
    c = consumer(bootstrap, **{"fetch.wait.max.ms": 10_000})
    c.assign([TopicPartition(topic, 0, 1)])
    c.poll(1.0)  # now parked in a long poll at the tail
    sent_at: list[float] = []

    def later() -> None:
        time.sleep(0.5)
        sent_at.append(time.monotonic())
        p.produce(topic, value=b"wake")
        p.flush(10)

    threading.Thread(target=later).start()
    m = consume(c, 1)[0]
    waited = time.monotonic() - sent_at[0]
    c.close()
    assert m.value() == b"wake"
    assert waited < 2.0, f"woke {waited:.2f}s after the append with a 10 s fetch wait"


def test_admin_topics_partitions_configs_delete_records(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=-1,
                                           config={"retention.ms": "3600000"})]).values():
        f.result(10)
    again = admin.create_topics([NewTopic(topic, num_partitions=1)])[topic]
    with pytest.raises(KafkaException) as info:
        again.result(10)
    assert info.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
    md = admin.list_topics(topic, timeout=10)
    assert len(md.topics[topic].partitions) == 2
    admin.create_partitions([NewPartitions(topic, 4)])[topic].result(10)
    assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 4
    shrink = admin.create_partitions([NewPartitions(topic, 2)])[topic]
    with pytest.raises(KafkaException) as info:
        shrink.result(10)
    assert info.value.args[0].code() == KafkaError.INVALID_PARTITIONS

    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([res])[res].result(10)
    assert configs["retention.ms"].value == "3600000"
    assert configs["cleanup.policy"].value == "delete"
    change = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.bytes", "1000000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([change])[change].result(10)
    assert admin.describe_configs([res])[res].result(10)["retention.bytes"].value == "1000000"
    bad = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as info:
        admin.incremental_alter_configs([bad])[bad].result(10)
    assert info.value.args[0].code() == KafkaError.INVALID_CONFIG

    p = producer(bootstrap)
    for i in range(10):
        p.produce(topic, value=b"r%d" % i, partition=1)
        p.flush(10)
    deleted = admin.delete_records([TopicPartition(topic, 1, 6)])
    assert next(iter(deleted.values())).result(10).low_watermark == 6
    c = consumer(bootstrap)
    assert c.get_watermark_offsets(TopicPartition(topic, 1), timeout=10) == (6, 10)
    c.assign([TopicPartition(topic, 1, -2)])
    assert consume(c, 1)[0].value() == b"r6"
    c.close()

    admin.delete_topics([topic])[topic].result(10)
    assert topic not in admin.list_topics(timeout=10).topics
