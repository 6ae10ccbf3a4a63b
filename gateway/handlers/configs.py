"""Configs: DescribeConfigs (32) and IncrementalAlterConfigs (44).

Topic configs that FlexLog enforces are settable (retention.ms and
retention.bytes by the retention task, max.message.bytes by Produce,
cleanup.policy=delete); a few more are shown read-only so tools find the keys
they expect. Broker resources describe the gateway's settings, read-only: the
keys every Kafka broker reports, with the values FlexLog acts on.
"""

from __future__ import annotations

from flexlog.core.errors import FlexLogError
from flexlog.gateway import authz, offsets_topic
from flexlog.gateway.authz import Operation
from flexlog.gateway.broker import Broker
from flexlog.gateway.handlers.errors import kafka_error
from flexlog.gateway.handlers.registry import Body, serves
from flexlog.gateway.protocol import ApiKey, ErrorCode, Request
from flexlog.gateway.topics import (
    CLEANUP_POLICY,
    ORDERING,
    READ_ONLY_TOPIC_CONFIGS,
    RETENTION_BYTES,
    RETENTION_MS,
    Topic,
    check_config,
)

TOPIC = 2
BROKER = 4

SOURCE_TOPIC = 1
SOURCE_STATIC_BROKER = 4
SOURCE_DEFAULT = 5

TYPE_BOOLEAN = 1
TYPE_STRING = 2
TYPE_INT = 3
TYPE_SHORT = 4
TYPE_LONG = 5
TYPE_LIST = 7

OP_SET = 0
OP_DELETE = 1

_TYPES = {"retention.ms": TYPE_LONG, "retention.bytes": TYPE_LONG, "max.message.bytes": TYPE_INT,
          CLEANUP_POLICY: TYPE_LIST, "segment.bytes": TYPE_INT, "num.partitions": TYPE_INT,
          "auto.create.topics.enable": TYPE_BOOLEAN, "message.max.bytes": TYPE_INT,
          "broker.id": TYPE_INT, "node.id": TYPE_INT, "default.replication.factor": TYPE_INT,
          "min.insync.replicas": TYPE_INT, "offsets.topic.replication.factor": TYPE_SHORT,
          "offsets.topic.num.partitions": TYPE_INT,
          "log.retention.ms": TYPE_LONG, "log.retention.bytes": TYPE_LONG,
          "log.retention.check.interval.ms": TYPE_LONG, "log.cleanup.policy": TYPE_LIST,
          "delete.topic.enable": TYPE_BOOLEAN, "group.min.session.timeout.ms": TYPE_INT,
          "group.max.session.timeout.ms": TYPE_INT, "group.initial.rebalance.delay.ms": TYPE_INT,
          "offsets.retention.minutes": TYPE_INT, "sasl.enabled.mechanisms": TYPE_LIST}


def _entry(name: str, value: str, source: int, read_only: bool) -> Body:
    return {"name": name, "value": value, "read_only": read_only,
            "is_default": source == SOURCE_DEFAULT, "config_source": source, "is_sensitive": False,
            "synonyms": [], "config_type": _TYPES.get(name, TYPE_STRING), "documentation": None}


def topic_entries(broker: Broker, topic: Topic) -> list[Body]:
    entries = [_entry(k, topic.configs.get(k, default),
                      SOURCE_TOPIC if k in topic.configs else SOURCE_DEFAULT, False)
               for k, default in broker.topics.defaults.items()]
    entries += [_entry(k, v, SOURCE_DEFAULT, True) for k, v in READ_ONLY_TOPIC_CONFIGS.items()]
    return entries


def broker_entries(broker: Broker) -> list[Body]:
    """The keys every Kafka broker reports and tools read, each with the value FlexLog acts on."""
    cfg = broker.config
    me = broker.me
    defaults = broker.topics.defaults
    # Every append is written to all replicas of its shard before it is acknowledged, so a
    # shard's replica count is both the replication factor and the in-sync minimum.
    replicas = str(min(len(s.replicas) for s in cfg.shards))
    # __consumer_offsets is a system color, kept on the first shard of the root's region.
    offsets_replicas = str(len(cfg.shard(cfg.region(cfg.root)[0]).replicas))
    values = {
        "broker.id": str(me.node_id),
        "node.id": str(me.node_id),
        "listeners": ",".join(f"{lis.name}://{lis.address}" for lis in me.listeners),
        "advertised.listeners": ",".join(f"{lis.name}://{lis.advertised}" for lis in me.listeners),
        "listener.security.protocol.map": ",".join(f"{lis.name}:{lis.protocol}" for lis in me.listeners),
        "sasl.enabled.mechanisms": ",".join(cfg.security.sasl_mechanisms),
        "num.partitions": str(cfg.default_partitions),
        "default.replication.factor": replicas,
        "min.insync.replicas": replicas,
        "offsets.topic.replication.factor": offsets_replicas,
        "offsets.topic.num.partitions": str(offsets_topic.PARTITIONS),
        "auto.create.topics.enable": str(cfg.auto_create_topics).lower(),
        "delete.topic.enable": "true",
        "message.max.bytes": str(cfg.max_entry_bytes),
        "log.retention.ms": defaults[RETENTION_MS],
        "log.retention.bytes": defaults[RETENTION_BYTES],
        "log.retention.check.interval.ms": str(cfg.log_retention_check_interval_ms),
        "log.cleanup.policy": defaults[CLEANUP_POLICY],
        # Batches are stored as the producer sent them, with the producer's timestamps.
        "compression.type": "producer",
        "log.message.timestamp.type": "CreateTime",
        "group.min.session.timeout.ms": str(cfg.group_min_session_timeout_ms),
        "group.max.session.timeout.ms": str(cfg.group_max_session_timeout_ms),
        "group.initial.rebalance.delay.ms": str(cfg.group_initial_rebalance_delay_ms),
        "offsets.retention.minutes": str(cfg.offsets_retention_minutes),
    }
    return [_entry(k, v, SOURCE_STATIC_BROKER, True) for k, v in values.items()]


