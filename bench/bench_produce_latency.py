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
bench_produce_cost.py). Prints p50/p90/p99 and ours/tansu of the p50; asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from common import gateway_ready, percentile, running_cluster, running_tansu

SIZE = 100
DEFAULT_CASES = "1000:0:1,2000:0:4,5000:0:4,20000:5:4"


def latencies_ms(bootstrap: str, rate: int, linger_ms: int, partitions: int,
                 seconds: float) -> list[float]:
    """Each acknowledged record's produce-to-delivery latency, at `rate` records a second."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = f"latency-{time.monotonic_ns()}"
    admin.create_topics([NewTopic(topic, num_partitions=partitions)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": linger_ms})
    took: list[float] = []

    def delivered(err: object, msg: object) -> None:
        if err is None:
            took.append(msg.latency() * 1000)  # type: ignore[attr-defined]

    value = b"x" * SIZE
    for _ in range(100):  # connections and metadata warm
        producer.produce(topic, value, callback=delivered)
    producer.flush(30)
    took.clear()
    start = time.perf_counter()
    sent = 0
    while (now := time.perf_counter()) - start < seconds:
        due = int((now - start) * rate)
        while sent < due:
            producer.produce(topic, value, partition=sent % partitions, callback=delivered)
            sent += 1
        producer.poll(0.0005)
    producer.flush(60)
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--storage", default="pm", choices=["memory", "pm"])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--cases", default=DEFAULT_CASES, help="RATE:LINGER_MS:PARTITIONS,...")
    args = parser.parse_args()
    cases = [tuple(int(v) for v in c.split(":")) for c in args.cases.split(",")]
    results: dict[str, list[list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp, \
            running_cluster(Path(tmp), storage=args.storage, gateways=1) as cluster:
        bootstrap = cluster.config.gateways[0].advertised
        while not gateway_ready(bootstrap):
            time.sleep(0.1)
        results["ours"] = [latencies_ms(bootstrap, *case, args.seconds) for case in cases]
    with running_tansu() as (bootstrap, _pid):
        results["tansu"] = [latencies_ms(bootstrap, *case, args.seconds) for case in cases]
    print(f"produce latency, {SIZE} B records, acks=all, {args.seconds:g} s per case; ours: storage "
          f"{args.storage}, 3 replicas; tansu: memory, no replication")
    print(f"{'rate/s':>8} {'linger':>6} {'parts':>5}  {'ours p50 / p90 / p99 ms':>26}  "
          f"{'tansu p50 / p90 / p99 ms':>26}  ours/tansu p50")
    for i, (rate, linger, partitions) in enumerate(cases):
        row = []
        for name in ("ours", "tansu"):
            ms = results[name][i]
            row.append(f"{percentile(ms, 50):8.2f} / {percentile(ms, 90):7.2f} / {percentile(ms, 99):7.2f}"
                       if ms else f"{'nothing acknowledged':>26}")
        ours, peer = results["ours"][i], results["tansu"][i]
        ratio = percentile(ours, 50) / percentile(peer, 50) if ours and peer else float("nan")
        print(f"{rate:>8} {linger:>6} {partitions:>5}  {row[0]}  {row[1]}  {ratio:10.1f}")


if __name__ == "__main__":
    main()
