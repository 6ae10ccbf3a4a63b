"""Transactions: commits per second, and what transactional produce costs against idempotent produce.

One cluster (`flexlog up`'s layout: 3 replicas, one gateway), confluent-kafka
clients, acks=all, 1 KiB records over 4 partitions:

- **idempotent**: `enable.idempotence`, records sent for --seconds;
- **transactional**: the same, committing a transaction every --per-txn records;
- **commit rate**: transactions of one record each, back to back (the cost of
  AddPartitionsToTxn + EndTxn + markers, which bound a small-batch processor);
- **visibility**: time from commit_transaction returning until a read_committed
  consumer sees the record (the leader's marker and the LSO moving).

Usage: python bench/bench_transactions.py [--storage memory|pm] [--seconds 5] [--per-txn 500]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from common import gateway_ready, percentile, running_cluster

SIZE = 1024
PARTITIONS = 4


def produce(conf: dict[str, object], topic: str, seconds: float, per_txn: int | None) -> float:
    """Acknowledged MB/s; per_txn: commit a transaction every per_txn records (None: idempotent only)."""
    p = Producer({**conf, "acks": "all", "linger.ms": 5, "enable.idempotence": True,
                  **({"transactional.id": f"bench-{uuid.uuid4().hex[:8]}"} if per_txn else {})})
    if per_txn:
        p.init_transactions(30)
        p.begin_transaction()
    value = b"x" * SIZE
    sent = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        try:
            p.produce(topic, value=value, partition=sent % PARTITIONS)
            sent += 1
        except BufferError:
            p.poll(0.001)
            continue
        if per_txn and sent % per_txn == 0:
            p.commit_transaction(30)
            p.begin_transaction()
    if per_txn:
        p.commit_transaction(30)
    else:
        p.flush(60)
    return sent * SIZE / (time.perf_counter() - start) / 1e6


def commit_rate(conf: dict[str, object], topic: str, seconds: float) -> tuple[float, list[float]]:
    """Transactions of one record, back to back: per second, and each one's commit time."""
    p = Producer({**conf, "transactional.id": f"rate-{uuid.uuid4().hex[:8]}", "linger.ms": 0})
    p.init_transactions(30)
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        p.begin_transaction()
        p.produce(topic, value=b"x" * SIZE, partition=len(times) % PARTITIONS)
        p.commit_transaction(30)
        times.append(time.perf_counter() - t0)
    return len(times) / (time.perf_counter() - start), times


def visibility(conf: dict[str, object], topic: str, rounds: int) -> list[float]:
    """Seconds from commit_transaction's return until a read_committed consumer has the record."""
    p = Producer({**conf, "transactional.id": f"vis-{uuid.uuid4().hex[:8]}", "linger.ms": 0})
    p.init_transactions(30)
    c = Consumer({**conf, "group.id": f"vis-{uuid.uuid4().hex[:8]}", "isolation.level": "read_committed",
                  "fetch.wait.max.ms": 500, "enable.auto.commit": False})
    tp = TopicPartition(topic, 0, 0)
    c.assign([tp])
    lags = []
    for i in range(rounds):
        marker = f"v{i}".encode()
        p.begin_transaction()
        p.produce(topic, value=marker, partition=0)
        p.commit_transaction(30)
        done = time.perf_counter()
        while True:
            m = c.poll(5)
            if m is not None and not m.error() and m.value() == marker:
                lags.append(time.perf_counter() - done)
                break
    c.close()
    return lags


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--storage", default="memory", choices=["memory", "pm"])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--per-txn", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, \
            running_cluster(Path(tmp), storage=args.storage, gateways=1,
                            extra="pool_size_bytes = 4294967296") as cluster:
        bootstrap = cluster.config.gateways[0].advertised
        while not gateway_ready(bootstrap):
            time.sleep(0.1)
        conf = {"bootstrap.servers": bootstrap}
        names = ["idem", "txn", "rate", "vis"]
        admin = AdminClient(conf)
        for f in admin.create_topics([NewTopic(n, num_partitions=PARTITIONS) for n in names]).values():
            f.result(30)
        print(f"storage engine: {args.storage}; {SIZE} B records over {PARTITIONS} partitions, acks=all")
        idem = produce(conf, "idem", args.seconds, None)
        txn = produce(conf, "txn", args.seconds, args.per_txn)
        print(f"idempotent produce          {idem:8.1f} MB/s")
        print(f"transactional, {args.per_txn:>5}/txn    {txn:8.1f} MB/s   ratio {txn / idem:.2f}")
        rate, times = commit_rate(conf, "rate", args.seconds)
        ms = [t * 1000 for t in times]
        print(f"one-record transactions     {rate:8.1f} /s     begin..commit "
              f"p50 {percentile(ms, 50):.1f} ms  p99 {percentile(ms, 99):.1f} ms")
        lags = [v * 1000 for v in visibility(conf, "vis", 200)]
        print(f"commit -> read_committed    p50 {percentile(lags, 50):.1f} ms  "
              f"p99 {percentile(lags, 99):.1f} ms  ({len(lags)} transactions)")


if __name__ == "__main__":
    main()
