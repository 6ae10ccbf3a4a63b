"""Metadata (3) and DescribeCluster (60): the gateways as brokers, topics and their leaders.

Partition p is led by gateway p mod (number of gateways): only that gateway
takes its Produce, Fetch and ListOffsets (others answer NOT_LEADER_OR_FOLLOWER),
so one gateway sees every sequence number of an idempotent producer there. Metadata creates
missing topics when the config and the request allow it, synchronously, so the
answer already lists the new partitions.
"""

from __future__ import annotations

from flexlog.core.errors import FlexLogError
from flexlog.gateway import authz, offsets_topic
from flexlog.gateway.authz import Operation
from flexlog.gateway.broker import CLUSTER_ID, Broker
from flexlog.gateway.handlers.registry import Body, serves
from flexlog.gateway.protocol import ApiKey, ErrorCode, Request
from flexlog.gateway.topics import Topic, TopicError, invalid_topic_name

LEADER_EPOCH = 0  # leadership never moves, so every partition stays in epoch 0
NO_TOPIC_ID = bytes(16)
# Listed like Kafka's internal topic, read-only, for tools that read commits from it.
OFFSETS_TOPIC = Topic(offsets_topic.TOPIC, offsets_topic.TOPIC_ID, offsets_topic.PARTITIONS)


def topic_body(broker: Broker, topic: Topic) -> Body:
    partitions = []
    for p in range(topic.partitions):
        leader = broker.leader(p)
        partitions.append({"error_code": ErrorCode.NONE, "partition_index": p, "leader_id": leader,
                           "leader_epoch": LEADER_EPOCH, "replica_nodes": [leader],
                           "isr_nodes": [leader], "offline_replicas": []})
    return {"error_code": ErrorCode.NONE, "name": topic.name, "topic_id": topic.topic_id,
            "is_internal": topic is OFFSETS_TOPIC, "partitions": partitions}


def _error_topic(name: str | None, code: ErrorCode, topic_id: bytes = NO_TOPIC_ID) -> Body:
    return {"error_code": code, "name": name, "topic_id": topic_id, "is_internal": False,
            "partitions": []}


async def _requested_topic(broker: Broker, name: str, auto_create: bool) -> Body:
    if not authz.topic_allowed(broker, Operation.DESCRIBE, name):
        return _error_topic(name, ErrorCode.TOPIC_AUTHORIZATION_FAILED)
    topic = OFFSETS_TOPIC if name == OFFSETS_TOPIC.name else await broker.topics.lookup(name)
    if topic is not None:
        return topic_body(broker, topic)
    if invalid_topic_name(name):
        return _error_topic(name, ErrorCode.INVALID_TOPIC_EXCEPTION)
    if auto_create and not (authz.cluster_allowed(broker, Operation.CREATE)
                            or authz.topic_allowed(broker, Operation.CREATE, name)):
        return _error_topic(name, ErrorCode.TOPIC_AUTHORIZATION_FAILED)
    if not auto_create:
        return _error_topic(name, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    try:
        topic = await broker.topics.ensure(name, broker.config.default_partitions)
    except (TopicError, FlexLogError):
        # Retriable: the client asks again and finds the topic or creates it then.
        return _error_topic(name, ErrorCode.LEADER_NOT_AVAILABLE)
    return topic_body(broker, topic)


def brokers_body(broker: Broker) -> list[Body]:
    return [{"node_id": b.node_id, "host": b.host, "port": b.port, "rack": None}
            for b in broker.brokers]


@serves(ApiKey.METADATA, 0, 12)
async def handle_metadata(broker: Broker, request: Request) -> Body:
    body = request.body
    version = request.api_version
    wanted = body["topics"]
    # A fresh view, so a topic just created through another gateway is listed.
    await broker.topics.sync()
    if wanted is None or (version == 0 and not wanted):
        # As Kafka: a listing shows only the topics the principal may describe.
        topics = [topic_body(broker, t) for t in [*broker.topics.all(), OFFSETS_TOPIC]
                  if authz.topic_allowed(broker, Operation.DESCRIBE, t.name)]
    else:
        auto_create = broker.config.auto_create_topics and (
            version < 4 or bool(body.get("allow_auto_topic_creation", True)))
        topics = []
        for item in wanted:
            name = item.get("name")
            if name is None:
                wanted_id = item.get("topic_id", NO_TOPIC_ID)
                found = OFFSETS_TOPIC if wanted_id == OFFSETS_TOPIC.topic_id else \
                    broker.topics.by_id(wanted_id)
                topics.append(topic_body(broker, found) if found else
                              _error_topic(None, ErrorCode.UNKNOWN_TOPIC_ID, item.get("topic_id")))
                continue
            topics.append(await _requested_topic(broker, name, auto_create))
    return {"throttle_time_ms": 0, "brokers": brokers_body(broker), "cluster_id": CLUSTER_ID,
            "controller_id": broker.controller_id, "topics": topics}


@serves(ApiKey.DESCRIBE_CLUSTER, 0, 1)
async def handle_describe_cluster(broker: Broker, request: Request) -> Body:
    brokers = [{"broker_id": b.node_id, "host": b.host, "port": b.port, "rack": None}
               for b in broker.brokers]
    return {"throttle_time_ms": 0, "error_code": ErrorCode.NONE, "error_message": None,
            "endpoint_type": request.body.get("endpoint_type", 1), "cluster_id": CLUSTER_ID,
            "controller_id": broker.controller_id, "brokers": brokers}
