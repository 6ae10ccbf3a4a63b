"""gateway/metrics.py without sockets: requests and responses in, metric samples out."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY

from flexlog.cli.status import parse_lag
from flexlog.core import record_batch
from flexlog.core.errors import UnknownColor
from flexlog.core.registry import ColorInfo
from flexlog.gateway import metrics
from flexlog.gateway.protocol import ApiKey, ErrorCode, Request


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def request(api_key: int, version: int, body: dict) -> Request:
    return Request(api_key, version, 1, "test-client", body)


def batch(n: int) -> bytes:
    return record_batch.build([record_batch.Record(b"v%d" % i) for i in range(n)])


class FakeTopics:
    async def color(self, topic: str, partition: int) -> ColorInfo:
        if topic == "gone":
            raise UnknownColor(topic)
        return ColorInfo(100 + partition, f"kafka/{topic}/{partition}", 1, (0,))


class FakeClient:
    async def tail(self, color: ColorInfo) -> int:
        return 50


@dataclass
class FakeBroker:
    topics: FakeTopics
    client: FakeClient


def gateway_metrics() -> metrics.GatewayMetrics:
    return metrics.GatewayMetrics(FakeBroker(FakeTopics(), FakeClient()))  # type: ignore[arg-type]


def test_requests_errors_and_produced_records_are_counted() -> None:
    m = gateway_metrics()
    before = sample("flexlog_gateway_requests_total", api="Produce", version="9")
    records = sample("flexlog_gateway_produced_records_total", topic="t-produce")
    unknown = sample("flexlog_gateway_errors_total", api="Produce", code="UNKNOWN_TOPIC_OR_PARTITION")
    req = request(ApiKey.PRODUCE, 9, {"acks": -1, "topic_data": [
        {"name": "t-produce", "partition_data": [{"index": 0, "records": batch(3)},
                                                 {"index": 1, "records": batch(5)}]}]})
    resp = {"responses": [{"name": "t-produce", "partition_responses": [
        {"index": 0, "error_code": 0}, {"index": 1, "error_code": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION}]}]}
    m.observe(req, resp, 0.002)
    assert sample("flexlog_gateway_requests_total", api="Produce", version="9") == before + 1
    # Only the partition that was stored counts.
    assert sample("flexlog_gateway_produced_records_total", topic="t-produce") == records + 3
    assert sample("flexlog_gateway_errors_total", api="Produce",
                  code="UNKNOWN_TOPIC_OR_PARTITION") == unknown + 1
    assert sample("flexlog_gateway_request_seconds_count", api="Produce") >= 1


def test_fetch_records_and_long_poll_outcomes() -> None:
    m = gateway_metrics()
    fetched = sample("flexlog_gateway_fetched_records_total", topic="t-fetch")
    empty = sample("flexlog_gateway_fetch_wait_seconds_count", outcome="empty")
    with_records = sample("flexlog_gateway_fetch_wait_seconds_count", outcome="records")
    req = request(ApiKey.FETCH, 12, {"max_wait_ms": 500})

    def response(records: bytes) -> dict:
        return {"error_code": 0, "responses": [{"topic": "t-fetch", "partitions": [
            {"partition_index": 0, "error_code": 0, "records": records}]}]}

    m.observe(req, response(batch(2) + batch(4)), 0.01)
    m.observe(req, response(b""), 0.5)
    m.observe(request(ApiKey.FETCH, 12, {"max_wait_ms": 0}), response(b""), 0.001)
    assert sample("flexlog_gateway_fetched_records_total", topic="t-fetch") == fetched + 6
    assert sample("flexlog_gateway_fetch_wait_seconds_count", outcome="records") == with_records + 1
    # A fetch that did not allow waiting is no long poll.
    assert sample("flexlog_gateway_fetch_wait_seconds_count", outcome="empty") == empty + 1


def test_error_codes_are_found_at_any_depth_and_named() -> None:
    body = {"error_code": 0, "topics": [{"error_code": 3, "partitions": [{"error_code": 0},
                                                                         {"error_code": 1}]}]}
    assert sorted(metrics.error_codes(body)) == [1, 3]
    assert metrics.error_name(3) == "UNKNOWN_TOPIC_OR_PARTITION"
    assert metrics.error_name(9999) == "9999"
    assert metrics.batch_records(b"not a batch at all") == 0


async def test_committed_offsets_become_lag_and_joins_count_rebalances() -> None:
    m = gateway_metrics()
    commit = request(ApiKey.OFFSET_COMMIT, 8, {"group_id": "g-lag", "topics": [
        {"name": "events", "partitions": [{"partition_index": 0, "committed_offset": 20},
                                          {"partition_index": 1, "committed_offset": 99}]},
        {"name": "gone", "partitions": [{"partition_index": 0, "committed_offset": 1}]}]})
    m.observe(commit, {"topics": [
        {"name": "events", "partitions": [{"partition_index": 0, "error_code": 0},
                                          {"partition_index": 1, "error_code": 25}]},
        {"name": "gone", "partitions": [{"partition_index": 0, "error_code": 0}]}]}, 0.001)
    await m.refresh_lag()
    assert sample("flexlog_gateway_consumer_lag_records", group="g-lag", topic="events",
                  partition="0") == 30
    # A failed commit leaves no committed offset; a topic that no longer resolves reports nothing.
    assert REGISTRY.get_sample_value("flexlog_gateway_consumer_lag_records",
                                     {"group": "g-lag", "topic": "events", "partition": "1"}) is None
    assert REGISTRY.get_sample_value("flexlog_gateway_consumer_lag_records",
                                     {"group": "g-lag", "topic": "gone", "partition": "0"}) is None

    before = sample("flexlog_gateway_group_rebalances_total", group="g-lag")
    join = request(ApiKey.JOIN_GROUP, 5, {"group_id": "g-lag"})
    for generation in (1, 1, 1, 2):  # three members answered in generation 1, then a new round
        m.observe(join, {"error_code": 0, "generation_id": generation}, 0.1)
    assert sample("flexlog_gateway_group_rebalances_total", group="g-lag") == before + 2


def test_lag_text_parses_back_into_groups() -> None:
    text = ('# HELP flexlog_gateway_consumer_lag_records lag\n'
            '# TYPE flexlog_gateway_consumer_lag_records gauge\n'
            'flexlog_gateway_consumer_lag_records{group="g",partition="2",topic="t"} 7.0\n'
            'flexlog_gateway_requests_total{api="Fetch",version="12"} 3.0\n')
    [lag] = parse_lag(text, "gateway0")
    assert (lag.group, lag.topic, lag.partition, lag.lag, lag.gateway) == ("g", "t", 2, 7, "gateway0")
