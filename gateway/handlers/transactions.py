"""Transactions: AddPartitionsToTxn (24), AddOffsetsToTxn (25), EndTxn (26), TxnOffsetCommit (28),
DescribeProducers (61), DescribeTransactions (65), ListTransactions (66).

The coordinator's decisions are in ``gateway/transaction_coordinator.py`` and
its log in ``gateway/transactions.py``; these handlers check authorization and
routing and translate. AddPartitionsToTxn v4+ is Kafka's broker-to-broker form
(several transactions per request, and verify-only checks); it needs
CLUSTER_ACTION, as in Kafka.
"""

from __future__ import annotations

from flexlog.core.errors import FlexLogError
from flexlog.gateway import authz
from flexlog.gateway.authz import Operation
from flexlog.gateway.broker import Broker
from flexlog.gateway.handlers.offset_commit_fetch import commit_answer, commit_routing_error, commit_rows
from flexlog.gateway.handlers.registry import Body, serves
from flexlog.gateway.protocol import ApiKey, ErrorCode, Request
from flexlog.gateway.transaction_state import TxnStatus

BATCHED_FROM_VERSION = 4
# PRODUCER_FENCED arrived with these versions (KIP-588); older clients know INVALID_PRODUCER_EPOCH.
FENCED_FROM_VERSION = {ApiKey.INIT_PRODUCER_ID: 4, ApiKey.ADD_PARTITIONS_TO_TXN: 2,
                       ApiKey.ADD_OFFSETS_TO_TXN: 2, ApiKey.END_TXN: 2, ApiKey.TXN_OFFSET_COMMIT: 3}


def compatible_error(code: ErrorCode, request: Request) -> ErrorCode:
    if code == ErrorCode.PRODUCER_FENCED and request.api_version < FENCED_FROM_VERSION[request.api_key]:
        return ErrorCode.INVALID_PRODUCER_EPOCH
    return code


def txn_error(broker: Broker, txn_id: str, operation: Operation = Operation.WRITE) -> ErrorCode:
    """Authorization and routing of a request about one transactional id."""
    if not txn_id:
        return ErrorCode.INVALID_REQUEST
    if not authz.transactional_id_allowed(broker, operation, txn_id):
        return ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    if not broker.transactions.coordinates(txn_id):
        return ErrorCode.NOT_COORDINATOR
    return ErrorCode.NONE


def _topic_results(codes: dict[tuple[str, int], ErrorCode]) -> list[Body]:
    by_topic: dict[str, list[Body]] = {}
    for (topic, index), code in codes.items():
        by_topic.setdefault(topic, []).append({"partition_index": index, "partition_error_code": code})
    return [{"name": t, "results_by_partition": parts} for t, parts in by_topic.items()]


async def _add_partitions(broker: Broker, request: Request, txn_id: str, producer_id: int, epoch: int,
                          topics: list[Body], verify_only: bool) -> dict[tuple[str, int], ErrorCode]:
    partitions = [(t["name"], p) for t in topics for p in t["partitions"]]
    error = txn_error(broker, txn_id)
    if not error:
        denied = [p for p in partitions if not authz.topic_allowed(broker, Operation.WRITE, p[0])]
        if denied:
            return {p: ErrorCode.TOPIC_AUTHORIZATION_FAILED if p in denied
                    else ErrorCode.OPERATION_NOT_ATTEMPTED for p in partitions}
    if error:
        return dict.fromkeys(partitions, error)
    if verify_only:
        state = broker.transactions.state
        await broker.transactions.log.sync()
        txn = state.txns.get(txn_id)
        held = {(p.topic, p.partition) for p in txn.partitions} if txn and txn.status == TxnStatus.ONGOING \
            and (txn.producer_id, txn.epoch) == (producer_id, epoch) else set()
        return {p: ErrorCode.NONE if p in held else ErrorCode.INVALID_TXN_STATE for p in partitions}
    try:
        codes = await broker.transactions.add_partitions(txn_id, producer_id, epoch, partitions)
    except FlexLogError:
        return dict.fromkeys(partitions, ErrorCode.COORDINATOR_NOT_AVAILABLE)
    return {p: compatible_error(c, request) for p, c in codes.items()}


