"""Fault injection: real processes, real Kafka clients, a fault in the middle of the load.

Each scenario starts its own cluster (root + leaf, one shard of 3 replicas, the
controller, Kafka gateways), runs an idempotent confluent-kafka producer and a
consumer through the gateways, injects the fault, and restarts what was killed
as `flexlog up`'s supervisor would. Then it checks that every acknowledged
message was consumed exactly once and in per-partition order, that no offset
was assigned twice, and that writes were accepted again within a bound.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cluster import Cluster, running_cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

PARTITIONS = 2
RATE = 300  # messages per second: steady load the 2-core CI machine keeps up with
BEFORE_S = 2.0  # load before the fault
AFTER_S = 6.0  # load after the fault (and the restart)
RESTART_AFTER_S = 1.0  # the launcher's first restart backoff is 0.5 s; startup takes the rest
MAX_UNAVAILABLE_S = 12.0


@dataclass
class Outcome:
    acked: dict[str, tuple[int, int]] = field(default_factory=dict)  # value -> (partition, offset)
    ack_times: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    consumed: list[tuple[int, int, str]] = field(default_factory=list)  # partition, offset, value


RESULTS: list[tuple[str, int, int, int, float]] = []


def _producer(bootstrap: str, topic: str, out: Outcome, stop: threading.Event) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "linger.ms": 5, "message.timeout.ms": 60_000,
                         "retry.backoff.ms": 100, "socket.timeout.ms": 10_000})

    def delivered(err: object, msg: object) -> None:
        if err is not None:
            out.errors.append(str(err))
            return
        out.acked[msg.value().decode()] = (msg.partition(), msg.offset())  # type: ignore[attr-defined]
        out.ack_times.append(time.monotonic())

    seq = 0
    while not stop.is_set():
        start = time.monotonic()
        for _ in range(RATE // 20):
            value = f"{seq:08d}"
            producer.produce(topic, value.encode(), partition=seq % PARTITIONS, on_delivery=delivered)
            seq += 1
        producer.poll(0)
        time.sleep(max(0.0, 0.05 - (time.monotonic() - start)))
    producer.flush(90)


def _consumer(bootstrap: str, topic: str, out: Outcome, done: threading.Event) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    idle_since = None
    try:
        while True:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                # Once the producer is done, stop after everything it was told got read.
                if done.is_set():
                    seen = {v for _, _, v in out.consumed}
                    if all(v in seen for v in out.acked):
                        return
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since > 20:
                        return
                continue
            idle_since = None
            out.consumed.append((msg.partition(), msg.offset(), msg.value().decode()))
    finally:
        consumer.close()


@contextmanager
def fault_cluster(gateways: int = 1, storage: str = "memory") -> Iterator[Cluster]:
    with tempfile.TemporaryDirectory() as tmp:
        extra = "failure_timeout_ms = 2000\ngroup_initial_rebalance_delay_ms = 0"
        if storage == "pm":
            # Pools on /dev/shm with PMEM_IS_PMEM_FORCE=1: the documented PM emulation.
            os.environ["PMEM_IS_PMEM_FORCE"] = "1"
            shm = tempfile.mkdtemp(dir="/dev/shm", prefix="flexlog-faults-")
            extra += f'\npm_dir = "{shm}"'
        try:
            with running_cluster(Path(tmp), controller=True, storage=storage,
                                 gateways=gateways, extra=extra) as cluster:
                yield cluster
        finally:
            if storage == "pm":
                shutil.rmtree(shm, ignore_errors=True)
                del os.environ["PMEM_IS_PMEM_FORCE"]


def bootstrap(cluster: Cluster) -> str:
    return ",".join(g.address for g in cluster.config.gateways)


def run_scenario(name: str, cluster: Cluster, fault: Callable[[Cluster], None]) -> None:
    wait_gateways(cluster)
    topic = f"t-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": bootstrap(cluster)})
    for f in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        f.result(30)
    out = Outcome()
    stop, done = threading.Event(), threading.Event()
    prod = threading.Thread(target=_producer, args=(bootstrap(cluster), topic, out, stop))
    cons = threading.Thread(target=_consumer, args=(bootstrap(cluster), topic, out, done))
    prod.start()
    cons.start()
    time.sleep(BEFORE_S)
    fault_at = time.monotonic()
    fault(cluster)
    time.sleep(AFTER_S)
    stop.set()
    prod.join(120)
    done.set()
    cons.join(60)
    check(name, out, fault_at)


def check(name: str, out: Outcome, fault_at: float) -> None:
    assert out.acked, f"{name}: nothing acknowledged ({out.errors[:3]})"
    seen: dict[str, int] = {}
    offsets: set[tuple[int, int]] = set()
    last: dict[int, str] = {}
    for partition, offset, value in out.consumed:
        seen[value] = seen.get(value, 0) + 1
        assert (partition, offset) not in offsets, f"offset {partition}/{offset} delivered twice"
        offsets.add((partition, offset))
        assert value > last.get(partition, ""), f"partition {partition} out of order at {value}"
        last[partition] = value
    lost = [v for v in out.acked if v not in seen]
    duplicated = [v for v, n in seen.items() if n > 1]
    acked_offsets = list(out.acked.values())
    assert len(set(acked_offsets)) == len(acked_offsets), "an offset was acknowledged twice"
    times = sorted(t for t in out.ack_times if t >= fault_at - 1)
    gaps = [b - a for a, b in zip([fault_at, *times], times, strict=False)]
    window = max(gaps, default=0.0)
    RESULTS.append((name, len(out.acked), len(lost), len(duplicated), window))
    assert not lost, f"{name}: {len(lost)} acknowledged messages lost, e.g. {lost[:5]}"
    assert not duplicated, f"{name}: {len(duplicated)} duplicated, e.g. {duplicated[:5]}"
    assert times and times[-1] > fault_at, f"{name}: no write accepted after the fault"
    assert window < MAX_UNAVAILABLE_S, f"{name}: writes refused for {window:.1f}s"


def wait_gateways(cluster: Cluster) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            AdminClient({"bootstrap.servers": bootstrap(cluster)}).list_topics(timeout=5)
            return
        except KafkaException:
            if time.monotonic() > deadline:
                raise


def kill_and_restart(role: str, name: str) -> Callable[[Cluster], None]:
    def fault(cluster: Cluster) -> None:
        cluster.kill(name, signal.SIGKILL)
        time.sleep(RESTART_AFTER_S)
        cluster.start_process(role, name)
    return fault


@pytest.fixture(scope="module", autouse=True)
def table() -> Iterator[None]:
    yield
    print("\n| scenario | acknowledged | lost | duplicated | unavailability window (s) |")
    print("|---|---:|---:|---:|---:|")
    for name, acked, lost, dup, window in RESULTS:
        print(f"| {name} | {acked} | {lost} | {dup} | {window:.1f} |")


def test_sigstop_replica_past_the_timeout_then_sigcont() -> None:
    def fault(cluster: Cluster) -> None:
        cluster.kill("shard0-r2", signal.SIGSTOP)
        time.sleep(3.5)
        cluster.kill("shard0-r2", signal.SIGCONT)
    with fault_cluster() as cluster:
        run_scenario("SIGSTOP a replica 3.5 s, then SIGCONT", cluster, fault)


def test_sigkill_one_replica() -> None:
    with fault_cluster() as cluster:
        run_scenario("SIGKILL one replica", cluster, kill_and_restart("replica", "shard0-r1"))


def test_sigkill_two_replicas_one_after_the_other() -> None:
    def fault(cluster: Cluster) -> None:
        kill_and_restart("replica", "shard0-r0")(cluster)
        time.sleep(3.0)
        kill_and_restart("replica", "shard0-r2")(cluster)
    with fault_cluster() as cluster:
        run_scenario("SIGKILL two replicas, one after the other", cluster, fault)


def test_sigkill_leaf_sequencer() -> None:
    with fault_cluster() as cluster:
        run_scenario("SIGKILL the leaf sequencer", cluster, kill_and_restart("sequencer", "leaf0"))


def test_sigkill_root_sequencer() -> None:
    with fault_cluster() as cluster:
        run_scenario("SIGKILL the root sequencer", cluster, kill_and_restart("sequencer", "root"))


def test_sigkill_a_gateway() -> None:
    with fault_cluster(gateways=2) as cluster:
        run_scenario("SIGKILL a gateway (of 2)", cluster, kill_and_restart("gateway", "gateway1"))


def test_restart_whole_cluster() -> None:
    def fault(cluster: Cluster) -> None:
        cluster.stop()
        cluster.start()
        wait_gateways(cluster)
    with fault_cluster(storage="pm") as cluster:
        run_scenario("restart the whole cluster (PM)", cluster, fault)
