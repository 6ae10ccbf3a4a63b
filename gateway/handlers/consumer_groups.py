"""Classic consumer groups: FindCoordinator (10), JoinGroup (11), Heartbeat (12), LeaveGroup (13),
SyncGroup (14), DescribeGroups (15), ListGroups (16), DeleteGroups (42).

These handlers only translate between wire bodies and ``GroupCoordinator``
calls. Each group has one coordinator gateway (``Groups.coordinator_id``); a
group request sent to another gateway gets NOT_COORDINATOR, and the client
asks FindCoordinator again. Membership requests need READ on the group, checked
first so the coordinator never sees a member it must refuse; lookups need
DESCRIBE and deleting needs DELETE, as in Kafka.
"""

from __future__ import annotations

from flexlog.gateway import authz, session
from flexlog.gateway.authz import Operation
from flexlog.gateway.broker import Broker, BrokerAddress
from flexlog.gateway.group_coordinator import GroupState, JoinReply, JoinRequest
from flexlog.gateway.handlers.registry import Body, serves
from flexlog.gateway.protocol import ApiKey, ErrorCode, Request

KEY_TYPE_GROUP = 0
KEY_TYPE_TRANSACTION = 1
BATCHED_FROM_VERSION = 4
CLASSIC_TYPE = "classic"
CONSUMER_TYPE = "consumer"


def _address(broker: Broker, node_id: int) -> BrokerAddress:
    return next(b for b in broker.brokers if b.node_id == node_id)


def _coordinator(broker: Broker, key: str, key_type: int) -> Body:
    """Groups and transactional ids are spread over the gateways by the same hash."""
    if key_type not in (KEY_TYPE_GROUP, KEY_TYPE_TRANSACTION):
        return {"key": key, "error_code": ErrorCode.INVALID_REQUEST,
                "error_message": f"unknown key type {key_type}", "node_id": -1, "host": "", "port": -1}
    if key_type == KEY_TYPE_GROUP and not authz.group_allowed(broker, Operation.DESCRIBE, key):
        return {"key": key, "error_code": ErrorCode.GROUP_AUTHORIZATION_FAILED, "error_message": None,
                "node_id": -1, "host": "", "port": -1}
    if key_type == KEY_TYPE_TRANSACTION \
            and not authz.transactional_id_allowed(broker, Operation.DESCRIBE, key):
        return {"key": key, "error_code": ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                "error_message": None, "node_id": -1, "host": "", "port": -1}
    if not broker.brokers:
        # A gateway outside any config (unit tests): it coordinates every group itself.
        return {"key": key, "error_code": ErrorCode.COORDINATOR_NOT_AVAILABLE, "error_message": None,
                "node_id": -1, "host": "", "port": -1}
    node = _address(broker, broker.groups.coordinator_id(key))
    return {"key": key, "error_code": ErrorCode.NONE, "error_message": None,
            "node_id": node.node_id, "host": node.host, "port": node.port}


@serves(ApiKey.FIND_COORDINATOR, 0, 6)
async def handle_find_coordinator(broker: Broker, request: Request) -> Body:
    body = request.body
    key_type = body.get("key_type", KEY_TYPE_GROUP)
    if request.api_version >= BATCHED_FROM_VERSION:
        return {"throttle_time_ms": 0,
                "coordinators": [_coordinator(broker, k, key_type) for k in body["coordinator_keys"]]}
    answer = _coordinator(broker, body["key"], key_type)
    del answer["key"]
    return {"throttle_time_ms": 0, **answer}


def _not_coordinator(broker: Broker, group_id: str) -> bool:
    return not broker.groups.coordinates(group_id)


def _join_body(reply: JoinReply, version: int) -> Body:
    members = [{"member_id": m, "group_instance_id": i, "metadata": meta}
               for m, i, meta in reply.members]
    # Before v7 the protocol name is not nullable: an error answer carries "".
    name = reply.protocol_name if reply.protocol_name is not None or version >= 7 else ""
    return {"throttle_time_ms": 0, "error_code": reply.error, "generation_id": reply.generation_id,
            "protocol_type": reply.protocol_type, "protocol_name": name, "leader": reply.leader,
            "skip_assignment": reply.skip_assignment, "member_id": reply.member_id, "members": members}


