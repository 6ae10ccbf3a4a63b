"""Admin client APIs: topics, partitions and configs."""

from __future__ import annotations

from ..schema import (
    BOOL,
    INT8,
    INT16,
    INT32,
    STRING,
    UUID,
    Api,
    array,
)
from ..schema import Field as F

CREATE_TOPICS = Api(
    key=19,
    name="CreateTopics",
    versions=(0, 7),
    flexible=5,
    request=(
        F("topics", array([
            F("name", STRING),
            F("num_partitions", INT32),
            F("replication_factor", INT16),
            F("assignments", array([
                F("partition_index", INT32),
                F("broker_ids", array(INT32)),
            ])),
            F("configs", array([
                F("name", STRING),
                F("value", STRING, nullable="0+"),
            ])),
        ])),
        F("timeout_ms", INT32, default=60000),
        F("validate_only", BOOL, "1+"),
    ),
    response=(
        F("throttle_time_ms", INT32, "2+"),
        F("topics", array([
            F("name", STRING),
            F("topic_id", UUID, "7+"),
            F("error_code", INT16),
            F("error_message", STRING, "1+", nullable="0+"),
            F("topic_config_error_code", INT16, "5+", tag=0),
            F("num_partitions", INT32, "5+", default=-1),
            F("replication_factor", INT16, "5+", default=-1),
            F("configs", array([
                F("name", STRING, "5+"),
                F("value", STRING, "5+", nullable="5+"),
                F("read_only", BOOL, "5+"),
                F("config_source", INT8, "5+", default=-1),
                F("is_sensitive", BOOL, "5+"),
            ]), "5+", nullable="5+"),
        ])),
    ),
)

DELETE_TOPICS = Api(
    key=20,
    name="DeleteTopics",
    versions=(0, 6),
    flexible=4,
    request=(
        F("topics", array([
            F("name", STRING, "6+", nullable="6+", default=None),
            F("topic_id", UUID, "6+"),
        ]), "6+"),
        F("topic_names", array(STRING), "0-5"),
        F("timeout_ms", INT32),
    ),
    response=(
        F("throttle_time_ms", INT32, "1+"),
        F("responses", array([
            F("name", STRING, nullable="6+"),
            F("topic_id", UUID, "6+"),
            F("error_code", INT16),
            F("error_message", STRING, "5+", nullable="5+", default=None),
        ])),
    ),
)

CREATE_PARTITIONS = Api(
    key=37,
    name="CreatePartitions",
    versions=(0, 3),
    flexible=2,
    request=(
        F("topics", array([
            F("name", STRING),
            F("count", INT32),
            F("assignments", array([
                F("broker_ids", array(INT32)),
            ]), nullable="0+"),
        ])),
        F("timeout_ms", INT32),
        F("validate_only", BOOL),
    ),
    response=(
        F("throttle_time_ms", INT32),
        F("results", array([
            F("name", STRING),
            F("error_code", INT16),
            F("error_message", STRING, nullable="0+", default=None),
        ])),
    ),
)

DESCRIBE_CONFIGS = Api(
    key=32,
    name="DescribeConfigs",
    versions=(0, 4),
    flexible=4,
    request=(
        F("resources", array([
            F("resource_type", INT8),
            F("resource_name", STRING),
            F("configuration_keys", array(STRING), nullable="0+"),
        ])),
        F("include_synonyms", BOOL, "1+"),
        F("include_documentation", BOOL, "3+"),
    ),
    response=(
        F("throttle_time_ms", INT32),
        F("results", array([
            F("error_code", INT16),
            F("error_message", STRING, nullable="0+"),
            F("resource_type", INT8),
            F("resource_name", STRING),
            F("configs", array([
                F("name", STRING),
                F("value", STRING, nullable="0+"),
                F("read_only", BOOL),
                F("is_default", BOOL, "0"),
                F("config_source", INT8, "1+", default=-1),
                F("is_sensitive", BOOL),
                F("synonyms", array([
                    F("name", STRING, "1+"),
                    F("value", STRING, "1+", nullable="0+"),
                    F("source", INT8, "1+"),
                ]), "1+"),
                F("config_type", INT8, "3+"),
                F("documentation", STRING, "3+", nullable="0+"),
            ])),
        ])),
    ),
)

INCREMENTAL_ALTER_CONFIGS = Api(
    key=44,
    name="IncrementalAlterConfigs",
    versions=(0, 1),
    flexible=1,
    request=(
        F("resources", array([
            F("resource_type", INT8),
            F("resource_name", STRING),
            F("configs", array([
                F("name", STRING),
                F("config_operation", INT8),
                F("value", STRING, nullable="0+"),
            ])),
        ])),
        F("validate_only", BOOL),
    ),
    response=(
        F("throttle_time_ms", INT32),
        F("responses", array([
            F("error_code", INT16),
            F("error_message", STRING, nullable="0+"),
            F("resource_type", INT8),
            F("resource_name", STRING),
        ])),
    ),
)

