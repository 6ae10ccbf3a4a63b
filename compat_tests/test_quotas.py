"""Client quotas over real sockets: the admin API, a greedy producer held to its byte rate, a greedy
consumer held to its fetch byte rate, and a client sending cheap requests held to its request_percentage.

Neither kafka-python's nor confluent-kafka's admin client exposes Describe/AlterClientQuotas,
so the admin side speaks the wire protocol itself (tests/gateway/wire_client.py).
"""

from __future__ import annotations

import statistics
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from flexlog.gateway.protocol import ApiKey, ErrorCode
from wire_client import WireClient

QUOTA = 1_000_000  # bytes per second
GREEDY_S = 5.0


def alter(address: str, entity: list[tuple[str, str | None]], ops: list[tuple[str, float, bool]],
          version: int = 1) -> dict:
    client = WireClient(address)
    try:
        return client.call(ApiKey.ALTER_CLIENT_QUOTAS, version, {
            "entries": [{"entity": [{"entity_type": t, "entity_name": n} for t, n in entity],
                         "ops": [{"key": k, "value": v, "remove": r} for k, v, r in ops]}],
            "validate_only": False})
    finally:
        client.close()


def describe(address: str, components: list[tuple[str, int, str | None]], strict: bool = False,
             version: int = 1) -> dict:
    client = WireClient(address)
    try:
        return client.call(ApiKey.DESCRIBE_CLIENT_QUOTAS, version, {
            "components": [{"entity_type": t, "match_type": m, "match": s} for t, m, s in components],
            "strict": strict})
    finally:
        client.close()


def entries(response: dict) -> dict[tuple, dict[str, float]]:
    assert response["error_code"] == ErrorCode.NONE, response
    return {tuple((p["entity_type"], p["entity_name"]) for p in e["entity"]):
            {v["key"]: v["value"] for v in e["values"]} for e in response["entries"]}


def test_quotas_set_and_described_through_the_admin_api(bootstrap: str) -> None:
    result = alter(bootstrap, [("user", "alice"), ("client-id", "app")],
                   [("producer_byte_rate", 2048.0, False), ("consumer_byte_rate", 4096.0, False)])
    assert [e["error_code"] for e in result["entries"]] == [ErrorCode.NONE]
    assert alter(bootstrap, [("user", None)], [("consumer_byte_rate", 50.0, False)],
                 version=0)["entries"][0]["error_code"] == ErrorCode.NONE
    # Another connection (version 0, not flexible) sees them, exactly and by filter.
    exact = entries(describe(bootstrap, [("user", 0, "alice")], version=0))
    assert exact == {(("client-id", "app"), ("user", "alice")):
                     {"consumer_byte_rate": 4096.0, "producer_byte_rate": 2048.0}}
    assert entries(describe(bootstrap, [("user", 0, "alice")], strict=True)) == {}
    assert entries(describe(bootstrap, [("user", 1, None)], strict=True)) == {
        (("user", None),): {"consumer_byte_rate": 50.0}}
    # Removing the last key removes the entity.
    alter(bootstrap, [("user", None)], [("consumer_byte_rate", 0.0, True)])
    assert entries(describe(bootstrap, [("user", 1, None)])) == {}
    bad = alter(bootstrap, [("ip", "1.2.3.4")], [("producer_byte_rate", 1.0, False)])
    assert bad["entries"][0]["error_code"] == ErrorCode.INVALID_REQUEST
    ok = alter(bootstrap, [("user", "x")], [("request_percentage", 250.0, False)])
    assert ok["entries"][0]["error_code"] == ErrorCode.NONE
    assert entries(describe(bootstrap, [("user", 0, "x")])) == {
        (("user", "x"),): {"request_percentage": 250.0}}
    bad = alter(bootstrap, [("user", "x")], [("controller_mutation_rate", 10.0, False)])
    assert bad["entries"][0]["error_code"] == ErrorCode.INVALID_REQUEST
    bad = alter(bootstrap, [("user", "x")], [("producer_byte_rate", -1.0, False)])
    assert bad["entries"][0]["error_code"] == ErrorCode.INVALID_REQUEST


