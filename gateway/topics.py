"""Kafka topics as FlexLog colors, and the topic metadata every gateway shares.

Each partition P of topic T is the color ``kafka/T/P``: offset = SN. Topic
metadata (partition count, configs, topic id) is a log of JSON events in the
color ``__topics``, owned by the root so that one sequencer orders them. Every
gateway folds the same events in SN order, so all gateways and every restart
agree; a race between two gateways is settled by SN order exactly as the color
registry settles it (the first create of a name wins, the other one is ignored).
Events carry the topic id so that an event about a deleted incarnation of a
name never applies to a newer one.

Ordering scopes (`flexlog.ordering`, docs/ordering.md): with `topic`, every
partition of the topic is a member of one color family (`kafka/topic/T`), so
their offsets come from one counter and together form one total order; with
`group:G`, every partition of every topic of the group joins the family
`kafka/group/G`. The family is spread over all shards and ordered at their
lowest common ancestor. The scope is fixed when the topic is created.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flexlog.core.client import FlexLogClient
from flexlog.core.config import ClusterConfig
from flexlog.core.errors import ColorExists, UnknownColor
from flexlog.core.event_log import EventLog, json_record
from flexlog.core.registry import ColorInfo, FamilyInfo

log = logging.getLogger("flexlog.gateway.topics")

TOPICS_COLOR = "__topics"
COLOR_PREFIX = "kafka/"
MAX_TOPIC_NAME = 249
MAX_PARTITIONS = 10_000
_LEGAL_NAME = re.compile(r"[a-zA-Z0-9._-]+")

RETENTION_MS = "retention.ms"
RETENTION_BYTES = "retention.bytes"
MAX_MESSAGE_BYTES = "max.message.bytes"
CLEANUP_POLICY = "cleanup.policy"
ORDERING = "flexlog.ordering"
PARTITION_ORDER = "partition"
TOPIC_ORDER = "topic"
GROUP_PREFIX = "group:"


class TopicError(Exception):
    """A topic operation failed for a reason the client must hear; kind names the Kafka error."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def partition_color(topic: str, partition: int) -> str:
    return f"{COLOR_PREFIX}{topic}/{partition}"


def invalid_topic_name(name: str | None) -> str | None:
    """Why name is not a legal Kafka topic name, or None if it is."""
    if not name:
        return "topic name is empty"
    if name in (".", ".."):
        return f"topic name {name!r} is not allowed"
    if len(name) > MAX_TOPIC_NAME:
        return f"topic name is longer than {MAX_TOPIC_NAME} characters"
    if not _LEGAL_NAME.fullmatch(name):
        return f"topic name {name!r} may only contain ASCII letters, digits, '.', '_' and '-'"
    return None


# ---- topic configs ---------------------------------------------------------------


def _int_at_least(low: int) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        try:
            number = int(value)
        except ValueError:
            return f"{value!r} is not an integer"
        return None if number >= low else f"{value} is below the minimum {low}"

    return check


def _cleanup_policy(value: str) -> str | None:
    # Compaction would need a key index per partition; the log only trims prefixes.
    return None if value == "delete" else "only cleanup.policy=delete is supported"


def _ordering(value: str) -> str | None:
    if value in (PARTITION_ORDER, TOPIC_ORDER):
        return None
    if value.startswith(GROUP_PREFIX):
        group = value[len(GROUP_PREFIX):]
        problem = invalid_topic_name(group)
        return None if problem is None else f"group {problem.replace('topic ', '', 1)}"
    return (f"unknown ordering {value!r}: use {PARTITION_ORDER!r}, {TOPIC_ORDER!r} or "
            f"'{GROUP_PREFIX}<name>'")


CONFIG_CHECKS: dict[str, Callable[[str], str | None]] = {
    RETENTION_MS: _int_at_least(-1),
    RETENTION_BYTES: _int_at_least(-1),
    MAX_MESSAGE_BYTES: _int_at_least(0),
    CLEANUP_POLICY: _cleanup_policy,
    ORDERING: _ordering,
}

# Shown by DescribeConfigs so tools find the usual keys; not settable here.
READ_ONLY_TOPIC_CONFIGS = {
    "compression.type": "producer",
    "message.timestamp.type": "CreateTime",
    "segment.bytes": "1073741824",
}


def config_defaults(config: ClusterConfig) -> dict[str, str]:
    return {
        RETENTION_MS: "604800000",
        RETENTION_BYTES: "-1",
        # The log's own entry limit, not Kafka's 1 MiB: one batch is one entry.
        MAX_MESSAGE_BYTES: str(config.max_entry_bytes),
        CLEANUP_POLICY: "delete",
        ORDERING: PARTITION_ORDER,
    }


