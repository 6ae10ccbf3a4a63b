"""Ordering scopes side by side: produce throughput and end-to-end latency of topics ordered
per partition (Kafka's), per topic and per group of topics (docs/ordering.md).

One cluster with two shards (root + 2 leaves, 3 replicas each) and one gateway, so an ordered
topic's partitions spread over both shards and the root orders them; a partition-ordered
partition is ordered by its shard's leaf. Each scope gets 4 partitions (the group: two topics
of 2), 1 KiB records, acks=all, confluent-kafka:

- **produce**: acknowledged MB/s of one producer offering load for --seconds;
- **end to end**: from produce() until a consumer assigned to all 4 partitions has the record,
  one record at a time (--rounds), fetch.wait.max.ms 100.

Usage: python bench/bench_ordering_scopes.py [--seconds 5] [--rounds 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from common import gateway_ready, percentile, produce_to, running_cluster

SIZE = 1024


def end_to_end(conf: dict[str, object], targets: list[tuple[str, int]],
               rounds: int) -> tuple[list[float], int]:
    """Seconds from produce() until a consumer of every target has the record; and how many
    records it did not see within 10 s (none expected)."""
    p = Producer({**conf, "acks": "all", "linger.ms": 0})
    c = Consumer({**conf, "group.id": f"e2e-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 100})
    c.assign([TopicPartition(t, q, c.get_watermark_offsets(TopicPartition(t, q), timeout=10)[1])
              for t, q in targets])
    lags, missed = [], 0
    for i in range(rounds):
        marker = f"m{i}".encode()
        topic, partition = targets[i % len(targets)]
        start = time.perf_counter()
        p.produce(topic, value=marker, partition=partition)
        p.flush(10)
        while True:
            m = c.poll(1)
            if m is not None and not m.error() and m.value() == marker:
                lags.append(time.perf_counter() - start)
                break
            if time.perf_counter() - start > 10:
                missed += 1
                break
    c.close()
    return lags, missed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, \
            running_cluster(Path(tmp), storage="memory", shards=2, gateways=1,
                            # Room for every scope's records: a full store would make the later
                            # scopes measure refusals.
                            extra="pool_size_bytes = 4294967296") as cluster:
        bootstrap = cluster.config.gateways[0].advertised
        while not gateway_ready(bootstrap):
            time.sleep(0.1)
        conf = {"bootstrap.servers": bootstrap}
        scopes = {
            "partition": [NewTopic("by-partition", 4)],
            "topic": [NewTopic("by-topic", 4, config={"flexlog.ordering": "topic"})],
            "group": [NewTopic(t, 2, config={"flexlog.ordering": "group:shop"})
                      for t in ("orders", "payments")],
        }
        admin = AdminClient(conf)
        for topics in scopes.values():
            for f in admin.create_topics(topics).values():
                f.result(30)
        print(f"2 shards x 3 replicas (memory), 1 gateway; {SIZE} B records, acks=all, "
              "4 partitions per scope")
        for scope, topics in scopes.items():
            targets = [(t.topic, q) for t in topics for q in range(t.num_partitions)]
            _, mbs = produce_to(conf, targets, SIZE, args.seconds, queue_messages=20_000)
            lags, missed = end_to_end(conf, targets, args.rounds)
            ms = [v * 1000 for v in lags]
            print(f"{scope:<10} produce {mbs:7.1f} MB/s   end to end p50 "
                  f"{percentile(ms, 50):6.1f} ms  p99 {percentile(ms, 99):6.1f} ms"
                  + (f"  ({missed} not seen in 10 s)" if missed else ""))


if __name__ == "__main__":
    main()
