"""FlexLog's replica stores as Kafka log dirs, for DescribeLogDirs and AlterReplicaLogDirs.

A log dir is one storage tier of one replica (the PM engine's pool, DRAM cache
and SSD directory; the memory engine's one store), named by its path, so Kafka
tooling sees where a partition's bytes are. Sizes come from the replicas
themselves: the Status RPC names their tiers, the Colors RPC gives a color's
bytes per tier. docs/gateway.md says how the mapping reads.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from flexlog.core.config import ReplicaConfig
from flexlog.core.errors import FlexLogError
from flexlog.core.status import ColorUsage, ask_process, color_usage
from flexlog.core.storage import Tier
from flexlog.gateway.broker import Broker
from flexlog.gateway.protocol import ErrorCode

# A replica that does not answer within this long is reported with KAFKA_STORAGE_ERROR,
# as Kafka reports an offline log dir, rather than holding up the whole answer.
REPLICA_TIMEOUT_S = 2.0


EMPTY = ColorUsage(0, [])


@dataclass(frozen=True)
class PartitionSize:
    topic: str
    partition: int
    size: int
    offset_lag: int  # how far this replica's committed prefix is behind the longest one's


@dataclass
class LogDir:
    path: str
    error: ErrorCode = ErrorCode.NONE
    total_bytes: int = -1
    usable_bytes: int = -1
    partitions: list[PartitionSize] = field(default_factory=list)


def dir_name(replica: ReplicaConfig, tier: Tier) -> str:
    # The memory engine's store has no path; the replica's name keeps its dir apart from others'.
    return tier.path or f"{replica.name}:{tier.name}"


async def _replica(replica: ReplicaConfig,
                   colors: set[int]) -> tuple[list[Tier], dict[int, ColorUsage]] | None:
    status = await ask_process("replica", replica.name, replica.address, REPLICA_TIMEOUT_S)
    if not status.up:
        return None
    usage = await color_usage(replica.address, colors, REPLICA_TIMEOUT_S) if colors else {}
    return None if usage is None else (status.tiers, usage)


async def describe(broker: Broker, partitions: list[tuple[str, int]]) -> list[LogDir]:
    """Every replica's tiers as log dirs, each listing those of partitions it holds bytes of.

    A partition is listed in its replica's primary tier (where its appends go) even when
    empty, and in another tier when that holds some of its bytes.
    """
    placed: dict[int, tuple[str, int]] = {}
    on_shard: dict[int, set[int]] = {}
    for topic, p in partitions:
        try:
            color = await broker.topics.color(topic, p)
        except FlexLogError:
            continue  # deleted since it was asked for: Kafka leaves out what it does not host
        placed[color.id] = (topic, p)
        for shard in color.shards:
            on_shard.setdefault(shard, set()).add(color.id)
    replicas = [r for s in broker.config.shards for r in s.replicas]
    answers = await asyncio.gather(*(_replica(r, on_shard.get(r.shard, set())) for r in replicas))
    longest: dict[int, int] = {}
    for answer in answers:
        for color, usage in (answer[1] if answer else {}).items():
            longest[color] = max(longest.get(color, 0), usage.tail)
    dirs = []
    for replica, answer in zip(replicas, answers, strict=True):
        if answer is None:
            dirs.append(LogDir(str(broker.config.replica_dir(replica.name).resolve()),
                               ErrorCode.KAFKA_STORAGE_ERROR))
            continue
        tiers, usage = answer
        for i, tier in enumerate(tiers):
            d = LogDir(dir_name(replica, tier), total_bytes=tier.capacity_bytes,
                       usable_bytes=max(tier.capacity_bytes - tier.used_bytes, 0))
            # A replica learns of a color with its first entry; until then it holds it empty.
            for color in sorted(on_shard.get(replica.shard, ())):
                u = usage.get(color, EMPTY)
                size = u.tier_bytes[i] if i < len(u.tier_bytes) else 0
                if i == 0 or size:
                    topic, p = placed[color]
                    d.partitions.append(PartitionSize(topic, p, size,
                                                      longest.get(color, 0) - u.tail))
            dirs.append(d)
    return dirs
