"""The native asyncio client: append, read, subscribe, trim, tail, and the color registry.

Appends of one event-loop iteration travel together: one AppendRequest per
shard, serialized once and written to every member's stream. Reads go to one
readable replica (read-one); for a color stored on several shards they ask
each shard and merge by SN.

Through failures: an append completes once every readable member of the
current view (`core/view.py`) acked it; a view change re-evaluates pending
appends. An append that a replica refused as unavailable, or that is not
complete after RESEND_AFTER_S, is sent again with the same token to the
members that have not acked: the replicas and the leaf recognise the token,
so a retry never stores an entry twice. Cancelling an append's future only stops
the wait: the append stays in flight, and counts against max_in_flight, until it is
acked, refused or expired. Closing the client fails what is still pending, and what waits
for room, with Unavailable; an append failed so may have been stored, as one that timed out.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import grpc

from flexlog.core import append_wire, family_fill, record_batch, registry, rpc
from flexlog.core.append_wire import MAX_OPS, AppendOp, encode_op
from flexlog.core.batching import Batcher, ByteQueue
from flexlog.core.config import ClusterConfig
from flexlog.core.errors import (
    ColorExists,
    Filled,
    FlexLogError,
    InvalidEntry,
    NotFound,
    StaleEpoch,
    Timeout,
    TooLarge,
    Unavailable,
    UnknownColor,
    from_code,
)
from flexlog.core.event_log import EventLog
from flexlog.core.proto import flexlog_pb2 as pb
from flexlog.core.record_batch import Record
from flexlog.core.registry import ColorInfo, FamilyInfo, Registry
from flexlog.core.storage import StoredEntry
from flexlog.core.view import View, ViewWatcher

log = logging.getLogger("flexlog.client")

MESSAGE_BYTES = 4 << 20  # split append batches above this so no single message balloons
# A shard's second batch in flight leaves before the first completes only at this size
# (docs/performance.md, "Shard window").
SECOND_BATCH_BYTES = 512 << 10
READ_WAIT_MS = 2_000  # how long a read waits for an ordered-but-uncommitted SN
SUBSCRIBE_WAIT_MS = 5_000
SUBSCRIBE_BYTES = 1 << 20
MEMBER_SCAN_STEPS = 64  # family reads a member's range may take (past its wait) per call
GAP_POLL_MIN_S = 0.0005  # a family read waiting at a gap polls after this, then twice as long
GAP_POLL_MAX_S = 0.05
RESEND_AFTER_S = 1.0  # an append not complete by then is sent again, same token
RETRY_TICK_S = 0.25
RETRIABLE = (Unavailable, Timeout, StaleEpoch)  # a replica's refusal that a resend can cure

ColorRef = str | int | ColorInfo


def _client_closed() -> Unavailable:
    return Unavailable("the client is closed")


class RangeResult(NamedTuple):
    entries: list[StoredEntry]
    log_start: int
    tail: int


class FamilyLink(NamedTuple):
    """One entry of a family's order and the member color it belongs to."""

    color: int
    entry: StoredEntry


@dataclass(slots=True)
class _PendingAppend:
    future: asyncio.Future[int]
    wire: bytes  # the op as one element of AppendRequest.ops, encoded once (`encode_op`)
    sent_at: float
    batch: list[int]  # shared by the appends of one window batch: how many are unresolved
    acked: set[int]  # replica indices that acked
    sn: int = -1
    resolved: bool = False  # acked, failed or expired, perhaps before its window batch left


def _wire_size(p: _PendingAppend) -> int:
    return len(p.wire)


