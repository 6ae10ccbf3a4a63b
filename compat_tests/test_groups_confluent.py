"""librdkafka groups: confluent-kafka (cooperative-sticky, static membership), kcat -G, and a
group mixing three client libraries, over two gateways."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from functools import partial

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from group_helpers import (
    PARTITIONS,
    MemberThread,
    consume_with_churn,
    create_topic,
    current_generation,
    every_member_assigned,
    finish,
    produce,
    unique,
    wait_for,
)
from kafka import KafkaConsumer


def consumer(bootstrap: str, group: str, **conf: object) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                     "auto.offset.reset": "earliest", "enable.auto.commit": False,
                     "heartbeat.interval.ms": 300, "session.timeout.ms": 10_000, **conf})


class Member(MemberThread):
    """`events`: ("assign" | "revoke", partitions) per rebalance callback, in order;
    `member_id`: the group's id for it at the last assignment."""

    def __init__(self, bootstrap: str, group: str, topic: str, seen: list[bytes],
                 lock: threading.Lock, **conf: object) -> None:
        super().__init__(seen, lock)
        self.events: list[tuple[str, frozenset[int]]] = []
        self.member_id = ""
        self.c = consumer(bootstrap, group, **conf)
        self.c.subscribe([topic], on_assign=self._assigned, on_revoke=self._revoked)

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Read here, on the polling thread: the consumer is not to be used from two threads.
        self.member_id = consumer.memberid() or ""
        self.events.append(("assign", frozenset(p.partition for p in partitions)))

    def commit(self) -> None:
        try:
            self.c.commit(asynchronous=False)
        except KafkaException as exc:
            # A commit racing a rebalance fails with ILLEGAL_GENERATION or
            # REBALANCE_IN_PROGRESS, as on Kafka; the revoke callback commits again
            # before a partition moves (cooperative consumers keep consuming meanwhile).
            assert exc.args[0].code() in (KafkaError.ILLEGAL_GENERATION,
                                          KafkaError.REBALANCE_IN_PROGRESS,
                                          KafkaError._NO_OFFSET), exc

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.events.append(("revoke", frozenset(p.partition for p in partitions)))
        self.commit()

    def owned(self) -> frozenset[int]:
        """The partitions the last callback left this member with."""
        return self.events[-1][1] if self.events and self.events[-1][0] == "assign" else frozenset()

    def poll_values(self) -> list[bytes]:
        return [m.value() for m in self.c.consume(100, 0.2) if m.error() is None]

    def close(self) -> None:
        self.c.close()


def test_cooperative_sticky_group_of_three_with_churn(gateways):
    bootstrap = gateways[1][0]
    topic = create_topic(bootstrap)
    group = unique("g")
    values = [b"c%04d" % i for i in range(450)]
    seen: list[bytes] = []
    lock = threading.Lock()
    conf = {"partition.assignment.strategy": "cooperative-sticky"}
    members = [Member(bootstrap, group, topic, seen, lock, **conf) for _ in range(2)]
    consume_with_churn(members, lambda: Member(bootstrap, group, topic, seen, lock, **conf),
                       lambda part: produce(bootstrap, topic, part), values,
                       partial(every_member_assigned, bootstrap, group, topic))


def test_static_member_restart_resumes_without_duplicates(gateways):
    bootstrap = gateways[1][0]
    topic = create_topic(bootstrap)
    group = unique("g")
    values = [b"s%04d" % i for i in range(120)]
    seen: list[bytes] = []
    lock = threading.Lock()
    members = [Member(bootstrap, group, topic, seen, lock, **{"group.instance.id": f"inst-{i}"})
               for i in range(2)]
    for m in members:
        m.start()
    produce(bootstrap, topic, values[:60])
    wait_for(lambda: len(seen) >= 60)
    # A static member's close does not leave the group; its restart takes the same slot back.
    members.pop().leave()
    members.append(Member(bootstrap, group, topic, seen, lock, **{"group.instance.id": "inst-1"}))
    members[-1].start()
    produce(bootstrap, topic, values[60:])
    finish(members, values)


