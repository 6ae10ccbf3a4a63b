"""What a broker looks like to clients and tools: group listings, broker settings, version identity.

kafka-python and confluent-kafka's admin clients against the gateway (issue 15).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
from kafka import KafkaAdminClient, KafkaConsumer

from flexlog.gateway.protocol import ApiKey, ErrorCode
from wire_client import WireClient, running_gateway

# A consumer session a test setup uses, below Kafka's default minimum of 6 s.
SHORT_SESSION_MS = 3_000


@pytest.fixture(scope="module")
def lowered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway whose group.min.session.timeout.ms is lowered, as test brokers do."""
    extra = "group_min_session_timeout_ms = 1000\ngroup_initial_rebalance_delay_ms = 0"
    with running_gateway(tmp_path_factory.mktemp("lowered"), extra) as address:
        yield address


def assigned_consumer(bootstrap: str, topic: str, group: str, **conf: object) -> KafkaConsumer:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False, **conf)
    deadline = time.monotonic() + 30
    while not consumer.assignment():
        assert time.monotonic() < deadline, "the consumer never got an assignment"
        consumer.poll(timeout_ms=200)
    return consumer


def test_a_group_that_became_empty_keeps_its_protocol_type(bootstrap, topic):
    """Tools that keep only groups of type "consumer" still find a group all members left."""
    group = f"g-{uuid.uuid4().hex[:10]}"
    consumer = assigned_consumer(bootstrap, topic, group)
    consumer.close()  # leaves the group; it never committed, so only membership made it a consumer group
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        listed = {g["group_id"]: g for g in admin.list_groups()}
        assert listed[group]["protocol_type"] == "consumer"
        assert listed[group]["group_state"] == "Empty"
        described = admin.describe_groups([group])[group]
        assert described["group_state"] == "Empty"
        assert described["protocol_type"] == "consumer"
        assert described["members"] == []
    finally:
        admin.close()


def join_error(address: str, session_ms: int) -> ErrorCode:
    client = WireClient(address)
    try:
        body = client.call(ApiKey.JOIN_GROUP, 5, {
            "group_id": f"g-{uuid.uuid4().hex[:10]}", "session_timeout_ms": session_ms,
            "rebalance_timeout_ms": 10_000, "member_id": "", "group_instance_id": None,
            "protocol_type": "consumer", "protocols": [{"name": "range", "metadata": b""}]})
        return ErrorCode(body["error_code"])
    finally:
        client.close()


def test_the_session_timeout_minimum_is_a_broker_setting(bootstrap, lowered, topic):
    assert join_error(bootstrap, SHORT_SESSION_MS) == ErrorCode.INVALID_SESSION_TIMEOUT
    assert join_error(lowered, SHORT_SESSION_MS) == ErrorCode.MEMBER_ID_REQUIRED
    consumer = assigned_consumer(lowered, topic, f"g-{uuid.uuid4().hex[:10]}",
                                 session_timeout_ms=SHORT_SESSION_MS, heartbeat_interval_ms=1_000)
    consumer.close()


def broker_configs(address: str) -> dict[str, str | None]:
    admin = AdminClient({"bootstrap.servers": address})
    resource = ConfigResource(ResourceType.BROKER, "0")
    entries = admin.describe_configs([resource])[resource].result(10)
    return {name: entry.value for name, entry in entries.items()}


def test_describe_configs_reports_the_broker_keys_tools_expect(lowered):
    configs = broker_configs(lowered)
    assert configs["group.min.session.timeout.ms"] == "1000"
    assert configs["group.max.session.timeout.ms"] == "1800000"
    assert configs["group.initial.rebalance.delay.ms"] == "0"
    assert configs["advertised.listeners"] == f"PLAINTEXT://{lowered}"
    assert configs["listeners"] == f"PLAINTEXT://{lowered}"
    assert configs["broker.id"] == configs["node.id"] == "0"
    assert configs["offsets.retention.minutes"] == "10080"
    assert configs["log.retention.ms"] == str(7 * 24 * 3600 * 1000)
    assert configs["num.partitions"] == "1"
    # Every append is written to all three replicas of a shard before it is acknowledged.
    assert configs["default.replication.factor"] == configs["min.insync.replicas"] == "3"
    assert configs["auto.create.topics.enable"] == "true"
    assert configs["message.max.bytes"] == str(16 << 20)
    for key in ("log.retention.check.interval.ms", "log.retention.bytes", "log.cleanup.policy",
                "listener.security.protocol.map", "offsets.topic.replication.factor",
                "delete.topic.enable", "compression.type", "log.message.timestamp.type"):
        assert configs.get(key), key


def test_kafka_python_infers_kafka_3_9(bootstrap):
    from kafka.net.compat import KafkaNetClient

    client = KafkaNetClient(bootstrap_servers=bootstrap)
    try:
        assert client.check_version() == (3, 9)
    finally:
        client.close()