def ordering_family(topic: str, ordering: str) -> str | None:
    """The family a topic's partitions join under an ordering scope, None for `partition`."""
    if ordering == TOPIC_ORDER:
        return f"{COLOR_PREFIX}topic/{topic}"
    if ordering.startswith(GROUP_PREFIX):
        return f"{COLOR_PREFIX}group/{ordering[len(GROUP_PREFIX):]}"
    return None


def check_config(name: str, value: str | None, config: ClusterConfig) -> str | None:
    """Why name=value cannot be a topic config, or None if it can."""
    check = CONFIG_CHECKS.get(name)
    if check is None:
        return f"unsupported topic config {name!r}"
    if value is None:
        return f"config {name!r} needs a value"
    problem = check(value)
    if problem is None and name == MAX_MESSAGE_BYTES and int(value) > config.max_entry_bytes:
        problem = f"max.message.bytes cannot exceed the log's max_entry_bytes {config.max_entry_bytes}"
    return f"{name}: {problem}" if problem else None


# ---- the folded state ----------------------------------------------------------


@dataclass
class Topic:
    name: str
    topic_id: bytes
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)  # only what was set explicitly

    def config(self, key: str, defaults: dict[str, str]) -> str:
        return self.configs.get(key, defaults[key])

    def int_config(self, key: str, defaults: dict[str, str]) -> int:
        return int(self.config(key, defaults))


class TopicState:
    """The fold of the ``__topics`` events; pure, so tests drive it without a cluster."""

    def __init__(self) -> None:
        self.by_name: dict[str, Topic] = {}
        self.applied = 0  # next SN of __topics to apply

    def apply(self, sn: int, value: bytes | None) -> None:
        self.applied = max(self.applied, sn + 1)
        try:
            event = json.loads(value or b"")
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        try:
            self._apply(event)
        except (KeyError, TypeError, ValueError):
            log.warning("ignoring malformed topic event at SN %d: %r", sn, event)

    def _apply(self, event: dict[str, Any]) -> None:
        op = event["op"]
        name = str(event["name"])
        topic_id = bytes.fromhex(event["id"])
        current = self.by_name.get(name)
        if op == "create":
            if current is None:
                self.by_name[name] = Topic(name, topic_id, int(event["partitions"]),
                                           {str(k): str(v) for k, v in event["configs"].items()})
            return
        if current is None or current.topic_id != topic_id:
            return
        if op == "delete":
            del self.by_name[name]
        elif op == "partitions":
            current.partitions = max(current.partitions, int(event["partitions"]))
        elif op == "configs":
            for key, value in event["set"].items():
                current.configs[str(key)] = str(value)
            for key in event["delete"]:
                current.configs.pop(str(key), None)


def ordering_clash(state: TopicState, defaults: dict[str, str], name: str,
                   configs: dict[str, str]) -> str | None:
    """Why topic `name` with these configs clashes with an ordering group: a group shares its
    name with no topic outside it, so `group:orders` never means two different things."""
    ordering = configs.get(ORDERING, PARTITION_ORDER)
    if ordering.startswith(GROUP_PREFIX):
        group = ordering[len(GROUP_PREFIX):]
        other = state.by_name.get(group)
        if other is not None and other.name != name and other.config(ORDERING, defaults) != ordering:
            return (f"{ORDERING}: group name {group!r} is the name of topic {group!r}, which is "
                    "not in that group")
    own_group = f"{GROUP_PREFIX}{name}"
    if ordering != own_group and any(t.config(ORDERING, defaults) == own_group
                                     for t in state.by_name.values()):
        return (f"{ORDERING}: {name!r} names an ordering group; a topic of that name must be in "
                f"it ({ORDERING}={own_group})")
    return None


