"""``__consumer_offsets`` as a read-only Kafka topic, over real sockets with kafka-python and
confluent-kafka: commits show up with Kafka's key/value encodings, deletions as tombstones,
Metadata flags the topic internal, and produce to it is refused.

The decoder below is written from Kafka's record definitions, apart from the gateway's
encoder, so that a mistake in one is not mirrored by the other.
"""

from __future__ import annotations

import signal
import struct
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer
from confluent_kafka import TopicPartition as CTopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource
from confluent_kafka.admin import NewTopic as CNewTopic
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata

from cluster import running_cluster
from flexlog.core import record_batch
from flexlog.core.event_log import json_record
from flexlog.gateway.committed_offsets import OffsetState
from flexlog.gateway.groups import coordinator_index
from flexlog.gateway.offsets_topic import java_string_hash, partition_for, records_of
from flexlog.gateway.protocol import ApiKey, ErrorCode
from wire_client import GATEWAY_READY_S, WireClient, gateway_ready, running_gateway

TOPIC = "__consumer_offsets"
READ_TIMEOUT_S = 20


@pytest.fixture(scope="module")
def bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_gateway(tmp_path_factory.mktemp("cluster"),
                         extra="group_initial_rebalance_delay_ms = 0") as address:
        yield address


@pytest.fixture(scope="module")
def topic(bootstrap: str) -> str:
    name = f"src-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20_000)
    admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(10):
        producer.send(name, f"v{i}".encode(), partition=i % 2)
    producer.flush(20)
    producer.close()
    return name


# ---- a decoder of Kafka's __consumer_offsets records -----------------------------------


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str | None:
        n = self.take(">h")
        if n < 0:
            return None
        text = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return text

    def done(self) -> bool:
        return self.pos == len(self.data)


@dataclass
class OffsetRecord:
    group: str
    topic: str
    partition: int
    offset: int | None  # None: a tombstone
    leader_epoch: int = -1
    metadata: str = ""
    timestamp_ms: int = -1


def decode(key: bytes, value: bytes | None) -> OffsetRecord | tuple[str, dict | None]:
    """An offset-commit record, or ("group", metadata or None) for a group-metadata record."""
    r = _Reader(key)
    version = r.take(">h")
    if version in (0, 1):
        group, topic, partition = r.string(), r.string(), r.take(">i")
        assert r.done() and group is not None and topic is not None
        if value is None:
            return OffsetRecord(group, topic, partition, None)
        v = _Reader(value)
        value_version = v.take(">h")
        assert value_version in (0, 1, 2, 3), value_version
        offset = v.take(">q")
        epoch = v.take(">i") if value_version >= 3 else -1
        metadata = v.string()
        ts = v.take(">q")
        if value_version == 1:
            v.take(">q")  # expireTimestamp
        assert v.done() and metadata is not None
        return OffsetRecord(group, topic, partition, offset, epoch, metadata, ts)
    assert version == 2, version
    group = r.string()
    assert r.done() and group is not None
    if value is None:
        return group, None
    v = _Reader(value)
    value_version = v.take(">h")
    assert value_version in (0, 1, 2, 3), value_version
    meta: dict = {"protocol_type": v.string(), "generation": v.take(">i"), "protocol": v.string(),
                  "leader": v.string()}
    if value_version >= 2:
        meta["current_state_timestamp"] = v.take(">q")
    members = []
    for _ in range(v.take(">i")):
        member: dict = {"member_id": v.string()}
        if value_version >= 3:
            member["group_instance_id"] = v.string()
        member["client_id"], member["client_host"] = v.string(), v.string()
        if value_version >= 1:
            member["rebalance_timeout"] = v.take(">i")
        member["session_timeout"] = v.take(">i")
        for field in ("subscription", "assignment"):
            n = v.take(">i")
            member[field] = v.data[v.pos:v.pos + n]
            v.pos += n
        members.append(member)
    meta["members"] = members
    assert v.done()
    return group, meta


# ---- readers through the two libraries ---------------------------------------------------


def read_kafka_python(bootstrap: str, group: str, until: int,
                     stop: object = None) -> list[tuple[int, object]]:
    """(offset, decoded) of the group's partition of __consumer_offsets, until `until` records
    about the group were seen, or the record `stop` (or the timeout)."""
    tp = TopicPartition(TOPIC, partition_for(group))
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             exclude_internal_topics=False)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    seen: list[tuple[int, object]] = []
    deadline = time.monotonic() + READ_TIMEOUT_S
    try:
        while time.monotonic() < deadline and len(seen) < until and (
                not seen or seen[-1][1] != stop):
            for msg in consumer.poll(timeout_ms=500).get(tp, []):
                item = decode(msg.key, msg.value)
                name = item.group if isinstance(item, OffsetRecord) else item[0]
                if name == group:
                    seen.append((msg.offset, item))
    finally:
        consumer.close()
    return seen


