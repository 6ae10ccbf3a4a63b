"""aiokafka 0.14 consumer groups (JoinGroup v5, SyncGroup v3, OffsetCommit v3...) over two gateways."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
from group_helpers import PARTITIONS, unique

ASSIGNORS = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor,
             "sticky": StickyPartitionAssignor}


async def create_topic(bootstrap: str) -> str:
    name = unique("t")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(name, PARTITIONS, 1)])
    await admin.close()
    return name


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await p.start()
    try:
        await asyncio.gather(*[await p.send(topic, v, partition=i % PARTITIONS)
                               for i, v in enumerate(values)])
    finally:
        await p.stop()


async def member(bootstrap: str, group: str, topic: str, assignor: str, seen: list[bytes],
                 stop: asyncio.Event) -> None:
    """Consume, committing after every batch, until told to stop; then leave the group."""
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                         enable_auto_commit=False, auto_offset_reset="earliest",
                         heartbeat_interval_ms=300, session_timeout_ms=10_000,
                         partition_assignment_strategy=(ASSIGNORS[assignor],))
    await c.start()
    try:
        while not stop.is_set():
            batches = await c.getmany(timeout_ms=200)
            records = [r for rs in batches.values() for r in rs]
            if records:
                seen.extend(r.value for r in records)
                await c.commit()
    finally:
        await c.stop()


async def wait_for(predicate: object, timeout: float = 60.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("assignor", list(ASSIGNORS))
async def test_group_of_three_gets_every_message_once_while_members_come_and_go(gateways, assignor):
    _, addresses = gateways
    bootstrap = addresses[0]
    topic = await create_topic(bootstrap)
    group = unique("g")
    values = [b"a%04d" % i for i in range(450)]
    seen: list[bytes] = []
    stops = [asyncio.Event() for _ in range(3)]
    tasks = [asyncio.create_task(member(bootstrap, group, topic, assignor, seen, s))
             for s in stops[:2]]
    await produce(bootstrap, topic, values[:150])
    await wait_for(lambda: len(seen) >= 50)
    tasks.append(asyncio.create_task(member(bootstrap, group, topic, assignor, seen, stops[2])))
    await produce(bootstrap, topic, values[150:300])
    await wait_for(lambda: len(seen) >= 200)
    stops[0].set()
    await tasks[0]
    await produce(bootstrap, topic, values[300:])
    await wait_for(lambda: len(seen) >= len(values))
    await asyncio.sleep(0.5)  # a duplicate would show up now
    for s in stops:
        s.set()
    await asyncio.gather(*tasks)
    assert sorted(seen) == values


class _Recorder(ConsumerRebalanceListener):
    """What one consumer was told: ("revoke" | "assign", partitions) in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, set[int]]] = []

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:  # aiokafka also calls it, empty, before a consumer's first join
            self.events.append(("revoke", {tp.partition for tp in revoked}))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.events.append(("assign", {tp.partition for tp in assigned}))


async def test_a_static_member_restart_rebalances_nobody(gateways):
    """aiokafka static members (KIP-345): a member closed and recreated with the same
    group.instance.id within its session timeout gets its partitions back; the other member
    is told nothing."""
    bootstrap = gateways[1][0]
    topic = await create_topic(bootstrap)
    group = unique("g")

    async def started(i: int) -> tuple[AIOKafkaConsumer, _Recorder]:
        recorder = _Recorder()
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             group_instance_id=f"aio-{i}", enable_auto_commit=False,
                             heartbeat_interval_ms=300, session_timeout_ms=10_000,
                             partition_assignment_strategy=(RangePartitionAssignor,))
        await c.start()
        c.subscribe([topic], listener=recorder)
        return c, recorder

    def owned(r: _Recorder) -> set[int]:
        return r.events[-1][1] if r.events and r.events[-1][0] == "assign" else set()

    members = [await started(0), await started(1)]

    async def polled_until(done: object) -> None:
        async with asyncio.timeout(30):
            while not done():  # type: ignore[operator]
                await asyncio.gather(*(c.getmany(timeout_ms=100) for c, _ in members))

    await polled_until(lambda: sum(len(owned(r)) for _, r in members) == PARTITIONS)
    for i in (0, 1):  # one of them leads the group
        other = members[1 - i][1]
        calls, before = len(other.events), owned(members[i][1])
        await members[i][0].stop()
        members[i] = await started(i)
        await polled_until(lambda m=members[i][1]: bool(owned(m)))
        assert members[i][1].events == [("assign", before)]
        await polled_until(lambda: True)
        assert len(other.events) == calls, "the other member saw a rebalance"
    for c, _ in members:
        await c.stop()