class TopicStore:
    """Topic metadata as this gateway knows it, kept current from ``__topics``."""

    def __init__(self, client: FlexLogClient, config: ClusterConfig) -> None:
        self.client = client
        self.config = config
        self.defaults = config_defaults(config)
        self.state = TopicState()
        # Partition colors of topics created or deleted elsewhere must resolve afresh.
        self.log = EventLog(client, self.state, TOPICS_COLOR, on_change=client.sync_registry)
        self._create_locks: dict[str, asyncio.Lock] = {}

    # ---- reading the event log ----------------------------------------------

    async def open(self) -> None:
        """Find or create the ``__topics`` color and fold what it holds."""
        await self.log.open()

    async def sync(self) -> None:
        """Apply every event up to the current tail."""
        await self.log.sync()

    async def watch(self) -> None:
        """Follow events appended by other gateways until cancelled."""
        await self.log.watch()

    async def _append(self, event: dict[str, Any]) -> None:
        await self.log.append(json_record(event))

    # ---- queries ---------------------------------------------------------------

    def get(self, name: str) -> Topic | None:
        return self.state.by_name.get(name)

    def by_id(self, topic_id: bytes) -> Topic | None:
        return next((t for t in self.state.by_name.values() if t.topic_id == topic_id), None)

    def all(self) -> list[Topic]:
        return sorted(self.state.by_name.values(), key=lambda t: t.name)

    async def lookup(self, name: str) -> Topic | None:
        """The topic, syncing once on a miss so a topic made by another gateway is found."""
        topic = self.get(name)
        if topic is None:
            await self.sync()
            topic = self.get(name)
        return topic

    async def lookup_id(self, topic_id: bytes) -> Topic | None:
        """The topic with this id, syncing once on a miss (requests of Fetch v13+ name topics by id)."""
        topic = self.by_id(topic_id)
        if topic is None:
            await self.sync()
            topic = self.by_id(topic_id)
        return topic

    async def color(self, topic: str, partition: int) -> ColorInfo:
        return await self.client.color(partition_color(topic, partition))

    # ---- changes ---------------------------------------------------------------

    def ordering_clash(self, name: str, configs: dict[str, str]) -> str | None:
        return ordering_clash(self.state, self.defaults, name, configs)

    async def _family(self, name: str, ordering: str) -> FamilyInfo | None:
        """The family of a topic's ordering scope, created on first use over every shard."""
        family = ordering_family(name, ordering)
        if family is None:
            return None
        try:
            return await self.client.family(family)
        except UnknownColor:
            pass
        try:
            return await self.client.create_family(
                family, shards=[s.id for s in self.config.shards])
        except ColorExists:  # another gateway created it first
            return await self.client.family(family)

    async def _create_colors(self, name: str, first: int, count: int,
                             family: FamilyInfo | None) -> None:
        for p in range(first, count):
            # ColorExists: another gateway creating the same topic made it first.
            with contextlib.suppress(ColorExists):
                await self.client.create_color(partition_color(name, p),
                                               family=family.id if family else None)

    async def create(self, name: str, partitions: int, configs: dict[str, str]) -> Topic:
        """Create a topic; TopicError('exists') if the name is taken (also by a racing create)."""
        lock = self._create_locks.setdefault(name, asyncio.Lock())
        async with lock:
            if await self.lookup(name) is not None:
                raise TopicError("exists", f"topic {name!r} already exists")
            # Colors first: a topic is never visible before every partition can take writes.
            family = await self._family(name, configs.get(ORDERING, PARTITION_ORDER))
            await self._create_colors(name, 0, partitions, family)
            topic_id = uuid.uuid4().bytes
            await self._append({"op": "create", "name": name, "id": topic_id.hex(),
                                "partitions": partitions, "configs": configs})
            topic = self.get(name)
            if topic is None or topic.topic_id != topic_id:
                raise TopicError("exists", f"topic {name!r} was created concurrently")
            return topic

    async def ensure(self, name: str, partitions: int) -> Topic:
        """The topic, created with defaults if missing (auto-creation)."""
        try:
            return await self.create(name, partitions, {})
        except TopicError:
            topic = await self.lookup(name)
            if topic is None:
                raise
            return topic

    async def delete(self, topic: Topic) -> None:
        await self._append({"op": "delete", "name": topic.name, "id": topic.topic_id.hex()})
        for p in range(topic.partitions):
            with contextlib.suppress(UnknownColor):  # deleted by a racing delete
                await self.client.delete_color(partition_color(topic.name, p))
        if topic.config(ORDERING, self.defaults) == TOPIC_ORDER:
            # A group's family outlives its topics: the others keep their shared order.
            family = ordering_family(topic.name, TOPIC_ORDER)
            assert family is not None
            # UnknownColor: a racing delete went first; ValueError: a racing create of the
            # name put a member in it again, and the family stays for that incarnation.
            with contextlib.suppress(UnknownColor, ValueError):
                await self.client.delete_family(family)

    async def add_partitions(self, topic: Topic, count: int) -> None:
        family = await self._family(topic.name, topic.config(ORDERING, self.defaults))
        await self._create_colors(topic.name, topic.partitions, count, family)
        await self._append({"op": "partitions", "name": topic.name, "id": topic.topic_id.hex(),
                            "partitions": count})

    async def alter_configs(self, topic: Topic, set_: dict[str, str], delete: list[str]) -> None:
        await self._append({"op": "configs", "name": topic.name, "id": topic.topic_id.hex(),
                            "set": set_, "delete": delete})