def _latencies(bootstrap: str, topic: str, seconds: float) -> list[float]:
    """A calm tenant: one small message at a time, each waited for."""
    p = Producer({"bootstrap.servers": bootstrap, "client.id": "calm", "linger.ms": 0})
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        p.produce(topic, b"x" * 100)
        assert p.flush(5) == 0
        out.append(time.perf_counter() - started)
        time.sleep(0.01)
    return out


def test_greedy_producer_is_held_to_its_quota_and_others_are_not_slowed(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, 1, 1), NewTopic(topic + "-calm", 1, 1)]).values():
        f.result(10)
    assert alter(bootstrap, [("client-id", "greedy")],
                 [("producer_byte_rate", float(QUOTA), False)])["entries"][0]["error_code"] == 0
    alone = _latencies(bootstrap, topic + "-calm", 2.0)

    delivered = [0]
    stop = threading.Event()

    def greedy() -> None:
        p = Producer({"bootstrap.servers": bootstrap, "client.id": "greedy", "linger.ms": 5,
                      "queue.buffering.max.kbytes": 2048})
        value = b"g" * 10_000

        def count(err: object, msg: object) -> None:
            if err is None:
                delivered[0] += len(value)

        while not stop.is_set():
            try:
                p.produce(topic, value, on_delivery=count)
            except BufferError:
                p.poll(0.05)
            p.poll(0)
        p.flush(10)

    thread = threading.Thread(target=greedy)
    started = time.monotonic()
    thread.start()
    try:
        time.sleep(0.5)
        during = _latencies(bootstrap, topic + "-calm", GREEDY_S - 0.5)
    finally:
        stop.set()
        thread.join(30)
    elapsed = time.monotonic() - started
    rate = delivered[0] / elapsed
    print(f"greedy {rate / 1e6:.2f} MB/s over {elapsed:.1f}s; calm p50 alone "
          f"{statistics.median(alone) * 1e3:.1f} ms, during {statistics.median(during) * 1e3:.1f} ms")
    assert QUOTA / 2 < rate < 2 * QUOTA
    assert statistics.median(during) < statistics.median(alone) + 0.010
    assert len(during) > 0.5 * len(alone) * (GREEDY_S - 0.5) / 2.0


REQUEST_PERCENTAGE = 1.0  # 10 ms of handling per second


def _tight_loop(bootstrap: str, topic: str, client_id: str, seconds: float,
                throttles: list[float] | None = None) -> list[float]:
    """Tiny produce requests, each one waited for: when each was acknowledged."""
    conf: dict[str, object] = {"bootstrap.servers": bootstrap, "client.id": client_id, "linger.ms": 0,
                               "enable.idempotence": False}
    if throttles is not None:
        conf["throttle_cb"] = lambda event: throttles.append(event.throttle_time)
    p = Producer(conf)
    acked = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        p.produce(topic, b"r")
        assert p.flush(30) == 0
        acked.append(time.monotonic())
    return acked


