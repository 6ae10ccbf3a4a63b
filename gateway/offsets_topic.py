"""The read-only Kafka topic ``__consumer_offsets``, derived from the committed-offsets color.

Monitoring tools (Burrow, older lag exporters) read Kafka's internal topic
instead of asking OffsetFetch. The gateway has no such topic: commits are JSON
records in the root-owned color of the same name (``committed_offsets.py``).
This module shows that color as Kafka would: 50 partitions (Kafka's default
``offsets.topic.num.partitions``), a group's records in partition
``abs(javaHashCode(group)) % 50`` as Kafka places them, keys and values in
Kafka's own binary encodings.

Offsets must be the same on every gateway and after restarts, so they are
derived from the color's SNs only: the k-th Kafka record made from the log
record at SN s has offset ``s << OFFSET_SHIFT | k``. One log record can carry
many commits (one per partition of an OffsetCommit), hence the room below each
SN. Every partition of the topic shares the color's log start and tail, shifted
the same way; offsets in between are sparse, as in a compacted Kafka topic.
"""

from __future__ import annotations

import json
import logging
import struct
import uuid
from typing import Any

from flexlog.core import record_batch
from flexlog.core.client import FlexLogClient, RangeResult
from flexlog.core.record_batch import Record
from flexlog.core.registry import ColorInfo
from flexlog.core.storage import StoredEntry
from flexlog.gateway.committed_offsets import OFFSETS_COLOR

log = logging.getLogger("flexlog.gateway.offsets_topic")

TOPIC = OFFSETS_COLOR
PARTITIONS = 50
# A fixed id: every gateway and every restart must name the topic the same way.
TOPIC_ID = uuid.uuid5(uuid.NAMESPACE_URL, "flexlog:kafka-topic:__consumer_offsets").bytes
# Records per log record; a commit or snapshot producing more in one partition is cut.
OFFSET_SHIFT = 20
PER_SN = 1 << OFFSET_SHIFT

# Key versions 0 and 1 are both offset-commit keys; Kafka writes 1. Version 2 is group metadata.
OFFSET_KEY_VERSION = 1
GROUP_KEY_VERSION = 2
# Value version 3 is what Kafka writes when there is no expire timestamp: it carries the epoch.
OFFSET_VALUE_VERSION = 3
GROUP_VALUE_VERSION = 3

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")


