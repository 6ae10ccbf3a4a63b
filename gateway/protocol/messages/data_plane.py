"""Reading and writing the log: Produce, Fetch, ListOffsets, OffsetForLeaderEpoch,
DeleteRecords, InitProducerId."""

from __future__ import annotations

from ..schema import (
    INT8,
    INT16,
    INT32,
    INT64,
    RECORDS,
    STRING,
    UUID,
    Api,
    array,
    struct,
)
from ..schema import Field as F

# Shared by Produce v10+ and Fetch v12+ responses (KIP-951 leader hints).
_LEADER_ID_AND_EPOCH = [
    F("leader_id", INT32, default=-1),
    F("leader_epoch", INT32, default=-1),
]

PRODUCE = Api(
    key=0,
    name="Produce",
    versions=(0, 11),
    flexible=9,
    request=(
        F("transactional_id", STRING, "3+", nullable="3+", default=None),
        F("acks", INT16),
        F("timeout_ms", INT32),
        F("topic_data", array([
            F("name", STRING),
            F("partition_data", array([
                F("index", INT32),
                F("records", RECORDS, nullable="0+"),
            ])),
        ])),
    ),
    response=(
        F("responses", array([
            F("name", STRING),
            F("partition_responses", array([
                F("index", INT32),
                F("error_code", INT16),
                F("base_offset", INT64),
                F("log_append_time_ms", INT64, "2+", default=-1),
                F("log_start_offset", INT64, "5+", default=-1),
                F("record_errors", array([
                    F("batch_index", INT32, "8+"),
                    F("batch_index_error_message", STRING, "8+", nullable="8+", default=None),
                ]), "8+"),
                F("error_message", STRING, "8+", nullable="8+", default=None),
                F("current_leader", struct(_LEADER_ID_AND_EPOCH), "10+", tag=0),
            ])),
        ])),
        F("throttle_time_ms", INT32, "1+"),
        F("node_endpoints", array([
            F("node_id", INT32, "10+"),
            F("host", STRING, "10+"),
            F("port", INT32, "10+"),
            F("rack", STRING, "10+", nullable="10+", default=None),
        ]), "10+", tag=0),
    ),
)

FETCH = Api(
    key=1,
    name="Fetch",
    # 0-3 answer with message format v0/v1, which Kafka down-converts to; the gateway does not.
    versions=(4, 17),
    flexible=12,
    request=(
        F("cluster_id", STRING, "12+", nullable="12+", default=None, tag=0),
        F("replica_id", INT32, "0-14", default=-1),
        F("replica_state", struct([
            F("replica_id", INT32, default=-1),
            F("replica_epoch", INT64, default=-1),
        ]), "15+", tag=1),
        F("max_wait_ms", INT32),
        F("min_bytes", INT32),
        F("max_bytes", INT32, "3+", default=0x7FFFFFFF),
        F("isolation_level", INT8, "4+"),
        F("session_id", INT32, "7+"),
        F("session_epoch", INT32, "7+", default=-1),
        F("topics", array([
            F("topic", STRING, "0-12"),
            F("topic_id", UUID, "13+"),
            F("partitions", array([
                F("partition", INT32),
                F("current_leader_epoch", INT32, "9+", default=-1),
                F("fetch_offset", INT64),
                F("last_fetched_epoch", INT32, "12+", default=-1),
                F("log_start_offset", INT64, "5+", default=-1),
                F("partition_max_bytes", INT32),
                F("replica_directory_id", UUID, "17+", tag=0),
            ])),
        ])),
        F("forgotten_topics_data", array([
            F("topic", STRING, "7-12"),
            F("topic_id", UUID, "13+"),
            F("partitions", array(INT32), "7+"),
        ]), "7+"),
        F("rack_id", STRING, "11+"),
    ),
    response=(
        F("throttle_time_ms", INT32, "1+"),
        F("error_code", INT16, "7+"),
        F("session_id", INT32, "7+"),
        F("responses", array([
            F("topic", STRING, "0-12"),
            F("topic_id", UUID, "13+"),
            F("partitions", array([
                F("partition_index", INT32),
                F("error_code", INT16),
                F("high_watermark", INT64),
                F("last_stable_offset", INT64, "4+", default=-1),
                F("log_start_offset", INT64, "5+", default=-1),
                F("diverging_epoch", struct([
                    F("epoch", INT32, default=-1),
                    F("end_offset", INT64, default=-1),
                ]), "12+", tag=0),
                F("current_leader", struct(_LEADER_ID_AND_EPOCH), "12+", tag=1),
                F("snapshot_id", struct([
                    F("end_offset", INT64, default=-1),
                    F("epoch", INT32, default=-1),
                ]), "12+", tag=2),
                F("aborted_transactions", array([
                    F("producer_id", INT64),
                    F("first_offset", INT64),
                ]), "4+", nullable="4+"),
                F("preferred_read_replica", INT32, "11+", default=-1),
                F("records", RECORDS, nullable="0+"),
            ])),
        ])),
        F("node_endpoints", array([
            F("node_id", INT32, "16+"),
            F("host", STRING, "16+"),
            F("port", INT32, "16+"),
            F("rack", STRING, "16+", nullable="16+", default=None),
        ]), "16+", tag=0),
    ),
)

