"""KIP-848 consumer groups: ConsumerGroupHeartbeat (68) v0-1 and ConsumerGroupDescribe (69) v0.

Both are flexible from version 0. ConsumerGroupHeartbeat v1 adds a topic regex
(Kafka 4.0; unstable in 3.9) and has members make up their own ids.
"""

from __future__ import annotations

from ..schema import BOOL, INT16, INT32, STRING, UUID, Api, array, struct
from ..schema import Field as F


def _topic_partitions(with_name: bool) -> F:
    fields = [F("topic_id", UUID)]
    if with_name:
        fields.append(F("topic_name", STRING))
    fields.append(F("partitions", array(INT32)))
    return F("topic_partitions", array(fields))


CONSUMER_GROUP_HEARTBEAT = Api(
    key=68,
    name="ConsumerGroupHeartbeat",
    versions=(0, 1),
    flexible=0,
    request=(
        F("group_id", STRING),
        F("member_id", STRING),
        F("member_epoch", INT32),
        # The nullable fields are null when unchanged since the member's last heartbeat.
        F("instance_id", STRING, nullable="0+", default=None),
        F("rack_id", STRING, nullable="0+", default=None),
        F("rebalance_timeout_ms", INT32, default=-1),
        F("subscribed_topic_names", array(STRING), nullable="0+", default=None),
        F("subscribed_topic_regex", STRING, "1+", nullable="1+", default=None),
        F("server_assignor", STRING, nullable="0+", default=None),
        F("topic_partitions", array([
            F("topic_id", UUID),
            F("partitions", array(INT32)),
        ]), nullable="0+", default=None),
    ),
    response=(
        F("throttle_time_ms", INT32),
        F("error_code", INT16),
        F("error_message", STRING, nullable="0+", default=None),
        F("member_id", STRING, nullable="0+", default=None),
        F("member_epoch", INT32),
        F("heartbeat_interval_ms", INT32),
        F("assignment", struct([_topic_partitions(with_name=False)]), nullable="0+", default=None),
    ),
)

CONSUMER_GROUP_DESCRIBE = Api(
    key=69,
    name="ConsumerGroupDescribe",
    versions=(0, 0),
    flexible=0,
    request=(
        F("group_ids", array(STRING)),
        F("include_authorized_operations", BOOL),
    ),
    response=(
        F("throttle_time_ms", INT32),
        F("groups", array([
            F("error_code", INT16),
            F("error_message", STRING, nullable="0+", default=None),
            F("group_id", STRING),
            F("group_state", STRING),
            F("group_epoch", INT32),
            F("assignment_epoch", INT32),
            F("assignor_name", STRING),
            F("members", array([
                F("member_id", STRING),
                F("instance_id", STRING, nullable="0+", default=None),
                F("rack_id", STRING, nullable="0+", default=None),
                F("member_epoch", INT32),
                F("client_id", STRING),
                F("client_host", STRING),
                F("subscribed_topic_names", array(STRING)),
                F("subscribed_topic_regex", STRING, nullable="0+", default=None),
                F("assignment", struct([_topic_partitions(with_name=True)])),
                F("target_assignment", struct([_topic_partitions(with_name=True)])),
            ])),
            F("authorized_operations", INT32, default=-2147483648),
        ])),
    ),
)