class _ReplicaLink:
    """The two long-lived streams from this client to one replica."""

    def __init__(self, index: int, address: str, on_acks: _ShardWriter) -> None:
        self.index = index
        self.address = address
        self._writer = on_acks
        self._channel: grpc.aio.Channel | None = None
        self._append_q: ByteQueue | None = None
        self._query_q: ByteQueue | None = None
        self._queries: dict[int, asyncio.Future[pb.QueryResult]] = {}
        self._ids = itertools.count()
        self._batcher: Batcher[pb.QueryOp] = Batcher(self._flush_queries)
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    def _ensure(self) -> None:
        if self._closed:  # a read failing over during the client's close must not reopen it
            raise _client_closed()
        if self._channel is None:
            self._channel = rpc.channel(self.address)
        if self._append_q is None or self._append_q.closed:
            reopened = self._append_q is not None
            self._append_q = ByteQueue()
            call = rpc.raw_stream(self._channel, "/flexlog.Replica/Append", pb.AppendReply)(
                self._append_q.drain()
            )
            self._tasks.append(asyncio.create_task(self._read_acks(call, self._append_q)))
            if reopened:
                # What the broken stream may have lost goes first, in submission order: the
                # replica orders entries in the order they reach it.
                self._writer.resend_unacked(self)
        if self._query_q is None or self._query_q.closed:
            self._query_q = ByteQueue()
            call = rpc.raw_stream(self._channel, "/flexlog.Replica/Query", pb.QueryReply)(
                self._query_q.drain()
            )
            self._tasks.append(asyncio.create_task(self._read_results(call, self._query_q)))

    def send_appends(self, data: bytes) -> None:
        self._ensure()
        assert self._append_q is not None
        self._append_q.put(data)

    def send_ops(self, ops: list[bytes]) -> None:
        """Encoded ops, in as many messages as the limits take."""
        for data in append_wire.requests(ops, MESSAGE_BYTES):
            self.send_appends(data)

    async def _read_acks(self, call: grpc.aio.StreamStreamCall, queue: ByteQueue) -> None:
        try:
            async for reply in call:
                self._writer.on_acks(self.index, reply)
        except grpc.aio.AioRpcError as exc:
            log.debug("append stream to %s ended: %s", self.address, exc.code().name)
        finally:
            queue.close()
            self._writer.on_link_lost(self)

    def query(self, op: pb.QueryOp) -> asyncio.Future[pb.QueryResult]:
        self._ensure()
        op.id = next(self._ids)
        fut: asyncio.Future[pb.QueryResult] = asyncio.get_running_loop().create_future()
        self._queries[op.id] = fut
        self._batcher.put(op)
        return fut

    def _flush_queries(self, ops: list[pb.QueryOp]) -> None:
        if self._query_q is None or self._query_q.closed:
            self._fail_queries(Unavailable(f"replica {self.address} is unreachable"))
            return
        self._query_q.put(pb.QueryRequest(ops=ops).SerializeToString())

    async def _read_results(self, call: grpc.aio.StreamStreamCall, queue: ByteQueue) -> None:
        try:
            async for reply in call:
                for result in reply.results:
                    fut = self._queries.pop(result.id, None)
                    if fut is not None and not fut.done():
                        fut.set_result(result)
        except grpc.aio.AioRpcError as exc:
            log.debug("query stream to %s ended: %s", self.address, exc.code().name)
        finally:
            queue.close()
            self._fail_queries(Unavailable(f"replica {self.address} is unreachable"))

    def _fail_queries(self, error: FlexLogError) -> None:
        queries, self._queries = self._queries, {}
        for fut in queries.values():
            if not fut.done():
                fut.set_exception(error)

    async def close(self) -> None:
        self._closed = True
        for q in (self._append_q, self._query_q):
            if q is not None:
                q.close()
        for task in self._tasks:
            task.cancel()
        if self._channel is not None:
            await self._channel.close()


