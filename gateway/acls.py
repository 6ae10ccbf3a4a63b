"""Kafka ACLs: bindings, filters, Kafka's authorization rule, and their store in ``__acls``.

An ACL lets (ALLOW) or forbids (DENY) a principal (``User:name``, ``User:*``)
from a host (``*`` or one address) one operation on a resource: a topic, group
or the cluster, named literally (``*`` is every name) or by a prefix. As in
Kafka's AclAuthorizer: super users may do everything; a matching DENY wins over
any ALLOW; READ, WRITE, DELETE and ALTER imply DESCRIBE and ALTER_CONFIGS implies
DESCRIBE_CONFIGS; with no matching ALLOW the answer is no.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import IntEnum
from typing import Any

from flexlog.core.client import FlexLogClient
from flexlog.core.config import ClusterConfig
from flexlog.core.event_log import EventLog, JsonEvents, json_record

ACLS_COLOR = "__acls"
CLUSTER_NAME = "kafka-cluster"
WILDCARD = "*"
WILDCARD_PRINCIPAL = "User:*"


class ResourceType(IntEnum):
    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class PatternType(IntEnum):
    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14


class Permission(IntEnum):
    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


# An ALLOW of any of these also allows the key.
IMPLIED_BY = {
    Operation.DESCRIBE: (Operation.READ, Operation.WRITE, Operation.DELETE, Operation.ALTER),
    Operation.DESCRIBE_CONFIGS: (Operation.ALTER_CONFIGS,),
}


@dataclass(frozen=True)
class Acl:
    resource_type: int
    resource_name: str
    pattern_type: int
    principal: str
    host: str
    operation: int
    permission: int

    def covers(self, resource_type: int, name: str) -> bool:
        if self.resource_type != resource_type:
            return False
        if self.pattern_type == PatternType.PREFIXED:
            return name.startswith(self.resource_name)
        return self.resource_name in (name, WILDCARD)


@dataclass(frozen=True)
class AclFilter:
    """A DescribeAcls/DeleteAcls filter: None and ANY match everything."""

    resource_type: int
    resource_name: str | None
    pattern_type: int
    principal: str | None
    host: str | None
    operation: int
    permission: int

    def matches(self, acl: Acl) -> bool:
        if self.resource_type not in (ResourceType.ANY, acl.resource_type):
            return False
        if not self._matches_pattern(acl):
            return False
        return (self.principal in (None, acl.principal) and self.host in (None, acl.host)
                and self.operation in (Operation.ANY, acl.operation)
                and self.permission in (Permission.ANY, acl.permission))

    def _matches_pattern(self, acl: Acl) -> bool:
        if self.pattern_type == PatternType.MATCH:
            # Every ACL that would apply to a resource of this exact name.
            return self.resource_name is None or acl.covers(acl.resource_type, self.resource_name)
        if self.pattern_type not in (PatternType.ANY, acl.pattern_type):
            return False
        return self.resource_name in (None, acl.resource_name)


def invalid(acl: Acl) -> str | None:
    """Why acl cannot be created, or None."""
    if acl.resource_type not in (ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER,
                                 ResourceType.TRANSACTIONAL_ID):
        return f"resource type {acl.resource_type} cannot carry ACLs"
    if acl.pattern_type not in (PatternType.LITERAL, PatternType.PREFIXED):
        return "pattern type must be LITERAL or PREFIXED"
    if not acl.resource_name:
        return "resource name is empty"
    if acl.resource_type == ResourceType.CLUSTER and (
            acl.resource_name != CLUSTER_NAME or acl.pattern_type != PatternType.LITERAL):
        return f"the cluster resource is the literal {CLUSTER_NAME!r}"
    kind, sep, name = acl.principal.partition(":")
    if kind != "User" or not sep or not name:
        return f"principal {acl.principal!r} is not User:NAME"
    if not acl.host:
        return "host is empty (use '*' for every host)"
    if not Operation.ALL <= acl.operation <= max(Operation):
        return f"operation {acl.operation} cannot be granted"
    if acl.permission not in (Permission.ALLOW, Permission.DENY):
        return "permission must be ALLOW or DENY"
    return None


class AclStore:
    def __init__(self, client: FlexLogClient, config: ClusterConfig) -> None:
        self.super_users = frozenset(config.security.super_users)
        self.acls: set[Acl] = set()
        self.log = EventLog(client, JsonEvents(self._apply, ACLS_COLOR), ACLS_COLOR)

    def _apply(self, event: dict[str, Any]) -> None:
        acl = Acl(**event["acl"])
        if event["op"] == "add":
            self.acls.add(acl)
        elif event["op"] == "remove":
            self.acls.discard(acl)

    async def open(self) -> None:
        await self.log.open()

    async def add(self, acl: Acl) -> None:
        if acl not in self.acls:
            await self.log.append(json_record({"op": "add", "acl": asdict(acl)}))

    async def remove(self, acl: Acl) -> None:
        await self.log.append(json_record({"op": "remove", "acl": asdict(acl)}))

    def matching(self, acl_filter: AclFilter) -> list[Acl]:
        return sorted((a for a in self.acls if acl_filter.matches(a)),
                      key=lambda a: (a.resource_type, a.resource_name, a.pattern_type, a.principal,
                                     a.operation, a.permission, a.host))

    def may_write_some_topic(self, principal: str, host: str) -> bool:
        if principal in self.super_users:
            return True
        return any(a.resource_type == ResourceType.TOPIC and a.permission == Permission.ALLOW
                   and a.operation in (Operation.WRITE, Operation.ALL)
                   and a.principal in (principal, WILDCARD_PRINCIPAL) and a.host in (host, WILDCARD)
                   for a in self.acls)

    def authorize(self, principal: str, host: str, operation: Operation, resource_type: ResourceType,
                  name: str) -> bool:
        if principal in self.super_users:
            return True
        applicable = [a for a in self.acls if a.covers(resource_type, name)
                      and a.principal in (principal, WILDCARD_PRINCIPAL) and a.host in (host, WILDCARD)]
        if any(a.permission == Permission.DENY and a.operation in (operation, Operation.ALL)
               for a in applicable):
            return False
        granting = (operation, Operation.ALL, *IMPLIED_BY.get(operation, ()))
        return any(a.permission == Permission.ALLOW and a.operation in granting for a in applicable)
