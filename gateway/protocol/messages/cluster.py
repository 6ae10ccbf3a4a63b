"""Connection setup and cluster discovery: ApiVersions, Metadata, SASL, DescribeCluster."""

from __future__ import annotations

from ..schema import (
    BOOL,
    BYTES,
    INT8,
    INT16,
    INT32,
    INT64,
    STRING,
    UUID,
    Api,
    array,
)
from ..schema import Field as F

NO_AUTHORIZED_OPERATIONS = -(2**31)

API_VERSIONS = Api(
    key=18,
    name="ApiVersions",
    versions=(0, 4),
    flexible=3,
    request=(
        F("client_software_name", STRING, "3+"),
        F("client_software_version", STRING, "3+"),
    ),
    response=(
        F("error_code", INT16),
        F("api_keys", array([
            F("api_key", INT16),
            F("min_version", INT16),
            F("max_version", INT16),
        ])),
        F("throttle_time_ms", INT32, "1+"),
        F("supported_features", array([
            F("name", STRING, "3+"),
            F("min_version", INT16, "3+"),
            F("max_version", INT16, "3+"),
        ]), "3+", tag=0),
        F("finalized_features_epoch", INT64, "3+", default=-1, tag=1),
        F("finalized_features", array([
            F("name", STRING, "3+"),
            F("max_version_level", INT16, "3+"),
            F("min_version_level", INT16, "3+"),
        ]), "3+", tag=2),
        F("zk_migration_ready", BOOL, "3+", tag=3),
    ),
)

METADATA = Api(
    key=3,
    name="Metadata",
    versions=(0, 12),
    flexible=9,
    request=(
        # Null (v1+) asks for every topic; v0 used an empty array for that.
        F("topics", array([
            F("topic_id", UUID, "10+"),
            F("name", STRING, nullable="10+"),
        ]), nullable="1+"),
        F("allow_auto_topic_creation", BOOL, "4+", default=True),
        F("include_cluster_authorized_operations", BOOL, "8-10"),
        F("include_topic_authorized_operations", BOOL, "8+"),
    ),
    response=(
        F("throttle_time_ms", INT32, "3+"),
        F("brokers", array([
            F("node_id", INT32),
            F("host", STRING),
            F("port", INT32),
            F("rack", STRING, "1+", nullable="1+", default=None),
        ])),
        F("cluster_id", STRING, "2+", nullable="2+", default=None),
        F("controller_id", INT32, "1+", default=-1),
        F("topics", array([
            F("error_code", INT16),
            F("name", STRING, nullable="12+"),
            F("topic_id", UUID, "10+"),
            F("is_internal", BOOL, "1+"),
            F("partitions", array([
                F("error_code", INT16),
                F("partition_index", INT32),
                F("leader_id", INT32),
                F("leader_epoch", INT32, "7+", default=-1),
                F("replica_nodes", array(INT32)),
                F("isr_nodes", array(INT32)),
                F("offline_replicas", array(INT32), "5+"),
            ])),
            F("topic_authorized_operations", INT32, "8+", default=NO_AUTHORIZED_OPERATIONS),
        ])),
        F("cluster_authorized_operations", INT32, "8-10", default=NO_AUTHORIZED_OPERATIONS),
    ),
)

SASL_HANDSHAKE = Api(
    key=17,
    name="SaslHandshake",
    versions=(0, 1),
    flexible=None,
    request=(F("mechanism", STRING),),
    response=(
        F("error_code", INT16),
        F("mechanisms", array(STRING)),
    ),
)

SASL_AUTHENTICATE = Api(
    key=36,
    name="SaslAuthenticate",
    versions=(0, 2),
    flexible=2,
    request=(F("auth_bytes", BYTES),),
    response=(
        F("error_code", INT16),
        F("error_message", STRING, nullable="0+"),
        F("auth_bytes", BYTES),
        F("session_lifetime_ms", INT64, "1+"),
    ),
)

DESCRIBE_CLUSTER = Api(
    key=60,
    name="DescribeCluster",
    versions=(0, 1),
    flexible=0,
    request=(
        F("include_cluster_authorized_operations", BOOL),
        F("endpoint_type", INT8, "1+", default=1),
    ),
    response=(
        F("throttle_time_ms", INT32),
        F("error_code", INT16),
        F("error_message", STRING, nullable="0+", default=None),
        F("endpoint_type", INT8, "1+", default=1),
        F("cluster_id", STRING),
        F("controller_id", INT32, default=-1),
        F("brokers", array([
            F("broker_id", INT32),
            F("host", STRING),
            F("port", INT32),
            F("rack", STRING, nullable="0+", default=None),
        ])),
        F("cluster_authorized_operations", INT32, default=NO_AUTHORIZED_OPERATIONS),
    ),
)