def test_greedy_requests_are_held_to_their_request_percentage_and_others_are_not_slowed(
        bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, 1, 1), NewTopic(topic + "-calm", 1, 1)]).values():
        f.result(10)
    assert alter(bootstrap, [("client-id", "req-greedy")],
                 [("request_percentage", REQUEST_PERCENTAGE, False)])["entries"][0]["error_code"] == 0
    free = _tight_loop(bootstrap, topic, "req-free", 2.0)
    free_rate = len(free) / (free[-1] - free[0])
    alone = _latencies(bootstrap, topic + "-calm", 2.0)

    throttles: list[float] = []
    greedy: list[float] = []
    thread = threading.Thread(target=lambda: greedy.extend(
        _tight_loop(bootstrap, topic, "req-greedy", GREEDY_S, throttles)))
    thread.start()
    try:
        during = _latencies(bootstrap, topic + "-calm", GREEDY_S)
    finally:
        thread.join(60)
    # After the first second's burst, the rate the quota allows.
    settled = [t for t in greedy if t > greedy[0] + 2.0]
    greedy_rate = len(settled) / (settled[-1] - settled[0])
    throttled = [t for t in throttles if t > 0]
    print(f"free {free_rate:.0f} requests/s; greedy at {REQUEST_PERCENTAGE}% {greedy_rate:.0f} requests/s, "
          f"{len(throttled)} throttles, max {max(throttled, default=0) * 1e3:.0f} ms; calm p50 alone "
          f"{statistics.median(alone) * 1e3:.1f} ms, during {statistics.median(during) * 1e3:.1f} ms")
    assert throttled, "the client was never told throttle_time_ms"
    assert greedy_rate < free_rate / 2
    assert statistics.median(during) < statistics.median(alone) + 0.010


FETCH_QUOTA = 500_000  # bytes per second
FETCH_TOPIC_BYTES = 8_000_000
FETCH_RECORD = 10_000


def _consume(bootstrap: str, topic: str, client_id: str, seconds: float) -> list[tuple[float, int]]:
    """A consumer reading from the start for seconds after its first record, or to the end:
    when each record arrived, and its size."""
    c = Consumer({"bootstrap.servers": bootstrap, "client.id": client_id, "group.id": client_id,
                  "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        received: list[tuple[float, int]] = []
        started = time.monotonic()
        while len(received) < FETCH_TOPIC_BYTES // FETCH_RECORD and (
                not received or time.monotonic() < received[0][0] + seconds):
            msg = c.poll(0.5)
            if msg is None:
                assert received or time.monotonic() < started + 30, "no records at all"
                continue
            assert msg.error() is None, msg.error()
            received.append((time.monotonic(), len(msg.value())))
        return received
    finally:
        c.close()


def _rate(received: list[tuple[float, int]], skip_s: float = 0.0) -> float:
    """Bytes per second from skip_s after the first record to the last."""
    start = received[0][0] + skip_s
    later = [(t, n) for t, n in received if t > start]
    return sum(n for _, n in later) / (later[-1][0] - start)


def test_greedy_consumer_is_held_to_its_fetch_quota_and_others_are_not(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(10)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for _ in range(FETCH_TOPIC_BYTES // FETCH_RECORD):
        p.produce(topic, b"f" * FETCH_RECORD)
        p.poll(0)
    assert p.flush(60) == 0
    assert alter(bootstrap, [("client-id", "fetch-greedy")],
                 [("consumer_byte_rate", float(FETCH_QUOTA), False)])["entries"][0]["error_code"] == 0
    received: dict[str, list[tuple[float, int]]] = {}

    def consume(client_id: str) -> None:
        received[client_id] = _consume(bootstrap, topic, client_id, 6.0)

    threads = [threading.Thread(target=consume, args=(c,)) for c in ("fetch-greedy", "fetch-free")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    greedy = received["fetch-greedy"]
    # The first second holds the quota's burst and the fetch that overdrew it (up to
    # max.partition.fetch.bytes, 1 MB): Kafka too throttles after a response, not within it.
    held, overall = _rate(greedy, skip_s=1.0), _rate(greedy)
    free = _rate(received["fetch-free"])
    print(f"consumer at a {FETCH_QUOTA / 1e6:.1f} MB/s quota: {held / 1e6:.2f} MB/s after its first second, "
          f"{overall / 1e6:.2f} MB/s overall; without a quota: {free / 1e6:.1f} MB/s "
          f"({sum(n for _, n in received['fetch-free']) / 1e6:.0f} MB)")
    assert FETCH_QUOTA / 2 < held < 2 * FETCH_QUOTA and overall < 2 * FETCH_QUOTA
    assert free > 4 * FETCH_QUOTA
