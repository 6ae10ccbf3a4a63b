"""Classic consumer groups: coordinator lookup, membership and committed offsets."""

from __future__ import annotations

from ..schema import (
    BOOL,
    BYTES,
    INT8,
    INT16,
    INT32,
    INT64,
    STRING,
    Api,
    array,
)
from ..schema import Field as F

FIND_COORDINATOR = Api(
    key=10,
    name="FindCoordinator",
    # 5 only allows a new error (transactions), 6 the key type of share groups (KIP-932): same fields.
    versions=(0, 6),
    flexible=3,
    request=(
        F("key", STRING, "0-3"),
        F("key_type", INT8, "1+"),
        F("coordinator_keys", array(STRING), "4+"),
    ),
    response=(
        F("throttle_time_ms", INT32, "1+"),
        F("error_code", INT16, "0-3"),
        F("error_message", STRING, "1-3", nullable="1-3"),
        F("node_id", INT32, "0-3"),
        F("host", STRING, "0-3"),
        F("port", INT32, "0-3"),
        F("coordinators", array([
            F("key", STRING, "4+"),
            F("node_id", INT32, "4+"),
            F("host", STRING, "4+"),
            F("port", INT32, "4+"),
            F("error_code", INT16, "4+"),
            F("error_message", STRING, "4+", nullable="4+"),
        ]), "4+"),
    ),
)

JOIN_GROUP = Api(
    key=11,
    name="JoinGroup",
    versions=(0, 9),
    flexible=6,
    request=(
        F("group_id", STRING),
        F("session_timeout_ms", INT32),
        F("rebalance_timeout_ms", INT32, "1+", default=-1),
        F("member_id", STRING),
        F("group_instance_id", STRING, "5+", nullable="5+", default=None),
        F("protocol_type", STRING),
        F("protocols", array([
            F("name", STRING),
            F("metadata", BYTES),
        ])),
        F("reason", STRING, "8+", nullable="8+", default=None),
    ),
    response=(
        F("throttle_time_ms", INT32, "2+"),
        F("error_code", INT16),
        F("generation_id", INT32, default=-1),
        F("protocol_type", STRING, "7+", nullable="7+", default=None),
        F("protocol_name", STRING, nullable="7+"),
        F("leader", STRING),
        F("skip_assignment", BOOL, "9+"),
        F("member_id", STRING),
        F("members", array([
            F("member_id", STRING),
            F("group_instance_id", STRING, "5+", nullable="5+", default=None),
            F("metadata", BYTES),
        ])),
    ),
)

SYNC_GROUP = Api(
    key=14,
    name="SyncGroup",
    versions=(0, 5),
    flexible=4,
    request=(
        F("group_id", STRING),
        F("generation_id", INT32),
        F("member_id", STRING),
        F("group_instance_id", STRING, "3+", nullable="3+", default=None),
        F("protocol_type", STRING, "5+", nullable="5+", default=None),
        F("protocol_name", STRING, "5+", nullable="5+", default=None),
        F("assignments", array([
            F("member_id", STRING),
            F("assignment", BYTES),
        ])),
    ),
    response=(
        F("throttle_time_ms", INT32, "1+"),
        F("error_code", INT16),
        F("protocol_type", STRING, "5+", nullable="5+", default=None),
        F("protocol_name", STRING, "5+", nullable="5+", default=None),
        F("assignment", BYTES),
    ),
)

HEARTBEAT = Api(
    key=12,
    name="Heartbeat",
    versions=(0, 4),
    flexible=4,
    request=(
        F("group_id", STRING),
        F("generation_id", INT32),
        F("member_id", STRING),
        F("group_instance_id", STRING, "3+", nullable="3+", default=None),
    ),
    response=(
        F("throttle_time_ms", INT32, "1+"),
        F("error_code", INT16),
    ),
)

LEAVE_GROUP = Api(
    key=13,
    name="LeaveGroup",
    versions=(0, 5),
    flexible=4,
    request=(
        F("group_id", STRING),
        F("member_id", STRING, "0-2"),
        F("members", array([
            F("member_id", STRING, "3+"),
            F("group_instance_id", STRING, "3+", nullable="3+", default=None),
            F("reason", STRING, "5+", nullable="5+", default=None),
        ]), "3+"),
    ),
    response=(
        F("throttle_time_ms", INT32, "1+"),
        F("error_code", INT16),
        F("members", array([
            F("member_id", STRING, "3+"),
            F("group_instance_id", STRING, "3+", nullable="3+"),
            F("error_code", INT16, "3+"),
        ]), "3+"),
    ),
)

