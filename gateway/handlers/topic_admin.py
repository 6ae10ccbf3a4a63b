"""Topic administration: CreateTopics (19), DeleteTopics (20), CreatePartitions (37).

A topic's partitions are colors created through the registry; the topic itself
is an event in ``__topics``. Replicas are FlexLog's business (write-all to every
replica of the shard), so a replication factor is accepted only when it asks
for no more than a shard provides.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from flexlog.core.errors import FlexLogError
from flexlog.gateway import authz, offsets_topic
from flexlog.gateway.authz import Operation
from flexlog.gateway.broker import Broker
from flexlog.gateway.handlers.errors import kafka_error
from flexlog.gateway.handlers.registry import Body, serves
from flexlog.gateway.protocol import ApiKey, ErrorCode, Request
from flexlog.gateway.topics import MAX_PARTITIONS, TopicError, check_config, invalid_topic_name

CONFIG_SOURCE_TOPIC = 1
CONFIG_SOURCE_DEFAULT = 5
NO_TOPIC_ID = bytes(16)


def replication_factor(broker: Broker) -> int:
    return min(len(s.replicas) for s in broker.config.shards)


class _Invalid(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _check_create(broker: Broker, item: Body) -> tuple[int, dict[str, str]]:
    """(partitions, configs) of a CreateTopics entry, or _Invalid."""
    name = item["name"]
    problem = invalid_topic_name(name)
    if problem:
        raise _Invalid(ErrorCode.INVALID_TOPIC_EXCEPTION, problem)
    partitions = item["num_partitions"]
    if item["assignments"]:
        if partitions != -1:
            raise _Invalid(ErrorCode.INVALID_REQUEST, "give either num_partitions or assignments")
        partitions = len(item["assignments"])
    elif partitions == -1:
        partitions = broker.config.default_partitions
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise _Invalid(ErrorCode.INVALID_PARTITIONS,
                       f"number of partitions must be in 1..{MAX_PARTITIONS}, got {partitions}")
    factor = item["replication_factor"]
    if factor != -1 and not 1 <= factor <= replication_factor(broker):
        raise _Invalid(ErrorCode.INVALID_REPLICATION_FACTOR,
                       f"replication factor must be -1 or 1..{replication_factor(broker)} "
                       "(every FlexLog shard writes to all its replicas)")
    configs: dict[str, str] = {}
    for entry in item["configs"]:
        problem = check_config(entry["name"], entry["value"], broker.config)
        if problem:
            raise _Invalid(ErrorCode.INVALID_CONFIG, problem)
        configs[entry["name"]] = entry["value"]
    return partitions, configs


@contextmanager
def _failure_into(result: Body) -> Iterator[None]:
    """One topic's failure becomes its own entry's error; the request's other topics go on."""
    try:
        yield
    except _Invalid as exc:
        result.update(error_code=exc.code, error_message=str(exc))
    except TopicError as exc:
        result.update(error_code=ErrorCode.TOPIC_ALREADY_EXISTS, error_message=str(exc))
    except FlexLogError as exc:
        result.update(error_code=kafka_error(exc), error_message=str(exc))


def _configs_body(broker: Broker, configs: dict[str, str]) -> list[Body]:
    merged = {**broker.topics.defaults, **configs}
    return [{"name": k, "value": v, "read_only": False, "is_sensitive": False,
             "config_source": CONFIG_SOURCE_TOPIC if k in configs else CONFIG_SOURCE_DEFAULT}
            for k, v in sorted(merged.items())]


@serves(ApiKey.CREATE_TOPICS, 0, 7)
async def handle_create_topics(broker: Broker, request: Request) -> Body:
    body = request.body
    validate_only = body.get("validate_only", False)
    counts = Counter(t["name"] for t in body["topics"])
    results = []
    for item in body["topics"]:
        name = item["name"]
        result: Body = {"name": name, "topic_id": NO_TOPIC_ID, "error_code": ErrorCode.NONE,
                        "error_message": None, "configs": None}
        with _failure_into(result):
            if counts[name] > 1:
                raise _Invalid(ErrorCode.INVALID_REQUEST, f"topic {name!r} appears twice")
            if not (authz.cluster_allowed(broker, Operation.CREATE)
                    or authz.topic_allowed(broker, Operation.CREATE, name)):
                raise _Invalid(ErrorCode.TOPIC_AUTHORIZATION_FAILED, f"not authorized to create {name!r}")
            partitions, configs = _check_create(broker, item)
            await broker.topics.sync()
            clash = broker.topics.ordering_clash(name, configs)
            if clash:
                raise _Invalid(ErrorCode.INVALID_CONFIG, clash)
            # The derived __consumer_offsets exists on every gateway, as Kafka's does.
            if name == offsets_topic.TOPIC or await broker.topics.lookup(name) is not None:
                raise _Invalid(ErrorCode.TOPIC_ALREADY_EXISTS, f"topic {name!r} already exists")
            if not validate_only:
                topic = await broker.topics.create(name, partitions, configs)
                result["topic_id"] = topic.topic_id
            result.update(num_partitions=partitions, replication_factor=replication_factor(broker),
                          configs=_configs_body(broker, configs))
        results.append(result)
    return {"throttle_time_ms": 0, "topics": results}


@serves(ApiKey.DELETE_TOPICS, 0, 6)
async def handle_delete_topics(broker: Broker, request: Request) -> Body:
    body = request.body
    if request.api_version >= 6:
        wanted = [(t["name"], t["topic_id"]) for t in body["topics"]]
    else:
        wanted = [(name, NO_TOPIC_ID) for name in body["topic_names"]]
    await broker.topics.sync()
    responses = []
    for name, topic_id in wanted:
        topic = broker.topics.get(name) if name is not None else broker.topics.by_id(topic_id)
        result: Body = {"name": name, "topic_id": topic_id, "error_code": ErrorCode.NONE,
                        "error_message": None}
        with _failure_into(result):
            if name is not None and not authz.topic_allowed(broker, Operation.DELETE, name):
                raise _Invalid(ErrorCode.TOPIC_AUTHORIZATION_FAILED, "not authorized")
            if topic is None or (topic_id != NO_TOPIC_ID and topic.topic_id != topic_id):
                raise _Invalid(ErrorCode.UNKNOWN_TOPIC_ID if name is None
                               else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "no such topic")
            result.update(name=topic.name, topic_id=topic.topic_id)
            await broker.topics.delete(topic)
        responses.append(result)
    return {"throttle_time_ms": 0, "responses": responses}


@serves(ApiKey.CREATE_PARTITIONS, 0, 3)
async def handle_create_partitions(broker: Broker, request: Request) -> Body:
    body = request.body
    results = []
    for item in body["topics"]:
        name, count = item["name"], item["count"]
        result: Body = {"name": name, "error_code": ErrorCode.NONE, "error_message": None}
        with _failure_into(result):
            topic = await broker.topics.lookup(name)
            if not authz.topic_allowed(broker, Operation.ALTER, name):
                raise _Invalid(ErrorCode.TOPIC_AUTHORIZATION_FAILED,
                               f"not allowed to alter topic {name!r}")
            if topic is None:
                raise _Invalid(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                               f"topic {name!r} does not exist")
            if not topic.partitions < count <= MAX_PARTITIONS:
                raise _Invalid(ErrorCode.INVALID_PARTITIONS,
                               f"topic {name!r} has {topic.partitions} partitions; the new count "
                               f"{count} must be larger (partitions are only ever added)")
            if not body["validate_only"]:
                await broker.topics.add_partitions(topic, count)
        results.append(result)
    return {"throttle_time_ms": 0, "results": results}
