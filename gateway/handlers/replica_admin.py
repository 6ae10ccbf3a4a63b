"""Where partitions live and who leads them: AlterReplicaLogDirs (34), DescribeLogDirs (35),
ElectLeaders (43), AlterPartitionReassignments (45), ListPartitionReassignments (46).

A partition's data is a FlexLog color on the replicas of its shard; its Kafka
"replica set" is the one gateway that leads it (Metadata). So log dirs are the
replicas' storage tiers (gateway/log_dirs.py), leaders never need electing,
and a reassignment would mean moving a color to other shards, which FlexLog
cannot do safely online yet: docs/gateway.md says what each API answers and why.
Authorization is Kafka's: DESCRIBE on the cluster to describe log dirs or list
reassignments, ALTER on the cluster for the rest.
"""

from __future__ import annotations

import logging

from flexlog.core.errors import FlexLogError
from flexlog.gateway import authz, log_dirs
from flexlog.gateway.authz import Operation
from flexlog.gateway.broker import Broker
from flexlog.gateway.handlers.registry import Body, serves
from flexlog.gateway.protocol import ApiKey, ErrorCode, Request

log = logging.getLogger("flexlog.gateway")

PREFERRED, UNCLEAN = 0, 1
NOT_MOVABLE = ("FlexLog cannot reassign {topic}-{partition}: its data is the color {color} on "
               "shard(s) {shards}, and moving a color to other shards online is not safe yet "
               "(docs/gateway.md). Its replica set is its leader gateway, [{leader}]")


async def _known_partition(broker: Broker, topic: str, partition: int) -> str | None:
    """None when topic-partition exists, else why not (Kafka's wording)."""
    found = await broker.topics.lookup(topic)
    if found is None:
        return f"No such topic as {topic}"
    if not 0 <= partition < found.partitions:
        return f"No such partition as {topic}-{partition}"
    return None


async def _led_partitions(broker: Broker, wanted: list[Body] | None) -> list[tuple[str, int]]:
    """The partitions asked for (all when None) that exist and this gateway leads: a Kafka
    broker describes only the replicas it hosts, and each partition's one replica is its leader."""
    await broker.topics.sync()
    if wanted is None:
        asked = [(t.name, p) for t in broker.topics.all() for p in range(t.partitions)]
    else:
        asked = [(item["topic"], p) for item in wanted for p in item["partitions"]]
    out = []
    for topic, p in dict.fromkeys(asked):
        found = broker.topics.get(topic)
        if found is not None and 0 <= p < found.partitions and broker.leads(p):
            out.append((topic, p))
    return out


@serves(ApiKey.DESCRIBE_LOG_DIRS, 0, 4)
async def handle_describe_log_dirs(broker: Broker, request: Request) -> Body:
    if not authz.cluster_allowed(broker, Operation.DESCRIBE):
        return {"throttle_time_ms": 0, "error_code": ErrorCode.CLUSTER_AUTHORIZATION_FAILED,
                "results": []}
    dirs = await log_dirs.describe(broker, await _led_partitions(broker, request.body["topics"]))
    results = []
    for d in dirs:
        topics: dict[str, list[Body]] = {}
        for p in d.partitions:
            topics.setdefault(p.topic, []).append({
                "partition_index": p.partition, "partition_size": p.size,
                "offset_lag": p.offset_lag, "is_future_key": False})
        results.append({"error_code": d.error, "log_dir": d.path, "total_bytes": d.total_bytes,
                        "usable_bytes": d.usable_bytes,
                        "topics": [{"name": t, "partitions": ps} for t, ps in topics.items()]})
    return {"throttle_time_ms": 0, "error_code": ErrorCode.NONE, "results": results}


@serves(ApiKey.ALTER_REPLICA_LOG_DIRS, 0, 2)
async def handle_alter_replica_log_dirs(broker: Broker, request: Request) -> Body:
    dirs = request.body["dirs"]
    allowed = authz.cluster_allowed(broker, Operation.ALTER)
    known = {d.path for d in await log_dirs.describe(broker, [])} if allowed and dirs else set()
    results: dict[str, list[Body]] = {}
    for d in dirs:
        for item in d["topics"]:
            for p in item["partitions"]:
                if not allowed:
                    code = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
                elif await _known_partition(broker, item["name"], p):
                    code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                elif d["path"] not in known:
                    code = ErrorCode.LOG_DIR_NOT_FOUND
                else:
                    # The response has no message field, so the reason goes to the log.
                    log.warning("AlterReplicaLogDirs %s-%d to %s refused: a FlexLog replica's "
                                "engine moves entries between its tiers itself (PM to SSD by "
                                "age); no tier can be chosen for a partition",
                                item["name"], p, d["path"])
                    code = ErrorCode.INVALID_REQUEST
                results.setdefault(item["name"], []).append(
                    {"partition_index": p, "error_code": code})
    return {"throttle_time_ms": 0,
            "results": [{"topic_name": t, "partitions": ps} for t, ps in results.items()]}


