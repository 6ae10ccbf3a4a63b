"""Consumer groups and idempotence through the Kafka gateway, with confluent-kafka.

Run: .venv/bin/python bench/bench_groups.py [--rounds 5] [--seconds 5]

Starts its own cluster (1 root, 1 leaf, 1 shard x 3 replicas, 1 gateway, in
memory, group_initial_rebalance_delay_ms = 0 so the delay is not what is
measured) and prints:
- rebalance time: from three consumers subscribing to all three holding an
  assignment (p50 and max over the rounds, a fresh group each round);
- commit throughput: synchronous OffsetCommits of one partition, one client;
- produce throughput with idempotence on and off (acks=all), and their ratio.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from common import percentile, produce_rate, running_cluster

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "gateway"))

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from wire_client import gateway_ready

PARTITIONS = 6
VALUE = b"x" * 100


def rebalance_seconds(bootstrap: str, topic: str) -> float:
    """Time until three new members of a fresh group hold all partitions between them."""
    group = f"bench-{uuid.uuid4().hex[:8]}"
    owned = [0, 0, 0]  # partitions each member holds now
    stop = threading.Event()

    def member(i: int) -> None:
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                      "heartbeat.interval.ms": 100, "enable.auto.commit": False})

        def assigned(_c: Consumer, parts: list[TopicPartition]) -> None:
            owned[i] = len(parts)

        def revoked(_c: Consumer, _parts: list[TopicPartition]) -> None:
            owned[i] = 0

        c.subscribe([topic], on_assign=assigned, on_revoke=revoked)
        # Keep polling: a member that stops polling holds up every later rebalance.
        while not stop.is_set():
            c.poll(0.01)
        c.close()

    threads = [threading.Thread(target=member, args=(i,)) for i in range(3)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    while not (all(owned) and sum(owned) == PARTITIONS):
        time.sleep(0.001)
    elapsed = time.perf_counter() - start
    stop.set()
    for t in threads:
        t.join()
    return elapsed


def commits_per_second(bootstrap: str, topic: str, seconds: float) -> float:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False})
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        c.commit(offsets=[TopicPartition(topic, 0, done + 1)], asynchronous=False)
        done += 1
    elapsed = time.perf_counter() - start
    c.close()
    return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rebalances measured")
    parser.add_argument("--seconds", type=float, default=5.0, help="per throughput figure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, running_cluster(
            Path(tmp), storage="memory", gateways=1,
            # A 4 GiB in-memory store: the 256 MiB default fills up during the produce figures.
            extra="group_initial_rebalance_delay_ms = 0\npool_size_bytes = 4294967296") as cluster:
        bootstrap = cluster.config.gateways[0].advertised
        while not gateway_ready(bootstrap):
            time.sleep(0.1)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topics = {name: f"bench-{name}-{uuid.uuid4().hex[:6]}" for name in ("group", "on", "off")}
        for fut in admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics.values()]).values():
            fut.result(30)
        times = [rebalance_seconds(bootstrap, topics["group"]) for _ in range(args.rounds)]
        print(f"rebalance, 3 consumers joining a new group: p50 {percentile(times, 50) * 1000:.0f} ms "
              f"max {max(times) * 1000:.0f} ms ({args.rounds} rounds)")
        print(f"commit throughput (sync, 1 consumer): "
              f"{commits_per_second(bootstrap, topics['group'], args.seconds):,.0f} commits/s")
        off, _ = produce_rate({"bootstrap.servers": bootstrap, "enable.idempotence": False},
                              topics["off"], len(VALUE), PARTITIONS, args.seconds)
        on, _ = produce_rate({"bootstrap.servers": bootstrap, "enable.idempotence": True},
                             topics["on"], len(VALUE), PARTITIONS, args.seconds)
        print(f"produce 100 B acks=all, {PARTITIONS} partitions: idempotence off {off:,.0f} msg/s, "
              f"on {on:,.0f} msg/s, ratio on/off {on / off:.2f}")


if __name__ == "__main__":
    main()