def read_confluent(bootstrap: str, group: str, until: int,
                  stop: object = None) -> list[tuple[int, object]]:
    # librdkafka has no exclude.internal.topics: it only filters subscriptions, and assign()
    # reads any topic.
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False})
    consumer.assign([CTopicPartition(TOPIC, partition_for(group), OFFSET_BEGINNING)])
    seen: list[tuple[int, object]] = []
    deadline = time.monotonic() + READ_TIMEOUT_S
    try:
        while time.monotonic() < deadline and len(seen) < until and (
                not seen or seen[-1][1] != stop):
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            item = decode(msg.key(), msg.value())
            name = item.group if isinstance(item, OffsetRecord) else item[0]
            if name == group:
                seen.append((msg.offset(), item))
    finally:
        consumer.close()
    return seen


def offsets_only(seen: list[tuple[int, object]]) -> list[OffsetRecord]:
    return [item for _, item in seen if isinstance(item, OffsetRecord)]


# ---- tests --------------------------------------------------------------------------------


def test_partition_is_kafkas_java_hash_mod_50():
    assert java_string_hash("") == 0
    assert java_string_hash("abc") == 96354
    assert java_string_hash("hello") == 99162322
    # The string whose hashCode is Integer.MIN_VALUE: Kafka's Utils.abs maps it to 0.
    assert java_string_hash("polygenelubricants") == -(2 ** 31)
    assert partition_for("polygenelubricants") == 0
    assert partition_for("abc") == 96354 % 50
    # Non-ASCII counts UTF-16 code units, as Java does.
    assert java_string_hash("é") == 0xE9


def test_a_compaction_snapshot_shows_its_live_entries_and_tombstones():
    """After a trim the snapshot is all a reader gets: it must carry every entry of its partition."""
    state = OffsetState()
    group, other = "g-snap", next(f"o-{i}" for i in range(1000)
                                  if partition_for(f"o-{i}") != partition_for("g-snap"))
    state.apply(0, json_record({"op": "commit", "group": group, "ts": 5,
                                "offsets": [["t", 0, 7, 2, "m"], ["t", 1, 8, -1, None]]}))
    state.apply(1, json_record({"op": "commit", "group": other, "ts": 6, "offsets": [["t", 0, 9, -1, ""]]}))
    state.apply(2, json_record({"op": "delete", "group": group, "ts": 7, "partitions": [["t", 1]]}))
    snapshot = json_record(state.snapshot(tombstones_after_ms=0))
    shown = [decode(r.key, r.value) for r in records_of(snapshot, partition_for(group))]
    assert shown == [OffsetRecord(group, "t", 0, 7, 2, "m", 5), OffsetRecord(group, "t", 1, None)]
    # A record the topic does not know (a newer gateway's) shows as nothing.
    assert records_of(json_record({"op": "future", "group": group}), partition_for(group)) == []


def test_metadata_lists_it_internal_with_50_partitions(bootstrap):
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    assert len(md.topics[TOPIC].partitions) == 50
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        [described] = admin.describe_topics([TOPIC])
        assert described["is_internal"] is True and described["error_code"] == 0
        assert TOPIC in admin.list_topics()
    finally:
        admin.close()


def test_it_cannot_be_created_and_brokers_report_its_partitions(bootstrap):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    [future] = admin.create_topics([CNewTopic(TOPIC, num_partitions=1, replication_factor=1)]).values()
    with pytest.raises(KafkaException) as failed:
        future.result(timeout=20)
    assert failed.value.args[0].code() == ErrorCode.TOPIC_ALREADY_EXISTS
    [configs] = admin.describe_configs([ConfigResource(ConfigResource.Type.BROKER, "0")]).values()
    assert configs.result(timeout=20)["offsets.topic.num.partitions"].value == "50"


