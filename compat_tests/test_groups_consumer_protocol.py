"""KIP-848 consumer groups (`group.protocol=consumer`) with librdkafka (confluent-kafka), over
two gateways: members join one after another and leave, partitions move incrementally and
never have two owners, offsets are committed, a restarted member resumes, every record is
consumed exactly once; ListGroups and ConsumerGroupDescribe see the group; after a
coordinator restart members rejoin and resume from their commits; a static member's restart
takes its own partitions back without disturbing the others. A second client
library, @confluentinc/kafka-javascript (compat_tests/js_kip848, installed by ./dev test),
shares a group with confluent-kafka."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from group_helpers import (
    PARTITIONS,
    MemberThread,
    create_topic,
    finish,
    produce,
    restart_gateway,
    unique,
    wait_for,
    wait_ready,
)

from cluster import Cluster, running_cluster
from flexlog.gateway.groups import coordinator_index

JS = Path(__file__).parent / "js_kip848"
# The coordinator's heartbeat interval: a partition moving between members waits for its new
# owner's next heartbeat, so Kafka's 5 s default would make every step of these tests slow.
HEARTBEAT_INTERVAL_MS = 300


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    extra = (f"default_partitions = {PARTITIONS}\n"
             f"group_consumer_heartbeat_interval_ms = {HEARTBEAT_INTERVAL_MS}\n"
             "group_consumer_session_timeout_ms = 10000")
    with running_cluster(tmp_path_factory.mktemp("kip848"), storage="memory", gateways=2,
                         extra=extra) as cluster:
        for gateway in cluster.config.gateways:
            wait_ready(gateway.advertised)
        yield cluster


@pytest.fixture(scope="module")
def bootstrap(cluster: Cluster) -> str:
    return cluster.config.gateways[1].advertised



def consumer(bootstrap: str, group: str, **conf: object) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group, "group.protocol": "consumer",
                     "auto.offset.reset": "earliest", "enable.auto.commit": False, **conf})


class Ownership:
    """Per partition, who consumes it from when to when (callback times on one clock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open: dict[int, tuple[str, float]] = {}
        self.overlaps: list[str] = []

    def assigned(self, name: str, partitions: list[int]) -> None:
        with self.lock:
            for p in partitions:
                if p in self.open:
                    self.overlaps.append(f"partition {p} given to {name} while {self.open[p][0]} has it")
                self.open[p] = (name, time.monotonic())

    def released(self, name: str, partitions: list[int]) -> None:
        with self.lock:
            for p in partitions:
                if self.open.get(p, ("",))[0] == name:
                    del self.open[p]


class Member(MemberThread):
    def __init__(self, name: str, bootstrap: str, group: str, topic: str, seen: list[bytes],
                 lock: threading.Lock, ownership: Ownership, **conf: object) -> None:
        super().__init__(seen, lock)
        self.name, self.ownership = name, ownership
        self.partitions: set[int] = set()
        self.callbacks = 0
        self.c = consumer(bootstrap, group, **conf)
        self.c.subscribe([topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked)

    def _assigned(self, _: Consumer, partitions: list[TopicPartition]) -> None:
        self.callbacks += 1
        self.ownership.assigned(self.name, [p.partition for p in partitions])
        self.partitions |= {p.partition for p in partitions}

    def _revoked(self, _: Consumer, partitions: list[TopicPartition]) -> None:
        self.callbacks += 1
        self.commit()
        self.partitions -= {p.partition for p in partitions}
        self.ownership.released(self.name, [p.partition for p in partitions])

    def poll_values(self) -> list[bytes]:
        return [m.value() for m in self.c.consume(100, 0.2) if m.error() is None]

    def commit(self) -> None:
        try:
            self.c.commit(asynchronous=False)
        except KafkaException as exc:
            # Nothing consumed yet, or an epoch that moved on between poll and commit (Kafka's
            # STALE_MEMBER_EPOCH): the revoke callback commits again before a partition moves.
            assert exc.args[0].code() in (KafkaError._NO_OFFSET, KafkaError.STALE_MEMBER_EPOCH,
                                          KafkaError.UNKNOWN_MEMBER_ID), exc

    def close(self) -> None:
        self.c.close()


def test_three_members_join_and_leave_incrementally_exactly_once(bootstrap):
    topic = create_topic(bootstrap)
    group = unique("g")
    values = [b"k%04d" % i for i in range(600)]
    seen: list[bytes] = []
    lock = threading.Lock()
    ownership = Ownership()
    members: list[Member] = []
    for i in range(3):
        members.append(Member(f"m{i}", bootstrap, group, topic, seen, lock, ownership))
        members[-1].start()
        produce(bootstrap, topic, values[i * 150:(i + 1) * 150])
        wait_for(lambda n=i + 1: sorted(len(m.partitions) for m in members) == [PARTITIONS // n] * n)
    # Three members, two partitions each, together all six.
    assert set().union(*(m.partitions for m in members)) == set(range(PARTITIONS))
    admin = AdminClient({"bootstrap.servers": bootstrap})
    listed = admin.list_consumer_groups().result(30)
    mine = next(g for g in listed.valid if g.group_id == group)
    assert mine.type.name == "CONSUMER" and mine.state.name == "STABLE"
    described = admin.describe_consumer_groups([group])[group].result(30)
    assert len(described.members) == 3
    members.pop(0).leave()
    wait_for(lambda: sorted(len(m.partitions) for m in members) == [3, 3])
    produce(bootstrap, topic, values[450:])
    finish(members, values)
    assert ownership.overlaps == []


def test_a_restarted_member_resumes_from_its_commit(bootstrap):
    topic = create_topic(bootstrap)
    group = unique("g")
    produce(bootstrap, topic, [b"r%03d" % i for i in range(60)])
    first = consumer(bootstrap, group)
    first.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(got) < 30 and time.monotonic() < deadline:
        got += [m.value() for m in first.consume(30 - len(got), 0.5) if m.error() is None]
    first.commit(asynchronous=False)
    committed = {tp.partition: tp.offset for tp in first.committed(
        [TopicPartition(topic, p) for p in range(PARTITIONS)], 10)}
    first.close()
    again = consumer(bootstrap, group)
    again.subscribe([topic])
    rest: list[bytes] = []
    first_offsets: dict[int, int] = {}
    deadline = time.monotonic() + 60
    while len(got) + len(rest) < 60 and time.monotonic() < deadline:
        for m in again.consume(100, 0.5):
            if m.error() is None:
                rest.append(m.value())
                first_offsets.setdefault(m.partition(), m.offset())
    again.close()
    # Each partition resumes at its commit (or, never committed, at the start).
    assert first_offsets == {p: max(committed[p], 0) for p in first_offsets}
    assert sorted(got + rest) == [b"r%03d" % i for i in range(60)]


class JsMember:
    """compat_tests/js_kip848/consumer.js: a member from another client library in the same group."""

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        self.proc = subprocess.Popen(["node", str(JS / "consumer.js"), bootstrap, topic, group],
                                     stdout=subprocess.PIPE, text=True)
        self.assigned: list[int] = []
        self.values: list[bytes] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line)
            if "assigned" in event:
                self.assigned = event["assigned"]
            else:
                self.values.append(event["value"].encode())

    def leave(self) -> None:
        self.proc.terminate()
        assert self.proc.wait(30) == 0
        self.reader.join(10)


@pytest.mark.skipif(shutil.which("node") is None or not (JS / "node_modules" / "@confluentinc").is_dir(),
                    reason="node or @confluentinc/kafka-javascript is missing (./dev test installs both)")
def test_a_javascript_member_shares_the_group(bootstrap):
    """@confluentinc/kafka-javascript and confluent-kafka in one KIP-848 group: the partitions split
    3/3 when the JavaScript member joins and come back when it leaves; every record once."""
    topic = create_topic(bootstrap)
    group = unique("g")
    values = [b"j%03d" % i for i in range(180)]
    seen: list[bytes] = []
    lock = threading.Lock()
    python = Member("py", bootstrap, group, topic, seen, lock, Ownership())
    python.start()
    produce(bootstrap, topic, values[:60])
    wait_for(lambda: len(seen) == 60)
    js = JsMember(bootstrap, topic, group)
    try:
        wait_for(lambda: len(js.assigned) == 3 and len(python.partitions) == 3)
        assert set(js.assigned) | python.partitions == set(range(PARTITIONS))
        produce(bootstrap, topic, values[60:120])
        wait_for(lambda: len(seen) + len(js.values) == 120)
        assert js.values and len(js.values) < 60  # it consumed its own partitions' share
    finally:
        js.leave()
    wait_for(lambda: len(python.partitions) == PARTITIONS)
    produce(bootstrap, topic, values[120:])
    wait_for(lambda: len(seen) + len(js.values) == 180)
    time.sleep(0.5)
    python.leave()
    assert sorted(seen + js.values) == values


def test_members_rejoin_after_their_coordinator_restarts_and_resume_from_commits(cluster, bootstrap):
    """Membership lives in the coordinator's memory: after its restart the member's heartbeat gets
    UNKNOWN_MEMBER_ID, it rejoins at epoch 0 and resumes from the committed offsets."""
    topic = create_topic(bootstrap)
    group = unique("g")
    values = [b"x%03d" % i for i in range(60)]
    produce(bootstrap, topic, values[:30])
    c = consumer(bootstrap, group)
    c.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(got) < 30 and time.monotonic() < deadline:
        got += [m.value() for m in c.consume(100, 0.5) if m.error() is None]
    c.commit(asynchronous=False)
    restart_gateway(cluster, coordinator_index(group, len(cluster.config.gateways)))
    produce(bootstrap, topic, values[30:])
    # Records fetched after the restart but before the member learns it must rejoin come again
    # from the commit after the rejoin (at least once, as in Kafka): count distinct values.
    deadline = time.monotonic() + 60
    while set(got) != set(values) and time.monotonic() < deadline:
        got += [m.value() for m in c.consume(100, 0.5) if m.error() is None]
    assert len(c.assignment()) == PARTITIONS
    # The restarted coordinator knows the member again once its next heartbeat was refused
    # and it rejoined; the fetches above may finish before that, so keep polling until then.
    admin = AdminClient({"bootstrap.servers": bootstrap})
    members: list[str] = []
    deadline = time.monotonic() + 30
    while members != [c.memberid()] and time.monotonic() < deadline:
        # What comes now is redelivered from the commit (at 30) on: already in got.
        c.consume(100, 0.5)
        described = admin.describe_consumer_groups([group])[group].result(30)
        members = [m.member_id for m in described.members]
    assert members == [c.memberid()]
    c.close()
    assert sorted(set(got)) == values
    assert sorted(got[:30]) == values[:30]  # before the restart, each exactly once


def test_a_static_member_restarts_into_its_own_partitions(bootstrap):
    """Closing a static member sends epoch -2: its partitions wait for it (nobody else gets them),
    and its restart with the same group.instance.id takes them back; the other member sees nothing."""
    topic = create_topic(bootstrap)
    group = unique("g")
    values = [b"s%03d" % i for i in range(120)]
    seen: list[bytes] = []
    lock = threading.Lock()
    ownership = Ownership()

    def member(name: str) -> Member:
        return Member(name, bootstrap, group, topic, seen, lock, ownership, **{"group.instance.id": name})

    a, b = member("a"), member("b")
    for m in (a, b):
        m.start()
    wait_for(lambda: len(a.partitions) == len(b.partitions) == 3)
    produce(bootstrap, topic, values[:60])
    wait_for(lambda: len(seen) == 60)
    settled, b_partitions = a.callbacks, set(b.partitions)
    b.leave()
    produce(bootstrap, topic, values[60:])
    time.sleep(1.0)  # three heartbeat intervals: a would have been given b's partitions by now
    assert a.partitions | b_partitions == set(range(PARTITIONS)) and a.callbacks == settled
    again = member("b")
    again.start()
    wait_for(lambda: again.partitions == b_partitions)
    wait_for(lambda: len(seen) == len(values))
    assert a.callbacks == settled  # before finish: closing calls a's revoke callback
    finish([a, again], values)
    assert ownership.overlaps == []


def test_the_range_assignor_is_chosen_by_the_client(bootstrap):
    """`group.remote.assignor=range`: contiguous ranges, and the group says which assignor it uses."""
    topic = create_topic(bootstrap)
    group = unique("g")
    seen: list[bytes] = []
    lock = threading.Lock()
    members = [Member(f"r{i}", bootstrap, group, topic, seen, lock, Ownership(),
                      **{"group.remote.assignor": "range"}) for i in range(2)]
    for m in members:
        m.start()
    try:
        wait_for(lambda: sorted(sorted(m.partitions) for m in members) == [[0, 1, 2], [3, 4, 5]])
        admin = AdminClient({"bootstrap.servers": bootstrap})
        described = admin.describe_consumer_groups([group])[group].result(30)
        assert described.partition_assignor == "range"
    finally:
        for m in members:
            m.leave()
