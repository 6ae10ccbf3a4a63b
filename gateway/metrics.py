"""Prometheus metrics of a Kafka gateway.

Everything is derived in one place, `GatewayMetrics.observe`, from the decoded
request and the response body the handler returned, so the handlers stay free
of metrics code and a new API family is measured without touching this file.
Labels are bounded: API names and versions, Kafka error-code names, topic
names, consumer groups and partitions; never record contents, and client ids
only in the quota metrics, for clients a configured quota applies to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from flexlog.core import record_batch
from flexlog.core.errors import FlexLogError
from flexlog.core.record_batch import CorruptBatch
from flexlog.core.registry import ColorInfo
from flexlog.gateway.protocol import API_NAMES, ApiKey, ErrorCode, Request

if TYPE_CHECKING:
    from flexlog.gateway.broker import Broker

log = logging.getLogger("flexlog.gateway.metrics")

# Produce and plain requests take milliseconds; a Fetch long poll waits up to the
# client's max.wait.ms (500 ms by default, seconds for some clients).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_REFRESH_S = 5.0

REQUESTS = Counter("flexlog_gateway_requests", "Kafka requests handled, by API and version",
                   ["api", "version"])
ERRORS = Counter("flexlog_gateway_errors",
                 "Non-zero error codes in responses (one per partition or resource that failed)",
                 ["api", "code"])
REQUEST_SECONDS = Histogram("flexlog_gateway_request_seconds",
                            "Time from decoding a request to having its response body (Fetch includes "
                            "its long-poll wait)", ["api"], buckets=LATENCY_BUCKETS)
CONNECTIONS = Gauge("flexlog_gateway_connections", "Open Kafka client connections")
CONNECTIONS_OPENED = Counter("flexlog_gateway_connections_opened", "Kafka client connections accepted")
TLS_HANDSHAKE_FAILURES = Counter("flexlog_gateway_tls_handshake_failures",
                                 "TLS handshakes on SSL and SASL_SSL listeners that failed")
TLS_CERT_NOT_AFTER = Gauge("flexlog_gateway_tls_certificate_not_after_seconds",
                           "notAfter (Unix time) of the certificate new TLS connections get")
RECEIVED_BYTES = Counter("flexlog_gateway_received_bytes", "Bytes read from Kafka clients")
SENT_BYTES = Counter("flexlog_gateway_sent_bytes", "Bytes of responses written to Kafka clients")
PRODUCED_RECORDS = Counter("flexlog_gateway_produced_records", "Records appended through Produce",
                           ["topic"])
FETCHED_RECORDS = Counter("flexlog_gateway_fetched_records", "Records returned by Fetch", ["topic"])
FETCH_WAIT_SECONDS = Histogram(
    "flexlog_gateway_fetch_wait_seconds",
    "Time a Fetch that allowed a long poll (max_wait_ms > 0) took, by whether it returned records; "
    "outcome=empty means the poll ran out at max_wait_ms", ["outcome"], buckets=LATENCY_BUCKETS)
CONSUMER_LAG = Gauge("flexlog_gateway_consumer_lag_records",
                     "High watermark minus the group's committed offset, for groups this gateway "
                     "coordinates", ["group", "topic", "partition"])
REBALANCES = Counter("flexlog_gateway_group_rebalances",
                     "Consumer group generations started (one per completed JoinGroup round)", ["group"])
# Labelled by the user and client-id a quota's bucket is keyed by (empty where its entity names none).
TRANSACTIONS_ENDED = Counter("flexlog_gateway_transactions_ended",
                             "Transactions a producer ended with EndTxn, by result (commit or abort)",
                             ["result"])
QUOTA_LABELS = ["quota", "user", "client_id"]
QUOTA_USAGE = Counter("flexlog_gateway_quota_usage",
                      "Bytes charged against producer_byte_rate / consumer_byte_rate quotas",
                      QUOTA_LABELS)
QUOTA_REQUEST_SECONDS = Counter("flexlog_gateway_quota_request_time_seconds",
                                "Request handling time charged against request_percentage quotas",
                                ["user", "client_id"])
QUOTA_THROTTLE_SECONDS = Counter("flexlog_gateway_quota_throttle_seconds",
                                 "Throttle time answered (and the connection muted for) per quota",
                                 QUOTA_LABELS)
QUOTA_THROTTLED_REQUESTS = Counter("flexlog_gateway_quota_throttled_requests",
                                   "Requests answered with a non-zero throttle_time_ms", QUOTA_LABELS)


def serve(address: str, port: int) -> None:
    """Expose /metrics on the host of the gateway's Kafka address (0 disables)."""
    if port:
        start_http_server(port, addr=address.rpartition(":")[0])


def api_name(api_key: int) -> str:
    return API_NAMES.get(api_key, str(api_key))


