"""kafkajs 2.2.4 (Node) against the gateway: keys and headers, a group that commits and resumes,
and the admin calls kafkajs offers. `./dev test` installs it (compat_tests/js, `npm ci`)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from group_helpers import unique

JS = Path(__file__).parent / "js"
pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (JS / "node_modules" / "kafkajs").is_dir(),
    reason="node or kafkajs is not installed (./dev test installs both)")

RECORDS = 60
PARTITIONS = 3
FIRST_RUN = 25


def kafkajs(bootstrap: str, *args: object) -> dict:
    done = subprocess.run(["node", str(JS / "client.js"), bootstrap, *map(str, args)],
                          capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


def expected(i: int) -> dict:
    """What client.js's record(i) sends, as the consumer step reports it."""
    enc = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return {"key": enc(b"key-%d" % i), "value": enc(b"value-%d:" % i + bytes(range(256))),
            "headers": {"seq": enc(b"%d" % i), "bin": enc(bytes([0, 255, i % 256]))}}


def without_position(record: dict) -> dict:
    return {k: record[k] for k in ("key", "value", "headers")}


def test_produce_consume_commit_resume_and_admin(bootstrap):
    topic, group = unique("kafkajs"), unique("kafkajs-group")
    created = kafkajs(bootstrap, "admin-create", topic, PARTITIONS)
    assert created == {"created": True, "createdAgain": False}

    sent = kafkajs(bootstrap, "produce", topic, RECORDS)
    assert sent["sent"] == RECORDS
    assert set(sent["partitions"]) == set(range(PARTITIONS))  # keys spread over every partition

    first = kafkajs(bootstrap, "consume", topic, group, FIRST_RUN)["records"]
    assert len(first) == FIRST_RUN
    committed = {}
    for r in first:
        committed[r["partition"]] = int(r["offset"]) + 1

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
    for r in second:
        assert int(r["offset"]) >= committed.get(r["partition"], 0), r
    got = sorted((without_position(r) for r in first + second), key=lambda r: r["key"])
    assert got == sorted((expected(i) for i in range(RECORDS)), key=lambda r: r["key"])
    positions = [(r["partition"], r["offset"]) for r in first + second]
    assert len(set(positions)) == RECORDS

    assert kafkajs(bootstrap, "admin-delete", topic) == {"listed": False}
