"""Kafka gateway benchmark with confluent-kafka: produce, consume, end-to-end latency.

Run: .venv/bin/python bench/bench_gateway.py [--storage memory|pm] [--seconds 5]

Starts its own cluster (1 root, 1 leaf, 1 shard x 3 replicas, 1 gateway), and
measures the same client against librdkafka's built-in mock cluster as the
ceiling of the client itself (produce only: the mock keeps ~5 MiB per
partition). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from common import gateway_ready, percentile, produce_rate, running_cluster

SIZES = (100, 1024)
PARTITIONS = (1, 4)
LATENCY_SAMPLES = 300


def consume_rate(bootstrap: str, topic: str, partitions: int, size: int) -> tuple[float, float]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", "enable.auto.commit": False})
    ends = [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)]
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    total, got = sum(ends), 0
    start = time.perf_counter()
    while got < total:
        batch = c.consume(10_000, timeout=1.0)
        got += sum(1 for m in batch if m.error() is None)
        if not batch and time.perf_counter() - start > 120:
            break
    elapsed = time.perf_counter() - start
    c.close()
    return got / elapsed, got * size / elapsed / 1e6


def e2e_latency(bootstrap: str, topic: str) -> list[float]:
    """Seconds from produce() to the consumer seeing it, one message at a time,
    with librdkafka's default fetch.wait.max.ms (500 ms)."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    p.produce(topic, value=b"warm")
    p.flush(10)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "lat", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 1)])
    c.poll(1.0)
    out = []
    for _ in range(LATENCY_SAMPLES):
        t0 = time.perf_counter()
        p.produce(topic, value=b"%.9f" % t0)
        p.poll(0)
        while True:
            m = c.poll(2.0)
            if m is not None and m.error() is None:
                break
        out.append(time.perf_counter() - t0)
        time.sleep(0.002)
    c.close()
    return out


def create_topics(bootstrap: str, names: dict[str, int]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(n, num_partitions=k) for n, k in names.items()]).values():
        f.result(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--storage", default="memory", choices=["memory", "pm"])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    mock = {"test.mock.num.brokers": 1, "bootstrap.servers": ""}
    print(f"storage engine: {args.storage}; {args.seconds:.0f} s per produce run; acks=all; "
          "3 replicas per shard")
    # Each replica keeps every produced byte in memory until the case's topic is deleted.
    extra = "pool_size_bytes = 4294967296"
    with tempfile.TemporaryDirectory() as tmp, \
            running_cluster(Path(tmp), storage=args.storage, gateways=1, extra=extra) as cluster:
        bootstrap = cluster.config.gateways[0].advertised
        while not gateway_ready(bootstrap):
            time.sleep(0.1)
        ours = {"bootstrap.servers": bootstrap}
        topics = {f"p{parts}-s{size}": parts for size in SIZES for parts in PARTITIONS}
        create_topics(bootstrap, {**topics, "latency": 1})
        admin = AdminClient({"bootstrap.servers": bootstrap})
        print(f"{'case':<22}{'ours msg/s':>12}{'ours MB/s':>11}{'mock msg/s':>12}"
              f"{'mock MB/s':>11}{'ratio':>7}{'consume msg/s':>15}{'MB/s':>8}")
        for name, parts in topics.items():
            size = int(name.split("-s")[1])
            our_rate, our_mb = produce_rate(ours, name, size, parts, args.seconds)
            consumed, consumed_mb = consume_rate(bootstrap, name, parts, size)
            admin.delete_topics([name])[name].result(30)
            mock_rate, mock_mb = produce_rate(mock, name, size, parts, args.seconds)
            print(f"produce {size:>4} B x{parts}p".ljust(22)
                  + f"{our_rate:>12,.0f}{our_mb:>11.1f}{mock_rate:>12,.0f}{mock_mb:>11.1f}"
                  f"{our_mb / mock_mb:>7.2f}{consumed:>15,.0f}{consumed_mb:>8.1f}")
        lat = [v * 1000 for v in e2e_latency(bootstrap, "latency")]
        print(f"end-to-end latency (fetch.wait.max.ms=500): p50 {percentile(lat, 50):.2f} ms  "
              f"p99 {percentile(lat, 99):.2f} ms  ({len(lat)} messages)")


if __name__ == "__main__":
    main()
