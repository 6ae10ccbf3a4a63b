"""The asyncio shell around the group coordinator: futures for waiting requests, a clock, upkeep.

``GroupCoordinator`` decides everything; this module turns its replies into
resolved futures, calls ``tick`` when its next deadline passes, and runs the
periodic upkeep of committed offsets: expiry of empty groups' offsets and
compaction of ``__consumer_offsets``.
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
from flexlog.gateway.group_coordinator import (
    GroupCoordinator,
    GroupState,
    JoinReply,
    JoinRequest,
    Reply,
    SyncReply,
)

log = logging.getLogger("flexlog.gateway.groups")

UPKEEP_INTERVAL_S = 30.0
# A tombstone outlives any snapshot that could still be racing it by far.
TOMBSTONE_KEEP_MS = 24 * 3600 * 1000

T = TypeVar("T", JoinReply, SyncReply)


def coordinator_index(group_id: str, gateways: int) -> int:
    """Which gateway (by position in the config) coordinates a group: stable across processes."""
    return zlib.crc32(group_id.encode()) % gateways


class Groups:
    def __init__(self, client: FlexLogClient, config: ClusterConfig, me: GatewayConfig) -> None:
        self.config = config
        self.me = me
        self.coordinator = GroupCoordinator(
            initial_rebalance_delay_ms=config.group_initial_rebalance_delay_ms,
            min_session_timeout_ms=config.group_min_session_timeout_ms,
            max_session_timeout_ms=config.group_max_session_timeout_ms)
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
                deadline = self.coordinator.next_deadline()
                self._wakeup.clear()
                timeout = None if deadline is None else max(0, deadline - self.now_ms()) / 1000
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout)
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
            if not self.coordinates(group) or self.coordinator.state(group) not in (
                    GroupState.EMPTY, GroupState.DEAD):
                continue
            old = [k for k in self.offsets.state.group_keys(group)
                   if (entry := self.offsets.state.get(k)) and entry.timestamp_ms < cutoff]
            await self.offsets.delete(group, old, now_ms)
