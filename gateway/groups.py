"""The asyncio shell around the group coordinator: futures for waiting requests, a clock, upkeep.

``GroupCoordinator`` (classic groups) and ``ConsumerGroupCoordinator`` (KIP-848
groups) decide everything; this module turns the classic one's replies into
resolved futures, ticks both when their next deadline passes, keeps a group id
of one type only, and runs the periodic upkeep of committed offsets: expiry of
empty groups' offsets and compaction of ``__consumer_offsets``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

from flexlog.core.client import FlexLogClient
from flexlog.core.config import ClusterConfig, GatewayConfig
from flexlog.core.errors import FlexLogError
from flexlog.gateway.committed_offsets import SNAPSHOT_EVERY_RECORDS, OffsetStore
from flexlog.gateway.consumer_group import (
    ConsumerGroupCoordinator,
    ConsumerGroupState,
    HeartbeatReply,
    HeartbeatRequest,
)
from flexlog.gateway.group_coordinator import (
    GroupCoordinator,
    GroupState,
    JoinReply,
    JoinRequest,
    Reply,
    SyncReply,
)
from flexlog.gateway.protocol import ErrorCode

log = logging.getLogger("flexlog.gateway.groups")

UPKEEP_INTERVAL_S = 30.0
# A tombstone outlives any snapshot that could still be racing it by far.
TOMBSTONE_KEEP_MS = 24 * 3600 * 1000

T = TypeVar("T", JoinReply, SyncReply)


def coordinator_index(group_id: str, gateways: int) -> int:
    """Which gateway (by position in the config) coordinates a group: stable across processes."""
    return zlib.crc32(group_id.encode()) % gateways


class Groups:
    def __init__(self, client: FlexLogClient, config: ClusterConfig, me: GatewayConfig,
                 topic_partitions: Callable[[], dict[str, int]]) -> None:
        """``topic_partitions`` maps each existing topic to its partition count, now."""
        self.config = config
        self.me = me
        self.coordinator = GroupCoordinator(
            initial_rebalance_delay_ms=config.group_initial_rebalance_delay_ms,
            min_session_timeout_ms=config.group_min_session_timeout_ms,
            max_session_timeout_ms=config.group_max_session_timeout_ms)
        self.consumer = ConsumerGroupCoordinator(
            session_timeout_ms=config.group_consumer_session_timeout_ms,
            heartbeat_interval_ms=config.group_consumer_heartbeat_interval_ms)
        self.topic_partitions = topic_partitions
        self.offsets = OffsetStore(client, config)
        self.retention_ms = config.offsets_retention_minutes * 60_000
        self._waiting: dict[Hashable, asyncio.Future[JoinReply | SyncReply]] = {}
        self._wakeup = asyncio.Event()
        # Group-metadata records for __consumer_offsets, appended in order by run().
        self._group_records: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._published: dict[str, tuple[int, GroupState]] = {}

    @staticmethod
    def now_ms() -> int:
        """The coordinator's clock: monotonic, so session timeouts survive clock steps."""
        return int(time.monotonic() * 1000)

    @staticmethod
    def wall_ms() -> int:
        """Commit timestamps, which offset retention compares across restarts."""
        return int(time.time() * 1000)

    def coordinator_id(self, group_id: str) -> int:
        gateways: Sequence[GatewayConfig] = self.config.gateways or (self.me,)
        return gateways[coordinator_index(group_id, len(gateways))].node_id

    def coordinates(self, group_id: str) -> bool:
        return self.coordinator_id(group_id) == self.me.node_id

    # ---- requests that may wait ---------------------------------------------------

    def _deliver(self, replies: list[Reply]) -> None:
        for reply in replies:
            fut = self._waiting.pop(reply.waiter, None)
            # Done already: the client went away while its request waited.
            if fut is not None and not fut.done():
                fut.set_result(reply.body)
        # Deadlines may have moved: let the ticker recompute its sleep.
        self._wakeup.set()
        self._publish_groups()

    def _publish_groups(self) -> None:
        """Queue a group-metadata record for each group that reached a new generation.

        Kafka writes one when a generation's assignment is stored (Stable) and when
        the group empties; the same moments are taken here, once per generation.
        Walking every group costs what the coordinator's own tick already does.
        """
        for group in self.coordinator.groups.values():
            mark = (group.generation, group.state)
            if group.state not in (GroupState.STABLE, GroupState.EMPTY) or group.generation == 0 \
                    or self._published.get(group.group_id) == mark:
                continue
            self._published[group.group_id] = mark
            members = [[m.member_id, m.instance_id, m.client_id, m.client_host,
                        m.rebalance_timeout_ms, m.session_timeout_ms,
                        m.metadata(group.protocol).hex() if group.protocol else "",
                        m.assignment.hex()] for m in group.members.values()]
            self._group_records.put_nowait({
                "group": group.group_id, "ts": self.wall_ms(), "protocol_type": group.protocol_type,
                "generation": group.generation, "protocol": group.protocol,
                "leader": group.leader, "members": members})

    def group_deleted(self, group_id: str) -> None:
        """Queue the tombstone of a deleted group's metadata."""
        self._published.pop(group_id, None)
        self._group_records.put_nowait({"group": group_id, "ts": self.wall_ms(), "deleted": True})

    async def _wait(self, kind: type[T], start: Callable[[Hashable], list[Reply]]) -> T:
        """Start a request with a fresh waiter and wait for the reply addressed to it."""
        waiter = object()
        fut: asyncio.Future[JoinReply | SyncReply] = asyncio.get_running_loop().create_future()
        self._waiting[waiter] = fut
        try:
            self._deliver(start(waiter))
            body = await fut
        finally:
            self._waiting.pop(waiter, None)
        assert isinstance(body, kind)
        return body

    async def join(self, req: JoinRequest) -> JoinReply:
        return await self._wait(JoinReply, lambda w: self.coordinator.join(self.now_ms(), req, w))

    async def sync(self, group_id: str, generation: int, member_id: str, instance_id: str | None,
                   protocol_type: str | None, protocol_name: str | None,
                   assignments: dict[str, bytes]) -> SyncReply:
        return await self._wait(SyncReply, lambda w: self.coordinator.sync(
            self.now_ms(), group_id, generation, member_id, instance_id, protocol_type,
            protocol_name, assignments, w))

    # ---- one type per group id, as in Kafka 4 -----------------------------------------

    def classic_join_error(self, group_id: str) -> ErrorCode | None:
        """A classic JoinGroup may turn an empty consumer group into a classic one, not a live one.

        Kafka 4 can also move live members between protocols (online migration); that is
        not done here, so the answer is the one Kafka gives a member whose protocol the
        group cannot take.
        """
        if self.consumer.state(group_id) == ConsumerGroupState.DEAD:
            return None
        if self.consumer.delete(group_id) == ErrorCode.NON_EMPTY_GROUP:
            return ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        return None

    def consumer_heartbeat(self, req: HeartbeatRequest) -> HeartbeatReply:
        """ConsumerGroupHeartbeat: an empty classic group is converted, a live one is not a consumer group."""
        classic = self.coordinator.state(req.group_id)
        if classic not in (GroupState.EMPTY, GroupState.DEAD):
            return HeartbeatReply(ErrorCode.GROUP_ID_NOT_FOUND,
                                  f"Group {req.group_id} is not a consumer group")
        if classic == GroupState.EMPTY:
            self.coordinator.delete(req.group_id)
        reply = self.consumer.heartbeat(self.now_ms(), req, self.topic_partitions())
        self._wakeup.set()  # session deadlines moved
        return reply

    def commit_check(self, group_id: str, generation_or_epoch: int, member_id: str,
                     instance_id: str | None, version: int) -> ErrorCode:
        if self.consumer.group(group_id) is not None:
            return self.consumer.commit_check(group_id, member_id, generation_or_epoch, version)
        return self.coordinator.commit_check(self.now_ms(), group_id, generation_or_epoch, member_id,
                                             instance_id)

    def delete(self, group_id: str) -> ErrorCode:
        """DeleteGroups of a group of either type (only an empty one may go)."""
        if self.consumer.group(group_id) is not None:
            return self.consumer.delete(group_id)
        return self.coordinator.delete(group_id)

    def known(self, group_id: str) -> bool:
        return self.coordinator.state(group_id) != GroupState.DEAD \
            or self.consumer.state(group_id) != ConsumerGroupState.DEAD

    def leave(self, group_id: str, leavers: list[tuple[str, str | None]]) -> list[int]:
        codes, replies = self.coordinator.leave(self.now_ms(), group_id, leavers)
        self._deliver(replies)
        return [int(c) for c in codes]

    # ---- background ---------------------------------------------------------

    async def run(self) -> None:
        """Tick the coordinator at its deadlines and do the offsets upkeep, until cancelled."""
        upkeep = asyncio.get_running_loop().create_task(self._upkeep())
        writer = asyncio.get_running_loop().create_task(self._write_group_records())
        try:
            while True:
                deadlines = [d for d in (self.coordinator.next_deadline(), self.consumer.next_deadline())
                             if d is not None]
                self._wakeup.clear()
                timeout = max(0, min(deadlines) - self.now_ms()) / 1000 if deadlines else None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout)
                self.consumer.tick(self.now_ms(), self.topic_partitions())
                self._deliver(self.coordinator.tick(self.now_ms()))
        finally:
            for task in (upkeep, writer):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _write_group_records(self) -> None:
        while True:
            record = await self._group_records.get()
            while True:
                try:
                    await self.offsets.open()
                    await self.offsets.group(record)
                    break
                except FlexLogError as exc:
                    log.warning("group metadata record not written, retrying: %s", exc)
                    await asyncio.sleep(1.0)

    async def _upkeep(self) -> None:
        while True:
            await asyncio.sleep(UPKEEP_INTERVAL_S)
            if not self.offsets.opened:
                continue  # the cluster was not reachable yet
            try:
                await self.expire_offsets(self.wall_ms())
                # One compactor is enough: the controller (lowest node id).
                first = min((g.node_id for g in self.config.gateways), default=self.me.node_id)
                if first == self.me.node_id and self.offsets.state.since_snapshot >= SNAPSHOT_EVERY_RECORDS:
                    await self.offsets.compact(self.wall_ms() - TOMBSTONE_KEEP_MS)
            except FlexLogError as exc:
                log.warning("committed offsets upkeep failed, retrying later: %s", exc)

    async def expire_offsets(self, now_ms: int) -> None:
        """Drop offsets older than the retention of empty groups this gateway coordinates."""
        await self.offsets.sync()
        cutoff = now_ms - self.retention_ms
        for group in self.offsets.state.groups():
            empty = self.coordinator.state(group) in (GroupState.EMPTY, GroupState.DEAD) \
                and self.consumer.state(group) in (ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD)
            if not self.coordinates(group) or not empty:
                continue
            old = [k for k in self.offsets.state.group_keys(group)
                   if (entry := self.offsets.state.get(k)) and entry.timestamp_ms < cutoff]
            await self.offsets.delete(group, old, now_ms)
