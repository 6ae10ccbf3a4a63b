"""Transactions: AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit,
DescribeProducers, DescribeTransactions, ListTransactions (Kafka 3.9's ranges).

InitProducerId, which starts a transactional producer, lives in data_plane.py;
Fetch's isolation level and aborted transactions there too.
"""

from __future__ import annotations

from ..schema import BOOL, INT16, INT32, INT64, STRING, Api, array
from ..schema import Field as F

# AddPartitionsToTxn's topic, the same in the v0-3 body and in each v4+ transaction.
_TXN_TOPIC = [
    F("name", STRING),
    F("partitions", array(INT32)),
]

# AddPartitionsToTxn's per-topic result, the same in v0-3 and v4+.
_TXN_TOPIC_RESULT = [
    F("name", STRING),
    F("results_by_partition", array([
        F("partition_index", INT32),
        F("partition_error_code", INT16),
    ])),
]

ADD_PARTITIONS_TO_TXN = Api(
    key=24,
    name="AddPartitionsToTxn",
    versions=(0, 5),
    flexible=3,
    request=(
        # v4+ (broker to broker, KIP-890) batches transactions; a client sends v0-3's single one.
        F("transactions", array([
            F("transactional_id", STRING, "4+"),
            F("producer_id", INT64, "4+"),
            F("producer_epoch", INT16, "4+"),
            F("verify_only", BOOL, "4+", default=False),
            F("topics", array(_TXN_TOPIC), "4+"),
        ]), "4+"),
        F("v3_and_below_transactional_id", STRING, "0-3"),
        F("v3_and_below_producer_id", INT64, "0-3"),
        F("v3_and_below_producer_epoch", INT16, "0-3"),
        F("v3_and_below_topics", array(_TXN_TOPIC), "0-3"),
    ),
    response=(
        F("throttle_time_ms", INT32),
        F("error_code", INT16, "4+"),
        F("results_by_transaction", array([
            F("transactional_id", STRING, "4+"),
            F("topic_results", array(_TXN_TOPIC_RESULT), "4+"),
        ]), "4+"),
        F("results_by_topic_v3_and_below", array(_TXN_TOPIC_RESULT), "0-3"),
    ),
)

ADD_OFFSETS_TO_TXN = Api(
    key=25,
    name="AddOffsetsToTxn",
    versions=(0, 4),
    flexible=3,
    request=(
        F("transactional_id", STRING),
        F("producer_id", INT64),
        F("producer_epoch", INT16),
        F("group_id", STRING),
    ),
    response=(
        F("throttle_time_ms", INT32),
        F("error_code", INT16),
    ),
)

END_TXN = Api(
    key=26,
    name="EndTxn",
    versions=(0, 4),
    flexible=3,
    request=(
        F("transactional_id", STRING),
        F("producer_id", INT64),
        F("producer_epoch", INT16),
        F("committed", BOOL),  # False: abort
    ),
    response=(
        F("throttle_time_ms", INT32),
        F("error_code", INT16),
    ),
)

TXN_OFFSET_COMMIT = Api(
    key=28,
    name="TxnOffsetCommit",
    versions=(0, 4),
    flexible=3,
    request=(
        F("transactional_id", STRING),
        F("group_id", STRING),
        F("producer_id", INT64),
        F("producer_epoch", INT16),
        # v3+ lets the coordinator fence a zombie group member (KIP-447).
        F("generation_id", INT32, "3+", default=-1),
        F("member_id", STRING, "3+"),
        F("group_instance_id", STRING, "3+", nullable="3+", default=None),
        F("topics", array([
            F("name", STRING),
            F("partitions", array([
                F("partition_index", INT32),
                F("committed_offset", INT64),
                F("committed_leader_epoch", INT32, "2+", default=-1),
                F("committed_metadata", STRING, nullable="0+"),
            ])),
        ])),
    ),
    response=(
        F("throttle_time_ms", INT32),
        F("topics", array([
            F("name", STRING),
            F("partitions", array([
                F("partition_index", INT32),
                F("error_code", INT16),
            ])),
        ])),
    ),
)

DESCRIBE_PRODUCERS = Api(
    key=61,
    name="DescribeProducers",
    versions=(0, 0),
    flexible=0,
    request=(
        F("topics", array([
            F("name", STRING),
            F("partition_indexes", array(INT32)),
        ])),
    ),
    response=(
        F("throttle_time_ms", INT32),
        F("topics", array([
            F("name", STRING),
            F("partitions", array([
                F("partition_index", INT32),
                F("error_code", INT16),
                F("error_message", STRING, nullable="0+", default=None),
                F("active_producers", array([
                    F("producer_id", INT64),
                    F("producer_epoch", INT32),  # int32 here, unlike everywhere else
                    F("last_sequence", INT32, default=-1),
                    F("last_timestamp", INT64, default=-1),
                    F("coordinator_epoch", INT32),
                    F("current_txn_start_offset", INT64, default=-1),
                ])),
            ])),
        ])),
    ),
)

DESCRIBE_TRANSACTIONS = Api(
    key=65,
    name="DescribeTransactions",
    versions=(0, 0),
    flexible=0,
    request=(
        F("transactional_ids", array(STRING)),
    ),
    response=(
        F("throttle_time_ms", INT32),
        F("transaction_states", array([
            F("error_code", INT16),
            F("transactional_id", STRING),
            F("transaction_state", STRING),
            F("transaction_timeout_ms", INT32),
            F("transaction_start_time_ms", INT64),
            F("producer_id", INT64),
            F("producer_epoch", INT16),
            # The partitions in the transaction (only those still without a marker once ending).
            F("topics", array([
                F("topic", STRING),
                F("partitions", array(INT32)),
            ])),
        ])),
    ),
)

LIST_TRANSACTIONS = Api(
    key=66,
    name="ListTransactions",
    versions=(0, 1),
    flexible=0,
    request=(
        # Empty filters match everything.
        F("state_filters", array(STRING)),
        F("producer_id_filters", array(INT64)),
        F("duration_filter", INT64, "1+", default=-1),  # ms; negative: no filter
    ),
    response=(
        F("throttle_time_ms", INT32),
        F("error_code", INT16),
        F("unknown_state_filters", array(STRING)),
        F("transaction_states", array([
            F("transactional_id", STRING),
            F("producer_id", INT64),
            F("transaction_state", STRING),
        ])),
    ),
)
