"""Configs: DescribeConfigs (32) and IncrementalAlterConfigs (44).

Topic configs that FlexLog enforces are settable (retention.ms and
retention.bytes by the retention task, max.message.bytes by Produce,
cleanup.policy=delete); a few more are shown read-only so tools find the keys
they expect. Broker resources describe the gateway's settings, read-only.
"""

from __future__ import annotations

from flexlog.core.errors import FlexLogError
from flexlog.gateway import authz
from flexlog.gateway.authz import Operation
from flexlog.gateway.broker import Broker
from flexlog.gateway.handlers.errors import kafka_error
from flexlog.gateway.handlers.registry import Body, serves
from flexlog.gateway.protocol import ApiKey, ErrorCode, Request
from flexlog.gateway.topics import (
    CLEANUP_POLICY,
    READ_ONLY_TOPIC_CONFIGS,
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
TYPE_LONG = 5
TYPE_LIST = 7

OP_SET = 0
OP_DELETE = 1

_TYPES = {"retention.ms": TYPE_LONG, "retention.bytes": TYPE_LONG, "max.message.bytes": TYPE_INT,
          CLEANUP_POLICY: TYPE_LIST, "segment.bytes": TYPE_INT, "num.partitions": TYPE_INT,
          "auto.create.topics.enable": TYPE_BOOLEAN, "message.max.bytes": TYPE_INT,
          "broker.id": TYPE_INT, "default.replication.factor": TYPE_INT, "log.retention.ms": TYPE_LONG}


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
    cfg = broker.config
    values = {
        "broker.id": str(broker.me.node_id),
        "num.partitions": str(cfg.default_partitions),
        "auto.create.topics.enable": str(cfg.auto_create_topics).lower(),
        "message.max.bytes": str(cfg.max_entry_bytes),
        "default.replication.factor": str(min(len(s.replicas) for s in cfg.shards)),
        "log.retention.ms": broker.topics.defaults["retention.ms"],
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


def _changes(broker: Broker, configs: list[Body]) -> tuple[dict[str, str], list[str]]:
    """(to set, to delete) from one resource's alterations; ValueError names a bad one."""
    set_: dict[str, str] = {}
    delete: list[str] = []
    for c in configs:
        name, op, value = c["name"], c["config_operation"], c["value"]
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
            set_, delete = _changes(broker, res["configs"])
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
