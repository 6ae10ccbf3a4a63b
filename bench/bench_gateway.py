"""Kafka gateway benchmark: ours against a peer broker and the client's ceiling, one run.

Run: .venv/bin/python bench/bench_gateway.py [--storage pm|memory] [--seconds 4]

Ours is `flexlog up`'s shape (1 root, 1 leaf, 1 shard x 3 replicas, 1 gateway; PM on disk
unless --storage memory). The peer is tansu 0.6, a Kafka-compatible broker in Rust with
in-memory storage and no replication (bench/common.py fetches it). librdkafka's built-in
mock cluster is the client's own ceiling (produce only: it keeps ~5 MiB per partition).
The client is confluent-kafka, acks=all, linger.ms=5. Each case produces for --seconds
(only acknowledged messages count), then consumes the topic back. End-to-end latency is
one message at a time, with fetch.wait.max.ms 1 (polling) and 500 (librdkafka's default,
where the fetch parks at the tail and depends on being woken), measured on the fresh broker
(low load) and again after the produce cases (on a PM pool file, whose msyncs are slower
once the file has been written through), each time after a sync. Prints figures and ours/peer ratios; asserts
nothing.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from common import gateway_ready, percentile, produce_rate, running_cluster, running_tansu

CASES = ((1024, 1), (1024, 4), (100, 1), (100, 4))  # (record bytes, partitions)
FETCH_WAITS_MS = (1, 500)
LATENCY_SAMPLES = 500
LATENCY_PHASES = ("fresh", "after load")


def consume_rate(bootstrap: str, topic: str, partitions: int, size: int) -> float:
    """MB/s reading the topic from the start to its end."""
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
    return got * size / elapsed / 1e6


def e2e_latency(bootstrap: str, topic: str, fetch_wait_ms: int) -> list[float]:
    """Milliseconds from produce() to the consumer holding the message, one at a time."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    p.produce(topic, value=b"warm")
    p.flush(10)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"lat{fetch_wait_ms}",
                  "enable.auto.commit": False, "fetch.wait.max.ms": fetch_wait_ms})
    c.assign([TopicPartition(topic, 0, OFFSET_END)])
    c.poll(1.0)
    out = []
    for _ in range(LATENCY_SAMPLES):
        t0 = time.perf_counter()
        p.produce(topic, value=b"%.9f" % t0)
        p.poll(0)
        while time.perf_counter() - t0 < 30:
            m = c.poll(2.0)
            if m is not None and m.error() is None:
                break
        else:
            raise RuntimeError("a produced message never reached the consumer")
        out.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.002)
    c.close()
    return out


def run_broker(bootstrap: str, seconds: float) -> dict[str, float]:
    """Every figure of one broker: produce and consume MB/s per case, latency percentiles."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    conf = {"bootstrap.servers": bootstrap}
    out = latencies(admin, bootstrap, LATENCY_PHASES[0])
    for size, parts in CASES:
        topic = f"bench-{size}-{parts}-{time.monotonic_ns()}"
        admin.create_topics([NewTopic(topic, num_partitions=parts)])[topic].result(30)
        rate, mb = produce_rate(conf, topic, size, parts, seconds)
        out[f"produce {size} x{parts}"] = mb
        out[f"produce msg {size} x{parts}"] = rate
        out[f"consume {size} x{parts}"] = consume_rate(bootstrap, topic, parts, size)
        admin.delete_topics([topic])[topic].result(30)  # the stores keep every byte until then
    return out | latencies(admin, bootstrap, LATENCY_PHASES[1])


def latencies(admin: AdminClient, bootstrap: str, phase: str) -> dict[str, float]:
    """End-to-end p50 and p99 for each fetch wait, on a new one-partition topic. After a sync:
    the disk's backlog (a fresh 4 GiB pool file, the produce cases' bytes) is not a load."""
    os.sync()
    topic = f"latency-{time.monotonic_ns()}"
    admin.create_topics([NewTopic(topic, num_partitions=1)])[topic].result(30)
    out = {}
    for wait in FETCH_WAITS_MS:
        lat = e2e_latency(bootstrap, topic, wait)
        out[f"p50 {phase} {wait}"] = percentile(lat, 50)
        out[f"p99 {phase} {wait}"] = percentile(lat, 99)
    return out


def mock_rates(seconds: float) -> dict[str, float]:
    """The client's ceiling: the same produce cases against librdkafka's mock cluster."""
    mock = {"test.mock.num.brokers": 1, "bootstrap.servers": ""}
    return {f"produce {size} x{parts}": produce_rate(mock, f"m{size}-{parts}", size, parts,
                                                     seconds)[1]
            for size, parts in CASES}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--storage", default="pm", choices=["memory", "pm"])
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    print(f"ours: storage {args.storage}, 3 replicas; peer: tansu (memory, no replication); "
          f"confluent-kafka, acks=all, {args.seconds:.0f} s per produce case")
    with tempfile.TemporaryDirectory() as tmp, \
            running_cluster(Path(tmp), storage=args.storage, gateways=1,
                            extra="pool_size_bytes = 4294967296") as cluster:
        bootstrap = cluster.config.gateways[0].advertised
        while not gateway_ready(bootstrap):
            time.sleep(0.1)
        ours = run_broker(bootstrap, args.seconds)
    with running_tansu() as (bootstrap, _pid):
        peer = run_broker(bootstrap, args.seconds)
    mock = mock_rates(args.seconds)

    print(f"{'case':<24}{'ours MB/s':>10}{'tansu MB/s':>12}{'mock MB/s':>11}"
          f"{'ours/tansu':>12}{'ours/mock':>11}{'ours msg/s':>12}")
    for size, parts in CASES:
        key = f"produce {size} x{parts}"
        print(f"produce {size:>4} B x{parts}p".ljust(24) + f"{ours[key]:>10.1f}{peer[key]:>12.1f}"
              f"{mock[key]:>11.1f}{ours[key] / peer[key]:>12.2f}{ours[key] / mock[key]:>11.2f}"
              f"{ours[f'produce msg {size} x{parts}']:>12,.0f}")
    for size, parts in CASES:
        key = f"consume {size} x{parts}"
        print(f"consume {size:>4} B x{parts}p".ljust(24) + f"{ours[key]:>10.1f}{peer[key]:>12.1f}"
              f"{'-':>11}{ours[key] / peer[key]:>12.2f}")
    print(f"{'end-to-end latency':<24}{'ours p50/p99 ms':>18}{'tansu p50/p99 ms':>20}")
    for phase in LATENCY_PHASES:
        for wait in FETCH_WAITS_MS:
            print(f"wait {wait} ms, {phase}".ljust(24)
                  + f"{ours[f'p50 {phase} {wait}']:>9.2f} /{ours[f'p99 {phase} {wait}']:>7.2f}"
                  + f"{peer[f'p50 {phase} {wait}']:>11.2f} /{peer[f'p99 {phase} {wait}']:>7.2f}")


if __name__ == "__main__":
    main()
