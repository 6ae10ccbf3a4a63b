"""DescribeLogDirs, AlterReplicaLogDirs, ElectLeaders and the reassignment APIs over real sockets,
through kafka-python's and confluent-kafka's admin clients and the raw wire client, against a
cluster on the PM engine (so every replica has a pool, a DRAM cache and an SSD tier)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import ElectionType, KafkaError
from confluent_kafka import TopicPartition as CTopicPartition
from confluent_kafka.admin import AdminClient
from kafka import KafkaAdminClient, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import InvalidRequestError, LogDirNotFoundError, UnknownTopicOrPartitionError

from flexlog.gateway.protocol import ApiKey, ErrorCode
from wire_client import GATEWAY_READY_S, WireClient, gateway_ready, running_cluster

REPLICAS = 3
TIERS = ("pm", "cache", "ssd")


def tier_of(path: str) -> str:
    """Which tier a log dir is, from the path it is named by (docs/gateway.md)."""
    if path.startswith("dram:"):
        return "cache"
    return "pm" if path.endswith("/pm.pool") else "ssd" if path.endswith("/ssd") else path


@pytest.fixture(scope="module")
def bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("cluster")
    # Small pools: three of them go on the test machine's disk.
    extra = "pool_size_bytes = 16777216\ncache_bytes = 1048576"
    with running_cluster(tmp, storage="pm", gateways=1, replicas=REPLICAS, extra=extra) as cluster:
        address = cluster.config.gateways[0].advertised
        deadline = time.monotonic() + GATEWAY_READY_S
        while not gateway_ready(address):
            assert time.monotonic() < deadline, cluster.logs()
            time.sleep(0.1)
        yield address


@pytest.fixture(scope="module")
def admin(bootstrap: str) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20_000)
    yield client
    client.close()


@pytest.fixture(scope="module")
def topic(bootstrap: str, admin: KafkaAdminClient) -> str:
    """Two partitions; 20 records of 1 KiB in partition 0, none in 1."""
    name = f"dirs-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    for _ in range(20):
        producer.send(name, b"v" * 1024, partition=0).get(timeout=20)
    producer.close()
    return name


def dirs_by_path(results: list) -> dict[str, dict]:
    return {d["log_dir"]: d for d in results}


def test_describe_log_dirs_shows_each_replicas_tiers_and_sizes(admin, topic):
    [broker] = admin.describe_log_dirs()
    assert broker["broker"] == 0
    dirs = dirs_by_path(broker["log_dirs"])
    assert len(dirs) == REPLICAS * len(TIERS)
    assert sorted(map(tier_of, dirs)) == sorted(TIERS * REPLICAS), sorted(dirs)
    pm_sizes = []
    for path, d in dirs.items():
        assert d["error_code"] == ErrorCode.NONE
        assert d["total_bytes"] > 0 and 0 <= d["usable_bytes"] <= d["total_bytes"]
        sizes = {(t["name"], p["partition_index"]): p["partition_size"]
                 for t in d["topics"] for p in t["partitions"] if t["name"] == topic}
        if tier_of(path) == "pm":
            # Every partition is in its replica's primary tier, the empty one too.
            assert sizes[(topic, 1)] == 0
            pm_sizes.append(sizes[(topic, 0)])
            assert all(p["offset_lag"] == 0 and not p["is_future_key"]
                       for t in d["topics"] for p in t["partitions"])
    # 20 batches of one 1 KiB record each, written to all replicas.
    assert len(pm_sizes) == REPLICAS and len(set(pm_sizes)) == 1 and pm_sizes[0] > 20 * 1024


def test_describe_log_dirs_over_the_wire_lists_only_what_is_asked(bootstrap, topic):
    client = WireClient(bootstrap)
    try:
        for version in (0, 4):
            body = client.call(ApiKey.DESCRIBE_LOG_DIRS, version, {"topics": [
                {"topic": topic, "partitions": [1, 7]}, {"topic": "no-such-topic", "partitions": [0]}]})
            assert body.get("error_code", 0) == ErrorCode.NONE
            listed = {(t["name"], p["partition_index"]) for d in body["results"]
                      for t in d["topics"] for p in t["partitions"]}
            assert listed == {(topic, 1)}
            assert len(body["results"]) == REPLICAS * len(TIERS)
    finally:
        client.close()


def test_alter_replica_log_dirs_refuses_every_move(bootstrap, admin, topic):
    [broker] = admin.describe_log_dirs()
    ssd = next(d["log_dir"] for d in broker["log_dirs"] if tier_of(d["log_dir"]) == "ssd")
    answer = admin.alter_replica_log_dirs({(topic, 0, 0): ssd, (topic, 1, 0): "/nowhere/kafka-logs"})
    assert answer[(topic, 0, 0)] is InvalidRequestError
    assert answer[(topic, 1, 0)] is LogDirNotFoundError
    client = WireClient(bootstrap)
    try:
        for version in (0, 2):
            body = client.call(ApiKey.ALTER_REPLICA_LOG_DIRS, version, {"dirs": [
                {"path": ssd, "topics": [{"name": topic, "partitions": [0, 9]}]}]})
            [result] = body["results"]
            assert [(p["partition_index"], p["error_code"]) for p in result["partitions"]] == [
                (0, ErrorCode.INVALID_REQUEST), (9, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)]
    finally:
        client.close()


def test_elect_leaders_is_never_needed(bootstrap, admin, topic):
    # kafka-python raises on any error but ELECTION_NOT_NEEDED.
    response = admin.elect_leaders(0, {topic: [0, 1]})
    codes = [p.error_code for r in response.replica_election_results for p in r.partition_result]
    assert codes == [ErrorCode.ELECTION_NOT_NEEDED] * 2
    with pytest.raises(UnknownTopicOrPartitionError):
        admin.elect_leaders(1, {topic: [5]})

    confluent = AdminClient({"bootstrap.servers": bootstrap})
    for election in (ElectionType.PREFERRED, ElectionType.UNCLEAN):
        result = confluent.elect_leaders(election, [CTopicPartition(topic, 0)]).result(timeout=20)
        [error] = result.values()
        assert error.code() == KafkaError.ELECTION_NOT_NEEDED
    assert confluent.elect_leaders(ElectionType.PREFERRED, None).result(timeout=20) == {}

    client = WireClient(bootstrap)
    try:
        body = client.call(ApiKey.ELECT_LEADERS, 2, {"election_type": 7, "topic_partitions": [
            {"topic": topic, "partitions": [0]}], "timeout_ms": 1000})
        assert body["error_code"] == ErrorCode.INVALID_REQUEST
        body = client.call(ApiKey.ELECT_LEADERS, 0, {"topic_partitions": None, "timeout_ms": 1000})
        assert all(r["partition_result"] == [] for r in body["replica_election_results"])
        assert topic in {r["topic"] for r in body["replica_election_results"]}
    finally:
        client.close()


def test_reassignments_are_refused_with_a_reason_and_none_is_listed(bootstrap, admin, topic):
    assert admin.list_partition_reassignments() == {}
    answer = admin.alter_partition_reassignments({TopicPartition(topic, 0): [0, 1],
                                                  TopicPartition(topic, 1): [0]})
    assert answer[TopicPartition(topic, 0)].errno == ErrorCode.INVALID_REPLICA_ASSIGNMENT
    assert answer[TopicPartition(topic, 1)] is None  # already its replica set
    client = WireClient(bootstrap)
    try:
        body = client.call(ApiKey.ALTER_PARTITION_REASSIGNMENTS, 0, {"timeout_ms": 1000, "topics": [
            {"name": topic, "partitions": [{"partition_index": 0, "replicas": [1]},
                                           {"partition_index": 1, "replicas": None},
                                           {"partition_index": 4, "replicas": [0]}]}]})
        assert body["error_code"] == ErrorCode.NONE
        moved, cancelled, unknown = body["responses"][0]["partitions"]
        assert moved["error_code"] == ErrorCode.INVALID_REPLICA_ASSIGNMENT
        assert f"kafka/{topic}/0" in moved["error_message"] and "not safe" in moved["error_message"]
        assert cancelled["error_code"] == ErrorCode.NO_REASSIGNMENT_IN_PROGRESS
        assert unknown["error_code"] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        body = client.call(ApiKey.LIST_PARTITION_REASSIGNMENTS, 0, {
            "timeout_ms": 1000, "topics": [{"name": topic, "partition_indexes": [0]}]})
        assert (body["error_code"], body["topics"]) == (ErrorCode.NONE, [])
    finally:
        client.close()


def test_stores_are_reported_from_the_replicas_paths(bootstrap, topic):
    client = WireClient(bootstrap)
    try:
        body = client.call(ApiKey.DESCRIBE_LOG_DIRS, 4, {"topics": []})
        paths = [d["log_dir"] for d in body["results"]]
        assert all(Path(p.removeprefix("dram:")).is_absolute() for p in paths)
        assert all(d["topics"] == [] for d in body["results"])
    finally:
        client.close()
