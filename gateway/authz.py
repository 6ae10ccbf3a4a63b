"""The one place handlers ask whether this connection's principal may do something.

Without `[security] authorizer = true` every request is allowed, as in Kafka
without an authorizer; with it, the ACLs in ``__acls`` decide (gateway/acls.py).
Which operation an API needs, and how it answers a refusal, is the handler's
business: each handler calls these checks itself.
"""

from __future__ import annotations

from flexlog.gateway import session
from flexlog.gateway.acls import CLUSTER_NAME, Operation, ResourceType
from flexlog.gateway.broker import Broker

__all__ = ["Operation", "allowed", "any_topic_writable", "cluster_allowed", "group_allowed",
           "topic_allowed", "transactional_id_allowed"]


def allowed(broker: Broker, operation: Operation, resource_type: ResourceType, name: str) -> bool:
    if not broker.config.security.authorizer:
        return True
    s = session.get()
    return broker.acls.authorize(s.principal, s.peer_host, operation, resource_type, name)


def topic_allowed(broker: Broker, operation: Operation, topic: str) -> bool:
    return allowed(broker, operation, ResourceType.TOPIC, topic)


def group_allowed(broker: Broker, operation: Operation, group: str) -> bool:
    return allowed(broker, operation, ResourceType.GROUP, group)


def transactional_id_allowed(broker: Broker, operation: Operation, txn_id: str) -> bool:
    return allowed(broker, operation, ResourceType.TRANSACTIONAL_ID, txn_id)


def cluster_allowed(broker: Broker, operation: Operation) -> bool:
    return allowed(broker, operation, ResourceType.CLUSTER, CLUSTER_NAME)


def any_topic_writable(broker: Broker) -> bool:
    """Whether the principal has an ALLOW for WRITE on some topic (a DENY on another does not matter)."""
    if not broker.config.security.authorizer:
        return True
    s = session.get()
    return broker.acls.may_write_some_topic(s.principal, s.peer_host)
