"""InitProducerId (22): producer ids for idempotent and transactional producers.

A fresh idempotent producer gets a new id at epoch 0. One that passes its
current id and epoch (v3+, KIP-360, after a sequence error) keeps the id with
the epoch bumped, which restarts its sequences at 0; at the last epoch it gets a
new id instead. A transactional producer asks its transactional id's
coordinator, which keeps one id per transactional id and bumps its epoch on
every initialisation, fencing the previous producer (``gateway/transactions.py``).
"""

from __future__ import annotations

from flexlog.core.errors import FlexLogError
from flexlog.gateway import authz
from flexlog.gateway.authz import Operation
from flexlog.gateway.broker import Broker
from flexlog.gateway.handlers.registry import Body, serves
from flexlog.gateway.handlers.transactions import compatible_error, txn_error
from flexlog.gateway.protocol import ApiKey, ErrorCode, Request

MAX_EPOCH = 2**15 - 1


@serves(ApiKey.INIT_PRODUCER_ID, 0, 5)
async def handle_init_producer_id(broker: Broker, request: Request) -> Body:
    body = request.body
    if body["transactional_id"] is not None:
        return await _transactional(broker, request)
    # IDEMPOTENT_WRITE on the cluster, or (as Kafka 3.0+ accepts) WRITE on any topic.
    if not (authz.cluster_allowed(broker, Operation.IDEMPOTENT_WRITE) or authz.any_topic_writable(broker)):
        return {"throttle_time_ms": 0, "error_code": ErrorCode.CLUSTER_AUTHORIZATION_FAILED,
                "producer_id": -1, "producer_epoch": -1}
    producer_id, epoch = body.get("producer_id", -1), body.get("producer_epoch", -1)
    if producer_id >= 0 and 0 <= epoch < MAX_EPOCH:
        return {"throttle_time_ms": 0, "error_code": ErrorCode.NONE, "producer_id": producer_id,
                "producer_epoch": epoch + 1}
    try:
        producer_id = await broker.producer_ids.allocate()
    except FlexLogError:
        return {"throttle_time_ms": 0, "error_code": ErrorCode.COORDINATOR_NOT_AVAILABLE,
                "producer_id": -1, "producer_epoch": -1}
    return {"throttle_time_ms": 0, "error_code": ErrorCode.NONE, "producer_id": producer_id,
            "producer_epoch": 0}


async def _transactional(broker: Broker, request: Request) -> Body:
    body = request.body
    txn_id = body["transactional_id"]
    error = txn_error(broker, txn_id)
    if error:
        return {"throttle_time_ms": 0, "error_code": error, "producer_id": -1, "producer_epoch": -1}
    try:
        result = await broker.transactions.init_producer_id(
            txn_id, body["transaction_timeout_ms"], body.get("producer_id", -1),
            body.get("producer_epoch", -1))
    except FlexLogError:
        return {"throttle_time_ms": 0, "error_code": ErrorCode.COORDINATOR_NOT_AVAILABLE,
                "producer_id": -1, "producer_epoch": -1}
    return {"throttle_time_ms": 0, "error_code": compatible_error(result.error, request),
            "producer_id": result.producer_id,
            "producer_epoch": result.epoch}