@serves(ApiKey.JOIN_GROUP, 0, 9)
async def handle_join_group(broker: Broker, request: Request) -> Body:
    body = request.body
    version = request.api_version
    if not authz.group_allowed(broker, Operation.READ, body["group_id"]):
        return _join_body(JoinReply(ErrorCode.GROUP_AUTHORIZATION_FAILED, body["member_id"]), version)
    if _not_coordinator(broker, body["group_id"]):
        return _join_body(JoinReply(ErrorCode.NOT_COORDINATOR, body["member_id"]), version)
    refused = broker.groups.classic_join_error(body["group_id"])
    if refused is not None:
        return _join_body(JoinReply(refused, body["member_id"]), version)
    rebalance_timeout = body.get("rebalance_timeout_ms", -1)
    req = JoinRequest(
        group_id=body["group_id"], member_id=body["member_id"],
        group_instance_id=body.get("group_instance_id"), protocol_type=body["protocol_type"],
        protocols=tuple((p["name"], bytes(p["metadata"])) for p in body["protocols"]),
        session_timeout_ms=body["session_timeout_ms"],
        # v0 has no rebalance timeout: Kafka used the session timeout for both.
        rebalance_timeout_ms=rebalance_timeout if rebalance_timeout >= 0 else body["session_timeout_ms"],
        # Kafka names the host as Java prints an InetAddress: "/127.0.0.1".
        version=version, client_id=request.client_id or "", client_host=f"/{session.get().peer_host}")
    return _join_body(await broker.groups.join(req), version)


@serves(ApiKey.SYNC_GROUP, 0, 5)
async def handle_sync_group(broker: Broker, request: Request) -> Body:
    body = request.body
    if not authz.group_allowed(broker, Operation.READ, body["group_id"]):
        return {"throttle_time_ms": 0, "error_code": ErrorCode.GROUP_AUTHORIZATION_FAILED, "assignment": b""}
    if _not_coordinator(broker, body["group_id"]):
        return {"throttle_time_ms": 0, "error_code": ErrorCode.NOT_COORDINATOR, "assignment": b""}
    reply = await broker.groups.sync(
        body["group_id"], body["generation_id"], body["member_id"], body.get("group_instance_id"),
        body.get("protocol_type"), body.get("protocol_name"),
        {a["member_id"]: bytes(a["assignment"]) for a in body["assignments"]})
    return {"throttle_time_ms": 0, "error_code": reply.error, "protocol_type": reply.protocol_type,
            "protocol_name": reply.protocol_name, "assignment": reply.assignment}


@serves(ApiKey.HEARTBEAT, 0, 4)
async def handle_heartbeat(broker: Broker, request: Request) -> Body:
    body = request.body
    if not authz.group_allowed(broker, Operation.READ, body["group_id"]):
        return {"throttle_time_ms": 0, "error_code": ErrorCode.GROUP_AUTHORIZATION_FAILED}
    if _not_coordinator(broker, body["group_id"]):
        return {"throttle_time_ms": 0, "error_code": ErrorCode.NOT_COORDINATOR}
    code = broker.groups.coordinator.heartbeat(
        broker.groups.now_ms(), body["group_id"], body["generation_id"], body["member_id"],
        body.get("group_instance_id"))
    return {"throttle_time_ms": 0, "error_code": code}


@serves(ApiKey.LEAVE_GROUP, 0, 5)
async def handle_leave_group(broker: Broker, request: Request) -> Body:
    body = request.body
    group_id = body["group_id"]
    if not authz.group_allowed(broker, Operation.READ, group_id):
        return {"throttle_time_ms": 0, "error_code": ErrorCode.GROUP_AUTHORIZATION_FAILED, "members": []}
    if _not_coordinator(broker, group_id):
        return {"throttle_time_ms": 0, "error_code": ErrorCode.NOT_COORDINATOR, "members": []}
    batched = request.api_version >= 3
    leavers = ([(m["member_id"], m.get("group_instance_id")) for m in body["members"]] if batched
               else [(body["member_id"], None)])
    codes = broker.groups.leave(group_id, leavers)
    if not batched:
        return {"throttle_time_ms": 0, "error_code": codes[0]}
    return {"throttle_time_ms": 0, "error_code": ErrorCode.NONE,
            "members": [{"member_id": m, "group_instance_id": i, "error_code": c}
                        for (m, i), c in zip(leavers, codes, strict=True)]}


def _empty_group_type(known: str | None, has_offsets: bool) -> str:
    """An Empty group's protocol type: the one its members had, else "consumer" if it has offsets.

    Membership is in memory, so after a coordinator restart a group is known by its
    committed offsets only; those come from consumers nearly always.
    """
    return known or ("consumer" if has_offsets else "")


