"""kafka-python 3.0 (idempotence off until the groups/idempotence issue) against the gateway."""

from __future__ import annotations

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewPartitions, NewTopic
from kafka.errors import TopicAlreadyExistsError

from compat_data import payloads

CODECS = [None, "gzip", "snappy", "lz4", "zstd"]


def producer(bootstrap: str, **conf: object) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, acks="all",
                         max_request_size=4_000_000, **conf)


def consumer(bootstrap: str) -> KafkaConsumer:
    return KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                         consumer_timeout_ms=10_000, fetch_max_bytes=60_000_000)


def consume(c: KafkaConsumer, n: int) -> list:
    out = []
    for m in c:
        out.append(m)
        if len(out) == n:
            break
    assert len(out) == n
    return out


@pytest.mark.parametrize("codec", CODECS)
def test_round_trip_every_codec(bootstrap, topic, codec):
    p = producer(bootstrap, compression_type=codec)
    sent = []
    for i, value in enumerate(payloads(40)):
        key = None if i % 4 == 0 else b"k%d" % i
        headers = [("h", b"v%d" % i)] if i % 2 else []
        value = b"" if i == 3 else value
        sent.append((key, value, headers, 1_600_000_000_000 + i))
        p.send(topic, value=value, key=key, headers=headers, timestamp_ms=1_600_000_000_000 + i,
               partition=0)
    p.flush(15)
    p.close()
    c = consumer(bootstrap)
    c.assign([TopicPartition(topic, 0)])
    c.seek_to_beginning()
    got = consume(c, len(sent))
    c.close()
    for i, (m, (key, value, headers, ts)) in enumerate(zip(got, sent, strict=True)):
        assert (m.offset, m.key, m.value, m.timestamp) == (i, key, value, ts)
        assert list(m.headers) == headers


def test_large_message_and_seeks(bootstrap, topic):
    p = producer(bootstrap)
    big = b"\x01\x02" * 800_000
    for i in range(5):
        p.send(topic, value=b"m%d" % i, timestamp_ms=2_000_000 + i * 1000, partition=0).get(10)
    p.send(topic, value=big, partition=0).get(10)
    p.close()
    c = consumer(bootstrap)
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    assert c.beginning_offsets([tp])[tp] == 0
    assert c.end_offsets([tp])[tp] == 6
    found = c.offsets_for_times({tp: 2_002_500})[tp]
    assert found.offset == 3
    c.seek(tp, found.offset)
    assert [m.value for m in consume(c, 3)] == [b"m3", b"m4", big]
    c.seek_to_beginning(tp)
    assert consume(c, 1)[0].value == b"m0"
    c.close()


def test_admin_and_delete_records(bootstrap, topic):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    with pytest.raises(TopicAlreadyExistsError):
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    admin.create_partitions({topic: NewPartitions(3)})
    assert len(admin.describe_topics([topic])[0]["partitions"]) == 3
    p = producer(bootstrap)
    for i in range(8):
        p.send(topic, value=b"d%d" % i, partition=2).get(10)
    p.close()
    tp = TopicPartition(topic, 2)
    result = admin.delete_records({tp: 5})
    assert result[tp]["low_watermark"] == 5
    c = consumer(bootstrap)
    assert c.beginning_offsets([tp])[tp] == 5
    c.close()
    admin.delete_topics([topic])
    assert topic not in admin.list_topics()
    admin.close()