class _ShardWriter:
    """Pending appends of one shard and the links to its replicas."""

    def __init__(self, shard: int, addresses: list[str], timeout_s: float, view: View,
                 released: Callable[[], None]) -> None:
        """released: called once per append that leaves `pending` (acked, failed or expired)."""
        self.shard = shard
        self._released = released
        self.links = [_ReplicaLink(i, a, self) for i, a in enumerate(addresses)]
        self.members = view.shard(shard).members
        self.readable = view.shard(shard).readable
        self.pending: dict[int, _PendingAppend] = {}
        self._retry: asyncio.TimerHandle | None = None
        # At most two batches in flight per shard; what arrives meanwhile leaves together. Each
        # gRPC message costs every process on its way far more than its bytes do (docs/performance.md,
        # "Shard window"): four in flight sent smaller messages at 100 B records for no gain at 1 KiB.
        # The second leaves early only once it holds SECOND_BATCH_BYTES: megabyte batches overlap,
        # small ones wait for the first and leave as one message.
        self.window: Batcher[_PendingAppend] = Batcher(self._flush, limit=2, size=_wire_size,
                                                       behind_min=SECOND_BATCH_BYTES)
        self._timeout_s = timeout_s
        # (deadline, token) in submission order, which is deadline order: one timer for all.
        self._deadlines: deque[tuple[float, int]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def submit(self, op: AppendOp, future: asyncio.Future[int]) -> None:
        loop = asyncio.get_running_loop()
        p = _PendingAppend(future, encode_op(op), loop.time(), [], set())
        self.pending[op.token] = p
        self.window.put(p)
        self._deadlines.append((loop.time() + self._timeout_s, op.token))
        if self._timer is None:
            self._timer = loop.call_later(self._timeout_s, self._expire)
        if self._retry is None:
            self._retry = loop.call_later(RETRY_TICK_S, self._resend_due)

    def view_changed(self, view: View) -> None:
        self.members = view.shard(self.shard).members
        self.readable = view.shard(self.shard).readable
        for token, p in list(self.pending.items()):
            if p.sn >= 0 and set(self.readable) <= p.acked:
                self.resolve(token, p.sn)
        # A new member needs what is pending now; a duplicate at the others is recognised by token.
        self._resend(list(self.pending.values()))

    def resend_unacked(self, link: _ReplicaLink) -> None:
        if link.index in self.members:
            link.send_ops([p.wire for p in self.pending.values() if link.index not in p.acked])

    def _resend_due(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._resend([p for p in self.pending.values() if now - p.sent_at >= RESEND_AFTER_S])
        self._retry = loop.call_later(RETRY_TICK_S, self._resend_due) if self.pending else None

    def _resend(self, items: list[_PendingAppend]) -> None:
        """Send pending appends again, same tokens, in submission order, to members that did
        not ack them."""
        now = asyncio.get_running_loop().time()
        for member in self.members:
            self.links[member].send_ops([p.wire for p in items if member not in p.acked])
        for p in items:
            p.sent_at = now

    def _expire(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadlines = self._deadlines
        while deadlines and (deadlines[0][0] <= now or deadlines[0][1] not in self.pending):
            _, token = deadlines.popleft()
            if token in self.pending:
                self.resolve(token, Timeout(f"append to shard {self.shard} timed out after "
                                            f"{self._timeout_s:.1f}s"))
        self._timer = loop.call_at(deadlines[0][0], self._expire) if deadlines else None

    def _flush(self, items: list[_PendingAppend]) -> None:
        # An append may complete while it waits in the window (a resend reached every replica,
        # or it expired): it is not sent again, and the batch counts only the others, or it
        # would never complete and its slot in the window would be lost for good.
        items = [p for p in items if not p.resolved]
        if not items:
            self.window.done()
            return
        batch = [len(items)]
        for p in items:
            p.batch = batch
        for data in append_wire.requests([p.wire for p in items], MESSAGE_BYTES):
            for member in self.members:
                self.links[member].send_appends(data)

    def close(self) -> None:
        """Fail what is pending and stop the timers: nothing is sent or resent after this."""
        for handle in (self._retry, self._timer):
            if handle is not None:
                handle.cancel()
        self._retry = self._timer = None
        for token in list(self.pending):
            self.resolve(token, _client_closed())

    def resolve(self, token: int, result: int | FlexLogError) -> None:
        p = self.pending.pop(token, None)
        if p is None:
            return
        p.resolved = True
        self._released()
        if not p.future.done():
            if isinstance(result, FlexLogError):
                p.future.set_exception(result)
            else:
                p.future.set_result(result)
        if p.batch:
            p.batch[0] -= 1
            if p.batch[0] == 0:
                self.window.done()

    def on_acks(self, replica: int, reply: pb.AppendReply) -> None:
        pending = self.pending
        readable = self.readable
        for token, sn in zip(reply.tokens, reply.sns, strict=True):
            p = pending.get(token)
            if p is not None:
                p.acked.add(replica)
                p.sn = sn
                if len(p.acked) >= len(readable) and all(r in p.acked for r in readable):
                    self.resolve(token, sn)
        for e in reply.errors:
            error = from_code(e.error, e.message)
            p = pending.get(e.token)
            if p is None:
                continue
            if isinstance(error, RETRIABLE):
                # Sent again on the next tick (same token) until the deadline.
                p.sent_at = min(p.sent_at, asyncio.get_running_loop().time() - RESEND_AFTER_S)
            else:
                self.resolve(e.token, error)

    def on_link_lost(self, link: _ReplicaLink) -> None:
        """Nothing fails here: the append is resent (the stream reopens) or the view drops
        the replica; the deadline bounds both."""
        log.debug("append stream to replica %s of shard %d lost", link.address, self.shard)


class FlexLogClient:
    """Use as `async with FlexLogClient(config) as log:`."""

    def __init__(self, config: ClusterConfig, *, timeout_ms: int | None = None,
                 max_in_flight: int = 16_384) -> None:
        if not 0 < max_in_flight <= MAX_OPS:
            # A window batch holds at most every append in flight: one message, never split by count.
            raise ValueError(f"a client keeps 1 to {MAX_OPS} appends in flight, not {max_in_flight}")
        self.config = config
        self.timeout_s = (timeout_ms or config.request_timeout_ms) / 1000
        self.client_id = random.getrandbits(31) | 1
        self._seq = itertools.count(random.getrandbits(16))
        self._writers: dict[int, _ShardWriter] = {}
        self._read_pick = self.client_id
        self._max_in_flight = max_in_flight
        self._tails: dict[int, int] = {}  # color id -> highest tail seen
        # family member id -> [a, b): SNs holding only other members' entries
        self._skips: dict[int, tuple[int, int]] = {}
        self._family_gaps = family_fill.FamilyGaps()
        self._fills: dict[int, asyncio.Task[None]] = {}  # family id -> its fill under way
        self._in_flight = 0
        # Callers waiting for room, first come first served; a freed slot goes to the first of
        # them (counted in _handed until that caller runs), so one freed slot wakes one caller.
        self._room_waiters: deque[asyncio.Future[None]] = deque()
        self._handed = 0
        self._closed = False
        self.registry = Registry(config)
        self._watcher = ViewWatcher(config, self._view_changed)
        self._watch_task: asyncio.Task[None] | None = None
        self._registry_log = EventLog(self, self.registry, registry.system_color(config))
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def __aenter__(self) -> FlexLogClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _view_changed(self, view: View) -> None:
        for writer in self._writers.values():
            writer.view_changed(view)

    async def close(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            self._watch_task = None
        for task in self._fills.values():
            task.cancel()
        self._fills.clear()
        self._closed = True
        waiters, self._room_waiters = self._room_waiters, deque()
        for fut in waiters:
            if not fut.done():
                fut.set_exception(_client_closed())
        for writer in self._writers.values():
            writer.close()
            for link in writer.links:
                await link.close()
        self._writers.clear()
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()

    def _writer(self, shard: int) -> _ShardWriter:
        writer = self._writers.get(shard)
        if writer is None:
            if self._closed:
                raise _client_closed()
            if self._watch_task is None:
                self._watch_task = asyncio.create_task(self._watcher.run())
            addresses = [r.address for r in self.config.shard(shard).replicas]
            writer = self._writers[shard] = _ShardWriter(shard, addresses, self.timeout_s,
                                                         self._watcher.view, self._landed)
        return writer

    # ---- colors ------------------------------------------------------------

    def _known(self, color: ColorRef) -> ColorInfo | None:
        if isinstance(color, ColorInfo):
            return color
        return self.registry.by_name.get(color) if isinstance(color, str) else self.registry.by_id.get(color)

    async def color(self, color: ColorRef) -> ColorInfo:
        if isinstance(color, ColorInfo):
            return color
        try:
            return self.registry.get(color)
        except FlexLogError:
            await self.sync_registry()
            return self.registry.get(color)

    def colors(self) -> list[ColorInfo]:
        return sorted(self.registry.by_id.values(), key=lambda c: c.id)

    async def sync_registry(self) -> None:
        """Apply every registry record up to the system color's current tail."""
        await self._registry_log.sync()

    async def catch_up(self, color: ColorRef, from_sn: int,
                       apply: Callable[[int, bytes | None], None]) -> int:
        """Call apply(sn, value) for every record from from_sn up to the color's current tail,
        in SN order; returns the SN after the last one applied.

        `core/event_log.py` builds the folds of system colors (the registry, topics,
        committed offsets...) on it.
        """
        next_sn = from_sn
        while True:
            res = await self.read_range(color, next_sn, SUBSCRIBE_BYTES)
            if not res.entries:
                return next_sn
            for entry in res.entries:
                for rec in record_batch.decode(entry.payload):
                    if rec.offset >= next_sn:
                        apply(rec.offset, rec.value)
                # A fill marker holds no records: the fold steps over its SNs.
                next_sn = max(next_sn, entry.end)

    async def create_color(self, name: str, owner: int | None = None,
                           shards: Sequence[int] | None = None,
                           family: str | int | None = None) -> ColorInfo:
        """A color; with `family`, a member of that family (on one of the family's shards,
        the least-loaded unless `shards` says, and ordered by the family's owner)."""
        await self.sync_registry()
        if name in self.registry.by_name:
            raise ColorExists(f"color {name!r} already exists")
        wanted = tuple(shards) if shards is not None else None
        if family is None:
            owner, placed = registry.check_placement(self.config, name, owner, wanted,
                                                     self.registry.load())
            record = registry.create_record(name, owner, placed)
        else:
            fam = self.registry.family(family)
            if owner is not None and owner != fam.owner:
                raise ValueError(f"family {fam.name!r} is ordered by node {fam.owner}, not {owner}")
            placed = registry.check_member_placement(name, fam, wanted, self.registry.load(),
                                                     self.registry.members(fam.id))
            record = registry.create_record(name, fam.owner, placed, fam.id)
        sn = await self._registry_log.append(record)
        return self.registry.created(name, sn)

    async def create_family(self, name: str, owner: int | None = None,
                            shards: Sequence[int] | None = None) -> FamilyInfo:
        """A family: colors created into it share one SN counter at its owner, so their SNs
        form one total order. Placement as for a color: by default the least-loaded shard
        and its leaf; `shards=` alone puts the counter at their lowest common ancestor."""
        await self.sync_registry()
        if name in self.registry.families:
            raise ColorExists(f"family {name!r} already exists")
        owner, placed = registry.check_placement(
            self.config, name, owner, tuple(shards) if shards is not None else None,
            self.registry.load(),
        )
        sn = await self._registry_log.append(registry.family_record(name, owner, placed))
        return self.registry.family_created(name, sn)

    async def family(self, family: str | int) -> FamilyInfo:
        try:
            return self.registry.family(family)
        except UnknownColor:
            await self.sync_registry()
            return self.registry.family(family)

    async def delete_family(self, family: str | int) -> None:
        """Delete a family without live members, and the entries its former members left."""
        fam = await self.family(family)
        if self.registry.members(fam.id):
            raise ValueError(f"family {fam.name!r} still has members")
        former = list(self.registry.members_of[fam.id])
        end = await self._next_sn(former[0]) if former else 0
        await self._registry_log.append(registry.delete_family_record(fam.name, fam.id))
        if end > 0:
            await self._trim_colors(end - 1, former)

    async def ensure_system_color(self, name: str) -> ColorInfo:
        """The color `name`, created if missing like the registry's own system color: owned by
        the root (one sequencer orders it) and stored on the first shard of the root's region.

        Every gateway folds such colors (topics, offsets, users...) in SN order; when two
        processes create one at once the registry keeps the first and both get it.
        """
        try:
            return await self.color(name)
        except UnknownColor:
            placement = registry.system_color(self.config)
            try:
                return await self.create_color(name, owner=placement.owner, shards=placement.shards)
            except ColorExists:
                return await self.color(name)

    async def delete_color(self, color: ColorRef) -> None:
        info = await self.color(color)
        if info.id == registry.SYSTEM_COLOR:
            raise ValueError("the system color cannot be deleted")
        end = await self.tail(info)
        await self._registry_log.append(registry.delete_record(info.name, info.id))
        # A family member's entries stay until the family is trimmed or deleted: readers of
        # the family's order need them to tell its SNs from ones not stored yet.
        if end > 0 and not info.family:
            await self.trim(end - 1, info)

    # ---- append ------------------------------------------------------------

    def _next_token(self) -> int:
        return (self.client_id << 32) | (next(self._seq) & 0xFFFFFFFF)

    async def append(self, records: Sequence[Record | bytes], color: ColorRef) -> int:
        """Append records as one entry; returns the SN of the first record."""
        info = self._known(color) or await self.color(color)
        batch = record_batch.build(records)
        await self.wait_for_room()
        return await self._send(batch, info)

    async def append_batch(self, batch: bytes, color: ColorRef, *, validated: bool = False) -> int:
        """Append one prebuilt RecordBatch v2 as one entry; returns its first SN."""
        return await (await self.submit_batch(batch, color, validated=validated))

    async def submit_batch(self, batch: bytes, color: ColorRef, *,
                           validated: bool = False) -> asyncio.Future[int]:
        """Send one entry now and return a future of its first SN, without waiting for it.

        Entries that one client submits to one color get SNs in submission order,
        so a caller may keep many in flight and still know their order.
        """
        info = self._known(color) or await self.color(color)
        if not validated:
            try:
                record_batch.validate(batch)
            except record_batch.CorruptBatch as exc:
                raise InvalidEntry(str(exc)) from None
        await self.wait_for_room()
        return self._send(batch, info)

    async def wait_for_room(self) -> None:
        """Until one more append may be submitted: after this, submit_batch to a color given as
        its ColorInfo does not suspend, unless the caller suspends in between.

        Callers get room in the order they asked; with the window full, each append that
        leaves it wakes one of them. Once the client is closed, Unavailable."""
        if self._closed:
            raise _client_closed()
        if self._in_flight + self._handed < self._max_in_flight:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._room_waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                # Handed a slot it will not use.
                self._handed -= 1
                self._hand_out_room()
            raise
        self._handed -= 1
        if self._closed:  # handed a slot before the client closed
            raise _client_closed()
        if self._room_waiters:
            # The slot is this caller's until it next suspends: one it does not take (its
            # append was refused, or it chose not to send) goes on to the next caller then.
            asyncio.get_running_loop().call_soon(self._hand_out_room)

    def _hand_out_room(self) -> None:
        waiters = self._room_waiters
        while waiters and self._in_flight + self._handed < self._max_in_flight:
            fut = waiters.popleft()
            if not fut.done():  # a cancelled waiter is skipped
                fut.set_result(None)
                self._handed += 1

    def _send(self, batch: bytes, info: ColorInfo) -> asyncio.Future[int]:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if len(batch) > self.config.max_entry_bytes:
            fut.set_exception(TooLarge(f"entry of {len(batch)} bytes exceeds max_entry_bytes "
                                       f"{self.config.max_entry_bytes}"))
            return fut
        # One shard per client and color keeps this client's appends in submission order.
        shard = info.shards[0] if info.contiguous else info.shards[self.client_id % len(info.shards)]
        writer = self._writers.get(shard) or self._writer(shard)
        op = AppendOp(token=self._next_token(), color=info.id, owner=info.owner,
                      count=record_batch.records_count(batch), payload=batch,
                      contiguous=info.contiguous)
        # The slot frees when the append leaves the writer (`_landed`), not when a caller
        # cancels its future: the op is in flight until acked or expired.
        self._in_flight += 1
        writer.submit(op, fut)
        return fut

    def _landed(self) -> None:
        self._in_flight -= 1
        if self._room_waiters:
            self._hand_out_room()

    # ---- reads -------------------------------------------------------------

    async def _ask(self, shard: int, op: pb.QueryOp, replica: int | None = None) -> pb.QueryResult:
        """One query to one replica of shard, falling over to the others if it is down.

        With replica set, only that replica (by index in the shard) is asked.
        """
        writer = self._writer(shard)
        readable = writer.readable
        last: FlexLogError | None = None
        if replica is None:
            tries = [writer.links[readable[(self._read_pick + i) % len(readable)]]
                     for i in range(len(readable))]
        else:
            tries = [writer.links[replica]]
        for link in tries:
            try:
                attempt = pb.QueryOp()
                attempt.CopyFrom(op)
                fut = link.query(attempt)
                result = await asyncio.wait_for(fut, self.timeout_s + op.wait_ms / 1000)
                if result.error != Unavailable.code:
                    return result
                # Not readable in the view it knows (catching up, or just removed): try another.
                last = Unavailable(result.message)
            except Unavailable as exc:
                last = exc
            except TimeoutError:
                raise Timeout(f"replica {link.address} did not answer in time") from None
        raise last or Unavailable(f"no replica of shard {shard} answered")

    @staticmethod
    def _check(result: pb.QueryResult) -> pb.QueryResult:
        if result.error:
            raise from_code(result.error, result.message)
        return result

    @staticmethod
    def _entries(result: pb.QueryResult) -> list[StoredEntry]:
        return [StoredEntry(sn, n, bytes(p))
                for sn, n, p in zip(result.sns, result.counts, result.payloads, strict=True)]

    async def read_entry(self, sn: int, color: ColorRef, wait_ms: int = READ_WAIT_MS,
                         replica: int | None = None) -> StoredEntry:
        """The entry (RecordBatch) containing sn; from one given replica if replica is set."""
        info = await self.color(color)
        if info.family and replica is None:
            # The family's entry at sn tells whether it is this member's.
            chain, _, _ = await self._family_chain(info.family, sn, 1, wait_ms)
            if chain and chain[0].color == info.id:
                return chain[0].entry
            raise NotFound(f"SN {sn} of color {info.name!r} is not readable")
        op = pb.QueryOp(kind=pb.QueryOp.READ, color=info.id, sn=sn,
                        wait_ms=wait_ms, contiguous=info.contiguous)
        if info.contiguous:
            return self._entries(self._check(await self._ask(info.shards[0], op, replica)))[0]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_ms / 1000
        op.wait_ms = 0
        while True:
            results = await asyncio.gather(*(self._ask(s, op, replica) for s in info.shards))
            for r in results:
                if r.error and r.error != NotFound.code:
                    self._check(r)
                if not r.error:
                    return self._entries(r)[0]
            if loop.time() >= deadline or sn >= await self.tail(info):
                raise NotFound(f"SN {sn} of color {info.name!r} is not readable")
            await asyncio.sleep(0.005)

    async def read(self, sn: int, color: ColorRef) -> Record:
        """The record with that SN."""
        entry = await self.read_entry(sn, color)
        if record_batch.is_fill(entry.payload):
            raise Filled(f"SN {sn} was ordered but its entry was lost; the log skips it")
        for rec in record_batch.decode(entry.payload):
            if rec.offset == sn:
                return rec
        raise NotFound(f"SN {sn} is not in the entry that claims it")

    async def read_range(self, color: ColorRef, from_sn: int, max_bytes: int,
                         wait_ms: int = 0) -> RangeResult:
        """Entries in SN order from the one containing from_sn, without gaps, up to max_bytes.

        With wait_ms > 0 and nothing readable at from_sn, waits up to wait_ms for it.
        """
        info = await self.color(color)
        if info.family:
            return await self._member_range(info, from_sn, max_bytes, wait_ms)
        op = pb.QueryOp(kind=pb.QueryOp.RANGE, color=info.id, sn=from_sn, max_bytes=max_bytes,
                        wait_ms=wait_ms, contiguous=info.contiguous)
        if info.contiguous:
            r = self._check(await self._ask(info.shards[0], op))
            return RangeResult(self._entries(r), r.log_start, self._seen_tail(info, r.tail))
        return await self._merged_range(info, op)

    async def _member_range(self, info: ColorInfo, from_sn: int, max_bytes: int,
                            wait_ms: int) -> RangeResult:
        """A family member's entries from from_sn: the family's order, filtered. Its tail is
        where the family's gapless chain ended: no entry of the member below it is missing.

        SNs found to hold only other members' entries are remembered (one range per member),
        so a reader of a quiet member does not scan the others' entries again on every call."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_ms / 1000
        start = from_sn
        skip = self._skips.get(info.id)
        if skip is not None and skip[0] <= start < skip[1]:
            start = skip[1]
        steps = 0
        while True:
            steps += 1
            remaining_ms = max(0, int((deadline - loop.time()) * 1000))
            chain, log_start, end = await self._family_chain(info.family, start, max_bytes,
                                                             remaining_ms)
            mine = [link.entry for link in chain if link.color == info.id]
            if chain and not mine:
                self._skips[info.id] = (min(from_sn, start), end)
            # Bounded: a member far behind its family answers empty now and then, and the
            # skip makes the next call start where this one stopped.
            if mine or not chain or (steps >= MEMBER_SCAN_STEPS and loop.time() >= deadline):
                return RangeResult(mine, log_start, end)
            start = end

    async def _family_chain(self, family: int, from_sn: int, max_bytes: int,
                            wait_ms: int) -> tuple[list[FamilyLink], int, int]:
        """Every member's entries from the one containing from_sn on, in SN order and without
        gaps, up to about max_bytes per member; the family's log start; the SN the chain
        reached. Each member's SNs are sparse, but the family's together leave no gap, so
        the chain stops at the first SN not committed yet (or not stored on the replica
        asked) and never skips one.

        A gap with entries beyond it may be a member this client does not know yet: the
        registry is read again once before waiting."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_ms / 1000
        synced = False
        pause = GAP_POLL_MIN_S
        while True:
            asks = [(m.id, s) for m in self.registry.members_of.get(family, []) for s in m.shards]
            ops = [pb.QueryOp(kind=pb.QueryOp.RANGE, color=c, sn=from_sn, max_bytes=max_bytes)
                   for c, _ in asks]
            results = [self._check(r) for r in
                       await asyncio.gather(*(self._ask(s, op) for (_, s), op in zip(asks, ops,
                                                                                     strict=True)))]
            found = sorted((FamilyLink(c, e) for (c, _), r in zip(asks, results, strict=True)
                            for e in self._entries(r)), key=lambda link: link.entry.sn)
            chain: list[FamilyLink] = []
            expect = from_sn
            for link in found:
                if link.entry.sn <= expect < link.entry.end:
                    chain.append(link)
                    expect = link.entry.end
            log_start = max((r.log_start for r in results), default=0)
            if chain:
                self._family_gaps.moved(family, from_sn)
                return chain, log_start, expect
            if loop.time() >= deadline:
                if found:
                    self._watch_for_hole(family, from_sn, found[0].entry.sn)
                return chain, log_start, from_sn
            if found and not synced:
                synced = True
                await self.sync_registry()
                continue
            remaining_ms = int((deadline - loop.time()) * 1000)
            if found:
                # Entries lie beyond the gap, so a replica answers a waiting read at once: the
                # SN still in flight (or lost, until a fill) is polled for, backing off.
                pause = min(2 * pause, GAP_POLL_MAX_S)
                await asyncio.sleep(min(pause, remaining_ms / 1000))
                continue
            if not ops:
                await asyncio.sleep(min(remaining_ms, 200) / 1000)
                continue
            for op in ops:
                op.wait_ms = max(1, min(remaining_ms, 200))
            waits = [asyncio.ensure_future(self._ask(s, op))
                     for (_, s), op in zip(asks, ops, strict=True)]
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for w in pending:
                w.cancel()

    def _watch_for_hole(self, family: int, sn: int, beyond: int) -> None:
        """A read of the family found nothing at sn and its next entry at beyond: once readers
        have waited there long enough, fill what was lost."""
        if family in self._fills or not self._family_gaps.due(family, sn,
                                                              asyncio.get_running_loop().time()):
            return
        task = asyncio.ensure_future(self._fill_family(family, sn, beyond))
        self._fills[family] = task
        task.add_done_callback(lambda _: self._fills.pop(family, None))

    async def _fill_family(self, family: int, start: int, end: int) -> None:
        """Seal [start, end) at every replica of every member, then fill it
        (`core/family_fill.py`); end is an SN some member stores."""
        try:
            # Every member that may hold an SN below end was created before end was granted:
            # the registry read now knows it, and a member the seal missed could keep an
            # entry where the others get a marker.
            await self.sync_registry()
            members = self.registry.members_of.get(family, [])
            shards = sorted({s for m in members for s in m.shards})
            before = {s: tuple(self._writer(s).members) for s in shards}
            asks = [(m.id, s, i) for m in members for s in m.shards for i in before[s]]
            sealed = await asyncio.wait_for(asyncio.gather(*(
                self._writer(s).links[i].query(pb.QueryOp(kind=pb.QueryOp.SEAL, color=c,
                                                           sn=start, end=end, with_tokens=True))
                for c, s, i in asks)), self.timeout_s)
            found: dict[int, list[family_fill.CopiedEntry]] = {m.id: [] for m in members}
            for (c, _, _), r in zip(asks, sealed, strict=True):
                self._check(r)
                found[c].extend(zip(self._entries(r), r.tokens, strict=True))
            if any(tuple(self._writer(s).members) != before[s] for s in shards):
                log.info("family %d: shard members changed during the seal of SNs [%d, %d); "
                         "sealing again later", family, start, end)
                return
            lost = family_fill.holes(start, end, found)
            ops = family_fill.fill_ops(start, end, found)
            for r in await asyncio.wait_for(asyncio.gather(*(
                    self._writer(s).links[i].query(ops[c]) for c, s, i in asks)), self.timeout_s):
                self._check(r)
        except (FlexLogError, TimeoutError) as exc:
            log.info("family %d: fill of SNs from %d not done (%s); tried again later", family,
                     start, exc)
            return
        if lost:
            log.warning("family %d: filled SNs %s: ordered, never stored", family,
                        ", ".join(f"[{a}, {b})" for a, b in lost))

    async def subscribe_family(self, colors: Sequence[ColorRef],
                               from_sn: int = 0) -> AsyncIterator[tuple[ColorInfo, Record]]:
        """Every record of the given members of one family from from_sn on, in the family's
        SN order (the order the log accepted them), without gaps; blocks at the tail."""
        infos = [await self.color(c) for c in colors]
        families = {info.family for info in infos}
        if len(families) != 1 or 0 in families:
            raise ValueError("subscribe_family takes members of one family")
        family = families.pop()
        wanted = {info.id: info for info in infos}
        next_sn = from_sn
        while True:
            chain, _, end = await self._family_chain(family, next_sn, SUBSCRIBE_BYTES,
                                                     SUBSCRIBE_WAIT_MS)
            for link in chain:
                info = wanted.get(link.color)
                if info is not None:
                    for rec in record_batch.decode(link.entry.payload):
                        if rec.offset >= next_sn:
                            yield info, rec
            next_sn = end

    def _seen_tail(self, info: ColorInfo, tail: int) -> int:
        """The highest tail this client has seen for the color: replicas may lag each other
        by a few in-flight commits, and a tail that moved backwards would look like lost
        records to a reader (a Kafka consumer would reset its offset)."""
        seen = max(tail, self._tails.get(info.id, 0))
        self._tails[info.id] = seen
        return seen

    async def _merged_range(self, info: ColorInfo, op: pb.QueryOp) -> RangeResult:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + op.wait_ms / 1000
        while True:
            op.wait_ms = 0
            results = [self._check(r) for r in
                       await asyncio.gather(*(self._ask(s, op) for s in info.shards))]
            entries = sorted((e for r in results for e in self._entries(r)), key=lambda e: e.sn)
            chain: list[StoredEntry] = []
            expect = op.sn
            for e in entries:
                if e.sn <= expect < e.end:
                    chain.append(e)
                    expect = e.end
            log_start = max(r.log_start for r in results)
            if chain or loop.time() >= deadline:
                return RangeResult(chain, log_start, max(expect, op.sn))
            remaining_ms = int((deadline - loop.time()) * 1000)
            op.wait_ms = max(1, min(remaining_ms, 200))
            waits = [asyncio.ensure_future(self._ask(s, op)) for s in info.shards]
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for w in pending:
                w.cancel()

    async def subscribe(self, color: ColorRef, from_sn: int = 0) -> AsyncIterator[Record]:
        """Every record of color from from_sn on, in SN order, without gaps; blocks at the tail."""
        info = await self.color(color)
        next_sn = from_sn
        while True:
            res = await self.read_range(info, next_sn, SUBSCRIBE_BYTES, wait_ms=SUBSCRIBE_WAIT_MS)
            for entry in res.entries:
                for rec in record_batch.decode(entry.payload):
                    if rec.offset >= next_sn:
                        yield rec
                next_sn = entry.end

    async def state(self, color: ColorRef) -> tuple[int, int]:
        """(log start, tail) of a color as one replica sees it. A family member's log start is
        the family's, the highest of every member's, as its reads see it (`_family_chain`): a
        member created after the family was trimmed starts at 0 on its own replicas."""
        info = await self.color(color)
        infos = self.registry.members_of[info.family] if info.family else [info]
        asks = [(s, pb.QueryOp(kind=pb.QueryOp.STATE, color=i.id, contiguous=i.contiguous))
                for i in infos for s in i.shards]
        results = [self._check(r) for r in
                   await asyncio.gather(*(self._ask(s, op) for s, op in asks))]
        log_start = max(r.log_start for r in results)
        if info.contiguous:
            return log_start, self._seen_tail(info, results[0].tail)
        return log_start, await self._next_sn(info)

    async def tail(self, color: ColorRef) -> int:
        """One past the last SN of the color that readers can see (Kafka's high watermark)."""
        return (await self.state(color))[1]

    async def _next_sn(self, info: ColorInfo) -> int:
        address = self.config.node_address(info.owner)
        ch = self._channels.get(address)
        if ch is None:
            ch = self._channels[address] = rpc.channel(address)
        stub = ch.unary_unary("/flexlog.Sequencer/NextSn",
                              request_serializer=pb.NextSnRequest.SerializeToString,
                              response_deserializer=pb.NextSnReply.FromString)
        try:
            reply = await stub(pb.NextSnRequest(color=info.id, owner=info.owner),
                               timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise Unavailable(f"sequencer node {info.owner} unreachable: {exc.code().name}") from None
        if reply.error:
            raise from_code(reply.error, reply.message)
        return reply.next_sn

    async def trim(self, sn: int, color: ColorRef) -> None:
        """Drop every record with SN <= sn on every replica. A family is trimmed as a whole:
        trimming one member trims every member, so the family's order has one log start."""
        info = await self.color(color)
        await self._trim_colors(sn, self.registry.members_of[info.family] if info.family
                                else [info])

    async def _trim_colors(self, sn: int, infos: Sequence[ColorInfo]) -> None:
        ops = []
        for info in infos:
            for shard in info.shards:
                writer = self._writer(shard)
                for member in writer.members:
                    ops.append(writer.links[member].query(
                        pb.QueryOp(kind=pb.QueryOp.TRIM, color=info.id, sn=sn)))
        for r in await asyncio.wait_for(asyncio.gather(*ops), self.timeout_s):
            self._check(r)

    async def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Wait until every sequencer and replica reports ready, then load the registry."""
        from flexlog.core.status import wait_healthy

        await wait_healthy(self.config, timeout_s)
        await self.sync_registry()
