"""Rebalance time of a third member joining, KIP-848 (group.protocol=consumer) against classic.

Run: .venv/bin/python bench/bench_rebalance.py [--rounds 3] [--heartbeat-interval-ms MS]

Starts its own cluster (1 root, 1 leaf, 1 shard x 3 replicas, 1 gateway, in
memory). Each round, in a fresh group over a 6-partition topic, two
confluent-kafka members join and settle at three partitions each; then a third
subscribes, and the time from its subscribe until all three hold two partitions
is measured. Classic members use librdkafka's default assignors (range,
roundrobin: eager) and their own heartbeat.interval.ms; KIP-848 members get
theirs from the coordinator (group_consumer_heartbeat_interval_ms). Without
--heartbeat-interval-ms both keep Kafka's defaults (classic 3 s, consumer 5 s);
with it, both use the value given. Prints the median of each and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from common import gateway_ready, running_cluster

PARTITIONS = 6
SETTLE_TIMEOUT_S = 120


class Member(threading.Thread):
    """A polling consumer whose owned partitions follow its rebalance callbacks."""

    def __init__(self, conf: dict[str, object], topic: str) -> None:
        super().__init__(daemon=True)
        self.conf, self.topic = conf, topic
        self.owned: set[int] = set()
        self.stop = threading.Event()
        self.subscribed_at = 0.0

    def run(self) -> None:
        c = Consumer(self.conf)

        def assigned(_c: Consumer, parts: list[TopicPartition]) -> None:
            self.owned |= {p.partition for p in parts}

        def revoked(_c: Consumer, parts: list[TopicPartition]) -> None:
            self.owned -= {p.partition for p in parts}

        self.subscribed_at = time.perf_counter()
        c.subscribe([self.topic], on_assign=assigned, on_revoke=revoked, on_lost=revoked)
        while not self.stop.is_set():
            c.poll(0.01)
        c.close()


def wait_until(members: list[Member], sizes: list[int]) -> float:
    deadline = time.perf_counter() + SETTLE_TIMEOUT_S
    while sorted(len(m.owned) for m in members) != sizes:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"members hold {[sorted(m.owned) for m in members]}")
        time.sleep(0.001)
    return time.perf_counter()


def third_member_seconds(bootstrap: str, topic: str, protocol: str, heartbeat_ms: int | None) -> float:
    conf: dict[str, object] = {"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                               "group.protocol": protocol, "enable.auto.commit": False}
    if protocol == "classic" and heartbeat_ms is not None:
        conf["heartbeat.interval.ms"] = heartbeat_ms
    members = [Member(conf, topic) for _ in range(2)]
    for m in members:
        m.start()
    try:
        wait_until(members, [3, 3])
        members.append(Member(conf, topic))
        members[-1].start()
        done = wait_until(members, [2, 2, 2])
        return done - members[-1].subscribed_at
    finally:
        for m in members:
            m.stop.set()
        for m in members:
            m.join(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rebalances measured per protocol")
    parser.add_argument("--heartbeat-interval-ms", type=int, default=None,
                        help="of both protocols (default: Kafka's, 3000 classic, 5000 consumer)")
    args = parser.parse_args()
    extra = "group_initial_rebalance_delay_ms = 0"
    if args.heartbeat_interval_ms is not None:
        extra += f"\ngroup_consumer_heartbeat_interval_ms = {args.heartbeat_interval_ms}"
    with tempfile.TemporaryDirectory() as tmp, running_cluster(Path(tmp), storage="memory", gateways=1,
                                                               extra=extra) as cluster:
        bootstrap = cluster.config.gateways[0].advertised
        while not gateway_ready(bootstrap):
            time.sleep(0.1)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topic = f"bench-rebalance-{uuid.uuid4().hex[:6]}"
        for fut in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
            fut.result(30)
        medians = {}
        for protocol in ("consumer", "classic"):
            times = [third_member_seconds(bootstrap, topic, protocol, args.heartbeat_interval_ms)
                     for _ in range(args.rounds)]
            medians[protocol] = statistics.median(times)
            print(f"{protocol:8}: third member joining 2 -> 3 members, until every member holds its "
                  f"final 2 partitions: median {medians[protocol] * 1000:,.0f} ms "
                  f"(rounds: {', '.join(f'{t * 1000:,.0f}' for t in times)} ms)")
        print(f"ratio consumer/classic: {medians['consumer'] / medians['classic']:.2f}")


if __name__ == "__main__":
    main()