LIST_OFFSETS = Api(
    key=2,
    name="ListOffsets",
    versions=(1, 9),
    flexible=6,
    request=(
        F("replica_id", INT32),
        F("isolation_level", INT8, "2+"),
        F("topics", array([
            F("name", STRING),
            F("partitions", array([
                F("partition_index", INT32),
                F("current_leader_epoch", INT32, "4+", default=-1),
                F("timestamp", INT64),
                F("max_num_offsets", INT32, "0", default=1),
            ])),
        ])),
    ),
    response=(
        F("throttle_time_ms", INT32, "2+"),
        F("topics", array([
            F("name", STRING),
            F("partitions", array([
                F("partition_index", INT32),
                F("error_code", INT16),
                F("old_style_offsets", array(INT64), "0"),
                F("timestamp", INT64, "1+", default=-1),
                F("offset", INT64, "1+", default=-1),
                F("leader_epoch", INT32, "4+", default=-1),
            ])),
        ])),
    ),
)

OFFSET_FOR_LEADER_EPOCH = Api(
    key=23,
    name="OffsetForLeaderEpoch",
    versions=(0, 4),
    flexible=4,
    request=(
        F("replica_id", INT32, "3+", default=-2),
        F("topics", array([
            F("topic", STRING),
            F("partitions", array([
                F("partition", INT32),
                F("current_leader_epoch", INT32, "2+", default=-1),
                F("leader_epoch", INT32),
            ])),
        ])),
    ),
    response=(
        F("throttle_time_ms", INT32, "2+"),
        F("topics", array([
            F("topic", STRING),
            F("partitions", array([
                F("error_code", INT16),
                F("partition", INT32),
                F("leader_epoch", INT32, "1+", default=-1),
                F("end_offset", INT64, default=-1),
            ])),
        ])),
    ),
)

DELETE_RECORDS = Api(
    key=21,
    name="DeleteRecords",
    versions=(0, 2),
    flexible=2,
    request=(
        F("topics", array([
            F("name", STRING),
            F("partitions", array([
                F("partition_index", INT32),
                F("offset", INT64),
            ])),
        ])),
        F("timeout_ms", INT32),
    ),
    response=(
        F("throttle_time_ms", INT32),
        F("topics", array([
            F("name", STRING),
            F("partitions", array([
                F("partition_index", INT32),
                F("low_watermark", INT64),
                F("error_code", INT16),
            ])),
        ])),
    ),
)

INIT_PRODUCER_ID = Api(
    key=22,
    name="InitProducerId",
    versions=(0, 5),
    flexible=2,
    request=(
        F("transactional_id", STRING, nullable="0+"),
        F("transaction_timeout_ms", INT32),
        F("producer_id", INT64, "3+", default=-1),
        F("producer_epoch", INT16, "3+", default=-1),
    ),
    response=(
        F("throttle_time_ms", INT32),
        F("error_code", INT16),
        F("producer_id", INT64, default=-1),
        F("producer_epoch", INT16),
    ),
)
