"""Produce latency at fixed rates, ours against tansu in the same run.

Run: .venv/bin/python bench/bench_produce_latency.py [--storage pm|memory] [--seconds 5]
     [--cases 1000:0:1,2000:0:4,5000:0:4,20000:5:4]

Each case is RATE:LINGER_MS:PARTITIONS: one confluent-kafka producer (acks=all, 100 B
records, spread round-robin over the partitions) sends RATE records a second for the
given seconds, and each record's latency is the client's own, from produce() to its
delivery report (`Message.latency()`), queueing in the client included. linger.ms=0
is the latency-minded setting (and the Java client's default before Kafka 4.0): each
request carries what is ready, often one record, so a broker that keeps too few
requests of a connection started makes them queue in the socket, where the client can
no longer batch them (docs/gateway.md, "Pipelined produce"). Ours is `flexlog up`'s shape
(root, leaf, 3 replicas, 1 gateway); the peer is tansu (memory, no replication; see
bench_produce_cost.py). Prints p50/p90/p99, the rate the producer achieved and the records that
failed, and ours/tansu of the p50; asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from common import gateway_ready, percentile, running_cluster, running_tansu

SIZE = 100
DEFAULT_CASES = "1000:0:1,2000:0:4,5000:0:4,20000:5:4"


class Run(NamedTuple):
    took_ms: list[float]  # each acknowledged record's produce-to-delivery latency
    sent: int
    failed: int  # delivery reports with an error, and records never reported
    seconds: float  # how long sending took: the rate achieved is sent / seconds


def latencies(bootstrap: str, rate: int, linger_ms: int, partitions: int, seconds: float) -> Run:
    """Records sent at `rate` a second for `seconds`, and what became of them."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = f"latency-{time.monotonic_ns()}"
    admin.create_topics([NewTopic(topic, num_partitions=partitions)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": linger_ms,
                         "queue.buffering.max.messages": 1_000_000})
    took: list[float] = []
    failed = 0

    def delivered(err: object, msg: object) -> None:
        nonlocal failed
        latency = msg.latency()  # type: ignore[attr-defined]
        if err is None and latency is not None:
            took.append(latency * 1000)
        else:
            failed += 1

    value = b"x" * SIZE
    for _ in range(100):  # connections and metadata warm
        producer.produce(topic, value, callback=delivered)
    producer.flush(30)
    took.clear()
    failed = 0
    start = time.perf_counter()
    sent = 0
    while (now := time.perf_counter()) - start < seconds:
        due = int((now - start) * rate)
        while sent < due:
            try:
                producer.produce(topic, value, partition=sent % partitions, callback=delivered)
            except BufferError:
                break  # the client's queue is full: the broker is behind; send when it drains
            sent += 1
        producer.poll(0.0005)
    spent = time.perf_counter() - start
    unreported = producer.flush(60)
    return Run(took, sent, failed + unreported, spent)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--storage", default="pm", choices=["memory", "pm"])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--cases", default=DEFAULT_CASES, help="RATE:LINGER_MS:PARTITIONS,...")
    args = parser.parse_args()
    cases = [tuple(int(v) for v in c.split(":")) for c in args.cases.split(",")]
    results: dict[str, list[Run]] = {}
    with tempfile.TemporaryDirectory() as tmp, \
            running_cluster(Path(tmp), storage=args.storage, gateways=1) as cluster:
        bootstrap = cluster.config.gateways[0].advertised
        while not gateway_ready(bootstrap):
            time.sleep(0.1)
        results["ours"] = [latencies(bootstrap, *case, args.seconds) for case in cases]
    with running_tansu() as (bootstrap, _pid):
        results["tansu"] = [latencies(bootstrap, *case, args.seconds) for case in cases]
    print(f"produce latency, {SIZE} B records, acks=all, {args.seconds:g} s per case; ours: storage "
          f"{args.storage}, 3 replicas; tansu: memory, no replication")
    print("(sent/s: the rate the producer achieved; failed: errors and records never reported)")
    print(f"{'rate/s':>8} {'linger':>6} {'parts':>5}  {'ours p50 / p90 / p99 ms':>26} {'sent/s':>7} "
          f"{'failed':>6}  {'tansu p50 / p90 / p99 ms':>26} {'sent/s':>7} {'failed':>6}  ours/tansu p50")
    for i, (rate, linger, partitions) in enumerate(cases):
        row = []
        for name in ("ours", "tansu"):
            run = results[name][i]
            ms = run.took_ms
            figures = (f"{percentile(ms, 50):8.2f} / {percentile(ms, 90):7.2f} / {percentile(ms, 99):7.2f}"
                       if ms else f"{'nothing acknowledged':>26}")
            row.append(f"{figures} {run.sent / run.seconds:7.0f} {run.failed:6}")
        ours, peer = results["ours"][i].took_ms, results["tansu"][i].took_ms
        ratio = percentile(ours, 50) / percentile(peer, 50) if ours and peer else float("nan")
        print(f"{rate:>8} {linger:>6} {partitions:>5}  {row[0]}  {row[1]}  {ratio:10.1f}")


if __name__ == "__main__":
    main()
