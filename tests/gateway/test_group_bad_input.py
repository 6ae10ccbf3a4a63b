"""Bad group, commit and idempotent-produce requests over the wire, against two gateways.

Each gets Kafka's error code, and the group or producer keeps working afterwards.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator

import crc32c
import pytest

from cluster import running_cluster
from flexlog.core import record_batch
from flexlog.gateway.groups import coordinator_index
from flexlog.gateway.protocol import ApiKey, ErrorCode
from wire_client import WireClient, gateway_ready


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    import time

    with running_cluster(tmp_path_factory.mktemp("cluster"), storage="memory", gateways=2,
                         extra="group_initial_rebalance_delay_ms = 0") as cluster:
        addresses = [g.advertised for g in cluster.config.gateways]
        deadline = time.monotonic() + 30
        while not all(gateway_ready(a) for a in addresses):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        yield addresses


def group_on(gateway: int) -> str:
    """A fresh group id that the given gateway coordinates."""
    while True:
        group = f"g-{uuid.uuid4().hex[:8]}"
        if coordinator_index(group, 2) == gateway:
            return group


def create_topic(client: WireClient, partitions: int = 2) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    body = client.call(ApiKey.CREATE_TOPICS, 4, {"topics": [
        {"name": name, "num_partitions": partitions, "replication_factor": 1, "assignments": [],
         "configs": []}], "timeout_ms": 10_000})
    assert body["topics"][0]["error_code"] == 0
    return name


def join(client: WireClient, group: str, member: str = "", session_ms: int = 10_000) -> dict:
    return client.call(ApiKey.JOIN_GROUP, 5, {
        "group_id": group, "session_timeout_ms": session_ms, "rebalance_timeout_ms": 10_000,
        "member_id": member, "group_instance_id": None, "protocol_type": "consumer",
        "protocols": [{"name": "range", "metadata": b"meta"}]})


def stable_member(client: WireClient, group: str) -> tuple[str, int]:
    first = join(client, group)
    assert first["error_code"] == ErrorCode.MEMBER_ID_REQUIRED
    joined = join(client, group, first["member_id"])
    assert joined["error_code"] == 0 and joined["leader"] == joined["member_id"]
    member, generation = joined["member_id"], joined["generation_id"]
    synced = client.call(ApiKey.SYNC_GROUP, 3, {
        "group_id": group, "generation_id": generation, "member_id": member,
        "assignments": [{"member_id": member, "assignment": b"mine"}]})
    assert synced["error_code"] == 0 and synced["assignment"] == b"mine"
    return member, generation


def commit(client: WireClient, group: str, generation: int, member: str, topic: str,
           partition: int = 0, metadata: str | None = "m", version: int = 7) -> int:
    body = client.call(ApiKey.OFFSET_COMMIT, version, {
        "group_id": group, "generation_id_or_member_epoch": generation, "member_id": member,
        "topics": [{"name": topic, "partitions": [
            {"partition_index": partition, "committed_offset": 5, "committed_metadata": metadata}]}]})
    return body["topics"][0]["partitions"][0]["error_code"]


def fetch_offset(client: WireClient, group: str, topic: str) -> tuple[int, str]:
    body = client.call(ApiKey.OFFSET_FETCH, 7, {
        "group_id": group, "topics": [{"name": topic, "partition_indexes": [0, 1]}]})
    parts = body["topics"][0]["partitions"]
    assert parts[1]["committed_offset"] == -1 and parts[1]["error_code"] == 0
    return parts[0]["committed_offset"], parts[0]["metadata"]


def test_group_errors_leave_the_group_working(gateways):
    group = group_on(0)
    c = WireClient(gateways[0])
    topic = create_topic(c)
    assert join(c, group, session_ms=5_999)["error_code"] == ErrorCode.INVALID_SESSION_TIMEOUT
    assert join(c, group, session_ms=1_800_001)["error_code"] == ErrorCode.INVALID_SESSION_TIMEOUT
    assert join(c, group, member="nobody")["error_code"] == ErrorCode.UNKNOWN_MEMBER_ID
    member, gen = stable_member(c, group)

    def heartbeat(generation: int, member_id: str) -> int:
        return c.call(ApiKey.HEARTBEAT, 3, {"group_id": group, "generation_id": generation,
                                            "member_id": member_id})["error_code"]

    assert heartbeat(gen + 1, member) == ErrorCode.ILLEGAL_GENERATION
    assert heartbeat(gen, "nobody") == ErrorCode.UNKNOWN_MEMBER_ID
    assert commit(c, group, gen + 1, member, topic) == ErrorCode.ILLEGAL_GENERATION
    assert commit(c, group, gen, "nobody", topic) == ErrorCode.UNKNOWN_MEMBER_ID
    assert commit(c, group, gen, member, topic, metadata="x" * 4097) == \
        ErrorCode.OFFSET_METADATA_TOO_LARGE
    assert commit(c, group, gen, member, topic, partition=7) == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert commit(c, group, gen, member, "no-such-topic") == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert fetch_offset(c, group, topic) == (-1, "")  # nothing bad was stored
    # The group is intact: the member heartbeats and commits as before.
    assert heartbeat(gen, member) == 0
    assert commit(c, group, gen, member, topic, metadata="x" * 4096) == 0
    assert fetch_offset(c, group, topic) == (5, "x" * 4096)
    left = c.call(ApiKey.LEAVE_GROUP, 3, {"group_id": group, "members": [
        {"member_id": member, "group_instance_id": None}, {"member_id": "nobody"}]})
    assert [m["error_code"] for m in left["members"]] == [0, ErrorCode.UNKNOWN_MEMBER_ID]
    # Empty now: a manually assigned consumer commits with generation -1.
    assert commit(c, group, -1, "", topic, metadata=None, version=2) == 0
    assert fetch_offset(c, group, topic) == (5, "")
    described = c.call(ApiKey.DESCRIBE_GROUPS, 5, {"groups": [group]})["groups"][0]
    assert described["group_state"] == "Empty"
    deleted = c.call(ApiKey.DELETE_GROUPS, 2, {"groups_names": [group, group_on(0)]})
    assert [r["error_code"] for r in deleted["results"]] == [0, ErrorCode.GROUP_ID_NOT_FOUND]
    assert fetch_offset(c, group, topic) == (-1, "")
    c.close()


def test_requests_to_the_wrong_gateway_are_redirected(gateways):
    c0, c1 = WireClient(gateways[0]), WireClient(gateways[1])
    group = group_on(1)
    found = c0.call(ApiKey.FIND_COORDINATOR, 4, {"key_type": 0, "coordinator_keys": [group]})
    assert found["coordinators"][0]["node_id"] == 1
    assert join(c0, group)["error_code"] == ErrorCode.NOT_COORDINATOR
    assert join(c1, group)["error_code"] == ErrorCode.MEMBER_ID_REQUIRED
    # Transactional ids are spread over the gateways by the same hash as groups.
    txn_id = group_on(1)
    txn = c0.call(ApiKey.FIND_COORDINATOR, 3, {"key": txn_id, "key_type": 1})
    assert (txn["error_code"], txn["node_id"]) == (0, 1)
    request = {"transactional_id": txn_id, "transaction_timeout_ms": 1000}
    assert c0.call(ApiKey.INIT_PRODUCER_ID, 4, request)["error_code"] == ErrorCode.NOT_COORDINATOR
    init = c1.call(ApiKey.INIT_PRODUCER_ID, 4, request)
    assert (init["error_code"], init["producer_epoch"]) == (0, 0)
    topic = create_topic(c0)
    # Partition 1 is led by gateway 1.
    assert produce(c0, topic, 1, batch(b"x"))["error_code"] == ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert produce(c1, topic, 1, batch(b"x"))["error_code"] == 0
    c0.close()
    c1.close()


def batch(*values: bytes, producer_id: int = -1, epoch: int = -1, sequence: int = -1) -> bytes:
    out = bytearray(record_batch.build(list(values)))
    struct.pack_into(">qhi", out, 43, producer_id, epoch, sequence)
    struct.pack_into(">I", out, 17, crc32c.crc32c(bytes(out[21:])))
    return bytes(out)


def produce(client: WireClient, topic: str, partition: int, records: bytes) -> dict:
    body = client.call(ApiKey.PRODUCE, 9, {"acks": -1, "timeout_ms": 5000, "topic_data": [
        {"name": topic, "partition_data": [{"index": partition, "records": records}]}]})
    return body["responses"][0]["partition_responses"][0]


def test_idempotent_sequence_errors_and_duplicates(gateways):
    c = WireClient(gateways[0])
    topic = create_topic(c)
    init = c.call(ApiKey.INIT_PRODUCER_ID, 4, {"transactional_id": None,
                                                "transaction_timeout_ms": 1000})
    pid = init["producer_id"]
    assert init["error_code"] == 0 and init["producer_epoch"] == 0

    def send(sequence: int, epoch: int = 0, n: int = 2) -> dict:
        values = [b"s%d-%d" % (sequence, i) for i in range(n)]
        return produce(c, topic, 0, batch(*values, producer_id=pid, epoch=epoch, sequence=sequence))

    assert send(0)["base_offset"] == 0
    assert send(2)["base_offset"] == 2
    dup = send(0)
    assert (dup["error_code"], dup["base_offset"]) == (0, 0)  # the original offset, not stored again
    assert send(7)["error_code"] == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert send(5, epoch=1)["error_code"] == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert send(4)["base_offset"] == 4  # the producer goes on where it was
    bumped = c.call(ApiKey.INIT_PRODUCER_ID, 4, {"transactional_id": None,
                                                  "transaction_timeout_ms": 1000,
                                                  "producer_id": pid, "producer_epoch": 0})
    assert (bumped["producer_id"], bumped["producer_epoch"]) == (pid, 1)
    assert send(0, epoch=1)["base_offset"] == 6
    assert send(6)["error_code"] == ErrorCode.INVALID_PRODUCER_EPOCH
    tail = c.call(ApiKey.LIST_OFFSETS, 4, {"replica_id": -1, "isolation_level": 0, "topics": [
        {"name": topic, "partitions": [{"partition_index": 0, "timestamp": -1}]}]})
    assert tail["topics"][0]["partitions"][0]["offset"] == 8
    c.close()