def _is_broker(broker: Broker, name: str) -> bool:
    return name == "" or name in {str(b.node_id) for b in broker.brokers}


def _config_allowed(broker: Broker, operation: Operation, kind: int, name: str) -> bool:
    if kind == TOPIC:
        return authz.topic_allowed(broker, operation, name)
    return authz.cluster_allowed(broker, operation)


def _refusal(kind: int) -> ErrorCode:
    return ErrorCode.TOPIC_AUTHORIZATION_FAILED if kind == TOPIC else ErrorCode.CLUSTER_AUTHORIZATION_FAILED


@serves(ApiKey.DESCRIBE_CONFIGS, 0, 4)
async def handle_describe_configs(broker: Broker, request: Request) -> Body:
    results = []
    for res in request.body["resources"]:
        kind, name, keys = res["resource_type"], res["resource_name"], res["configuration_keys"]
        result: Body = {"error_code": ErrorCode.NONE, "error_message": None, "resource_type": kind,
                        "resource_name": name, "configs": []}
        entries: list[Body] = []
        if not _config_allowed(broker, Operation.DESCRIBE_CONFIGS, kind, name):
            result.update(error_code=_refusal(kind), error_message="not allowed to describe its configs")
        elif kind == TOPIC:
            topic = await broker.topics.lookup(name)
            if topic is None:
                result.update(error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                              error_message=f"topic {name!r} does not exist")
            else:
                entries = topic_entries(broker, topic)
        elif kind == BROKER and _is_broker(broker, name):
            entries = broker_entries(broker)
        else:
            result.update(error_code=ErrorCode.INVALID_REQUEST,
                          error_message=f"no resource of type {kind} named {name!r}")
        if keys is not None:
            entries = [e for e in entries if e["name"] in keys]
        result["configs"] = entries
        results.append(result)
    return {"throttle_time_ms": 0, "results": results}


def _changes(broker: Broker, topic: Topic,
             configs: list[Body]) -> tuple[dict[str, str], list[str]]:
    """(to set, to delete) from one resource's alterations; ValueError names a bad one."""
    set_: dict[str, str] = {}
    delete: list[str] = []
    for c in configs:
        name, op, value = c["name"], c["config_operation"], c["value"]
        if name == ORDERING and op in (OP_SET, OP_DELETE):
            current = topic.config(ORDERING, broker.topics.defaults)
            wanted = value if op == OP_SET else broker.topics.defaults[ORDERING]
            if wanted != current:
                # Offsets already handed out come from the scope's counter; a new scope
                # would restart them, so the scope is fixed at creation.
                raise ValueError(f"{ORDERING}: the ordering of an existing topic cannot change "
                                 f"(topic {topic.name!r} is ordered by {current!r})")
        if op == OP_SET:
            problem = check_config(name, value, broker.config)
            if problem:
                raise ValueError(problem)
            set_[name] = value
        elif op == OP_DELETE:
            if name not in broker.topics.defaults:
                raise ValueError(f"unsupported topic config {name!r}")
            delete.append(name)
        else:
            raise ValueError(f"{name}: only SET and DELETE are supported (operation {op})")
    return set_, delete


@serves(ApiKey.INCREMENTAL_ALTER_CONFIGS, 0, 1)
async def handle_incremental_alter_configs(broker: Broker, request: Request) -> Body:
    responses = []
    for res in request.body["resources"]:
        kind, name = res["resource_type"], res["resource_name"]
        result: Body = {"error_code": ErrorCode.NONE, "error_message": None, "resource_type": kind,
                        "resource_name": name}
        responses.append(result)
        if not _config_allowed(broker, Operation.ALTER_CONFIGS, kind, name):
            result.update(error_code=_refusal(kind), error_message="not allowed to alter its configs")
            continue
        if kind == BROKER:
            result.update(error_code=ErrorCode.INVALID_CONFIG,
                          error_message="broker configs come from the cluster file and are read-only")
            continue
        if kind != TOPIC:
            result.update(error_code=ErrorCode.INVALID_REQUEST,
                          error_message=f"resource type {kind} is not supported")
            continue
        topic = await broker.topics.lookup(name)
        if topic is None:
            result.update(error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                          error_message=f"topic {name!r} does not exist")
            continue
        try:
            set_, delete = _changes(broker, topic, res["configs"])
        except ValueError as exc:
            result.update(error_code=ErrorCode.INVALID_CONFIG, error_message=str(exc))
            continue
        if request.body["validate_only"]:
            continue
        try:
            await broker.topics.alter_configs(topic, set_, delete)
        except FlexLogError as exc:
            result.update(error_code=kafka_error(exc), error_message=str(exc))
    return {"throttle_time_ms": 0, "responses": responses}
