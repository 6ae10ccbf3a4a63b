"""kafka-python 3.0 consumer groups and its default idempotent producer, over two gateways.

Every client bootstraps on the first gateway only; Metadata and FindCoordinator
send it to the second one for half the partitions and some groups.
"""

from __future__ import annotations

import threading
import time
from functools import partial

import pytest
from group_helpers import (
    PARTITIONS,
    MemberThread,
    consume_with_churn,
    every_member_assigned,
    restart_gateway,
    unique,
    wait_for,
)
from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import MemberToRemove, NewTopic
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka.structs import OffsetAndMetadata

ASSIGNORS = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor,
             "cooperative-sticky": CooperativeStickyAssignor}


def create_topic(bootstrap: str, partitions: int = PARTITIONS) -> str:
    name = unique("t")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(name, partitions, 1)])
    admin.close()
    return name


def produce(bootstrap: str, topic: str, values: list[bytes], partitions: int = PARTITIONS) -> None:
    # Idempotence is kafka-python 3's default: InitProducerId, sequences per partition.
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i, v in enumerate(values):
        p.send(topic, value=v, partition=i % partitions)
    p.flush(30)
    p.close()


def consumer(bootstrap: str, group: str, assignor: str = "range", **conf: object) -> KafkaConsumer:
    return KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                         auto_offset_reset="earliest", heartbeat_interval_ms=300,
                         session_timeout_ms=10_000, partition_assignment_strategy=[ASSIGNORS[assignor]],
                         **conf)


class Member(MemberThread, ConsumerRebalanceListener):
    """`events`: ("assign" | "revoke", partitions) per rebalance callback, in order."""

    def __init__(self, bootstrap: str, group: str, topic: str, assignor: str,
                 seen: list[bytes], lock: threading.Lock, **conf: object) -> None:
        super().__init__(seen, lock)
        self.events: list[tuple[str, frozenset[int]]] = []
        self.c = consumer(bootstrap, group, assignor, **conf)
        self.c.subscribe([topic], listener=self)

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.events.append(("assign", frozenset(tp.partition for tp in assigned)))

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if revoked:  # an eager member is told it gives up nothing before its first join
            self.events.append(("revoke", frozenset(tp.partition for tp in revoked)))

    def poll_values(self) -> list[bytes]:
        batches = self.c.poll(timeout_ms=200)
        return [r.value for rs in batches.values() for r in rs]

    def commit(self) -> None:
        self.c.commit()

    def close(self) -> None:
        self.c.close()


@pytest.mark.parametrize("assignor", list(ASSIGNORS))
def test_group_of_three_gets_every_message_once_while_members_come_and_go(gateways, assignor):
    _, addresses = gateways
    bootstrap = addresses[0]
    topic = create_topic(bootstrap)
    group = unique("g")
    values = [b"m%04d" % i for i in range(600)]
    seen: list[bytes] = []
    lock = threading.Lock()
    members = [Member(bootstrap, group, topic, assignor, seen, lock) for _ in range(2)]
    consume_with_churn(members, lambda: Member(bootstrap, group, topic, assignor, seen, lock),
                       lambda part: produce(bootstrap, topic, part), values,
                       partial(every_member_assigned, bootstrap, group, topic))


def test_committed_offsets_and_metadata_resume_after_consumer_and_gateway_restart(gateways):
    cluster, addresses = gateways
    topic = create_topic(addresses[0], partitions=2)
    produce(addresses[0], topic, [b"v%d" % i for i in range(10)], partitions=2)
    group = unique("g")
    c = consumer(addresses[0], group)
    c.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])  # manual: generation -1
    c.commit({TopicPartition(topic, 0): OffsetAndMetadata(3, "meta-\u00e9", -1),
              TopicPartition(topic, 1): OffsetAndMetadata(4, None, -1)})
    c.close()
    for restart in (lambda: None, lambda: [restart_gateway(cluster, i) for i in range(2)]):
        restart()
        c = consumer(addresses[0], group)
        committed = c.committed(TopicPartition(topic, 0), metadata=True)
        assert (committed.offset, committed.metadata) == (3, "meta-\u00e9")
        c.subscribe([topic])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 3 and time.monotonic() < deadline:
            got.extend(r for rs in c.poll(200).values() for r in rs)
        c.close()
        assert sorted((r.partition, r.offset) for r in got) == [(0, 3), (0, 4), (1, 4)]


def test_idempotent_producer_ids_differ_across_gateways(gateways):
    _, addresses = gateways
    ids = set()
    for address in addresses:
        p = KafkaProducer(bootstrap_servers=address)
        p.send(create_topic(address, partitions=1), b"x").get(30)
        ids.add(p._transaction_manager.producer_id_and_epoch.producer_id)
        p.close()
    assert len(ids) == 2


def test_static_member_restart_rebalances_nobody_and_admin_removes_static_members(gateways):
    """kafka-python static members: a restart within the session timeout gets the old partitions
    back and nobody else notices; closed static members stay in the group (they do not leave)
    until an admin removes them by group.instance.id (LeaveGroup v3+, KIP-345), at once."""
    bootstrap = gateways[1][0]
    topic = create_topic(bootstrap)
    group = unique("g")
    produce(bootstrap, topic, [b"v%03d" % i for i in range(60)])
    seen: list[bytes] = []
    lock = threading.Lock()

    def member(i: int) -> Member:
        return Member(bootstrap, group, topic, "range", seen, lock, group_instance_id=f"kp-{i}")

    members = [member(0), member(1)]
    for m in members:
        m.start()
    wait_for(lambda: len(seen) == 60 and all(m.events and m.events[-1][0] == "assign" for m in members)
             and sum(len(m.events[-1][1]) for m in members) == PARTITIONS, 30)
    for i in (0, 1):  # one of them is the leader, whose restart once rebalanced the other
        other = members[1 - i]
        calls = len(other.events)
        owned = members[i].events[-1][1]
        members[i].leave()
        new = members[i] = member(i)
        new.start()
        wait_for(lambda m=new: bool(m.events), 8)
        assert new.events == [("assign", owned)]
        time.sleep(0.5)
        assert len(other.events) == calls, "the other member saw a rebalance"
    for m in members:
        m.leave()

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        described = admin.describe_groups([group])[group]
        assert described["group_state"] == "Stable" and len(described["members"]) == 2
        results = admin.remove_group_members(group, [MemberToRemove(group_instance_id=i)
                                                     for i in ("kp-0", "kp-1", "nobody")])
        codes = {k: v.errno for k, v in results.items()}  # keyed by instance id here
        assert codes == {"kp-0": 0, "kp-1": 0, "nobody": 25}  # 25: UNKNOWN_MEMBER_ID
        assert admin.describe_groups([group])[group]["group_state"] == "Empty"
    finally:
        admin.close()
