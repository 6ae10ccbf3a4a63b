"""What a broker looks like to clients and tools: group listings, broker settings, version identity.

kafka-python and confluent-kafka's admin clients against the gateway (issue 15).
"""

from __future__ import annotations

import time
import uuid

from kafka import KafkaAdminClient, KafkaConsumer


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

