"""KIP-848 consumer groups: ConsumerGroupHeartbeat (68) and ConsumerGroupDescribe (69).

The wire names topics by id; ``ConsumerGroupCoordinator`` works with names, so
these handlers translate both ways (owned partitions of a topic id that no
longer exists are dropped: the member cannot consume them anyway). Heartbeats
need READ on the group and describing needs DESCRIBE, as in Kafka; a gateway
that does not coordinate the group answers NOT_COORDINATOR.
"""

from __future__ import annotations

from collections.abc import Iterable

from flexlog.gateway import authz, session
from flexlog.gateway.authz import Operation
from flexlog.gateway.broker import Broker
from flexlog.gateway.consumer_group import HeartbeatRequest, Partitions, TopicPartition
from flexlog.gateway.handlers.registry import Body, serves
from flexlog.gateway.protocol import ApiKey, ErrorCode, Request


def _owned(broker: Broker, topic_partitions: list[Body] | None) -> Partitions | None:
    if topic_partitions is None:
        return None
    owned: set[TopicPartition] = set()
    for entry in topic_partitions:
        topic = broker.topics.by_id(bytes(entry["topic_id"]))
        if topic is not None:
            owned.update((topic.name, p) for p in entry["partitions"])
    return frozenset(owned)


def _by_topic(broker: Broker, partitions: Iterable[TopicPartition], with_names: bool) -> list[Body]:
    grouped: dict[str, list[int]] = {}
    for topic, partition in sorted(partitions):
        grouped.setdefault(topic, []).append(partition)
    out = []
    for name, numbers in grouped.items():
        topic = broker.topics.get(name)
        if topic is None:
            continue  # deleted since the target was computed; the next epoch drops it
        entry: Body = {"topic_id": topic.topic_id, "partitions": numbers}
        if with_names:
            entry["topic_name"] = name
        out.append(entry)
    return out


def _heartbeat_error(code: ErrorCode, message: str | None = None) -> Body:
    return {"throttle_time_ms": 0, "error_code": code, "error_message": message, "member_id": None,
            "member_epoch": 0, "heartbeat_interval_ms": 0, "assignment": None}


@serves(ApiKey.CONSUMER_GROUP_HEARTBEAT, 0, 1)
async def handle_consumer_group_heartbeat(broker: Broker, request: Request) -> Body:
    body = request.body
    group_id = body["group_id"]
    if not authz.group_allowed(broker, Operation.READ, group_id):
        return _heartbeat_error(ErrorCode.GROUP_AUTHORIZATION_FAILED)
    if not broker.groups.coordinates(group_id):
        return _heartbeat_error(ErrorCode.NOT_COORDINATOR)
    names = body["subscribed_topic_names"]
    req = HeartbeatRequest(
        group_id=group_id, member_id=body["member_id"], member_epoch=body["member_epoch"],
        instance_id=body["instance_id"], rack_id=body["rack_id"],
        rebalance_timeout_ms=body["rebalance_timeout_ms"],
        subscribed_topic_names=None if names is None else tuple(names),
        subscribed_topic_regex=body.get("subscribed_topic_regex"),
        server_assignor=body["server_assignor"], owned=_owned(broker, body["topic_partitions"]),
        client_id=request.client_id or "", client_host=f"/{session.get().peer_host}",
        version=request.api_version)
    reply = broker.groups.consumer_heartbeat(req)
    if reply.error != ErrorCode.NONE:
        return _heartbeat_error(reply.error, reply.message)
    assignment = None if reply.assignment is None else {
        "topic_partitions": _by_topic(broker, reply.assignment, with_names=False)}
    return {"throttle_time_ms": 0, "error_code": ErrorCode.NONE, "error_message": None,
            "member_id": reply.member_id, "member_epoch": reply.member_epoch,
            "heartbeat_interval_ms": reply.heartbeat_interval_ms, "assignment": assignment}


def _described(broker: Broker, group_id: str) -> Body:
    answer: Body = {"error_code": ErrorCode.NONE, "error_message": None, "group_id": group_id,
                    "group_state": "", "group_epoch": 0, "assignment_epoch": 0, "assignor_name": "",
                    "members": []}
    if not authz.group_allowed(broker, Operation.DESCRIBE, group_id):
        return {**answer, "error_code": ErrorCode.GROUP_AUTHORIZATION_FAILED}
    if not broker.groups.coordinates(group_id):
        return {**answer, "error_code": ErrorCode.NOT_COORDINATOR}
    group = broker.groups.consumer.group(group_id)
    if group is None:
        # Kafka's messages: a classic group is found but is not of this type.
        message = (f"Group {group_id} is not a consumer group" if broker.groups.known(group_id)
                   else f"Group {group_id} not found.")
        return {**answer, "error_code": ErrorCode.GROUP_ID_NOT_FOUND, "error_message": message}
    members = [{
        "member_id": m.member_id, "instance_id": m.instance_id, "rack_id": m.rack_id,
        "member_epoch": m.epoch, "client_id": m.client_id, "client_host": m.client_host,
        "subscribed_topic_names": sorted(m.subscribed), "subscribed_topic_regex": m.regex,
        "assignment": {"topic_partitions": _by_topic(broker, m.assigned, with_names=True)},
        "target_assignment": {"topic_partitions": _by_topic(
            broker, group.target.get(m.member_id, frozenset()), with_names=True)},
    } for m in group.members.values()]
    return {**answer, "group_state": group.state().value, "group_epoch": group.epoch,
            "assignment_epoch": group.assignment_epoch, "assignor_name": group.assignor,
            "members": members}


@serves(ApiKey.CONSUMER_GROUP_DESCRIBE, 0, 0)
async def handle_consumer_group_describe(broker: Broker, request: Request) -> Body:
    return {"throttle_time_ms": 0,
            "groups": [_described(broker, g) for g in request.body["group_ids"]]}