@serves(ApiKey.ADD_PARTITIONS_TO_TXN, 0, 5)
async def handle_add_partitions_to_txn(broker: Broker, request: Request) -> Body:
    body = request.body
    if request.api_version < BATCHED_FROM_VERSION:
        codes = await _add_partitions(broker, request, body["v3_and_below_transactional_id"],
                                      body["v3_and_below_producer_id"], body["v3_and_below_producer_epoch"],
                                      body["v3_and_below_topics"], verify_only=False)
        return {"throttle_time_ms": 0, "results_by_topic_v3_and_below": _topic_results(codes)}
    if not authz.cluster_allowed(broker, Operation.CLUSTER_ACTION):
        return {"throttle_time_ms": 0, "error_code": ErrorCode.CLUSTER_AUTHORIZATION_FAILED,
                "results_by_transaction": []}
    results = []
    for txn in body["transactions"]:
        codes = await _add_partitions(broker, request, txn["transactional_id"], txn["producer_id"],
                                      txn["producer_epoch"], txn["topics"], txn["verify_only"])
        results.append({"transactional_id": txn["transactional_id"], "topic_results": _topic_results(codes)})
    return {"throttle_time_ms": 0, "error_code": ErrorCode.NONE, "results_by_transaction": results}


@serves(ApiKey.ADD_OFFSETS_TO_TXN, 0, 4)
async def handle_add_offsets_to_txn(broker: Broker, request: Request) -> Body:
    body = request.body
    error = txn_error(broker, body["transactional_id"])
    if not error and not authz.group_allowed(broker, Operation.READ, body["group_id"]):
        error = ErrorCode.GROUP_AUTHORIZATION_FAILED
    if not error:
        try:
            error = await broker.transactions.add_offsets(body["transactional_id"], body["producer_id"],
                                                          body["producer_epoch"], body["group_id"])
        except FlexLogError:
            error = ErrorCode.COORDINATOR_NOT_AVAILABLE
    return {"throttle_time_ms": 0, "error_code": compatible_error(error, request)}


@serves(ApiKey.END_TXN, 0, 4)
async def handle_end_txn(broker: Broker, request: Request) -> Body:
    body = request.body
    error = txn_error(broker, body["transactional_id"])
    if not error:
        try:
            error = await broker.transactions.end(body["transactional_id"], body["producer_id"],
                                                  body["producer_epoch"], body["committed"])
        except FlexLogError:
            error = ErrorCode.COORDINATOR_NOT_AVAILABLE
    return {"throttle_time_ms": 0, "error_code": compatible_error(error, request)}


@serves(ApiKey.TXN_OFFSET_COMMIT, 0, 4)
async def handle_txn_offset_commit(broker: Broker, request: Request) -> Body:
    """Sent to the group's coordinator: the offsets wait, pending, for the transaction's end."""
    body = request.body
    group_id, topics = body["group_id"], body["topics"]
    keys = [(t["name"], p["partition_index"]) for t in topics for p in t["partitions"]]
    txn_id, producer_id = body["transactional_id"], body["producer_id"]
    if not authz.transactional_id_allowed(broker, Operation.WRITE, txn_id):
        error = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    else:
        error = commit_routing_error(broker, group_id)
    if not error:
        # Admitted, the transaction's end waits for these offsets to be appended.
        error = compatible_error(await broker.transactions.admit_offsets(
            txn_id, producer_id, body["producer_epoch"], group_id), request)
        if not error:
            try:
                codes = await _store_pending(broker, body, request)
            finally:
                broker.transactions.admitted_offsets(group_id, producer_id)
    if error:
        codes = dict.fromkeys(keys, error)
    return commit_answer(topics, codes)


async def _store_pending(broker: Broker, body: Body, request: Request) -> dict[tuple[str, int], ErrorCode]:
    """v3+ carries the consumer's generation and member, which fence a consumer that left the group."""
    groups, group_id, topics = broker.groups, body["group_id"], body["topics"]
    keys = [(t["name"], p["partition_index"]) for t in topics for p in t["partitions"]]
    if request.api_version >= 3 and body["generation_id"] >= 0:
        error = groups.commit_check(group_id, body["generation_id"], body["member_id"],
                                    body.get("group_instance_id"), request.api_version)
        if error:
            return dict.fromkeys(keys, error)
    codes, rows = await commit_rows(broker, topics)
    if rows:
        try:
            await groups.offsets.open()
            await groups.offsets.commit_pending(group_id, body["producer_id"], rows, groups.wall_ms())
        except FlexLogError:
            return dict.fromkeys(keys, ErrorCode.COORDINATOR_NOT_AVAILABLE)
    return codes


