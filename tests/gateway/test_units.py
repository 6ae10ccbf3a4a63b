"""Handler logic with bytes and plain objects; no cluster (ApiVersions needs none)."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from collections.abc import Callable
from types import SimpleNamespace

import crc32c
import pytest

from flexlog.core import config as config_mod
from flexlog.core import record_batch
from flexlog.core.client import RangeResult
from flexlog.core.storage import StoredEntry
from flexlog.gateway import scram
from flexlog.gateway.group_coordinator import JoinRequest
from flexlog.gateway.handlers import ENDPOINTS, advertised
from flexlog.gateway.handlers.fetch import _fill, _Partition
from flexlog.gateway.handlers.produce import BatchRejected, check_batch
from flexlog.gateway.partition_starts import StartState, family_trim_point, holds_family
from flexlog.gateway.protocol import (
    ApiKey,
    ErrorCode,
    UnknownApiKey,
    UnsupportedVersion,
    decode_request,
    decode_response,
    encode_request,
)
from flexlog.gateway.retention import trim_point
from flexlog.gateway.server import GatewayServer
from flexlog.gateway.timestamps import PartitionIndex, TimestampIndex
from flexlog.gateway.topics import (
    TopicState,
    check_config,
    config_defaults,
    invalid_topic_name,
    ordering_clash,
    ordering_family,
)


def _gateway(tmp_path, **settings: object) -> GatewayServer:
    cfg = config_mod.parse({
        "data_dir": str(tmp_path), "storage": "memory",
        "sequencer": [{"name": "root", "address": "127.0.0.1:1", "nodes": [{"id": 0}]}],
        "shard": [{"id": 0, "leaf": 0, "replicas": ["127.0.0.1:2"]}],
        "gateway": [{"name": "g", "node_id": 3, "address": "127.0.0.1:9"}],
        **settings,
    })
    return GatewayServer(cfg, "g")


@pytest.fixture
def server(tmp_path):
    return _gateway(tmp_path)


async def test_api_versions_derived_from_handlers(server):
    frame = await server.respond(encode_request(ApiKey.API_VERSIONS, 3, 5, {})[4:])
    body = decode_response(ApiKey.API_VERSIONS, 3, frame[4:]).body
    ranges = {k["api_key"]: (k["min_version"], k["max_version"]) for k in body["api_keys"]}
    assert ranges[ApiKey.PRODUCE] == (0, 11)
    assert ranges[ApiKey.FETCH] == (4, 17)
    assert ranges[ApiKey.API_VERSIONS] == (0, 4)
    # Old librdkafka checks group and idempotence features by exact version 0.
    for key in (ApiKey.FIND_COORDINATOR, ApiKey.JOIN_GROUP, ApiKey.SYNC_GROUP, ApiKey.HEARTBEAT,
                ApiKey.LEAVE_GROUP, ApiKey.INIT_PRODUCER_ID):
        assert ranges[key][0] == 0
    assert ranges[ApiKey.JOIN_GROUP] == (0, 9)
    # Transactions, but not WriteTxnMarkers (27): partition leaders find markers to write in the log.
    assert {24, 25, 26, 28} <= set(ranges) and 27 not in ranges
    assert body["api_keys"] == advertised()


async def test_unsupported_api_versions_version_answers_v0(server):
    frame = struct.pack(">hhih", ApiKey.API_VERSIONS, 77, 9, -1)
    response = await server.respond(frame)
    body = decode_response(ApiKey.API_VERSIONS, 0, response[4:]).body
    assert body["error_code"] == ErrorCode.UNSUPPORTED_VERSION
    assert any(k["api_key"] == ApiKey.API_VERSIONS for k in body["api_keys"])


async def test_unknown_key_and_unserved_api_close(server):
    with pytest.raises(UnknownApiKey):
        await server.respond(struct.pack(">hhih", 999, 0, 1, -1))
    # A SASL handshake on a listener without SASL is out of turn, as in Kafka.
    frame = await server.respond(encode_request(ApiKey.SASL_HANDSHAKE, 1, 1, {"mechanism": "PLAIN"})[4:])
    reply = decode_response(ApiKey.SASL_HANDSHAKE, 1, frame[4:]).body
    assert reply["error_code"] == ErrorCode.ILLEGAL_SASL_STATE
    with pytest.raises(UnsupportedVersion):
        await server.respond(struct.pack(">hhih", ApiKey.FETCH, 3, 1, -1))


# One request of each API that makes a principal a member of group "g" or speaks as one.
MEMBERSHIP_REQUESTS = {
    ApiKey.JOIN_GROUP: (5, {"group_id": "g", "session_timeout_ms": 10_000, "member_id": "",
                            "protocol_type": "consumer", "protocols": [{"name": "range", "metadata": b""}]}),
    ApiKey.SYNC_GROUP: (3, {"group_id": "g", "generation_id": 1, "member_id": "m", "assignments": []}),
    ApiKey.HEARTBEAT: (3, {"group_id": "g", "generation_id": 1, "member_id": "m"}),
    ApiKey.LEAVE_GROUP: (3, {"group_id": "g", "members": [{"member_id": "m"}]}),
    ApiKey.OFFSET_COMMIT: (7, {"group_id": "g", "generation_id_or_member_epoch": 1, "member_id": "m",
                               "topics": [{"name": "t", "partitions": [{"partition_index": 0,
                                                                        "committed_offset": 5}]}]}),
}


async def test_group_membership_needs_read_on_the_group(tmp_path):
    """With the authorizer on and no ACL, each is refused before the coordinator hears of the member."""
    server = _gateway(tmp_path, security={"authorizer": True})
    for key, (version, body) in MEMBERSHIP_REQUESTS.items():
        request = decode_request(encode_request(key, version, 1, body)[4:])
        # A JoinGroup let through would wait for the rebalance: fail instead of hanging.
        reply = await asyncio.wait_for(ENDPOINTS[key].handle(server.broker, request), 5)
        codes = ([p["error_code"] for t in reply["topics"] for p in t["partitions"]]
                 if key == ApiKey.OFFSET_COMMIT else [reply["error_code"]])
        assert codes == [ErrorCode.GROUP_AUTHORIZATION_FAILED], key.name
    assert server.broker.groups.coordinator.group("g") is None


def _with_attributes(batch: bytes, attributes: int) -> bytes:
    out = bytearray(batch)
    struct.pack_into(">h", out, 21, attributes)
    struct.pack_into(">I", out, 17, crc32c.crc32c(bytes(out[21:])))
    return bytes(out)


def _code(records: bytes | None, version: int = 9, max_bytes: int = 1 << 20) -> ErrorCode:
    try:
        check_batch(records, version, max_bytes)
    except BatchRejected as exc:
        return exc.code
    return ErrorCode.NONE


def test_batch_checks():
    good = record_batch.build([b"a", b"b"])
    assert _code(good) == ErrorCode.NONE
    assert _code(None) == ErrorCode.INVALID_RECORD
    assert _code(good[:-1]) == ErrorCode.CORRUPT_MESSAGE
    assert _code(good + good) == ErrorCode.INVALID_RECORD
    assert _code(good[:16] + b"\x01" + good[17:]) == ErrorCode.CORRUPT_MESSAGE  # magic 1
    assert _code(good[:-1] + bytes([good[-1] ^ 1])) == ErrorCode.CORRUPT_MESSAGE
    assert _code(_with_attributes(good, record_batch.CONTROL_BIT)) == ErrorCode.INVALID_RECORD
    # Transactional without a producer id.
    assert _code(_with_attributes(good, record_batch.TRANSACTIONAL_BIT)) == ErrorCode.INVALID_RECORD
    zstd = _with_attributes(good, record_batch.CODEC_ZSTD)
    assert _code(zstd, version=6) == ErrorCode.UNSUPPORTED_COMPRESSION_TYPE
    assert _code(zstd, version=7) == ErrorCode.NONE
    assert _code(good, max_bytes=len(good) - 1) == ErrorCode.MESSAGE_TOO_LARGE
    wrong_delta = bytearray(good)
    struct.pack_into(">i", wrong_delta, 23, 5)
    struct.pack_into(">I", wrong_delta, 17, crc32c.crc32c(bytes(wrong_delta[21:])))
    assert _code(bytes(wrong_delta)) == ErrorCode.INVALID_RECORD


def _event(**kw: object) -> bytes:
    return json.dumps(kw).encode()


def test_topic_state_folds_in_sn_order():
    state = TopicState()
    a, b = "aa" * 16, "bb" * 16
    state.apply(0, _event(op="create", name="t", id=a, partitions=2, configs={}))
    state.apply(1, _event(op="create", name="t", id=b, partitions=9, configs={}))  # lost the race
    state.apply(2, _event(op="partitions", name="t", id=a, partitions=4))
    state.apply(3, _event(op="configs", name="t", id=a, set={"retention.ms": "5"}, delete=[]))
    state.apply(4, b"not json")
    topic = state.by_name["t"]
    assert (topic.topic_id.hex(), topic.partitions, topic.configs) == (a, 4, {"retention.ms": "5"})
    state.apply(5, _event(op="delete", name="t", id=b))  # another incarnation: ignored
    assert "t" in state.by_name
    state.apply(6, _event(op="delete", name="t", id=a))
    assert "t" not in state.by_name
    assert state.applied == 7


def test_topic_names_and_configs(tmp_path):
    assert invalid_topic_name("ok.topic_1-x") is None
    for bad in ("", ".", "..", "a/b", "x" * 250, "spaces no"):
        assert invalid_topic_name(bad)
    cfg = config_mod.parse({
        "data_dir": str(tmp_path), "max_entry_bytes": 1000,
        "sequencer": [{"name": "root", "address": "127.0.0.1:1", "nodes": [{"id": 0}]}],
        "shard": [{"id": 0, "leaf": 0, "replicas": ["127.0.0.1:2"]}],
    })
    assert check_config("retention.ms", "-1", cfg) is None
    assert check_config("retention.ms", "soon", cfg)
    assert check_config("cleanup.policy", "compact", cfg)
    assert check_config("max.message.bytes", "2000", cfg)
    assert check_config("unknown.key", "1", cfg)


def test_ordering_config_values_and_group_names(tmp_path):
    cfg = config_mod.parse({
        "data_dir": str(tmp_path),
        "sequencer": [{"name": "root", "address": "127.0.0.1:1", "nodes": [{"id": 0}]}],
        "shard": [{"id": 0, "leaf": 0, "replicas": ["127.0.0.1:2"]}],
    })
    for ok in ("partition", "topic", "group:shop", "group:a.b_c-1"):
        assert check_config("flexlog.ordering", ok, cfg) is None
    for bad in ("total", "Topic", "group:", "group:a/b", "group:" + "x" * 250, ""):
        problem = check_config("flexlog.ordering", bad, cfg)
        assert problem and problem.startswith("flexlog.ordering:"), (bad, problem)
    assert ordering_family("t", "partition") is None
    assert ordering_family("t", "topic") == "kafka/topic/t"
    assert ordering_family("t", "group:shop") == "kafka/group/shop"

    state = TopicState()
    ids = iter(["aa" * 16, "bb" * 16])
    for name, configs in (("shop", {}), ("orders", {"flexlog.ordering": "group:sales"})):
        state.apply(0, _event(op="create", name=name, id=next(ids), partitions=1, configs=configs))
    defaults = config_defaults(cfg)

    def clash(name: str, ordering: str | None) -> str | None:
        configs = {} if ordering is None else {"flexlog.ordering": ordering}
        return ordering_clash(state, defaults, name, configs)

    # A group named like a topic outside it, and a topic named like a group it is not in.
    assert "flexlog.ordering" in clash("x", "group:shop")
    assert clash("shop", "group:shop") is None
    assert clash("x", "group:sales") is None
    assert "flexlog.ordering" in clash("sales", None)
    assert clash("sales", "group:sales") is None


def test_fetch_limits_follow_kip_74():
    def part(sizes: list[int], max_bytes: int) -> _Partition:
        entries = [StoredEntry(i, 1, bytes(s)) for i, s in enumerate(sizes)]
        return _Partition("t", 0, 0, max_bytes, result=RangeResult(entries, 0, len(sizes)))

    empty = part([], 100)
    first = part([500, 10], 100)  # first batch above the partition limit: still returned
    second = part([50, 50, 50], 120)
    total = _fill([empty, first, second], max_bytes=600)
    assert [len(b) for b in first.batches] == [500]
    assert [len(b) for b in second.batches] == [50, 50]
    assert total == 600
    late = part([200], 1000)
    _fill([first, late], max_bytes=600)
    assert late.batches == []  # past the response limit once someone got data


def test_retention_trim_point():
    index = PartitionIndex()
    for i, ts in enumerate([100, 200, 300, 400]):
        index.add(i * 10, i * 10 + 10, 1000, ts)
    assert trim_point(index, retention_ms=-1, retention_bytes=-1, now_ms=1000) == 0
    assert trim_point(index, retention_ms=750, retention_bytes=-1, now_ms=1000) == 2
    assert trim_point(index, retention_ms=-1, retention_bytes=2500, now_ms=1000) == 2
    assert index.first_reaching(250) == 2
    index.drop_below(20)
    assert index.sns == [20, 30] and index.first_reaching(250) == 0


def test_batches_noted_out_of_order_are_indexed_once_the_index_reaches_them():
    index = PartitionIndex()
    index.note(10, 20, 100, 2)  # beyond a gap: waits
    index.note(20, 25, 50, 3)
    index.take_noted()
    assert index.sns == [] and index.upto == 0
    index.note(0, 10, 100, 1)
    index.take_noted()
    assert index.sns == [0, 10, 20] and index.upto == 25 and index.ahead == {}
    index.note(30, 40, 10, 4)
    index.add(25, 35, 10, 4)  # a scan read a batch covering the noted one's start
    index.take_noted()
    index.forget_passed()
    assert index.upto == 35 and index.ahead == {}, "a noted batch the index passed is forgotten"


async def test_batches_appended_during_a_scan_are_not_read_back_by_the_next():
    batch = record_batch.build([b"x"], timestamp_ms=7)

    class Log:
        """The two calls TimestampIndex makes; read_range answers the log from sn."""

        def __init__(self) -> None:
            self.tail = 1
            self.reads = 0
            self.during_read: Callable[[], None] = lambda: None

        async def state(self, color: object) -> tuple[int, int]:
            return 0, self.tail

        async def read_range(self, color: object, sn: int, max_bytes: int) -> object:
            self.reads += 1
            end = self.tail  # what the replica answers holds what was committed when asked
            self.during_read()
            return RangeResult([StoredEntry(s, 1, batch) for s in range(sn, end)], 0, end)

    log = Log()
    index = TimestampIndex(log, lambda _, start: start)  # type: ignore[arg-type]
    color = SimpleNamespace(id=5, family=0)

    def append_twice() -> None:  # two appends of this gateway land while the scan reads
        for _ in range(2):
            index.note(color, log.tail, batch)  # type: ignore[arg-type]
            log.tail += 1

    log.during_read = append_twice
    part, _, _ = await index.refresh(color)  # type: ignore[arg-type]
    assert log.reads == 1 and part.upto == 3 and part.sns == [0, 1, 2]
    log.during_read = lambda: None
    index.note(color, 3, batch)  # type: ignore[arg-type]
    log.tail = 4
    part, _, tail = await index.refresh(color)  # type: ignore[arg-type]
    assert log.reads == 1 and part.upto == tail == 4, "nothing read back"


async def test_a_new_partitions_batches_are_indexed_as_appended_not_read_back():
    batch = record_batch.build([b"x"], timestamp_ms=7)

    class Log:
        def __init__(self) -> None:
            self.reads: list[int] = []

        async def state(self, color: object) -> tuple[int, int]:
            return 0, 3

        async def read_range(self, color: object, sn: int, max_bytes: int) -> object:
            self.reads.append(sn)
            return RangeResult([StoredEntry(s, 1, batch) for s in range(sn, 3)], 0, 3)

    log = Log()
    index = TimestampIndex(log, lambda _, start: start)  # type: ignore[arg-type]
    new, old, unretained = (SimpleNamespace(id=i, family=0) for i in (1, 2, 3))
    for sn in range(3):
        index.note(new, sn, batch, start=True)  # type: ignore[arg-type]
        index.note(unretained, sn, batch)  # type: ignore[arg-type]
    index.note(old, 2, batch, start=True)  # type: ignore[arg-type]  # a batch above older ones
    part, _, _ = await index.refresh(new)  # type: ignore[arg-type]
    assert part.sns == [0, 1, 2] and log.reads == [], "the first batch started the index"
    part, _, _ = await index.refresh(old)  # type: ignore[arg-type]
    assert part.sns == [0, 1, 2] and log.reads == [0], "below its batch the log is read"
    await index.refresh(unretained)  # type: ignore[arg-type]
    assert log.reads == [0, 0], "no index was started where retention would not trim it"


def test_the_indexes_of_deleted_partitions_are_dropped():
    live = SimpleNamespace(id=1, family=0)
    client = SimpleNamespace(registry=SimpleNamespace(by_id={1: live, 2: object()}))
    index = TimestampIndex(client, lambda _, start: start)  # type: ignore[arg-type]
    for color_id in (1, 2):
        index.note(SimpleNamespace(id=color_id, family=0), 0,  # type: ignore[arg-type]
                   record_batch.build([b"x"], timestamp_ms=7), start=True)
    del client.registry.by_id[2]  # its topic was deleted
    index.drop_deleted()
    assert index.part(1).sns == [0] and index.part(2).sns == [], "only the live index is kept"


def test_retention_never_expires_a_batch_on_a_timestamp_it_does_not_have():
    index = PartitionIndex()
    for i, ts in enumerate([-1, 100, -1, 900, -1]):
        index.add(i * 10, i * 10 + 10, 1000, ts)
    # The first -1 batch goes with the expired one after it; the others stay.
    assert trim_point(index, retention_ms=750, retention_bytes=-1, now_ms=1000) == 2
    assert trim_point(index, retention_ms=0, retention_bytes=-1, now_ms=10_000) == 4


def _start_record(op: str, **fields: object) -> bytes:
    return json.dumps({"op": op, **fields}).encode()


def test_log_start_fold_keeps_the_highest_offsets_in_any_order():
    records = [(0, _start_record("start", color=7, offset=30)),
               (1, _start_record("start", color=7, offset=10)),
               (2, _start_record("empty", color=8, offset=5)),
               (3, b"not json"),
               (4, _start_record("snapshot", upto=3, starts=[[7, 20, 0], [9, 4, 6]])),
               (5, _start_record("empty", color=7, offset=25))]
    folded = []
    for order in (records, records[::-1], records + records):
        state = StartState()
        for sn, value in order:
            state.apply(sn, value)
        folded.append((state.starts, state.empty, state.applied))
    assert all(f == ({7: 30, 9: 4}, {7: 25, 8: 5, 9: 6}, 6) for f in folded)
    state = StartState()
    for sn, value in records[:3]:
        state.apply(sn, value)
    assert state.since_snapshot == 3
    state.apply(*records[4])
    assert state.since_snapshot == 0
    state.apply(*records[5])
    # The physical log start counts when it is higher; a color never moved starts there.
    assert (state.start(7, 12), state.start(7, 40), state.start(99, 12)) == (30, 40, 12)
    # The family may be trimmed up to the higher of a partition's start and empty SN.
    assert (state.held(7), state.held(8), state.held(9), state.held(99)) == (30, 5, 6, 0)
    # A snapshot leaves out colors no longer live (their topic was deleted).
    assert state.snapshot(live={7, 9}) == {"op": "snapshot", "upto": 6,
                                           "starts": [[7, 30, 25], [9, 4, 6]]}


def test_family_trim_point_is_the_lowest_held_sn_of_the_live_members():
    state = StartState()
    for sn, (op, color, offset) in enumerate([("start", 1, 50), ("start", 2, 80), ("start", 3, 30),
                                              ("start", 4, 200), ("empty", 2, 120),
                                              ("empty", 6, 70)]):
        state.apply(sn, _start_record(op, color=color, offset=offset))
    assert family_trim_point(state, [1, 2], log_start=0) == 50
    # A member that recorded nothing (or that was just added) holds the family where it is.
    assert family_trim_point(state, [1, 2, 5], log_start=10) == 10
    # Member 3 was deleted: its old start does not hold the others back.
    assert family_trim_point(state, [1, 2, 4], log_start=0) == 50
    # A quiet member (6: no start, nothing kept below 70) holds the family at 70 only.
    assert family_trim_point(state, [2, 4, 6], log_start=0) == 70
    # SNs below the family's physical start count as the physical start.
    assert family_trim_point(state, [1, 3], log_start=40) == 40
    assert family_trim_point(state, [], log_start=40) == 40
    # Which members the family waits for: those at the lowest held SN.
    assert holds_family(state, 6, [2, 4, 6]) and not holds_family(state, 4, [2, 4, 6])
    assert holds_family(state, 5, [1, 5]) and holds_family(state, 1, [1])


@pytest.mark.parametrize("mechanism", list(scram.HASHES))
def test_scram_client_logs_in_to_the_server(mechanism):
    credential = scram.derive(mechanism, "s3cret", 4096)
    for user, password in (("a,b=c", "s3cret"), ("a,b=c", "wrong")):
        client, server = scram.ScramClient(mechanism, user, password), scram.ScramServer(mechanism)
        assert server.parse_first(client.first()) == user
        client_final = client.final(server.server_first(credential))
        if password != "s3cret":
            with pytest.raises(scram.ScramError):
                server.final(client_final, True)
            continue
        client.verify(server.final(client_final, True))
    # A server that asks for too few iterations is refused, and one that cannot prove the
    # credential too.
    client = scram.ScramClient(mechanism, "u", "s3cret")
    with pytest.raises(scram.ScramError):
        client.final(f"r={client.first().decode().split('r=')[1]}x,s=c2FsdA==,i=1000".encode())
    with pytest.raises(scram.ScramError):
        client.verify(b"v=" + base64.b64encode(b"x" * 32))


async def _call(server: GatewayServer, key: ApiKey, version: int, body: dict) -> dict:
    request = decode_request(encode_request(key, version, 1, body)[4:])
    return await asyncio.wait_for(ENDPOINTS[key].handle(server.broker, request), 5)


CONSUMER_JOIN = {"group_id": "g", "member_id": "me", "member_epoch": 0, "rebalance_timeout_ms": 1000,
                 "subscribed_topic_names": ["t"], "topic_partitions": []}
CLASSIC_JOIN = {"group_id": "g", "session_timeout_ms": 10_000, "rebalance_timeout_ms": 10_000,
                "member_id": "", "protocol_type": "consumer",
                "protocols": [{"name": "range", "metadata": b""}]}


async def test_a_group_id_is_either_classic_or_consumer(tmp_path):
    """Kafka 4's rules: live groups refuse the other protocol, empty ones convert."""
    server = _gateway(tmp_path)
    joined = await _call(server, ApiKey.CONSUMER_GROUP_HEARTBEAT, 1, CONSUMER_JOIN)
    assert (joined["error_code"], joined["member_id"], joined["member_epoch"]) == (0, "me", 1)
    assert joined["assignment"] == {"topic_partitions": []}
    refused = await _call(server, ApiKey.JOIN_GROUP, 4, CLASSIC_JOIN)
    assert refused["error_code"] == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    described = await _call(server, ApiKey.CONSUMER_GROUP_DESCRIBE, 0, {"group_ids": ["g", "nope"]})
    group, unknown = described["groups"]
    assert (group["error_code"], group["group_state"], group["group_epoch"], group["assignor_name"]) == (
        0, "Stable", 1, "uniform")
    assert [(m["member_id"], m["member_epoch"]) for m in group["members"]] == [("me", 1)]
    assert unknown["error_code"] == ErrorCode.GROUP_ID_NOT_FOUND
    left = await _call(server, ApiKey.CONSUMER_GROUP_HEARTBEAT, 1,
                       {"group_id": "g", "member_id": "me", "member_epoch": -1})
    assert (left["error_code"], left["member_epoch"]) == (0, -1)
    # Empty now: a classic join converts it (v4 first hands out a member id).
    converted = await _call(server, ApiKey.JOIN_GROUP, 4, CLASSIC_JOIN)
    assert converted["error_code"] == ErrorCode.MEMBER_ID_REQUIRED
    assert server.broker.groups.consumer.group("g") is None
    # A classic group with a member rebalancing: not a consumer group.
    server.broker.groups.coordinator.join(0, JoinRequest(
        "g", converted["member_id"], None, "consumer", (("range", b""),), 10_000, 10_000, 4), object())
    refused = await _call(server, ApiKey.CONSUMER_GROUP_HEARTBEAT, 1, CONSUMER_JOIN)
    assert (refused["error_code"], refused["error_message"]) == (
        ErrorCode.GROUP_ID_NOT_FOUND, "Group g is not a consumer group")
    other = await _call(server, ApiKey.CONSUMER_GROUP_DESCRIBE, 0, {"group_ids": ["g"]})
    assert other["groups"][0]["error_message"] == "Group g is not a consumer group"