@serves(ApiKey.ELECT_LEADERS, 0, 2)
async def handle_elect_leaders(broker: Broker, request: Request) -> Body:
    body = request.body
    wanted = body["topic_partitions"]
    election = body.get("election_type", PREFERRED)  # v0 elects the preferred leader only
    refusal = None
    if not authz.cluster_allowed(broker, Operation.ALTER):
        refusal = ErrorCode.CLUSTER_AUTHORIZATION_FAILED, None
    elif election not in (PREFERRED, UNCLEAN):
        refusal = ErrorCode.INVALID_REQUEST, f"Unknown election type {election}"
    if refusal:
        return {"throttle_time_ms": 0, "error_code": refusal[0], "replica_election_results": [
            {"topic": t["topic"], "partition_result": [
                {"partition_id": p, "error_code": refusal[0], "error_message": refusal[1]}
                for p in t["partitions"]]} for t in wanted or []]}
    await broker.topics.sync()
    results = []
    if wanted is None:
        # As Kafka's controller: every topic, leaving out the partitions that need no election,
        # which here is all of them (each has its leader gateway, also its preferred one).
        results = [{"topic": t.name, "partition_result": []} for t in broker.topics.all()]
    for item in wanted or []:
        partitions = []
        for p in item["partitions"]:
            problem = await _known_partition(broker, item["topic"], p)
            partitions.append({"partition_id": p, "error_code": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                               if problem else ErrorCode.ELECTION_NOT_NEEDED, "error_message": problem})
        results.append({"topic": item["topic"], "partition_result": partitions})
    return {"throttle_time_ms": 0, "error_code": ErrorCode.NONE, "replica_election_results": results}


async def _reassignment(broker: Broker, topic: str, partition: int,
                        replicas: list[int] | None) -> tuple[ErrorCode, str | None]:
    problem = await _known_partition(broker, topic, partition)
    if problem:
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, problem
    if replicas is None:
        return ErrorCode.NO_REASSIGNMENT_IN_PROGRESS, "No partition reassignment is in progress."
    leader = broker.leader(partition)
    if replicas == [leader]:
        return ErrorCode.NONE, None  # already the replica set: nothing to move
    try:
        color = await broker.topics.color(topic, partition)
    except FlexLogError as exc:
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, str(exc)
    return ErrorCode.INVALID_REPLICA_ASSIGNMENT, NOT_MOVABLE.format(
        topic=topic, partition=partition, color=color.name,
        shards=", ".join(map(str, color.shards)), leader=leader)


@serves(ApiKey.ALTER_PARTITION_REASSIGNMENTS, 0, 0)
async def handle_alter_partition_reassignments(broker: Broker, request: Request) -> Body:
    topics = request.body["topics"]
    if not authz.cluster_allowed(broker, Operation.ALTER):
        code = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        return {"throttle_time_ms": 0, "error_code": code, "error_message": None, "responses": [
            {"name": t["name"], "partitions": [
                {"partition_index": p["partition_index"], "error_code": code, "error_message": None}
                for p in t["partitions"]]} for t in topics]}
    await broker.topics.sync()
    responses = []
    for t in topics:
        partitions = []
        for p in t["partitions"]:
            code, message = await _reassignment(broker, t["name"], p["partition_index"], p["replicas"])
            partitions.append({"partition_index": p["partition_index"], "error_code": code,
                               "error_message": message})
        responses.append({"name": t["name"], "partitions": partitions})
    return {"throttle_time_ms": 0, "error_code": ErrorCode.NONE, "error_message": None,
            "responses": responses}


@serves(ApiKey.LIST_PARTITION_REASSIGNMENTS, 0, 0)
async def handle_list_partition_reassignments(broker: Broker, request: Request) -> Body:
    if not authz.cluster_allowed(broker, Operation.DESCRIBE):
        # As Kafka's error answer: the partitions asked for, with no replicas.
        return {"throttle_time_ms": 0, "error_code": ErrorCode.CLUSTER_AUTHORIZATION_FAILED,
                "error_message": None, "topics": [
                    {"name": t["name"], "partitions": [
                        {"partition_index": p, "replicas": [], "adding_replicas": [],
                         "removing_replicas": []} for p in t["partition_indexes"]]}
                    for t in request.body["topics"] or []]}
    # None is ever in progress: AlterPartitionReassignments starts none.
    return {"throttle_time_ms": 0, "error_code": ErrorCode.NONE, "error_message": None, "topics": []}
