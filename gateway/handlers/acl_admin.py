"""DescribeAcls (29), CreateAcls (30), DeleteAcls (31): ACLs in ``__acls`` as admin clients manage them.

Without an authorizer Kafka answers SECURITY_DISABLED; so does the gateway.
Describing needs DESCRIBE on the cluster, changing needs ALTER, as in Kafka.
"""

from __future__ import annotations

from flexlog.core.errors import FlexLogError
from flexlog.gateway import authz
from flexlog.gateway.acls import Acl, AclFilter, Operation, PatternType, invalid
from flexlog.gateway.broker import Broker
from flexlog.gateway.handlers.errors import kafka_error
from flexlog.gateway.handlers.registry import Body, serves
from flexlog.gateway.protocol import ApiKey, ErrorCode, Request

DISABLED = "no authorizer is configured ([security] authorizer = false)"
DENIED = "not authorized to access the cluster's ACLs"


def _refusal(broker: Broker, operation: Operation) -> tuple[ErrorCode, str] | None:
    if not broker.config.security.authorizer:
        return ErrorCode.SECURITY_DISABLED, DISABLED
    if not authz.cluster_allowed(broker, operation):
        return ErrorCode.CLUSTER_AUTHORIZATION_FAILED, DENIED
    return None


def _filter(item: Body) -> AclFilter:
    return AclFilter(item["resource_type_filter"], item["resource_name_filter"],
                     item.get("pattern_type_filter", PatternType.LITERAL), item["principal_filter"],
                     item["host_filter"], item["operation"], item["permission_type"])


def _acl_body(acl: Acl) -> Body:
    return {"resource_type": acl.resource_type, "resource_name": acl.resource_name,
            "pattern_type": acl.pattern_type, "principal": acl.principal, "host": acl.host,
            "operation": acl.operation, "permission_type": acl.permission}


@serves(ApiKey.DESCRIBE_ACLS, 0, 3)
async def handle_describe_acls(broker: Broker, request: Request) -> Body:
    refusal = _refusal(broker, Operation.DESCRIBE)
    if refusal:
        return {"throttle_time_ms": 0, "error_code": refusal[0], "error_message": refusal[1],
                "resources": []}
    await broker.acls.log.sync()
    resources: dict[tuple[int, str, int], list[Body]] = {}
    for acl in broker.acls.matching(_filter(request.body)):
        key = (acl.resource_type, acl.resource_name, acl.pattern_type)
        resources.setdefault(key, []).append({"principal": acl.principal, "host": acl.host,
                                              "operation": acl.operation,
                                              "permission_type": acl.permission})
    return {"throttle_time_ms": 0, "error_code": ErrorCode.NONE, "error_message": None,
            "resources": [{"resource_type": t, "resource_name": n, "pattern_type": p, "acls": acls}
                          for (t, n, p), acls in resources.items()]}


@serves(ApiKey.CREATE_ACLS, 0, 3)
async def handle_create_acls(broker: Broker, request: Request) -> Body:
    refusal = _refusal(broker, Operation.ALTER)
    results = []
    for item in request.body["creations"]:
        if refusal:
            results.append({"error_code": refusal[0], "error_message": refusal[1]})
            continue
        acl = Acl(item["resource_type"], item["resource_name"],
                  item.get("resource_pattern_type", PatternType.LITERAL), item["principal"],
                  item["host"], item["operation"], item["permission_type"])
        problem = invalid(acl)
        if problem:
            results.append({"error_code": ErrorCode.INVALID_REQUEST, "error_message": problem})
            continue
        try:
            await broker.acls.add(acl)
        except FlexLogError as exc:
            results.append({"error_code": kafka_error(exc), "error_message": str(exc)})
            continue
        results.append({"error_code": ErrorCode.NONE, "error_message": None})
    return {"throttle_time_ms": 0, "results": results}


@serves(ApiKey.DELETE_ACLS, 0, 3)
async def handle_delete_acls(broker: Broker, request: Request) -> Body:
    refusal = _refusal(broker, Operation.ALTER)
    results = []
    if not refusal:
        await broker.acls.log.sync()
    for item in request.body["filters"]:
        if refusal:
            results.append({"error_code": refusal[0], "error_message": refusal[1], "matching_acls": []})
            continue
        matching = []
        for acl in broker.acls.matching(_filter(item)):
            body = {**_acl_body(acl), "error_code": ErrorCode.NONE, "error_message": None}
            try:
                await broker.acls.remove(acl)
            except FlexLogError as exc:
                body.update(error_code=kafka_error(exc), error_message=str(exc))
            matching.append(body)
        results.append({"error_code": ErrorCode.NONE, "error_message": None, "matching_acls": matching})
    return {"throttle_time_ms": 0, "filter_results": results}
