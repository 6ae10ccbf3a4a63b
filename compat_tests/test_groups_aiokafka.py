"""aiokafka 0.14 consumer groups (JoinGroup v5, SyncGroup v3, OffsetCommit v3...) over two gateways."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
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
