"""Shared helpers for benchmarks: percentiles and a cluster started for the run."""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

from confluent_kafka import Producer

_TESTS = Path(__file__).resolve().parent.parent / "tests"
# Benchmarks reuse the tests' cluster and wire helpers.
sys.path[:0] = [str(_TESTS), str(_TESTS / "gateway")]

from cluster import free_ports, running_cluster  # noqa: E402
from wire_client import gateway_ready  # noqa: E402

__all__ = ["cpu_seconds", "free_ports", "gateway_ready", "percentile", "produce_rate", "produce_to",
           "running_cluster", "summary"]

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time used so far by these processes (robust on a noisy machine)."""
    total = 0
    for pid in [*pids, os.getpid()]:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / _TICKS


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def summary(values_s: list[float]) -> str:
    ms = [v * 1000 for v in values_s]
    return (f"p50 {percentile(ms, 50):.3f} ms  p99 {percentile(ms, 99):.3f} ms  "
            f"mean {statistics.fmean(ms):.3f} ms")


def produce_rate(conf: dict[str, object], topic: str, size: int, partitions: int,
                 seconds: float) -> tuple[float, float]:
    """(messages/s, MB/s) of acknowledged acks=all produce, offering load for `seconds`."""
    return produce_to(conf, [(topic, p) for p in range(partitions)], size, seconds)


def produce_to(conf: dict[str, object], targets: list[tuple[str, int]], size: int, seconds: float,
               queue_messages: int = 1_000_000) -> tuple[float, float]:
    """produce_rate over (topic, partition) targets in turn; queue_messages bounds the
    producer's queue (a small one waits for acknowledgements instead of queueing minutes of
    records that the final flush then waits for)."""
    p = Producer({**conf, "acks": "all", "linger.ms": 5, "queue.buffering.max.messages": queue_messages})
    value = b"x" * size
    acked = 0

    def delivered(err: object, _msg: object) -> None:
        nonlocal acked
        if err is None:
            acked += 1

    sent = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(1000):
            topic, partition = targets[sent % len(targets)]
            try:
                p.produce(topic, value=value, partition=partition, on_delivery=delivered)
                sent += 1
            except BufferError:
                p.poll(0.001)
        p.poll(0)
    p.flush(60)
    elapsed = time.perf_counter() - start
    p.purge()
    return acked / elapsed, acked * size / elapsed / 1e6
