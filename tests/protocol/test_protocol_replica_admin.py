"""The replica admin APIs (34, 35, 43, 45, 46) against an independent encoding: kafka-python's
message classes, generated from Kafka's own JSON definitions, read our frames and write the
same body bytes back."""

from __future__ import annotations

import pytest
from kafka.protocol import admin
from protocol_samples import sample

from flexlog.gateway.protocol import (
    SUPPORTED_VERSIONS,
    ApiKey,
    encode_request,
    encode_response,
    response_header_version,
)

CLASSES = {
    ApiKey.ALTER_REPLICA_LOG_DIRS: (admin.AlterReplicaLogDirsRequest, admin.AlterReplicaLogDirsResponse),
    ApiKey.DESCRIBE_LOG_DIRS: (admin.DescribeLogDirsRequest, admin.DescribeLogDirsResponse),
    ApiKey.ELECT_LEADERS: (admin.ElectLeadersRequest, admin.ElectLeadersResponse),
    ApiKey.ALTER_PARTITION_REASSIGNMENTS: (admin.AlterPartitionReassignmentsRequest,
                                           admin.AlterPartitionReassignmentsResponse),
    ApiKey.LIST_PARTITION_REASSIGNMENTS: (admin.ListPartitionReassignmentsRequest,
                                          admin.ListPartitionReassignmentsResponse),
}

CASES = [pytest.param(key, v, id=f"{key.name}-v{v}")
         for key in CLASSES for v in range(SUPPORTED_VERSIONS[key][0], SUPPORTED_VERSIONS[key][1] + 1)]


@pytest.mark.parametrize(("key", "version"), CASES)
@pytest.mark.parametrize("nulls", [False, True], ids=["values", "nulls"])
def test_kafka_python_reads_and_rewrites_our_bodies(key: ApiKey, version: int, nulls: bool) -> None:
    request_class, response_class = CLASSES[key]
    # kafka-python follows newer Kafka releases, whose ranges may reach further than 3.9's.
    low, high = SUPPORTED_VERSIONS[key]
    assert request_class.min_version <= low and high <= request_class.max_version
    frame = encode_request(key, version, 9, sample(key, version, request=True, nulls=nulls),
                           client_id="c")[4:]
    decoded = request_class.decode(frame, version=version, header=True)
    assert frame.endswith(decoded.encode(version=version))
    frame = encode_response(key, version, 9, sample(key, version, request=False, nulls=nulls))
    # Size and correlation id, then (header v1) an empty tagged-field section.
    body = frame[8 + response_header_version(key, version):]
    assert response_class.decode(body, version=version).encode() == body
