"""Retention: trim partitions past retention.ms / retention.bytes, like Kafka's log cleaner.

Only the gateway that leads a partition trims it, so gateways never race each
other. Kafka deletes whole segments; here whole batches go: from the oldest, a
batch is dropped while its newest record is older than retention.ms, or while
the partition without it would still hold more than retention.bytes (both per
partition, as in Kafka).

A partition of an ordered topic is a member of a color family, which is trimmed
as a whole: retention moves the partition's logical log start instead, records
below which SN the partition keeps nothing, and the family is trimmed where
every partition allows (gateway/partition_starts.py). The controller gateway trims every ordered
topic's family on each pass too, so a trim that failed after its move was
stored is done later; it also snapshots ``__log_starts`` when it has grown.
"""

from __future__ import annotations

import asyncio
import logging
import time

from flexlog.core.errors import FlexLogError
from flexlog.core.record_batch import NO_TIMESTAMP
from flexlog.core.registry import ColorInfo
from flexlog.gateway.broker import Broker
from flexlog.gateway.partition_starts import SNAPSHOT_EVERY_RECORDS
from flexlog.gateway.timestamps import PartitionIndex
from flexlog.gateway.topics import ORDERING, PARTITION_ORDER, RETENTION_BYTES, RETENTION_MS, Topic

log = logging.getLogger("flexlog.gateway.retention")

def trim_point(index: PartitionIndex, retention_ms: int, retention_bytes: int, now_ms: int) -> int:
    """How many of the oldest indexed batches retention drops.

    A batch without a timestamp (maxTimestamp -1: a fill marker, or a batch
    stored before Produce recomputed the field) never expires on its own; it
    goes only with a later batch that does, as a segment with untimed batches
    goes in Kafka, since the log is trimmed from its start.
    """
    drop = 0
    if retention_ms >= 0:
        cutoff = now_ms - retention_ms
        for pos, max_ts in enumerate(index.max_ts):
            if max_ts == NO_TIMESTAMP:
                continue
            if max_ts >= cutoff:
                break
            drop = pos + 1
    if retention_bytes >= 0:
        total = sum(index.sizes)
        size_drop = 0
        while size_drop < len(index.sizes) and total > retention_bytes:
            total -= index.sizes[size_drop]
            size_drop += 1
        drop = max(drop, size_drop)
    return drop


def applies(topic: Topic, defaults: dict[str, str]) -> bool:
    """Whether retention trims the topic: then each pass refreshes (and trims) the time
    index of every partition this gateway leads."""
    return topic.int_config(RETENTION_MS, defaults) >= 0 or topic.int_config(RETENTION_BYTES, defaults) >= 0


async def _enforce(broker: Broker, topic: Topic, partition: int) -> None:
    defaults = broker.topics.defaults
    if not applies(topic, defaults):
        return
    retention_ms = topic.int_config(RETENTION_MS, defaults)
    retention_bytes = topic.int_config(RETENTION_BYTES, defaults)
    color = await broker.topics.color(topic.name, partition)
    index, _, _ = await broker.timestamps.refresh(color)
    drop = trim_point(index, retention_ms, retention_bytes, int(time.time() * 1000))
    if drop:
        end = index.ends[drop - 1]
        if color.family:
            await broker.partition_starts.move(color, end)
        else:
            await broker.client.trim(end - 1, color)
        index.drop_below(end)
        broker.log_starts[color.id] = end
        log.info("retention trimmed %s-%d below offset %d", topic.name, partition, end)
    if color.family:
        # Below its first kept batch (or, with none, below where the scan ended: every SN
        # there is committed) the partition keeps nothing, so a quiet partition does not hold
        # the family's storage at its log start.
        await broker.partition_starts.keeps_nothing_below(
            color, index.sns[0] if index.sns else index.upto)


async def _upkeep_families(broker: Broker) -> None:
    """Trim every ordered topic's family as far as its partitions' log starts allow, and
    snapshot ``__log_starts`` once it has grown."""
    families: dict[int, ColorInfo] = {}  # family id -> a member
    for topic in broker.topics.all():
        if topic.partitions and topic.config(ORDERING, broker.topics.defaults) != PARTITION_ORDER:
            member = await broker.topics.color(topic.name, 0)
            families.setdefault(member.family, member)
    for member in families.values():
        await broker.partition_starts.trim_family(member)
    if broker.partition_starts.state.since_snapshot >= SNAPSHOT_EVERY_RECORDS:
        await broker.partition_starts.compact()


async def run(broker: Broker) -> None:
    """Check every partition this gateway leads, every log_retention_check_interval_ms, forever."""
    interval_s = broker.config.log_retention_check_interval_ms / 1000
    await broker.ready.wait()
    while True:
        broker.timestamps.drop_deleted()
        for topic in broker.topics.all():
            for p in range(topic.partitions):
                if not broker.leads(p):
                    continue
                try:
                    await _enforce(broker, topic, p)
                except FlexLogError as exc:
                    log.warning("retention of %s-%d failed: %s", topic.name, p, exc)
        if broker.me.node_id == broker.controller_id:
            try:
                await _upkeep_families(broker)
            except FlexLogError as exc:
                log.warning("trimming ordered topics' families failed: %s", exc)
        await asyncio.sleep(interval_s)
