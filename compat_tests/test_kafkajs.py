"""kafkajs 2.2.4 (Node) against the gateway: keys and headers, a group that commits and resumes,
and the admin calls kafkajs offers. `./dev test` installs it (compat_tests/js, `npm ci`)."""

from __future__ import annotations

import pytest
from clients import HAVE_KAFKAJS, kafkajs
from group_helpers import requests_served, unique, versions_asked

from compat_data import check_exactly_once

pytestmark = pytest.mark.skipif(
    not HAVE_KAFKAJS, reason="node or kafkajs is not installed (./dev test installs both)")

RECORDS = 60
PARTITIONS = 3
FIRST_RUN = 25
# What kafkajs asks for in this test: its own maxima (docs/gateway.md, client compatibility).
VERSIONS = {"ApiVersions v2", "Produce v7", "Fetch v11", "ListOffsets v3", "Metadata v6",
            "OffsetCommit v5", "OffsetFetch v4", "FindCoordinator v2", "JoinGroup v5", "SyncGroup v3",
            "Heartbeat v3", "LeaveGroup v3", "ListGroups v2", "DescribeGroups v2", "CreateTopics v3",
            "DeleteTopics v1"}


def test_produce_consume_commit_resume_and_admin(metered):
    bootstrap, metrics_port = metered
    before = requests_served(metrics_port)
    topic, group = unique("kafkajs"), unique("kafkajs-group")
    created = kafkajs(bootstrap, "admin-create", topic, PARTITIONS)
    assert created == {"created": True, "createdAgain": False}

    sent = kafkajs(bootstrap, "produce", topic, RECORDS)
    assert sent["sent"] == RECORDS
    assert set(sent["partitions"]) == set(range(PARTITIONS))  # keys spread over every partition

    first = kafkajs(bootstrap, "consume", topic, group, FIRST_RUN)["records"]
    assert len(first) == FIRST_RUN
    committed = {r["partition"]: int(r["offset"]) + 1 for r in first}

    seen = kafkajs(bootstrap, "admin-inspect", topic, group)
    assert seen["partitions"] == list(range(PARTITIONS))
    assert seen["listed"]
    assert {"groupId": group, "protocolType": "consumer"} in seen["groups"]
    assert seen["described"] == [{"groupId": group, "state": "Empty", "protocolType": "consumer",
                                  "members": 0}]
    fetched = {o["partition"]: int(o["offset"]) for o in seen["offsets"]}
    assert fetched == {p: committed.get(p, -1) for p in range(PARTITIONS)}

    # The restarted group starts at the committed offsets: nothing read twice, nothing skipped.
    second = kafkajs(bootstrap, "consume", topic, group, RECORDS - FIRST_RUN)["records"]
    check_exactly_once([first, second], RECORDS)

    assert kafkajs(bootstrap, "admin-delete", topic) == {"listed": False}
    assert versions_asked(metrics_port, before) == VERSIONS
