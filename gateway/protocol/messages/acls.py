"""ACL administration: DescribeAcls (29), CreateAcls (30), DeleteAcls (31).

Versions 0-3; v1 added the pattern type (LITERAL, 3, before it), v2 made them flexible.
"""

from __future__ import annotations

from ..schema import INT8, INT16, INT32, STRING, Api, array
from ..schema import Field as F

PATTERN_LITERAL = 3

DESCRIBE_ACLS = Api(
    key=29,
    name="DescribeAcls",
    versions=(0, 3),
    flexible=2,
    request=(
        F("resource_type_filter", INT8),
        F("resource_name_filter", STRING, nullable="0+"),
        F("pattern_type_filter", INT8, "1+", default=PATTERN_LITERAL),
        F("principal_filter", STRING, nullable="0+"),
        F("host_filter", STRING, nullable="0+"),
        F("operation", INT8),
        F("permission_type", INT8),
    ),
    response=(
        F("throttle_time_ms", INT32),
        F("error_code", INT16),
        F("error_message", STRING, nullable="0+", default=None),
        F("resources", array([
            F("resource_type", INT8),
            F("resource_name", STRING),
            F("pattern_type", INT8, "1+", default=PATTERN_LITERAL),
            F("acls", array([
                F("principal", STRING),
                F("host", STRING),
                F("operation", INT8),
                F("permission_type", INT8),
            ])),
        ])),
    ),
)

CREATE_ACLS = Api(
    key=30,
    name="CreateAcls",
    versions=(0, 3),
    flexible=2,
    request=(
        F("creations", array([
            F("resource_type", INT8),
            F("resource_name", STRING),
            F("resource_pattern_type", INT8, "1+", default=PATTERN_LITERAL),
            F("principal", STRING),
            F("host", STRING),
            F("operation", INT8),
            F("permission_type", INT8),
        ])),
    ),
    response=(
        F("throttle_time_ms", INT32),
        F("results", array([
            F("error_code", INT16),
            F("error_message", STRING, nullable="0+", default=None),
        ])),
    ),
)

DELETE_ACLS = Api(
    key=31,
    name="DeleteAcls",
    versions=(0, 3),
    flexible=2,
    request=(
        F("filters", array([
            F("resource_type_filter", INT8),
            F("resource_name_filter", STRING, nullable="0+"),
            F("pattern_type_filter", INT8, "1+", default=PATTERN_LITERAL),
            F("principal_filter", STRING, nullable="0+"),
            F("host_filter", STRING, nullable="0+"),
            F("operation", INT8),
            F("permission_type", INT8),
        ])),
    ),
    response=(
        F("throttle_time_ms", INT32),
        F("filter_results", array([
            F("error_code", INT16),
            F("error_message", STRING, nullable="0+", default=None),
            F("matching_acls", array([
                F("error_code", INT16),
                F("error_message", STRING, nullable="0+", default=None),
                F("resource_type", INT8),
                F("resource_name", STRING),
                F("pattern_type", INT8, "1+", default=PATTERN_LITERAL),
                F("principal", STRING),
                F("host", STRING),
                F("operation", INT8),
                F("permission_type", INT8),
            ])),
        ])),
    ),
)