DESCRIBE_GROUPS = Api(
    key=15,
    name="DescribeGroups",
    versions=(0, 5),
    flexible=5,
    request=(
        F("groups", array(STRING)),
        F("include_authorized_operations", BOOL, "3+"),
    ),
    response=(
        F("throttle_time_ms", INT32, "1+"),
        F("groups", array([
            F("error_code", INT16),
            F("group_id", STRING),
            F("group_state", STRING),
            F("protocol_type", STRING),
            F("protocol_data", STRING),
            F("members", array([
                F("member_id", STRING),
                F("group_instance_id", STRING, "4+", nullable="4+", default=None),
                F("client_id", STRING),
                F("client_host", STRING),
                F("member_metadata", BYTES),
                F("member_assignment", BYTES),
            ])),
            F("authorized_operations", INT32, "3+", default=-(2**31)),
        ])),
    ),
)

LIST_GROUPS = Api(
    key=16,
    name="ListGroups",
    versions=(0, 5),
    flexible=3,
    request=(
        F("states_filter", array(STRING), "4+"),
        F("types_filter", array(STRING), "5+"),
    ),
    response=(
        F("throttle_time_ms", INT32, "1+"),
        F("error_code", INT16),
        F("groups", array([
            F("group_id", STRING),
            F("protocol_type", STRING),
            F("group_state", STRING, "4+"),
            F("group_type", STRING, "5+"),
        ])),
    ),
)

DELETE_GROUPS = Api(
    key=42,
    name="DeleteGroups",
    versions=(0, 2),
    flexible=2,
    request=(F("groups_names", array(STRING)),),
    response=(
        F("throttle_time_ms", INT32),
        F("results", array([
            F("group_id", STRING),
            F("error_code", INT16),
        ])),
    ),
)

OFFSET_COMMIT = Api(
    key=8,
    name="OffsetCommit",
    versions=(1, 9),
    flexible=8,
    request=(
        F("group_id", STRING),
        F("generation_id_or_member_epoch", INT32, "1+", default=-1),
        F("member_id", STRING, "1+"),
        F("group_instance_id", STRING, "7+", nullable="7+", default=None),
        F("retention_time_ms", INT64, "2-4", default=-1),
        F("topics", array([
            F("name", STRING),
            F("partitions", array([
                F("partition_index", INT32),
                F("committed_offset", INT64),
                F("committed_leader_epoch", INT32, "6+", default=-1),
                F("commit_timestamp", INT64, "1", default=-1),
                F("committed_metadata", STRING, nullable="0+"),
            ])),
        ])),
    ),
    response=(
        F("throttle_time_ms", INT32, "3+"),
        F("topics", array([
            F("name", STRING),
            F("partitions", array([
                F("partition_index", INT32),
                F("error_code", INT16),
            ])),
        ])),
    ),
)

OFFSET_FETCH = Api(
    key=9,
    name="OffsetFetch",
    # 8+ batches several groups in one request (groups[]); 0-7 carry a single group_id.
    versions=(1, 9),
    flexible=6,
    request=(
        F("group_id", STRING, "0-7"),
        F("topics", array([
            F("name", STRING, "0-7"),
            F("partition_indexes", array(INT32), "0-7"),
        ]), "0-7", nullable="2-7"),
        F("groups", array([
            F("group_id", STRING, "8+"),
            F("member_id", STRING, "9+", nullable="9+", default=None),
            F("member_epoch", INT32, "9+", default=-1),
            F("topics", array([
                F("name", STRING, "8+"),
                F("partition_indexes", array(INT32), "8+"),
            ]), "8+", nullable="8+"),
        ]), "8+"),
        F("require_stable", BOOL, "7+"),
    ),
    response=(
        F("throttle_time_ms", INT32, "3+"),
        F("topics", array([
            F("name", STRING, "0-7"),
            F("partitions", array([
                F("partition_index", INT32, "0-7"),
                F("committed_offset", INT64, "0-7"),
                F("committed_leader_epoch", INT32, "5-7", default=-1),
                F("metadata", STRING, "0-7", nullable="0-7"),
                F("error_code", INT16, "0-7"),
            ]), "0-7"),
        ]), "0-7"),
        F("error_code", INT16, "2-7"),
        F("groups", array([
            F("group_id", STRING, "8+"),
            F("topics", array([
                F("name", STRING, "8+"),
                F("partitions", array([
                    F("partition_index", INT32, "8+"),
                    F("committed_offset", INT64, "8+"),
                    F("committed_leader_epoch", INT32, "8+", default=-1),
                    F("metadata", STRING, "8+", nullable="8+"),
                    F("error_code", INT16, "8+"),
                ]), "8+"),
            ]), "8+"),
            F("error_code", INT16, "8+"),
        ]), "8+"),
    ),
)