@serves(ApiKey.DESCRIBE_TRANSACTIONS, 0, 0)
async def handle_describe_transactions(broker: Broker, request: Request) -> Body:
    states = []
    for txn_id in request.body["transactional_ids"]:
        error = txn_error(broker, txn_id, Operation.DESCRIBE)
        txn = broker.transactions.state.txns.get(txn_id)
        if not error and txn is None:
            error = ErrorCode.TRANSACTIONAL_ID_NOT_FOUND
        if error or txn is None:
            states.append({"error_code": error, "transactional_id": txn_id, "transaction_state": "",
                           "transaction_timeout_ms": 0, "transaction_start_time_ms": -1,
                           "producer_id": -1, "producer_epoch": -1, "topics": []})
            continue
        topics: dict[str, list[int]] = {}
        for p in txn.partitions:
            topics.setdefault(p.topic, []).append(p.partition)
        states.append({"error_code": ErrorCode.NONE, "transactional_id": txn_id,
                       "transaction_state": txn.status.value, "transaction_timeout_ms": txn.timeout_ms,
                       "transaction_start_time_ms": txn.start_ms, "producer_id": txn.producer_id,
                       "producer_epoch": txn.epoch,
                       "topics": [{"topic": t, "partitions": ps} for t, ps in topics.items()]})
    return {"throttle_time_ms": 0, "transaction_states": states}


@serves(ApiKey.LIST_TRANSACTIONS, 0, 1)
async def handle_list_transactions(broker: Broker, request: Request) -> Body:
    """The ids this gateway coordinates (admin clients ask every broker and merge the answers)."""
    body = request.body
    known = {s.value for s in TxnStatus}
    wanted = set(body["state_filters"])
    pids = set(body["producer_id_filters"])
    min_age = body.get("duration_filter", -1)
    now = broker.transactions.now_ms()
    listed = []
    for txn in broker.transactions.coordinated():
        if (wanted and txn.status.value not in wanted) or (pids and txn.producer_id not in pids):
            continue
        if min_age >= 0 and (not txn.status.open or now - txn.start_ms < min_age):
            continue
        if not authz.transactional_id_allowed(broker, Operation.DESCRIBE, txn.txn_id):
            continue
        listed.append({"transactional_id": txn.txn_id, "producer_id": txn.producer_id,
                       "transaction_state": txn.status.value})
    return {"throttle_time_ms": 0, "error_code": ErrorCode.NONE,
            "unknown_state_filters": sorted(wanted - known), "transaction_states": listed}


@serves(ApiKey.DESCRIBE_PRODUCERS, 0, 0)
async def handle_describe_producers(broker: Broker, request: Request) -> Body:
    """The producers the partition leader's idempotence state knows, with their open transaction."""
    topics = []
    for t in request.body["topics"]:
        parts = []
        topic = await broker.topics.lookup(t["name"])
        for index in t["partition_indexes"]:
            part: Body = {"partition_index": index, "error_code": ErrorCode.NONE, "error_message": None,
                          "active_producers": []}
            if not authz.topic_allowed(broker, Operation.READ, t["name"]):
                part["error_code"] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            elif topic is None or not 0 <= index < topic.partitions:
                part["error_code"] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            elif not broker.leads(index):
                part["error_code"] = ErrorCode.NOT_LEADER_OR_FOLLOWER
            else:
                try:
                    color = await broker.topics.color(t["name"], index)
                    await broker.idempotence.ensure_loaded(color)
                except FlexLogError:
                    part["error_code"] = ErrorCode.COORDINATOR_NOT_AVAILABLE
                else:
                    part["active_producers"] = _producers(broker, color.id)
            parts.append(part)
        topics.append({"name": t["name"], "partitions": parts})
    return {"throttle_time_ms": 0, "topics": topics}


def _producers(broker: Broker, color: int) -> list[Body]:
    open_first = {t.producer_id: p.first for t in broker.transactions.state.txns.values() if t.status.open
                  for p in t.partitions if p.color == color}
    return [{"producer_id": pid, "producer_epoch": entry.epoch, "last_sequence": entry.last_sequence,
             "last_timestamp": -1, "coordinator_epoch": -1,
             "current_txn_start_offset": open_first.get(pid, -1)}
            for (pid, c), entry in sorted(broker.idempotence.states.entries.items()) if c == color]
