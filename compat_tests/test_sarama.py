"""Sarama 1.22 (Go, Debian's golang-github-shopify-sarama-dev) against the gateway: keys and
headers, a group that commits and resumes, the ClusterAdmin calls, and the old API: Sarama told
the broker is Kafka 0.11 or 0.10.2 picks those releases' request versions. `./dev test` installs
Go and Sarama; the program (compat_tests/go) is built once per session, offline, from Debian's
GOPATH tree."""

from __future__ import annotations

import time

import pytest
from clients import HAVE_SARAMA, run_sarama
from group_helpers import requests_served, unique, versions_asked

from compat_data import check_exactly_once

pytestmark = pytest.mark.skipif(
    not HAVE_SARAMA, reason="go or Debian's Sarama is not installed (./dev test installs both)")

RECORDS = 60
PARTITIONS = 3
FIRST_RUN = 25
CURRENT = "max"  # Sarama 1.22's newest: Kafka 2.2.0
# What Sarama asks for in these tests (docs/gateway.md, client compatibility): 1.22 sends
# Produce v3 and Fetch v4 at most, whatever the Kafka version it is given.
GROUP_VERSIONS = {"Produce v3", "Fetch v4", "ListOffsets v1", "OffsetCommit v1", "OffsetFetch v1",
                  "FindCoordinator v0", "JoinGroup v1", "SyncGroup v0", "Heartbeat v0",
                  "LeaveGroup v0", "ListGroups v0", "DescribeGroups v0", "DescribeConfigs v0"}
CURRENT_VERSIONS = GROUP_VERSIONS | {"Metadata v0", "Metadata v5", "CreateTopics v2", "DeleteTopics v1"}
V0_11_VERSIONS = GROUP_VERSIONS | {"Metadata v0", "Metadata v1", "Metadata v4"}


def test_produce_consume_commit_resume_and_admin(sarama, metered):
    bootstrap, metrics_port = metered
    before = requests_served(metrics_port)
    topic, group = unique("sarama"), unique("sarama-group")
    created = run_sarama(sarama, bootstrap, CURRENT, "admin-create", topic, PARTITIONS)
    assert "already exists" in created["again"]

    assert run_sarama(sarama, bootstrap, CURRENT, "produce", topic, RECORDS) == {
        "sent": RECORDS, "partitions": PARTITIONS}

    first = run_sarama(sarama, bootstrap, CURRENT, "consume", topic, group, FIRST_RUN)
    assert first["error"] == "" and len(first["records"]) == FIRST_RUN
    committed = {str(r["partition"]): r["offset"] + 1 for r in first["records"]}

    seen = run_sarama(sarama, bootstrap, CURRENT, "admin-inspect", topic, group, PARTITIONS)
    assert seen == {"listed": PARTITIONS, "partitions": list(range(PARTITIONS)),
                    "groupType": "consumer", "state": "Empty", "protocolType": "consumer",
                    "members": 0,
                    "offsets": {str(p): committed.get(str(p), -1) for p in range(PARTITIONS)}}

    # The restarted group starts at the committed offsets: nothing read twice, nothing skipped.
    second = run_sarama(sarama, bootstrap, CURRENT, "consume", topic, group, RECORDS - FIRST_RUN)
    assert second["error"] == ""
    check_exactly_once([first["records"], second["records"]], RECORDS)

    assert run_sarama(sarama, bootstrap, CURRENT, "admin-delete", topic) == {"listed": False}
    assert versions_asked(metrics_port, before) == CURRENT_VERSIONS


def test_kafka_0_11_api(sarama, metered):
    """Produce v3 (batches whose header maxTimestamp is -1), Fetch v4, JoinGroup v1, OffsetCommit
    v1: records keep their keys and headers, are found by time, and the group commits and
    resumes."""
    bootstrap, metrics_port = metered
    topic, group = unique("sarama-v0.11"), unique("sarama-group")
    run_sarama(sarama, bootstrap, CURRENT, "admin-create", topic, PARTITIONS)
    before = requests_served(metrics_port)
    sent_after_ms = int(time.time() * 1000) - 1000  # margin for clocks read in two processes
    assert run_sarama(sarama, bootstrap, "0.11.0.0", "produce", topic, 20)["sent"] == 20
    # The batches' maxTimestamp of -1 is recomputed from the records: the time index finds them.
    at = [run_sarama(sarama, bootstrap, "0.11.0.0", "offset-at", topic, p, sent_after_ms)["offset"]
          for p in range(PARTITIONS)]
    assert at == [0] * PARTITIONS
    later_ms = sent_after_ms + 3_600_000
    assert run_sarama(sarama, bootstrap, "0.11.0.0", "offset-at", topic, 0, later_ms) == {"offset": -1}
    first = run_sarama(sarama, bootstrap, "0.11.0.0", "consume", topic, group, 8)
    second = run_sarama(sarama, bootstrap, "0.11.0.0", "consume", topic, group, 12)
    assert first["error"] == second["error"] == ""
    check_exactly_once([first["records"], second["records"]], 20)
    run_sarama(sarama, bootstrap, "0.11.0.0", "admin-inspect", topic, group, PARTITIONS)
    assert versions_asked(metrics_port, before) == V0_11_VERSIONS


def test_kafka_0_10_api_gets_kafka_4_answers(sarama, metered):
    """Produce v2 and Fetch v3 carry message format v1, which Kafka 4.0 removed (KIP-896): Produce
    v2 is answered UNSUPPORTED_VERSION, and Fetch v3, not advertised, closes the connection."""
    bootstrap, _ = metered
    topic = unique("sarama-v0.10")
    run_sarama(sarama, bootstrap, CURRENT, "admin-create", topic, 1)
    produced = run_sarama(sarama, bootstrap, "0.10.2.0", "produce", topic, 5)
    assert produced == {"sent": 0, "error": "kafka server: The version of API is not supported."}

    run_sarama(sarama, bootstrap, CURRENT, "produce", topic, 5)
    consumed = run_sarama(sarama, bootstrap, "0.10.2.0", "consume", topic, unique("sarama-group"), 5)
    assert consumed == {"records": None, "error": f"kafka: error while consuming {topic}/0: EOF"}
