"""Client quotas: DescribeClientQuotas (48), AlterClientQuotas (49), versions 0-1 (1 is flexible)."""

from __future__ import annotations

from ..schema import BOOL, FLOAT64, INT8, INT16, INT32, STRING, Api, array
from ..schema import Field as F


def _entity() -> F:
    return F("entity", array([
        F("entity_type", STRING),
        F("entity_name", STRING, nullable="0+"),
    ]))


DESCRIBE_CLIENT_QUOTAS = Api(
    key=48,
    name="DescribeClientQuotas",
    versions=(0, 1),
    flexible=1,
    request=(
        F("components", array([
            F("entity_type", STRING),
            F("match_type", INT8),
            F("match", STRING, nullable="0+"),
        ])),
        F("strict", BOOL),
    ),
    response=(
        F("throttle_time_ms", INT32),
        F("error_code", INT16),
        F("error_message", STRING, nullable="0+", default=None),
        F("entries", array([
            _entity(),
            F("values", array([
                F("key", STRING),
                F("value", FLOAT64),
            ])),
        ]), nullable="0+"),
    ),
)

ALTER_CLIENT_QUOTAS = Api(
    key=49,
    name="AlterClientQuotas",
    versions=(0, 1),
    flexible=1,
    request=(
        F("entries", array([
            _entity(),
            F("ops", array([
                F("key", STRING),
                F("value", FLOAT64),
                F("remove", BOOL),
            ])),
        ])),
        F("validate_only", BOOL),
    ),
    response=(
        F("throttle_time_ms", INT32),
        F("entries", array([
            F("error_code", INT16),
            F("error_message", STRING, nullable="0+", default=None),
            _entity(),
        ])),
    ),
)
