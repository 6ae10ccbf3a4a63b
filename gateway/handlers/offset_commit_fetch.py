"""OffsetCommit (8) and OffsetFetch (9): committed offsets in ``__consumer_offsets``.

Commits are checked against the group's membership by its coordinator (the
generation, the member id, static fencing; for a KIP-848 group the member
epoch, which only v9 carries); a consumer with manually assigned
partitions commits with generation -1 and no member id. The accepted
partitions of one request are stored as one record. Metadata strings
round-trip; a partition without a commit fetches as offset -1, no error.
"""

from __future__ import annotations

from flexlog.core.errors import FlexLogError
from flexlog.gateway import authz
from flexlog.gateway.authz import Operation
from flexlog.gateway.broker import Broker
from flexlog.gateway.committed_offsets import MAX_METADATA_BYTES
from flexlog.gateway.handlers.registry import Body, serves
from flexlog.gateway.protocol import ApiKey, ErrorCode, Request

NO_OFFSET = -1
NO_EPOCH = -1

Row = tuple[str, int, int, int, str | None]  # topic, partition, offset, leader epoch, metadata


def commit_answer(topics: list[Body], codes: dict[tuple[str, int], ErrorCode]) -> Body:
    return {"throttle_time_ms": 0, "topics": [
        {"name": t["name"], "partitions": [
            {"partition_index": p["partition_index"],
             "error_code": codes[(t["name"], p["partition_index"])]} for p in t["partitions"]]}
        for t in topics]}


async def commit_rows(broker: Broker,
                      topics: list[Body]) -> tuple[dict[tuple[str, int], ErrorCode], list[Row]]:
    """Check each partition of a commit: an error code per partition, and the rows to store."""
    codes: dict[tuple[str, int], ErrorCode] = {}
    rows: list[Row] = []
    for t in topics:
        topic = await broker.topics.lookup(t["name"])
        for p in t["partitions"]:
            index, metadata = p["partition_index"], p["committed_metadata"]
            if not authz.topic_allowed(broker, Operation.READ, t["name"]):
                codes[(t["name"], index)] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            elif topic is None or not 0 <= index < topic.partitions:
                codes[(t["name"], index)] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            elif metadata is not None and len(metadata.encode()) > MAX_METADATA_BYTES:
                codes[(t["name"], index)] = ErrorCode.OFFSET_METADATA_TOO_LARGE
            else:
                codes[(t["name"], index)] = ErrorCode.NONE
                rows.append((t["name"], index, p["committed_offset"],
                             p.get("committed_leader_epoch", NO_EPOCH), metadata))
    return codes, rows


def commit_routing_error(broker: Broker, group_id: str) -> ErrorCode:
    """Committing needs READ on the group (as in Kafka), checked before the coordinator sees the
    member, and goes to the group's coordinator."""
    if not authz.group_allowed(broker, Operation.READ, group_id):
        return ErrorCode.GROUP_AUTHORIZATION_FAILED
    if not group_id:
        return ErrorCode.INVALID_GROUP_ID
    if not broker.groups.coordinates(group_id):
        return ErrorCode.NOT_COORDINATOR
    return ErrorCode.NONE


@serves(ApiKey.OFFSET_COMMIT, 1, 9)
async def handle_offset_commit(broker: Broker, request: Request) -> Body:
    body = request.body
    group_id = body["group_id"]
    topics = body["topics"]
    keys = [(t["name"], p["partition_index"]) for t in topics for p in t["partitions"]]
    groups = broker.groups
    error = commit_routing_error(broker, group_id)
    if not error:
        error = groups.commit_check(group_id, body["generation_id_or_member_epoch"], body["member_id"],
                                    body.get("group_instance_id"), request.api_version)
    if error != ErrorCode.NONE:
        return commit_answer(topics, dict.fromkeys(keys, error))
    codes, rows = await commit_rows(broker, topics)
    if rows:
        try:
            await groups.offsets.commit(group_id, rows, groups.wall_ms())
        except FlexLogError:
            # Retriable for every client: it finds the coordinator again and retries.
            for topic_name, index, *_ in rows:
                codes[(topic_name, index)] = ErrorCode.COORDINATOR_NOT_AVAILABLE
    return commit_answer(topics, codes)


def _fetched(broker: Broker, group_id: str, topics: list[Body] | None, require_stable: bool) -> list[Body]:
    """The committed offsets of the requested partitions, or of every committed one (None).

    With require_stable (v7+), a partition an open transaction holds a commit of
    answers UNSTABLE_OFFSET_COMMIT, which the consumer retries.
    """
    state = broker.groups.offsets.state
    if topics is None:
        wanted: dict[str, list[int]] = {}
        for _, topic, partition in sorted(state.group_keys(group_id)):
            wanted.setdefault(topic, []).append(partition)
    else:
        wanted = {t["name"]: list(t["partition_indexes"]) for t in topics}
    out = []
    for topic, partitions in wanted.items():
        parts = []
        for index in partitions:
            if require_stable and state.unstable((group_id, topic, index)):
                parts.append({"partition_index": index, "committed_offset": NO_OFFSET,
                              "committed_leader_epoch": NO_EPOCH, "metadata": "",
                              "error_code": ErrorCode.UNSTABLE_OFFSET_COMMIT})
                continue
            entry = state.get((group_id, topic, index))
            parts.append({"partition_index": index,
                          "committed_offset": entry.offset if entry else NO_OFFSET,
                          "committed_leader_epoch": entry.leader_epoch if entry else NO_EPOCH,
                          # Kafka answers null metadata as "" (its NO_METADATA).
                          "metadata": (entry.metadata or "") if entry else "",
                          "error_code": ErrorCode.NONE})
        out.append({"name": topic, "partitions": parts})
    return out


def _group_error(broker: Broker, group_id: str) -> ErrorCode:
    if not group_id:
        return ErrorCode.INVALID_GROUP_ID
    if not authz.group_allowed(broker, Operation.DESCRIBE, group_id):
        return ErrorCode.GROUP_AUTHORIZATION_FAILED
    if not broker.groups.coordinates(group_id):
        return ErrorCode.NOT_COORDINATOR
    return ErrorCode.NONE


@serves(ApiKey.OFFSET_FETCH, 1, 9)
async def handle_offset_fetch(broker: Broker, request: Request) -> Body:
    body = request.body
    # Commits may have come through a gateway that coordinated the group before.
    await broker.groups.offsets.sync()
    stable = bool(body.get("require_stable", False))
    if request.api_version >= 8:
        groups = []
        for g in body["groups"]:
            error = _group_error(broker, g["group_id"])
            groups.append({"group_id": g["group_id"], "error_code": error,
                           "topics": [] if error else _fetched(broker, g["group_id"], g["topics"], stable)})
        return {"throttle_time_ms": 0, "groups": groups}
    group_id = body["group_id"]
    error = _group_error(broker, group_id)
    if error:
        # v1 has no top-level error code: every requested partition carries it.
        topics = [{"name": t["name"], "partitions": [
            {"partition_index": i, "committed_offset": NO_OFFSET, "metadata": "", "error_code": error}
            for i in t["partition_indexes"]]} for t in body["topics"] or []]
        return {"throttle_time_ms": 0, "error_code": error, "topics": topics}
    return {"throttle_time_ms": 0, "error_code": ErrorCode.NONE,
            "topics": _fetched(broker, group_id, body["topics"], stable)}