def test_kafka_python_group_commits_read_back_in_kafkas_format(bootstrap, topic):
    group = f"g-{uuid.uuid4().hex[:8]}"
    committer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        committer.commit({TopicPartition(topic, 0): OffsetAndMetadata(3, "first", -1),
                          TopicPartition(topic, 1): OffsetAndMetadata(4, "", -1)})
        committer.commit({TopicPartition(topic, 0): OffsetAndMetadata(5, "second", -1)})
    finally:
        committer.close()
    seen = read_kafka_python(bootstrap, group, until=3)
    records = offsets_only(seen)
    assert [(r.topic, r.partition, r.offset, r.metadata) for r in records] == [
        (topic, 0, 3, "first"), (topic, 1, 4, ""), (topic, 0, 5, "second")]
    now = time.time() * 1000
    assert all(now - 60_000 < r.timestamp_ms <= now for r in records)
    offsets = [o for o, _ in seen]
    assert offsets == sorted(set(offsets)), offsets
    # Another library reading the same partition sees the same records at the same offsets.
    assert read_confluent(bootstrap, group, until=3) == seen


def test_confluent_group_commit_and_resume_from_a_middle_offset(bootstrap, topic):
    group = f"g-{uuid.uuid4().hex[:8]}"
    committer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                          "enable.auto.commit": False})
    try:
        for offset in (1, 2, 7):
            committer.commit(offsets=[CTopicPartition(topic, 1, offset)], asynchronous=False)
    finally:
        committer.close()
    seen = read_confluent(bootstrap, group, until=3)
    assert [(r.topic, r.partition, r.offset) for r in offsets_only(seen)] == [
        (topic, 1, 1), (topic, 1, 2), (topic, 1, 7)]
    # A consumer resuming at the second record's offset gets it and what follows.
    second = seen[1][0]
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"r-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False})
    consumer.assign([CTopicPartition(TOPIC, partition_for(group), second)])
    got: list[int] = []
    deadline = time.monotonic() + READ_TIMEOUT_S
    try:
        while time.monotonic() < deadline and len(got) < 2:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                got.append(msg.offset())
    finally:
        consumer.close()
    assert got[:2] == [seen[1][0], seen[2][0]]


def test_list_offsets_brackets_the_records(bootstrap, topic):
    group = f"g-{uuid.uuid4().hex[:8]}"
    committer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    committer.commit({TopicPartition(topic, 0): OffsetAndMetadata(2, "", -1)})
    committer.close()
    tp = TopicPartition(TOPIC, partition_for(group))
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        start = consumer.beginning_offsets([tp])[tp]
        end = consumer.end_offsets([tp])[tp]
    finally:
        consumer.close()
    [(offset, _)] = read_kafka_python(bootstrap, group, until=1)
    assert start <= offset < end


def test_deleted_group_leaves_tombstones(bootstrap, topic):
    group = f"g-{uuid.uuid4().hex[:8]}"
    committer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    committer.commit({TopicPartition(topic, 0): OffsetAndMetadata(6, "", -1),
                      TopicPartition(topic, 1): OffsetAndMetadata(8, "", -1)})
    committer.close()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        # The group is empty (its consumer left), so Kafka's DeleteGroups accepts it.
        # The tombstones below are what shows the deletion took effect.
        assert group in admin.delete_groups([group])
    finally:
        admin.close()
    records = offsets_only(read_kafka_python(bootstrap, group, until=4))
    assert sorted((r.partition, r.offset) for r in records[:2]) == [(0, 6), (1, 8)]
    assert sorted((r.partition, r.offset) for r in records[2:]) == [(0, None), (1, None)]


def test_rebalances_write_group_metadata_and_deletion_a_tombstone(bootstrap, topic):
    group = f"g-{uuid.uuid4().hex[:8]}"
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False, client_id="meta-client")
    try:
        deadline = time.monotonic() + READ_TIMEOUT_S
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(timeout_ms=200)
        assert consumer.assignment()
    finally:
        consumer.close()  # leaves: the group empties
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        assert group in admin.delete_groups([group])
    finally:
        admin.close()
    tombstone = (group, None)
    seen = [item for _, item in read_confluent(bootstrap, group, until=10, stop=tombstone)]
    assert [item for _, item in read_kafka_python(bootstrap, group, until=10, stop=tombstone)] == seen
    # One Stable record per generation (kafka-python may rebalance again once it has the
    # topic's metadata), then the Empty group after the leave, then the deletion.
    *stables, empty, deleted = seen
    assert deleted == tombstone
    metas = [item[1] for item in stables if isinstance(item, tuple)]
    assert metas and len(metas) == len(stables)
    generations = [m["generation"] for m in metas]
    assert generations == sorted(set(generations)) and generations[0] >= 1
    meta = metas[-1]
    assert meta["protocol_type"] == "consumer"
    [member] = meta["members"]
    assert meta["leader"] == member["member_id"] and member["client_id"] == "meta-client"
    assert member["client_host"] == "/127.0.0.1" and member["session_timeout"] > 0
    # The subscription and assignment are the client's own bytes: both name the topic.
    assert topic.encode() in member["subscription"] and topic.encode() in member["assignment"]
    assert isinstance(empty, tuple) and empty[1] is not None and empty[1]["members"] == []
    assert empty[1]["generation"] == meta["generation"] + 1


