"""Admin client APIs about where partitions' replicas live: log dirs, leaders, reassignments.

Fields and versions as Apache Kafka 3.9's message definitions
(clients/src/main/resources/common/message/*.json) give them.
"""

from __future__ import annotations

from ..schema import BOOL, INT8, INT16, INT32, INT64, STRING, Api, array
from ..schema import Field as F

ALTER_REPLICA_LOG_DIRS = Api(
    key=34,
    name="AlterReplicaLogDirs",
    versions=(0, 2),
    flexible=2,
    request=(
        F("dirs", array([
            F("path", STRING),
            F("topics", array([
                F("name", STRING),
                F("partitions", array(INT32)),
            ])),
        ])),
    ),
    response=(
        F("throttle_time_ms", INT32),
        F("results", array([
            F("topic_name", STRING),
            F("partitions", array([
                F("partition_index", INT32),
                F("error_code", INT16),
            ])),
        ])),
    ),
)

DESCRIBE_LOG_DIRS = Api(
    key=35,
    name="DescribeLogDirs",
    versions=(0, 4),
    flexible=2,
    request=(
        F("topics", array([
            F("topic", STRING),
            F("partitions", array(INT32)),
        ]), nullable="0+"),
    ),
    response=(
        F("throttle_time_ms", INT32),
        F("error_code", INT16, "3+"),
        F("results", array([
            F("error_code", INT16),
            F("log_dir", STRING),
            F("topics", array([
                F("name", STRING),
                F("partitions", array([
                    F("partition_index", INT32),
                    F("partition_size", INT64),
                    F("offset_lag", INT64),
                    F("is_future_key", BOOL),
                ])),
            ])),
            F("total_bytes", INT64, "4+", default=-1),
            F("usable_bytes", INT64, "4+", default=-1),
        ])),
    ),
)

ELECT_LEADERS = Api(
    key=43,
    name="ElectLeaders",
    versions=(0, 2),
    flexible=2,
    request=(
        F("election_type", INT8, "1+"),
        F("topic_partitions", array([
            F("topic", STRING),
            F("partitions", array(INT32)),
        ]), nullable="0+"),
        F("timeout_ms", INT32, default=60000),
    ),
    response=(
        F("throttle_time_ms", INT32),
        F("error_code", INT16, "1+"),
        F("replica_election_results", array([
            F("topic", STRING),
            F("partition_result", array([
                F("partition_id", INT32),
                F("error_code", INT16),
                F("error_message", STRING, nullable="0+"),
            ])),
        ])),
    ),
)

ALTER_PARTITION_REASSIGNMENTS = Api(
    key=45,
    name="AlterPartitionReassignments",
    versions=(0, 0),
    flexible=0,
    request=(
        F("timeout_ms", INT32, default=60000),
        F("topics", array([
            F("name", STRING),
            F("partitions", array([
                F("partition_index", INT32),
                F("replicas", array(INT32), nullable="0+", default=None),
            ])),
        ])),
    ),
    response=(
        F("throttle_time_ms", INT32),
        F("error_code", INT16),
        F("error_message", STRING, nullable="0+"),
        F("responses", array([
            F("name", STRING),
            F("partitions", array([
                F("partition_index", INT32),
                F("error_code", INT16),
                F("error_message", STRING, nullable="0+"),
            ])),
        ])),
    ),
)

LIST_PARTITION_REASSIGNMENTS = Api(
    key=46,
    name="ListPartitionReassignments",
    versions=(0, 0),
    flexible=0,
    request=(
        F("timeout_ms", INT32, default=60000),
        F("topics", array([
            F("name", STRING),
            F("partition_indexes", array(INT32)),
        ]), nullable="0+", default=None),
    ),
    response=(
        F("throttle_time_ms", INT32),
        F("error_code", INT16),
        F("error_message", STRING, nullable="0+"),
        F("topics", array([
            F("name", STRING),
            F("partitions", array([
                F("partition_index", INT32),
                F("replicas", array(INT32)),
                F("adding_replicas", array(INT32)),
                F("removing_replicas", array(INT32)),
            ])),
        ])),
    ),
)