def test_rolling_restart_of_static_members_rebalances_nobody(gateways):
    """Issue 18: three static members over six partitions, under produce load, restarted one at
    a time within the session timeout (with the settings of the report: a regex subscription,
    6 s sessions, 9 s max poll interval, metadata refresh every 2 s). Nobody else gets a revoke
    or a new assignment, each restarted member gets its old partitions back, the generation
    never changes (Kafka's rule), and every record is consumed exactly once."""
    bootstrap = gateways[1][0]
    topic = create_topic(bootstrap)
    group = unique("g")
    seen: list[bytes] = []
    lock = threading.Lock()
    conf = {"session.timeout.ms": 6_000, "max.poll.interval.ms": 9_000,
            "topic.metadata.refresh.interval.ms": 2_000}

    def member(i: int) -> Member:
        return Member(bootstrap, group, f"^{topic}$", seen, lock, **conf,
                      **{"group.instance.id": f"inst-{i}"})

    def settled() -> bool:
        owned = [m.owned() for m in members]
        return all(owned) and sorted(p for o in owned for p in o) == list(range(PARTITIONS))

    members = [member(i) for i in range(3)]
    for m in members:
        m.start()
    wait_for(settled, 30)
    time.sleep(1)  # a straggling round of the group's formation would show up here
    assert settled()
    generation = current_generation(bootstrap, group, members[0].member_id, "inst-0")

    values: list[bytes] = []
    producing = threading.Event()
    producing.set()

    def load() -> None:
        p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
        while producing.is_set():
            values.append(b"r%05d" % len(values))
            p.produce(topic, value=values[-1], partition=len(values) % PARTITIONS)
            p.poll(0)
            time.sleep(0.005)
        assert p.flush(30) == 0

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    for i in range(3):
        wait_for(lambda: len(seen) >= len(values) // 2 > 0)
        others = [m for j, m in enumerate(members) if j != i]
        calls = [len(m.events) for m in others]
        old = members[i]
        owned = old.owned()
        old.leave()  # a static member's close does not leave the group
        new = members[i] = member(i)
        new.start()
        wait_for(lambda m=new: bool(m.events), 5)  # well within the 6 s session timeout
        assert new.events == [("assign", owned)], "its old partitions back, nothing else"
        time.sleep(0.5)
        assert [len(m.events) for m in others] == calls, "another member saw a rebalance"
        assert current_generation(bootstrap, group, new.member_id, f"inst-{i}") == generation
    producing.clear()
    loader.join(30)
    finish(members, values)


def test_mixed_group_of_three_client_libraries(gateways):
    bootstrap = gateways[1][0]
    topic = create_topic(bootstrap)
    group = unique("g")
    values = [b"x%04d" % i for i in range(300)]
    produce(bootstrap, topic, values)
    seen: list[bytes] = []
    lock = threading.Lock()
    rdkafka = Member(bootstrap, group, topic, seen, lock, **{"partition.assignment.strategy": "range"})
    python = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                           enable_auto_commit=False, auto_offset_reset="earliest",
                           heartbeat_interval_ms=300)
    stop = threading.Event()

    def run_python() -> None:
        while not stop.is_set():
            records = [r for rs in python.poll(200).values() for r in rs]
            if records:
                with lock:
                    seen.extend(r.value for r in records)
                python.commit()
        python.close()

    import asyncio

    aiokafka_joined = threading.Event()

    async def run_aiokafka() -> None:
        # aiokafka offers roundrobin alone by default; the group has to share one assignor.
        c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             heartbeat_interval_ms=300,
                             partition_assignment_strategy=(RangePartitionAssignor,))
        await c.start()
        aiokafka_joined.set()
        try:
            while not stop.is_set():
                records = [r for rs in (await c.getmany(timeout_ms=200)).values() for r in rs]
                if records:
                    with lock:
                        seen.extend(r.value for r in records)
                    await c.commit()
        finally:
            await c.stop()

    threads = [threading.Thread(target=run_python, daemon=True),
               threading.Thread(target=lambda: asyncio.run(run_aiokafka()), daemon=True)]
    rdkafka.start()
    for t in threads:
        t.start()
    wait_for(lambda: len(seen) >= len(values))
    assert aiokafka_joined.wait(30), "aiokafka never joined the group"
    time.sleep(0.5)
    stop.set()
    rdkafka.leave()
    for t in threads:
        t.join(30)
    assert sorted(seen) == values


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed")
def test_kcat_balanced_consumers_and_committed_offsets(gateways):
    bootstrap = gateways[1][0]
    topic = create_topic(bootstrap)
    group = unique("g")
    produce(bootstrap, topic, [b"k%04d" % i for i in range(120)])

    def kcat_group() -> subprocess.Popen[bytes]:
        # -G: balanced consumer group (librdkafka 2.0.2's JoinGroup/SyncGroup/OffsetCommit).
        return subprocess.Popen(["kcat", "-b", bootstrap, "-G", group, "-e",
                                 "-X", "auto.offset.reset=earliest", "-X", "heartbeat.interval.ms=300",
                                 "-f", "%s\\n", topic],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    procs = [kcat_group(), kcat_group()]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    got = sorted(line for out in outs for line in out.splitlines())
    assert got == [b"k%04d" % i for i in range(120)]
    produce(bootstrap, topic, [b"late"])
    # The group's committed offsets: a new member reads only what came since.
    again = kcat_group().communicate(timeout=60)[0]
    assert again.splitlines() == [b"late"]
