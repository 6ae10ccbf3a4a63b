"""Long polls that oversleep: one record at a time, produced, then consumed by a waiting fetch.

Run: .venv/bin/python bench/bench_wakeups.py [--round-trips 2000] [--storage memory|pm]

A fetch parked at the tail must return as soon as an append lands. Each round trip
produces one record (acks=all) and times until the consumer has it, first with
librdkafka's default fetch.wait.max.ms (500: the fetch parks, so it depends on the
wake-up) and then with 1 ms (the consumer polls, so it does not: the baseline of the
same run). A round trip over LATE_MS with the default wait counts as a late wake-up:
the fetch slept although its record had arrived; the same over LATE_MS while polling
is a stall elsewhere. Each mode also prints the share of its time in which some task
waited for I/O (/proc/pressure/io, the replicas' own msyncs included): a share far above
an idle-disk run's says the disk stalled, and PM round trips with it.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from common import gateway_ready, io_stalled_s, percentile, running_cluster

LATE_MS = 100.0


def round_trips(bootstrap: str, topic: str, n: int, fetch_wait_ms: int) -> list[float]:
    """Milliseconds from produce() to the consumer holding the record, n times."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    p.produce(topic, value=b"warm")
    p.flush(10)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"wake-{fetch_wait_ms}",
                  "enable.auto.commit": False, "fetch.wait.max.ms": fetch_wait_ms})
    end = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    c.assign([TopicPartition(topic, 0, end)])
    c.poll(0.5)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        p.produce(topic, value=b"x")
        p.poll(0)
        while True:
            m = c.poll(2.0)
            if m is not None and m.error() is None:
                break
        out.append((time.perf_counter() - t0) * 1000)
    p.flush(10)
    c.close()
    return out


def timed(run: Callable[[], list[float]]) -> tuple[list[float], str]:
    """run's round trips, and the share of its time stalled on I/O ("-" if unknown)."""
    start, stalled = time.monotonic(), io_stalled_s()
    values = run()
    after = io_stalled_s()
    if stalled is None or after is None:
        return values, "-"
    return values, f"{100 * (after - stalled) / (time.monotonic() - start):.0f}%"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--round-trips", type=int, default=2000)
    parser.add_argument("--storage", default="memory", choices=["memory", "pm"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, \
            running_cluster(Path(tmp), storage=args.storage, gateways=1) as cluster:
        bootstrap = cluster.config.gateways[0].advertised
        while not gateway_ready(bootstrap):
            time.sleep(0.1)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("wakeups", num_partitions=1)])["wakeups"].result(30)
        parked, parked_io = timed(lambda: round_trips(bootstrap, "wakeups", args.round_trips, 500))
        polling, polling_io = timed(lambda: round_trips(bootstrap, "wakeups", args.round_trips, 1))
    print(f"storage {args.storage}; {args.round_trips} round trips each; one record, acks=all")
    print(f"{'fetch.wait.max.ms':<20}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'late':>6}{'I/O stall':>11}")
    for name, values, io in (("500 (parked)", parked, parked_io), ("1 (polling)", polling, polling_io)):
        late = sum(1 for v in values if v > LATE_MS)
        print(f"{name:<20}{percentile(values, 50):>8.2f}{percentile(values, 99):>8.2f}"
              f"{max(values):>8.1f}{late:>6}{io:>11}")
    print(f"p99 parked / polling: {percentile(parked, 99) / percentile(polling, 99):.2f}; "
          f"late wake-ups (> {LATE_MS:.0f} ms with the 500 ms wait): "
          f"{sum(1 for v in parked if v > LATE_MS)} of {len(parked)}")


if __name__ == "__main__":
    main()