def test_produce_is_refused(bootstrap):
    # kafka-python refuses internal topics itself, so its request is made by hand here.
    client = WireClient(bootstrap)
    try:
        body = {"acks": -1, "timeout_ms": 5000, "topic_data": [{"name": TOPIC, "partition_data": [
            {"index": 0, "records": record_batch.build([b"x"])}]}]}
        answer = client.call(ApiKey.PRODUCE, 9, body)["responses"][0]["partition_responses"][0]
    finally:
        client.close()
    assert answer["error_code"] == ErrorCode.INVALID_TOPIC_EXCEPTION
    errors: list[object] = []
    confluent = Producer({"bootstrap.servers": bootstrap, "message.send.max.retries": 0})
    confluent.produce(TOPIC, b"x", partition=0, on_delivery=lambda err, _msg: errors.append(err))
    confluent.flush(20)
    assert len(errors) == 1 and errors[0] is not None
    assert errors[0].code() == ErrorCode.INVALID_TOPIC_EXCEPTION  # type: ignore[attr-defined]


def test_wire_fetch_beyond_the_tail_is_out_of_range(bootstrap):
    client = WireClient(bootstrap)
    try:
        listed = client.call(ApiKey.LIST_OFFSETS, 5, {"replica_id": -1, "isolation_level": 0, "topics": [
            {"name": TOPIC, "partitions": [{"partition_index": 0, "current_leader_epoch": -1,
                                            "timestamp": -1}]}]})
        end = listed["topics"][0]["partitions"][0]["offset"]
        body = client.call(ApiKey.FETCH, 11, {
            "replica_id": -1, "max_wait_ms": 0, "min_bytes": 1, "max_bytes": 1 << 20,
            "isolation_level": 0, "session_id": 0, "session_epoch": -1, "rack_id": "",
            "forgotten_topics_data": [], "topics": [{"topic": TOPIC, "partitions": [
                {"partition": 0, "current_leader_epoch": -1, "fetch_offset": end + (1 << 21),
                 "log_start_offset": -1, "partition_max_bytes": 1 << 20}]}]})
    finally:
        client.close()
    assert body["responses"][0]["partitions"][0]["error_code"] == ErrorCode.OFFSET_OUT_OF_RANGE


def _group(leader: int, coordinator: int) -> str:
    """A fresh group whose __consumer_offsets partition one gateway leads, coordinated by another."""
    while True:
        group = f"g-{uuid.uuid4().hex[:8]}"
        if partition_for(group) % 2 == leader and coordinator_index(group, 2) == coordinator:
            return group


def _wait_ready(addresses: list[str]) -> None:
    deadline = time.monotonic() + GATEWAY_READY_S
    while not all(gateway_ready(a) for a in addresses):
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_offsets_agree_across_gateways_and_a_restart(tmp_path):
    with running_cluster(tmp_path, storage="memory", gateways=2,
                         extra="group_initial_rebalance_delay_ms = 0") as cluster:
        addresses = [g.advertised for g in cluster.config.gateways]
        _wait_ready(addresses)
        bootstrap = ",".join(addresses)
        name = f"src-{uuid.uuid4().hex[:8]}"
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20_000)
        admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
        admin.close()
        # Each gateway coordinates (writes) one group's commits and leads (reads) the other's.
        groups = [_group(leader=0, coordinator=1), _group(leader=1, coordinator=0)]
        for i, group in enumerate(groups):
            committer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                      enable_auto_commit=False)
            committer.commit({TopicPartition(name, 0): OffsetAndMetadata(10 + i, "", -1)})
            committer.commit({TopicPartition(name, 0): OffsetAndMetadata(20 + i, "", -1)})
            committer.close()
        before = [read_confluent(bootstrap, g, until=2) for g in groups]
        assert [[r.offset for r in offsets_only(seen)] for seen in before] == [[10, 20], [11, 21]]
        gateway = cluster.config.gateways[1].name
        cluster.kill(gateway, signal.SIGKILL)
        cluster.start_process("gateway", gateway)
        _wait_ready(addresses)
        assert [read_kafka_python(bootstrap, g, until=2) for g in groups] == before
