"""DescribeClientQuotas (48), AlterClientQuotas (49): quotas in ``__quotas`` as admin clients manage them.

As in Kafka, describing needs DESCRIBE_CONFIGS on the cluster and altering needs
ALTER_CONFIGS; entities are users and client-ids (named or default), keys the
byte rates and request_percentage this gateway enforces (gateway/quotas.py).
"""

from __future__ import annotations

from flexlog.core.errors import FlexLogError
from flexlog.gateway import authz
from flexlog.gateway.acls import Operation
from flexlog.gateway.broker import Broker
from flexlog.gateway.handlers.errors import kafka_error
from flexlog.gateway.handlers.registry import Body, serves
from flexlog.gateway.protocol import ApiKey, ErrorCode, Request
from flexlog.gateway.quotas import (
    ENTITY_TYPES,
    MATCH_DEFAULT,
    MATCH_EXACT,
    MATCH_SPECIFIED,
    entity,
    filter_matches,
    invalid_entity,
    invalid_op,
)

DENIED = "not authorized to {} client quotas (needs {} on the cluster)"


def _entity_body(parts: list[tuple[str, str | None]]) -> list[Body]:
    return [{"entity_type": t, "entity_name": n} for t, n in parts]


def _invalid_filter(components: list[tuple[str, int, str | None]]) -> str | None:
    types = [t for t, _, _ in components]
    if len(set(types)) != len(types):
        return "an entity type appears twice in the filter"
    for entity_type, match_type, match in components:
        if entity_type not in ENTITY_TYPES:
            return f"entity type {entity_type!r} is not supported (only {', '.join(ENTITY_TYPES)})"
        if match_type not in (MATCH_EXACT, MATCH_DEFAULT, MATCH_SPECIFIED):
            return f"match type {match_type} is unknown"
        if (match_type == MATCH_EXACT) != (match is not None):
            return "a match string is given exactly when matching an exact name"
    return None


@serves(ApiKey.DESCRIBE_CLIENT_QUOTAS, 0, 1)
async def handle_describe_client_quotas(broker: Broker, request: Request) -> Body:
    def refuse(code: ErrorCode, message: str) -> Body:
        return {"throttle_time_ms": 0, "error_code": code, "error_message": message, "entries": None}

    if not authz.cluster_allowed(broker, Operation.DESCRIBE_CONFIGS):
        return refuse(ErrorCode.CLUSTER_AUTHORIZATION_FAILED, DENIED.format("describe", "DESCRIBE_CONFIGS"))
    components = [(c["entity_type"], c["match_type"], c["match"]) for c in request.body["components"]]
    problem = _invalid_filter(components)
    if problem:
        return refuse(ErrorCode.INVALID_REQUEST, problem)
    await broker.quotas.log.sync()
    entries = [{"entity": _entity_body(list(e)),
                "values": [{"key": k, "value": v} for k, v in sorted(values.items())]}
               for e, values in sorted(broker.quotas.quotas.items(), key=lambda kv: str(kv[0]))
               if filter_matches(components, request.body["strict"], e)]
    return {"throttle_time_ms": 0, "error_code": ErrorCode.NONE, "error_message": None,
            "entries": entries}


@serves(ApiKey.ALTER_CLIENT_QUOTAS, 0, 1)
async def handle_alter_client_quotas(broker: Broker, request: Request) -> Body:
    allowed = authz.cluster_allowed(broker, Operation.ALTER_CONFIGS)
    results = []
    for item in request.body["entries"]:
        parts = [(p["entity_type"], p["entity_name"]) for p in item["entity"]]
        result: Body = {"error_code": ErrorCode.NONE, "error_message": None,
                        "entity": _entity_body(parts)}
        results.append(result)
        problem = invalid_entity(parts) or next(
            (p for op in item["ops"] if (p := invalid_op(op["key"], op["value"], op["remove"]))), None)
        if not allowed:
            result.update(error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED,
                          error_message=DENIED.format("alter", "ALTER_CONFIGS"))
        elif problem:
            result.update(error_code=ErrorCode.INVALID_REQUEST, error_message=problem)
        elif not request.body["validate_only"]:
            set_values = {op["key"]: op["value"] for op in item["ops"] if not op["remove"]}
            remove = [op["key"] for op in item["ops"] if op["remove"]]
            try:
                await broker.quotas.alter(entity(parts), set_values, remove)
            except FlexLogError as exc:
                result.update(error_code=kafka_error(exc), error_message=str(exc))
    return {"throttle_time_ms": 0, "entries": results}