def java_string_hash(text: str) -> int:
    """Java's String.hashCode (over UTF-16 code units, wrapping as a signed 32-bit int)."""
    h = 0
    units = text.encode("utf-16-be")
    for i in range(0, len(units), 2):
        h = (31 * h + int.from_bytes(units[i:i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def partition_for(group: str) -> int:
    """Kafka's partitionFor: Utils.abs (which maps Integer.MIN_VALUE to 0) of the hash, mod 50."""
    h = java_string_hash(group)
    return (0 if h == -(1 << 31) else abs(h)) % PARTITIONS


def _string(text: str | None) -> bytes:
    if text is None:
        return _I16.pack(-1)
    data = text.encode()
    return _I16.pack(len(data)) + data


def _bytes(data: bytes) -> bytes:
    return _I32.pack(len(data)) + data


def offset_key(group: str, topic: str, partition: int) -> bytes:
    return _I16.pack(OFFSET_KEY_VERSION) + _string(group) + _string(topic) + _I32.pack(partition)


def offset_value(offset: int, leader_epoch: int, metadata: str | None, timestamp_ms: int) -> bytes:
    # metadata is a non-nullable string in the value: Kafka stores a missing one as "".
    return (_I16.pack(OFFSET_VALUE_VERSION) + _I64.pack(offset) + _I32.pack(leader_epoch)
            + _string(metadata or "") + _I64.pack(timestamp_ms))


def group_key(group: str) -> bytes:
    return _I16.pack(GROUP_KEY_VERSION) + _string(group)


def group_value(event: dict[str, Any]) -> bytes:
    """GroupMetadataValue v3 of a ``group`` record (see committed_offsets.OffsetStore.group)."""
    out = [_I16.pack(GROUP_VALUE_VERSION), _string(event["protocol_type"] or ""),
           _I32.pack(int(event["generation"])), _string(event["protocol"]), _string(event["leader"]),
           _I64.pack(int(event["ts"])), _I32.pack(len(event["members"]))]
    for member_id, instance_id, client_id, host, rebalance_ms, session_ms, sub, assignment in \
            event["members"]:
        out += [_string(member_id), _string(instance_id), _string(client_id), _string(host),
                _I32.pack(int(rebalance_ms)), _I32.pack(int(session_ms)),
                _bytes(bytes.fromhex(sub)), _bytes(bytes.fromhex(assignment))]
    return b"".join(out)


def records_of(value: bytes | None, partition: int) -> list[Record]:
    """The Kafka records one log record of the committed-offsets color puts in a partition."""
    try:
        event = json.loads(value or b"")
        op = event["op"]
        if op == "commit":
            group, ts = event["group"], int(event["ts"])
            if partition_for(group) != partition:
                return []
            return [Record(key=offset_key(group, topic, int(p)),
                           value=offset_value(int(offset), int(epoch), metadata, ts), timestamp_ms=ts)
                    for topic, p, offset, epoch, metadata in event["offsets"]]
        if op == "delete":
            group, ts = event["group"], int(event["ts"])
            if partition_for(group) != partition:
                return []
            return [Record(key=offset_key(group, topic, int(p)), value=None, timestamp_ms=ts)
                    for topic, p in event["partitions"]]
        if op == "snapshot":
            # The state a compaction kept: what a reader starting after the trim must see.
            return [Record(key=offset_key(group, topic, int(p)),
                           value=None if deleted else offset_value(int(offset), int(epoch), metadata,
                                                                   int(ts)),
                           timestamp_ms=int(ts))
                    for group, topic, p, _, offset, metadata, epoch, ts, deleted in event["entries"]
                    if partition_for(group) == partition]
        if op == "group":
            if partition_for(event["group"]) != partition:
                return []
            value_bytes = None if event.get("deleted") else group_value(event)
            return [Record(key=group_key(event["group"]), value=value_bytes,
                           timestamp_ms=int(event["ts"]))]
    except (ValueError, KeyError, TypeError):
        log.warning("cannot show a malformed committed-offsets record in %s", TOPIC)
    return []


def _batch(sn: int, records: list[Record], skip: int) -> bytes | None:
    """The batch of sn's records in one partition, or None when none is at or after skip."""
    if len(records) > PER_SN:
        log.warning("SN %d holds %d records for one partition of %s; showing the first %d",
                    sn, len(records), TOPIC, PER_SN)
        records = records[:PER_SN]
    if len(records) <= skip:
        return None
    return record_batch.build(records, base_offset=sn << OFFSET_SHIFT)


async def read(client: FlexLogClient, color: ColorInfo, partition: int, offset: int,
               max_bytes: int, wait_ms: int) -> RangeResult:
    """Fetch for one partition: the batches from offset on, as read_range answers a topic.

    Log records holding nothing for this partition are stepped over here, so a
    consumer long-polls at the tail instead of spinning over other groups' commits.
    """
    sn, skip = divmod(offset, PER_SN)
    res = await client.read_range(color, sn, max_bytes, wait_ms=wait_ms)
    log_start, tail = res.log_start, res.tail
    while True:
        if not log_start <= sn <= tail:
            return RangeResult([], log_start << OFFSET_SHIFT, tail << OFFSET_SHIFT)
        entries: list[StoredEntry] = []
        for entry in res.entries:
            values = record_batch.decode(entry.payload, verify_crc=False)
            for i, rec in enumerate(values):
                at = entry.sn + i
                if at < sn:
                    continue
                batch = _batch(at, records_of(rec.value, partition), skip if at == sn else 0)
                if batch is not None:
                    entries.append(StoredEntry(at << OFFSET_SHIFT, PER_SN, batch))
        if entries or not res.entries:
            return RangeResult(entries, log_start << OFFSET_SHIFT, res.tail << OFFSET_SHIFT)
        # Nothing for this partition in what was read: go on, waiting only at the tail.
        sn, skip = res.entries[-1].end, 0
        res = await client.read_range(color, sn, max_bytes, wait_ms=wait_ms)
        tail = res.tail
