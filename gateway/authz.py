"""The one place handlers ask whether this connection's principal may do something.

Without `[security] authorizer = true` every request is allowed, as in Kafka
without an authorizer; with it, the ACLs in ``__acls`` decide (gateway/acls.py).
"""

from __future__ import annotations

from flexlog.gateway import session
from flexlog.gateway.acls import CLUSTER_NAME, Operation, ResourceType
from flexlog.gateway.broker import Broker
from flexlog.gateway.handlers.registry import Body
from flexlog.gateway.protocol import ApiKey, ErrorCode, Request

__all__ = ["Operation", "allowed", "cluster_allowed", "group_allowed", "group_refusal",
           "idempotent_write_allowed", "topic_allowed"]


def allowed(broker: Broker, operation: Operation, resource_type: ResourceType, name: str) -> bool:
    if not broker.config.security.authorizer:
        return True
    s = session.get()
    return broker.acls.authorize(s.principal, s.peer_host, operation, resource_type, name)


def topic_allowed(broker: Broker, operation: Operation, topic: str) -> bool:
    return allowed(broker, operation, ResourceType.TOPIC, topic)


def group_allowed(broker: Broker, operation: Operation, group: str) -> bool:
    return allowed(broker, operation, ResourceType.GROUP, group)


def cluster_allowed(broker: Broker, operation: Operation) -> bool:
    return allowed(broker, operation, ResourceType.CLUSTER, CLUSTER_NAME)


def idempotent_write_allowed(broker: Broker) -> bool:
    """IDEMPOTENT_WRITE on the cluster, or WRITE on any topic (as Kafka 3.0+ accepts)."""
    if cluster_allowed(broker, Operation.IDEMPOTENT_WRITE) or not broker.config.security.authorizer:
        return True
    s = session.get()
    return broker.acls.may_write_some_topic(s.principal, s.peer_host)


# Group APIs whose requests name one group at the top level, and what each needs on it.
_GROUP_APIS = {
    ApiKey.JOIN_GROUP: Operation.READ,
    ApiKey.SYNC_GROUP: Operation.READ,
    ApiKey.HEARTBEAT: Operation.READ,
    ApiKey.LEAVE_GROUP: Operation.READ,
    ApiKey.OFFSET_COMMIT: Operation.READ,
}


def group_refusal(broker: Broker, request: Request) -> Body | None:
    """GROUP_AUTHORIZATION_FAILED for a group request the principal may not make, else None.

    Checked before the group handlers run, so the coordinator never sees a refused member.
    """
    operation = _GROUP_APIS.get(request.api_key)
    if operation is None or group_allowed(broker, operation, request.body["group_id"]):
        return None
    code = ErrorCode.GROUP_AUTHORIZATION_FAILED
    if request.api_key == ApiKey.OFFSET_COMMIT:
        return {"throttle_time_ms": 0, "topics": [
            {"name": t["name"], "partitions": [{"partition_index": p["partition_index"], "error_code": code}
                                               for p in t["partitions"]]}
            for t in request.body["topics"]]}
    return {"throttle_time_ms": 0, "error_code": code, "generation_id": -1,
            "member_id": request.body.get("member_id", ""),
            "protocol_name": "" if request.api_version < 7 else None, "members": []}
