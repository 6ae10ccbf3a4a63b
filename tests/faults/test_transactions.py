"""Kafka transactions across gateway crashes: every transaction ends committed or aborted everywhere.

Two gateways over one cluster; the transactional id is coordinated by gateway1,
partition 0 is led by gateway0 and partition 1 by gateway1 (partition % gateways).
Requests go over the wire, so each step happens exactly when the test says:

- the leader of a partition is SIGKILLed before EndTxn: the commit is decided,
  one partition is marked at once, the other when its leader is back;
- the coordinator is SIGKILLed in the middle of a transaction, and again while
  a commit is still waiting for a leader: its successor finishes both from the log;
- a producer is replaced by another with the same transactional id (a zombie):
  the open transaction is aborted and the zombie's writes and commit are fenced.
"""

from __future__ import annotations

import signal
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import crc32c
import pytest

from cluster import Cluster, running_cluster
from flexlog.core import record_batch
from flexlog.gateway.groups import coordinator_index
from flexlog.gateway.protocol import ApiKey, ErrorCode
from wire_client import WireClient, gateway_ready

READ_UNCOMMITTED, READ_COMMITTED = 0, 1


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path, gateways=2) as c:
        for g in c.config.gateways:
            wait_ready(g.advertised)
        yield c


def wait_ready(address: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not gateway_ready(address):
        assert time.monotonic() < deadline, f"gateway {address} not ready"
        time.sleep(0.1)


def restart(cluster: Cluster, index: int) -> None:
    gateway = cluster.config.gateways[index]
    cluster.start_process("gateway", gateway.name)
    wait_ready(gateway.advertised)


def txn_on(gateway: int) -> str:
    """A fresh transactional id that the given gateway (of two) coordinates."""
    while True:
        txn_id = f"tx-{uuid.uuid4().hex[:8]}"
        if coordinator_index(txn_id, 2) == gateway:
            return txn_id


def transactional(*values: bytes, producer_id: int, epoch: int, sequence: int) -> bytes:
    out = bytearray(record_batch.build(list(values)))
    struct.pack_into(">qhi", out, 43, producer_id, epoch, sequence)
    out[22] |= record_batch.TRANSACTIONAL_BIT
    struct.pack_into(">I", out, 17, crc32c.crc32c(bytes(out[21:])))
    return bytes(out)


class Caller:
    """One request on a fresh connection: gateways restart under the test."""

    def __init__(self, address: str) -> None:
        self.address = address

    def call(self, api_key: int, version: int, body: dict[str, Any]) -> dict[str, Any]:
        client = WireClient(self.address)
        try:
            return client.call(api_key, version, body)
        finally:
            client.close()


class Producer:
    """A transactional producer speaking the wire protocol to the coordinator and the leaders."""

    def __init__(self, cluster: Cluster, txn_id: str, topic: str) -> None:
        self.addresses = [g.advertised for g in cluster.config.gateways]
        self.txn_id = txn_id
        self.topic = topic
        self.sequence = [0, 0]
        init = self.coordinator().call(ApiKey.INIT_PRODUCER_ID, 4, {
            "transactional_id": txn_id, "transaction_timeout_ms": 60_000})
        assert init["error_code"] == 0, init
        self.producer_id, self.epoch = init["producer_id"], init["producer_epoch"]

    def client(self, gateway: int) -> Caller:
        return Caller(self.addresses[gateway])

    def coordinator(self) -> Caller:
        return self.client(coordinator_index(self.txn_id, 2))

    def add(self, *partitions: int) -> list[int]:
        body = self.coordinator().call(ApiKey.ADD_PARTITIONS_TO_TXN, 3, {
            "v3_and_below_transactional_id": self.txn_id, "v3_and_below_producer_id": self.producer_id,
            "v3_and_below_producer_epoch": self.epoch,
            "v3_and_below_topics": [{"name": self.topic, "partitions": list(partitions)}]})
        return [p["partition_error_code"] for t in body["results_by_topic_v3_and_below"]
                for p in t["results_by_partition"]]

    def produce(self, partition: int, *values: bytes) -> int:
        records = transactional(*values, producer_id=self.producer_id, epoch=self.epoch,
                                sequence=self.sequence[partition])
        body = self.client(partition).call(ApiKey.PRODUCE, 9, {
            "transactional_id": self.txn_id, "acks": -1, "timeout_ms": 10_000,
            "topic_data": [{"name": self.topic,
                            "partition_data": [{"index": partition, "records": records}]}]})
        code = body["responses"][0]["partition_responses"][0]["error_code"]
        if code == 0:
            self.sequence[partition] += len(values)
        return code

    def end(self, commit: bool) -> int:
        return self.coordinator().call(ApiKey.END_TXN, 3, {
            "transactional_id": self.txn_id, "producer_id": self.producer_id,
            "producer_epoch": self.epoch, "committed": commit})["error_code"]


def create_topic(cluster: Cluster) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    body = Caller(cluster.config.gateways[0].advertised).call(ApiKey.CREATE_TOPICS, 5, {"topics": [{
        "name": name, "num_partitions": 2, "replication_factor": -1, "assignments": [], "configs": []}],
        "timeout_ms": 10_000, "validate_only": False})
    assert body["topics"][0]["error_code"] == 0, body
    return name


def read(cluster: Cluster, topic: str, partition: int, isolation: int) -> tuple[list[bytes], int]:
    """Every record value below the LSO (read_committed, aborted ones left out as a consumer does)
    or the high watermark, and that offset."""
    body = Caller(cluster.config.gateways[partition].advertised).call(ApiKey.FETCH, 11, {
        "replica_id": -1, "max_wait_ms": 0, "min_bytes": 0, "max_bytes": 1 << 20,
        "isolation_level": isolation, "session_id": 0, "session_epoch": -1, "rack_id": "",
        "topics": [{"topic": topic, "partitions": [{
            "partition": partition, "current_leader_epoch": -1, "fetch_offset": 0, "log_start_offset": -1,
            "partition_max_bytes": 1 << 20}]}], "forgotten_topics_data": []})
    part = body["responses"][0]["partitions"][0]
    assert part["error_code"] == 0, part
    # Kafka's consumer: an aborted producer's batches are skipped from the aborted
    # transaction's first offset up to that producer's next control batch.
    pending = sorted((a["first_offset"], a["producer_id"]) for a in part["aborted_transactions"] or [])
    skipping: set[int] = set()
    values = []
    raw = part["records"]
    pos = 0
    while pos < len(raw):
        header = record_batch.parse_header(raw, pos)
        batch = raw[pos:pos + header.total_size]
        pos += header.total_size
        while pending and pending[0][0] <= header.base_offset:
            skipping.add(pending.pop(0)[1])
        if header.is_control:
            skipping.discard(header.producer_id)
            continue
        if isolation == READ_COMMITTED and header.is_transactional and header.producer_id in skipping:
            continue
        values += [r.value for r in record_batch.decode(batch)]
    bound = part["last_stable_offset"] if isolation == READ_COMMITTED else part["high_watermark"]
    return values, bound


def eventually(check: object, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def describe(cluster: Cluster, txn_id: str) -> str:
    state = Caller(cluster.config.gateways[coordinator_index(txn_id, 2)].advertised).call(
        ApiKey.DESCRIBE_TRANSACTIONS, 0, {"transactional_ids": [txn_id]})["transaction_states"][0]
    return state["transaction_state"]


def test_a_leader_killed_before_the_commit_marks_its_partition_when_back(cluster: Cluster) -> None:
    topic = create_topic(cluster)
    producer = Producer(cluster, txn_on(1), topic)
    assert producer.add(0, 1) == [0, 0]
    assert producer.produce(0, b"a0", b"a1") == 0
    assert producer.produce(1, b"b0") == 0
    cluster.kill(cluster.config.gateways[0].name, signal.SIGKILL)
    assert producer.end(commit=True) == 0  # decided; partition 0's marker waits for its leader
    assert read(cluster, topic, 1, READ_COMMITTED)[0] == [b"b0"]
    assert describe(cluster, producer.txn_id) == "PrepareCommit"
    restart(cluster, 0)
    eventually(lambda: read(cluster, topic, 0, READ_COMMITTED)[0] == [b"a0", b"a1"],
               "partition 0 committed after its leader restarted")
    eventually(lambda: describe(cluster, producer.txn_id) == "CompleteCommit", "transaction complete")
    # The next transaction of the same producer works as usual.
    assert producer.add(0) == [0]
    assert producer.produce(0, b"a2") == 0
    assert producer.end(commit=False) == 0
    assert read(cluster, topic, 0, READ_COMMITTED)[0] == [b"a0", b"a1"]
    assert read(cluster, topic, 0, READ_UNCOMMITTED)[0] == [b"a0", b"a1", b"a2"]


def test_a_coordinator_killed_mid_transaction_and_mid_commit_is_finished_by_its_successor(
        cluster: Cluster) -> None:
    topic = create_topic(cluster)
    producer = Producer(cluster, txn_on(1), topic)
    assert producer.add(0, 1) == [0, 0]
    assert producer.produce(0, b"a0") == 0
    cluster.kill(cluster.config.gateways[1].name, signal.SIGKILL)
    # Open on partition 0: a later plain record waits behind the transaction.
    plain = Caller(cluster.config.gateways[0].advertised).call(ApiKey.PRODUCE, 9, {
        "transactional_id": None, "acks": -1, "timeout_ms": 10_000, "topic_data": [{
            "name": topic, "partition_data": [{"index": 0, "records": record_batch.build([b"plain"])}]}]})
    assert plain["responses"][0]["partition_responses"][0]["error_code"] == 0
    assert read(cluster, topic, 0, READ_COMMITTED) == ([], 0)
    restart(cluster, 1)
    assert describe(cluster, producer.txn_id) == "Ongoing"
    assert producer.produce(1, b"b0") == 0
    # Commit while partition 0's leader is down, then lose the coordinator again.
    cluster.kill(cluster.config.gateways[0].name, signal.SIGKILL)
    assert producer.end(commit=True) == 0
    cluster.kill(cluster.config.gateways[1].name, signal.SIGKILL)
    restart(cluster, 0)
    restart(cluster, 1)
    eventually(lambda: describe(cluster, producer.txn_id) == "CompleteCommit", "transaction complete")
    assert read(cluster, topic, 0, READ_COMMITTED)[0] == [b"a0", b"plain"]
    assert read(cluster, topic, 1, READ_COMMITTED)[0] == [b"b0"]


def test_a_replaced_producer_is_fenced_and_its_transaction_aborted(cluster: Cluster) -> None:
    topic = create_topic(cluster)
    txn_id = txn_on(0)
    zombie = Producer(cluster, txn_id, topic)
    assert zombie.add(0, 1) == [0, 0]
    assert zombie.produce(0, b"z0") == 0
    successor = Producer(cluster, txn_id, topic)  # aborts the zombie's transaction, bumps the epoch
    assert successor.producer_id == zombie.producer_id and successor.epoch > zombie.epoch
    assert zombie.produce(1, b"z1") == ErrorCode.INVALID_PRODUCER_EPOCH
    assert zombie.end(commit=True) == ErrorCode.PRODUCER_FENCED
    assert zombie.add(1) == [ErrorCode.PRODUCER_FENCED]
    assert successor.add(1) == [0]
    assert successor.produce(1, b"s1") == 0
    assert successor.end(commit=True) == 0
    assert read(cluster, topic, 0, READ_COMMITTED)[0] == []
    assert read(cluster, topic, 0, READ_UNCOMMITTED)[0] == [b"z0"]
    assert read(cluster, topic, 1, READ_COMMITTED)[0] == [b"s1"]