def _describe(broker: Broker, group_id: str) -> Body:
    body: Body = {"error_code": ErrorCode.NONE, "group_id": group_id, "protocol_type": "",
                  "protocol_data": "", "members": []}
    if not authz.group_allowed(broker, Operation.DESCRIBE, group_id):
        return {**body, "error_code": ErrorCode.GROUP_AUTHORIZATION_FAILED,
                "group_state": GroupState.DEAD.value}
    if _not_coordinator(broker, group_id):
        return {**body, "error_code": ErrorCode.NOT_COORDINATOR, "group_state": GroupState.DEAD.value}
    if broker.groups.consumer.group(group_id) is not None:
        # Kafka 3.9 describes only classic groups here: a consumer group is Dead, without
        # an error (ConsumerGroupDescribe describes it).
        return {**body, "group_state": GroupState.DEAD.value}
    group = broker.groups.coordinator.group(group_id)
    if group is None or group.state in (GroupState.EMPTY, GroupState.DEAD):
        has_offsets = bool(broker.groups.offsets.state.group_keys(group_id))
        state = GroupState.EMPTY if has_offsets or group is not None else GroupState.DEAD
        return {**body, "group_state": state.value,
                "protocol_type": _empty_group_type(group.protocol_type if group else None, has_offsets)}
    stable = group.state == GroupState.STABLE
    members = [{"member_id": m.member_id, "group_instance_id": m.instance_id,
                "client_id": m.client_id, "client_host": m.client_host,
                # Kafka shows metadata and assignment only once they are settled.
                "member_metadata": m.metadata(group.protocol) if stable and group.protocol else b"",
                "member_assignment": m.assignment if stable else b""}
               for m in group.members.values()]
    return {**body, "group_state": group.state.value, "protocol_type": group.protocol_type or "",
            "protocol_data": (group.protocol or "") if stable else "", "members": members}


@serves(ApiKey.DESCRIBE_GROUPS, 0, 5)
async def handle_describe_groups(broker: Broker, request: Request) -> Body:
    await broker.groups.offsets.sync()
    return {"throttle_time_ms": 0, "groups": [_describe(broker, g) for g in request.body["groups"]]}


@serves(ApiKey.LIST_GROUPS, 0, 5)
async def handle_list_groups(broker: Broker, request: Request) -> Body:
    """The groups this gateway coordinates, with members or only committed offsets."""
    body = request.body
    await broker.groups.offsets.sync()
    wanted_states = {s.lower() for s in body.get("states_filter") or []}
    wanted_types = {t.lower() for t in body.get("types_filter") or []}
    listed: dict[str, tuple[str, str, str]] = {}  # group -> (protocol type, state, group type)
    for group_id in broker.groups.offsets.state.groups():
        if broker.groups.coordinates(group_id):
            listed[group_id] = (_empty_group_type(None, True), GroupState.EMPTY.value, CLASSIC_TYPE)
    for group in broker.groups.coordinator.groups.values():
        has_offsets = group.group_id in listed
        listed[group.group_id] = (_empty_group_type(group.protocol_type, has_offsets), group.state.value,
                                  CLASSIC_TYPE)
    for group_id, consumer_group in broker.groups.consumer.groups.items():
        # KIP-848 groups are listed as Kafka 3.9 lists them: protocol type and group type "consumer".
        listed[group_id] = (CONSUMER_TYPE, consumer_group.state().value, CONSUMER_TYPE)
    # Like Kafka: DESCRIBE on the cluster lists every group, otherwise those one may describe.
    everything = authz.cluster_allowed(broker, Operation.DESCRIBE)
    groups = [{"group_id": g, "protocol_type": ptype, "group_state": state, "group_type": gtype}
              for g, (ptype, state, gtype) in sorted(listed.items())
              if everything or authz.group_allowed(broker, Operation.DESCRIBE, g)
              if (not wanted_states or state.lower() in wanted_states)
              and (not wanted_types or gtype in wanted_types)]
    return {"throttle_time_ms": 0, "error_code": ErrorCode.NONE, "groups": groups}


@serves(ApiKey.DELETE_GROUPS, 0, 2)
async def handle_delete_groups(broker: Broker, request: Request) -> Body:
    groups = broker.groups
    await groups.offsets.sync()
    results = []
    for group_id in request.body["groups_names"]:
        if not authz.group_allowed(broker, Operation.DELETE, group_id):
            results.append({"group_id": group_id, "error_code": ErrorCode.GROUP_AUTHORIZATION_FAILED})
            continue
        if _not_coordinator(broker, group_id):
            results.append({"group_id": group_id, "error_code": ErrorCode.NOT_COORDINATOR})
            continue
        keys = groups.offsets.state.group_keys(group_id)
        known = bool(keys) or groups.known(group_id)
        code = groups.delete(group_id)
        if code == ErrorCode.NONE and not known:
            code = ErrorCode.GROUP_ID_NOT_FOUND
        if code == ErrorCode.NONE:
            await groups.offsets.delete(group_id, keys, groups.wall_ms())
            groups.group_deleted(group_id)
        results.append({"group_id": group_id, "error_code": code})
    return {"throttle_time_ms": 0, "results": results}