def error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)


def error_codes(body: Any) -> Iterator[int]:
    """Every non-zero error_code in a response body, at any depth."""
    if isinstance(body, dict):
        for key, value in body.items():
            if key == "error_code":
                if value:
                    yield int(value)
            elif isinstance(value, list | dict):
                yield from error_codes(value)
    elif isinstance(body, list):
        for item in body:
            yield from error_codes(item)


def batch_records(records: bytes | None) -> int:
    """Records in a concatenation of record batches (0 for anything unparsable)."""
    if not records:
        return 0
    try:
        return sum(record_batch.parse_header(b).records_count for b in record_batch.split(records))
    except CorruptBatch:
        return 0


class GatewayMetrics:
    """Turns each handled request into metric updates; exports consumer lag.

    Committed offsets are taken from the OffsetCommit requests this gateway
    answered successfully: FindCoordinator sends all of a group's commits to
    one gateway, so each group's lag is exported by exactly one gateway.
    """

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.committed: dict[tuple[str, str, int], int] = {}
        self.generations: dict[str, int] = {}

    def observe(self, request: Request, body: dict[str, Any] | None, seconds: float) -> None:
        api = api_name(request.api_key)
        REQUESTS.labels(api, str(request.api_version)).inc()
        REQUEST_SECONDS.labels(api).observe(seconds)
        if body is None:
            return
        for code in error_codes(body):
            ERRORS.labels(api, error_name(code)).inc()
        if request.api_key == ApiKey.PRODUCE:
            self._produced(request.body, body)
        elif request.api_key == ApiKey.FETCH:
            self._fetched(request.body, body, seconds)
        elif request.api_key == ApiKey.OFFSET_COMMIT:
            self._committed(request.body, body)
        elif request.api_key == ApiKey.JOIN_GROUP:
            self._joined(request.body, body)
        elif request.api_key == ApiKey.END_TXN and not body["error_code"]:
            TRANSACTIONS_ENDED.labels("commit" if request.body["committed"] else "abort").inc()

    def _produced(self, req: dict[str, Any], resp: dict[str, Any]) -> None:
        results = {(t["name"], p["index"]): p["error_code"]
                   for t in resp["responses"] for p in t["partition_responses"]}
        for topic in req["topic_data"]:
            count = sum(batch_records(p["records"]) for p in topic["partition_data"]
                        if not results.get((topic["name"], p["index"]), 1))
            if count:
                PRODUCED_RECORDS.labels(topic["name"]).inc(count)

    def _fetched(self, req: dict[str, Any], resp: dict[str, Any], seconds: float) -> None:
        returned = 0
        for topic in resp["responses"]:
            count = sum(batch_records(p["records"]) for p in topic["partitions"])
            if count:
                FETCHED_RECORDS.labels(topic["topic"]).inc(count)
                returned += count
        if req["max_wait_ms"] > 0:
            FETCH_WAIT_SECONDS.labels("records" if returned else "empty").observe(seconds)

    def _committed(self, req: dict[str, Any], resp: dict[str, Any]) -> None:
        failed = {(t["name"], p["partition_index"])
                  for t in resp["topics"] for p in t["partitions"] if p["error_code"]}
        for topic in req["topics"]:
            for p in topic["partitions"]:
                if (topic["name"], p["partition_index"]) not in failed:
                    key = (req["group_id"], topic["name"], p["partition_index"])
                    self.committed[key] = p["committed_offset"]

    def _joined(self, req: dict[str, Any], resp: dict[str, Any]) -> None:
        # Every member of a round gets the same generation: count it once.
        group, generation = req["group_id"], resp["generation_id"]
        if resp["error_code"] or generation < 0 or self.generations.get(group) == generation:
            return
        self.generations[group] = generation
        REBALANCES.labels(group).inc()

    async def refresh_lag(self) -> None:
        """Set the lag gauge of every committed (group, topic, partition) from the log's tail."""
        for (group, topic, partition), offset in list(self.committed.items()):
            try:
                color: ColorInfo = await self.broker.topics.color(topic, partition)
                tail = await self.broker.client.tail(color)
            except FlexLogError as exc:
                # A deleted topic or an unreachable shard: stop reporting a stale value.
                log.debug("no lag for %s %s/%d: %s", group, topic, partition, exc)
                with contextlib.suppress(KeyError):
                    CONSUMER_LAG.remove(group, topic, str(partition))
                continue
            CONSUMER_LAG.labels(group, topic, str(partition)).set(max(0, tail - offset))

    async def export_lag(self, interval_s: float = LAG_REFRESH_S) -> None:
        """Refresh consumer lag forever (the gateway cancels it on stop)."""
        while True:
            await self.refresh_lag()
            await asyncio.sleep(interval_s)
