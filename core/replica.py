"""A storage replica: prepares entries from clients, commits them when the leaf grants SNs.

Write-all/read-one: a client sends each entry to every member of the shard;
the one replica responsible for the color (chosen over the readable members of
the current view, `core/view.py`) asks the leaf for an SN block; the leaf
broadcasts the grant to the whole shard; every replica commits token -> SN and
acks the client. One responsible replica per color means one ordered path to
the leaf, so a client's appends to a color get SNs in the order it sent them.

Fault tolerance: tokens stay "ungranted" until their grant arrives and are
re-sent to the leaf (same token; the leaf dedupes) when the view changes or the
leaf link comes back; recently committed tokens are remembered so a client's
retry is acked with the SN it already has. A replica that (re)joins the view
is written to at once but serves reads only after copying what it missed from
a readable member (`_catch_up`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import grpc

from flexlog.core import metrics, record_batch, rpc
from flexlog.core.batching import Batcher, ByteQueue, RowsAndErrors, Window
from flexlog.core.config import ClusterConfig
from flexlog.core.errors import Code
from flexlog.core.proto import flexlog_pb2 as pb
from flexlog.core.storage import StorageEngine, StoredEntry, StoreFull, UnknownToken
from flexlog.core.view import View, ViewWatcher

log = logging.getLogger("flexlog.replica")

RECONNECT_DELAY_S = 0.2
REPAIR_AFTER_S = 1.0
PREPARED_TTL_S = 60.0
SWEEP_INTERVAL_S = 0.5
RESEND_AFTER_S = 1.0  # an ungranted token this replica is responsible for is re-ordered after this
RECENT_TOKENS = 1 << 18  # committed token -> SN remembered for retries and a restarted leaf
REPORT_TOKENS = 1 << 16  # of those, how many go to the leaf when attaching
CATCHUP_GRACE_S = 1.0  # after joining: clients and the leaf have seen the new view by then
CATCHUP_BYTES = 4 << 20


@dataclass
class _ColorView:
    """What readers may see of one color on this replica."""

    prefix: int = 0  # every SN below this is committed here (for shard-local colors)
    high: int = 0  # one past the highest committed SN here
    log_start: int = 0
    ahead: dict[int, int] = field(default_factory=dict)  # committed blocks beyond prefix
    waiters: list[tuple[int, bool, asyncio.Future[None]]] = field(default_factory=list)

    def committed(self, sn: int, end: int) -> bool:
        """Record a committed block; True when the visible tail moved."""
        moved = end > self.high
        self.high = max(self.high, end)
        if sn <= self.prefix:
            self.prefix = max(self.prefix, end)
            while self.prefix in self.ahead:
                self.prefix = self.ahead.pop(self.prefix)
            return True
        self.ahead[sn] = end
        return moved

    def visible(self, contiguous: bool) -> int:
        return self.prefix if contiguous else self.high

    def wake(self) -> None:
        keep = []
        for sn, contiguous, fut in self.waiters:
            if fut.done():
                continue
            if sn < self.visible(contiguous):
                fut.set_result(None)
            else:
                keep.append((sn, contiguous, fut))
        self.waiters = keep


class _Grant(NamedTuple):
    token: int
    color: int
    sn: int
    count: int
    error: int = 0
    message: str = ""


class _AckSink(RowsAndErrors[tuple[int, int], pb.AppendError]):
    """Acks owed to one client stream: (token, sn) rows and rejections."""

    def __init__(self, queue: ByteQueue) -> None:
        super().__init__()
        self._queue = queue

    def ack(self, token: int, sn: int) -> None:
        self.add_row((token, sn))

    def reject(self, token: int, code: Code, message: str) -> None:
        self.add_error(pb.AppendError(token=token, error=code, message=message))

    def send(self, columns: list[tuple[int, ...]], errors: list[pb.AppendError]) -> None:
        tokens, sns = columns or ((), ())
        reply = pb.AppendReply(tokens=tokens, sns=sns, errors=errors)
        self._queue.put(reply.SerializeToString())


def open_engine(config: ClusterConfig, name: str) -> StorageEngine:
    if config.storage == "memory":
        from flexlog.core.memory_engine import MemoryEngine

        return MemoryEngine(capacity_bytes=config.pool_size_bytes)
    from flexlog.pm.engine import PmEngine

    return PmEngine(
        config.pool_dir(name),
        pool_size_bytes=config.pool_size_bytes,
        cache_bytes=config.cache_bytes,
        ssd_dir=config.replica_dir(name) / "ssd",
    )


class ReplicaServer:
    def __init__(self, config: ClusterConfig, name: str, engine: StorageEngine) -> None:
        self.config = config
        self.me = config.replica(name)
        self.shard = config.shard(self.me.shard)
        self.size = len(self.shard.replicas)
        self.engine = engine
        self.colors: dict[int, _ColorView] = {}
        self._origin: dict[int, _AckSink] = {}
        self._prepared_at: dict[int, float] = {}
        self._early: dict[int, tuple[_Grant, float]] = {}
        self._repairing: set[int] = set()
        self._leaf_queue: ByteQueue | None = None
        self._orders: Window[tuple[int, int, int, int]] = Window(self._send_orders)
        self._order_batch: dict[int, list[int]] = {}  # token -> unresolved count of its order batch
        # Prepared and not granted yet, in prepare order (which is each client's submission order):
        # token -> (color, owner, count, prepared at). Re-sent to the leaf after a reconfiguration.
        self._ungranted: dict[int, tuple[int, int, int, float]] = {}
        self._ordering: set[int] = set()  # queued for or sent to the leaf, not answered yet
        self._recent: OrderedDict[int, tuple[int, int, int]] = OrderedDict()  # token -> color, sn, count
        # Tokens for entries copied from a peer: bit 32 is 0, which no client token has.
        self._copy_tokens = iter(range(random.getrandbits(30) << 33, 1 << 64))
        self._watcher = ViewWatcher(config, self._view_changed)
        self._catching_up: asyncio.Task[None] | None = None
        self.caught_up_epoch = -1
        # Tells the controller this process apart from an earlier one of the same replica.
        self.incarnation = random.getrandbits(62)
        self._tasks: list[asyncio.Task[None]] = []
        self._server: grpc.aio.Server | None = None
        self.stats = {"prepared": 0, "committed": 0, "reads": 0, "trims": 0, "repairs": 0}
        self._recover()

    def _recover(self) -> None:
        state = self.engine.recover()
        for color, cs in state.colors.items():
            self.colors[color] = _ColorView(prefix=cs.tail, high=cs.tail, log_start=cs.log_start)
        now = time.monotonic()
        for p in state.prepared:
            self._prepared_at[p.token] = now
        log.info("replica %s recovered %d colors, %d prepared entries", self.me.name,
                 len(self.colors), len(state.prepared))

    @property
    def attached(self) -> bool:
        return self._leaf_queue is not None

    @property
    def prepared_count(self) -> int:
        return len(self._prepared_at)

    def engine_stats(self) -> dict[str, float]:
        engine_stats = getattr(self.engine, "stats", None)
        stats: dict[str, float] = dict(engine_stats()) if callable(engine_stats) else {}
        if "pm_used_bytes" in stats:
            stats.setdefault("store_used_bytes", stats["pm_used_bytes"])
            stats.setdefault("store_free_bytes", stats["pm_free_bytes"])
        return stats

    @property
    def epoch(self) -> int:
        return self._watcher.view.shard(self.me.shard).epoch

    @property
    def readable(self) -> bool:
        shard = self._watcher.view.shard(self.me.shard)
        return self.me.index in shard.readable and shard.knows(self.me.index, self.incarnation)

    def _responsible(self, color: int) -> bool:
        return self._watcher.view.shard(self.me.shard).responsible(color) == self.me.index

    def _view_changed(self, view: View) -> None:
        shard = view.shard(self.me.shard)
        log.info("replica %s: shard %d at epoch %d, members %s, readable %s", self.me.name,
                 self.me.shard, shard.epoch, shard.members, shard.readable)
        if self.me.index not in shard.members:
            self.caught_up_epoch = -1
        elif self.me.index not in shard.readable and self.caught_up_epoch < 0 and (
                self._catching_up is None or self._catching_up.done()):
            self._catching_up = asyncio.create_task(self._catch_up())
            self._tasks.append(self._catching_up)
        # Responsibility may have moved here: order what the previous responsible replica may not have.
        for token, (color, owner, count, _) in list(self._ungranted.items()):
            if self._responsible(color):
                self._order(token, color, owner, count)

    def view(self, color: int) -> _ColorView:
        v = self.colors.get(color)
        if v is None:
            v = self.colors[color] = _ColorView()
        return v

    # ---- lifecycle -------------------------------------------------------

    async def start(self) -> None:
        self._server = rpc.server()
        self._server.add_generic_rpc_handlers([
            rpc.service("flexlog.Replica", {
                "Append": rpc.bidi(self._append, pb.AppendRequest),
                "Query": rpc.bidi(self._query, pb.QueryRequest),
                "Status": rpc.unary(self._status, pb.StatusRequest),
            })
        ])
        rpc.listen(self._server, self.me.address)
        await self._server.start()
        metrics.register_replica(self)
        metrics.serve(self.me.address, self.me.metrics_port)
        self._tasks.append(asyncio.create_task(self._leaf_link()))
        self._tasks.append(asyncio.create_task(self._sweep()))
        self._tasks.append(asyncio.create_task(self._watcher.run()))
        self._view_changed(self._watcher.view)
        log.info("replica %s listening on %s", self.me.name, self.me.address)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._server is not None:
            await self._server.stop(0.5)
        self.engine.close()

    async def wait(self) -> None:
        assert self._server is not None
        await self._server.wait_for_termination()

    # ---- append path -------------------------------------------------------

    async def _append(self, requests: AsyncIterator[pb.AppendRequest],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        queue = ByteQueue()
        acks = _AckSink(queue)
        reader = asyncio.create_task(self._read_appends(requests, acks, queue))
        try:
            async for data in queue.drain():
                yield data
        finally:
            reader.cancel()

    async def _read_appends(self, requests: AsyncIterator[pb.AppendRequest],
                            acks: _AckSink, queue: ByteQueue) -> None:
        try:
            prepare_time = metrics.PREPARE_BATCH.labels(self.me.name)
            sizes = metrics.ENTRIES_PER_MESSAGE.labels(self.me.name)
            async for msg in requests:
                start = time.perf_counter()
                self._prepare_ops(msg.ops, acks)
                prepare_time.observe(time.perf_counter() - start)
                sizes.observe(len(msg.ops))
        except grpc.aio.AioRpcError:
            pass
        finally:
            queue.close()

    def _valid(self, op: pb.AppendOp, acks: _AckSink) -> bool:
        """Whether op may be stored; rejects it to the client when not."""
        token = op.token
        payload = op.payload
        if len(payload) > self.config.max_entry_bytes:
            acks.reject(token, Code.TOO_LARGE,
                         f"entry of {len(payload)} bytes exceeds max_entry_bytes "
                         f"{self.config.max_entry_bytes}")
            return False
        try:
            header = record_batch.validate(payload)
        except record_batch.CorruptBatch as exc:
            acks.reject(token, Code.INVALID_ENTRY, str(exc))
            return False
        if header.records_count != op.count or op.count == 0:
            acks.reject(token, Code.INVALID_ENTRY,
                         f"count {op.count} does not match the batch's {header.records_count}")
            return False
        return True

    def _prepare_ops(self, ops: Sequence[pb.AppendOp], acks: _AckSink) -> None:
        """Prepare the valid entries of one message with one engine call (one durability
        barrier for all of them), then order each one or commit its early grant."""
        valid = []
        for op in ops:
            done = self._recent.get(op.token)
            if done is not None:
                # A client's retry of an entry committed here already: same SN, stored once.
                acks.ack(op.token, done[1])
            elif op.token in self._ungranted:
                self._origin[op.token] = acks  # a retry over a new stream: ack it there
            elif self._valid(op, acks):
                valid.append(op)
        if not valid:
            return
        results = self.engine.prepare_many([(op.token, op.color, op.payload, op.count)
                                            for op in valid])
        early: list[_Grant] = []
        failed: Exception | None = None
        for op, error in zip(valid, results, strict=True):
            token = op.token
            if isinstance(error, StoreFull):
                acks.reject(token, Code.STORE_FULL, str(error))
                continue
            if error is not None:
                failed = failed or error
                continue
            self.stats["prepared"] += 1
            self._origin[token] = acks
            now = time.monotonic()
            self._prepared_at[token] = now
            self._ungranted[token] = (op.color, op.owner, op.count, now)
            grant = self._early.pop(token, None)
            if grant is not None:
                early.append(grant[0])
            elif self._responsible(op.color):
                self._order(token, op.color, op.owner, op.count)
        if early:
            self._apply_grants(early)
        # Not a client error: an engine fault, raised once the rest of the message is settled.
        if failed is not None:
            raise failed

    def _order(self, token: int, color: int, owner: int, count: int) -> None:
        if token not in self._ordering:
            self._ordering.add(token)
            self._orders.put((token, color, owner, count))

    def _send_orders(self, reqs: list[tuple[int, int, int, int]]) -> None:
        # Tokens granted or failed while they waited in the window need no order any more.
        reqs = [r for r in reqs if r[0] in self._ungranted]
        queue = self._leaf_queue
        if queue is None or not reqs:
            # Kept ungranted: re-sent once the leaf link is back (or by the sweep).
            for r in reqs:
                self._ordering.discard(r[0])
            self._orders.done()
            return
        batch = [len(reqs)]
        tokens, colors, owners, counts = zip(*reqs, strict=True)
        for token in tokens:
            self._order_batch[token] = batch
        queue.put(pb.ReplicaToSequencer(shard=self.me.shard, replica=self.me.index, tokens=tokens,
                                        colors=colors, owners=owners, counts=counts,
                                        epoch=self.epoch).SerializeToString())

    def _order_resolved(self, token: int) -> None:
        self._ordering.discard(token)
        batch = self._order_batch.pop(token, None)
        if batch is not None:
            batch[0] -= 1
            if batch[0] == 0:
                self._orders.done()

    def _fail(self, token: int, code: Code, message: str) -> None:
        if code == Code.STALE_EPOCH:
            # Sent under an older view: not the entry's fault. The responsible replica of
            # the current view orders it (view change or sweep).
            self._order_resolved(token)
            return
        self._ungranted.pop(token, None)
        self._order_resolved(token)
        acks = self._origin.pop(token, None)
        self._prepared_at.pop(token, None)
        self.engine.abort(token)
        if acks is not None:
            acks.reject(token, code, message)

    def _apply_grant(self, g: _Grant) -> None:
        if g.error:
            self._fail(g.token, Code(g.error), g.message)
            return
        self._apply_grants([g])

    def _apply_grants(self, grants: list[_Grant]) -> None:
        """Commit grants (none an error) with one engine call, then ack and wake readers."""
        grants = [g for g in grants if not self._already_stored(g)]
        if not grants:
            return
        results = self.engine.commit_many([(g.token, g.sn) for g in grants])
        failed: Exception | None = None
        for g, entry in zip(grants, results, strict=True):
            if isinstance(entry, UnknownToken):
                # The grant outran the client's prepare to this replica; it may still come.
                self._early[g.token] = (g, time.monotonic())
            elif isinstance(entry, Exception):
                failed = failed or entry
            else:
                self._committed(g, entry)
        # An engine fault, raised once the other grants of the message are settled.
        if failed is not None:
            raise failed

    def _already_stored(self, g: _Grant) -> bool:
        """A grant re-broadcast after a reconfiguration, or for an entry a catch-up copied:
        the SN is stored here already, so the entry is never stored twice."""
        if g.token in self._recent:
            self._early.pop(g.token, None)
            return True
        view = self.colors.get(g.color)
        if view is None or g.sn >= view.high:
            return False
        stored = self.engine.read(g.color, g.sn)
        if stored is None or stored.sn != g.sn:
            return False
        if g.token in self._ungranted:
            self.engine.abort(g.token)
        self._early.pop(g.token, None)
        self._committed(g, stored)
        return True

    def _committed(self, g: _Grant, entry: StoredEntry) -> None:
        self.stats["committed"] += 1
        self._order_resolved(g.token)
        self._prepared_at.pop(g.token, None)
        self._ungranted.pop(g.token, None)
        self._recent[g.token] = (g.color, g.sn, g.count)
        if len(self._recent) > RECENT_TOKENS:
            self._recent.popitem(last=False)
        view = self.view(g.color)
        if view.committed(entry.sn, entry.end):
            view.wake()
        acks = self._origin.pop(g.token, None)
        if acks is not None:
            acks.ack(g.token, g.sn)

    async def _leaf_link(self) -> None:
        """One stream to the leaf sequencer: order requests up, grants down."""
        address = self.config.node_address(self.shard.leaf)
        while True:
            queue = ByteQueue()
            state = self.engine.recover()
            tails = [pb.ColorTail(color=c, tail=s.tail) for c, s in state.colors.items()]
            hello = pb.ReplicaToSequencer(shard=self.me.shard, replica=self.me.index, tails=tails,
                                          epoch=self.epoch)
            recent = list(self._recent.items())[-REPORT_TOKENS:]
            for token, (color, sn, count) in recent:
                hello.recent_tokens.append(token)
                hello.recent_colors.append(color)
                hello.recent_sns.append(sn)
                hello.recent_counts.append(count)
            queue.put(hello.SerializeToString())
            try:
                async with rpc.channel(address) as ch:
                    call = rpc.raw_stream(ch, "/flexlog.Sequencer/Attach", pb.SequencerToReplica)(
                        queue.drain()
                    )
                    self._leaf_queue = queue
                    log.info("replica %s attached to leaf %d at %s", self.me.name,
                             self.shard.leaf, address)
                    # Every replica (not only the responsible one) re-sends what is still
                    # ungranted: a restarted leaf lost its pending requests, and a grant it
                    # sent to some replicas only is found again by token. Each replica sends
                    # in its prepare order, so the first request for each token still
                    # arrives in each client's submission order.
                    for token, (color, owner, count, _) in list(self._ungranted.items()):
                        self._order(token, color, owner, count)
                    commit_time = metrics.COMMIT_BATCH.labels(self.me.name)
                    async for msg in call:
                        start = time.perf_counter()
                        rows = zip(msg.tokens, msg.colors, msg.sns, msg.counts, strict=True)
                        grants = [_Grant(*row) for row in rows]
                        if grants:
                            self._apply_grants(grants)
                        for e in msg.errors:
                            self._apply_grant(_Grant(e.token, e.color, 0, 0, e.error, e.message))
                        commit_time.observe(time.perf_counter() - start)
            except grpc.aio.AioRpcError as exc:
                log.warning("link to leaf %d broke: %s", self.shard.leaf, exc.code().name)
            finally:
                self._leaf_queue = None
                queue.close()
                self._order_batch.clear()
                self._ordering.clear()
                self._orders.reset()
            await asyncio.sleep(RECONNECT_DELAY_S)

    # ---- repair: grants whose prepare never came, prepares that were never ordered

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            now = time.monotonic()
            for token, (grant, since) in list(self._early.items()):
                if now - since > REPAIR_AFTER_S and token not in self._repairing:
                    self._repairing.add(token)
                    self._tasks.append(asyncio.create_task(self._repair(grant)))
            for token, (color, owner, count, since) in list(self._ungranted.items()):
                if now - since > RESEND_AFTER_S and self._responsible(color):
                    self._order(token, color, owner, count)
            stale = [t for t, since in self._prepared_at.items() if now - since > PREPARED_TTL_S]
            for token in stale:
                log.warning("aborting entry %x: prepared %ds ago and never ordered", token,
                            PREPARED_TTL_S)
                self._fail(token, Code.TIMEOUT, "entry was never ordered")

    async def _repair(self, grant: _Grant) -> None:
        """Copy an ordered entry this replica never received from a peer that has it."""
        try:
            for peer in self.shard.replicas:
                if peer.index == self.me.index:
                    continue
                payload = await _fetch_entry(peer.address, grant.color, grant.sn)
                if payload is None or grant.token not in self._early:
                    continue
                self._early.pop(grant.token, None)
                self.engine.prepare(grant.token, grant.color, payload, grant.count)
                self._apply_grant(grant)
                self.stats["repairs"] += 1
                log.info("repaired SN %d of color %d from %s", grant.sn, grant.color, peer.name)
                return
        finally:
            self._repairing.discard(grant.token)

    # ---- rejoin: copy what was committed while this replica was out of the view

    async def _catch_up(self) -> None:
        """Copy every committed entry this replica lacks from a readable member.

        It is a member already, so everything granted from now on reaches it (with
        the client's prepare, or as a grant repaired from a peer). Waiting a grace
        period first lets clients and the leaf see the view; what a readable member
        has committed by then is copied here. Then the controller makes it readable.
        """
        await asyncio.sleep(CATCHUP_GRACE_S)
        shard = self._watcher.view.shard(self.me.shard)
        epoch = shard.epoch
        peers = [r for r in self.shard.replicas if r.index in shard.readable and r.index != self.me.index]
        for peer in peers:
            try:
                copied = await self._copy_from(peer.address)
            except (grpc.aio.AioRpcError, OSError) as exc:
                log.warning("catch-up from %s failed: %s", peer.name, exc)
                continue
            if self.me.index in self._watcher.view.shard(self.me.shard).members:
                self.caught_up_epoch = epoch
            log.info("replica %s caught up from %s: %d entries copied", self.me.name, peer.name,
                     copied)
            return
        log.warning("replica %s found no readable member to catch up from; retrying", self.me.name)
        self._catching_up = asyncio.create_task(self._catch_up())
        self._tasks.append(self._catching_up)

    async def _copy_from(self, address: str) -> int:
        async with rpc.channel(address) as ch:
            stub = ch.unary_unary("/flexlog.Replica/Status",
                                  request_serializer=pb.StatusRequest.SerializeToString,
                                  response_deserializer=pb.StatusReply.FromString)
            detail = json.loads((await stub(pb.StatusRequest(), timeout=5.0)).detail)
            copied = 0
            for key, st in detail["colors"].items():
                color, target = int(key), int(st["high"])
                view = self.view(color)
                sn = max(view.prefix, int(st["log_start"]))
                while sn < target:
                    entries = await _fetch_range(ch, color, sn)
                    if not entries:
                        break
                    for entry in entries:
                        copied += self._store_copy(color, entry)
                        sn = max(sn, entry.end)
            return copied

    def _store_copy(self, color: int, entry: StoredEntry) -> int:
        stored = self.engine.read(color, entry.sn)
        if stored is not None and stored.sn == entry.sn:
            return 0
        token = next(self._copy_tokens)
        self.engine.prepare(token, color, entry.payload, entry.count)
        committed = self.engine.commit(token, entry.sn)
        view = self.view(color)
        if view.committed(committed.sn, committed.end):
            view.wake()
        return 1

    # ---- reads -----------------------------------------------------------

    async def _query(self, requests: AsyncIterator[pb.QueryRequest],
                     context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        queue = ByteQueue()
        out: Batcher[pb.QueryResult] = Batcher(
            lambda items: queue.put(pb.QueryReply(results=items).SerializeToString())
        )
        waits: set[asyncio.Task[None]] = set()
        reader = asyncio.create_task(self._read_queries(requests, out, queue, waits))
        try:
            async for data in queue.drain():
                yield data
        finally:
            reader.cancel()
            for task in waits:
                task.cancel()

    async def _read_queries(self, requests: AsyncIterator[pb.QueryRequest],
                            out: Batcher[pb.QueryResult], queue: ByteQueue,
                            waits: set[asyncio.Task[None]]) -> None:
        try:
            async for msg in requests:
                for op in msg.ops:
                    result = self._answer(op)
                    if result is not None:
                        out.put(result)
                    else:
                        task = asyncio.create_task(self._answer_later(op, out))
                        waits.add(task)
                        task.add_done_callback(waits.discard)
            # The client half-closed: answer what it asked before ending the stream.
            if waits:
                await asyncio.gather(*waits, return_exceptions=True)
            await asyncio.sleep(0)
        except grpc.aio.AioRpcError:
            pass
        finally:
            queue.close()

    def _answer(self, op: pb.QueryOp, waited: bool = False) -> pb.QueryResult | None:
        """The result of op now, or None when it should wait for op.sn to become visible."""
        view = self.view(op.color)
        kind = op.kind
        if kind == pb.QueryOp.TRIM:
            self.engine.trim(op.color, op.sn)
            self.stats["trims"] += 1
            view.log_start = max(view.log_start, op.sn + 1)
            if view.prefix < view.log_start:
                view.prefix = view.log_start
                view.high = max(view.high, view.prefix)
                view.ahead = {s: e for s, e in view.ahead.items() if e > view.prefix}
                view.wake()
            return pb.QueryResult(id=op.id, log_start=view.log_start, tail=view.prefix)
        if not self.readable:
            # Removed from the view or still catching up: what it holds may be stale.
            return pb.QueryResult(id=op.id, error=Code.UNAVAILABLE,
                                  message=f"replica {self.me.name} is not readable in the current view")
        visible = view.visible(op.contiguous)
        if kind == pb.QueryOp.STATE:
            return pb.QueryResult(id=op.id, log_start=view.log_start, tail=visible)
        if op.sn < view.log_start:
            return pb.QueryResult(id=op.id, error=Code.TRIMMED, log_start=view.log_start,
                                  tail=visible,
                                  message=f"SN {op.sn} of color {op.color} was trimmed "
                                          f"(log start {view.log_start})")
        if op.sn >= visible and op.wait_ms and not waited:
            return None
        with metrics.READ.labels(self.me.name).time():
            return self._read(op, view, visible)

    def _read(self, op: pb.QueryOp, view: _ColorView, visible: int) -> pb.QueryResult:
        self.stats["reads"] += 1
        result = pb.QueryResult(id=op.id, log_start=view.log_start, tail=visible)
        if op.kind == pb.QueryOp.READ:
            entry = self.engine.read(op.color, op.sn) if op.sn < visible else None
            if entry is None:
                result.error = Code.NOT_FOUND
                result.message = f"SN {op.sn} of color {op.color} is not stored here"
            else:
                result.sns.append(entry.sn)
                result.counts.append(entry.count)
                result.payloads.append(entry.payload)
            return result
        for entry in self.engine.read_range(op.color, op.sn, op.max_bytes):
            if entry.sn >= visible:
                break
            result.sns.append(entry.sn)
            result.counts.append(entry.count)
            result.payloads.append(entry.payload)
        return result

    async def _answer_later(self, op: pb.QueryOp, out: Batcher[pb.QueryResult]) -> None:
        view = self.view(op.color)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        view.waiters.append((op.sn, op.contiguous, fut))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(fut, op.wait_ms / 1000)
        result = self._answer(op, waited=True)
        assert result is not None
        out.put(result)

    # ---- control -----------------------------------------------------------

    async def _status(self, req: pb.StatusRequest,
                      context: grpc.aio.ServicerContext) -> pb.StatusReply:
        detail = {
            "shard": self.me.shard,
            "index": self.me.index,
            "attached": self.attached,
            "colors": {str(c): {"log_start": v.log_start, "tail": v.prefix, "high": v.high}
                       for c, v in self.colors.items()},
            "prepared": self.prepared_count,
            "epoch": self.epoch,
            "readable": self.readable,
            "caught_up_epoch": self.caught_up_epoch,
            "incarnation": self.incarnation,
            "waiting_grants": len(self._early),
            "stats": self.stats,
        }
        detail["engine"] = self.engine_stats()
        return pb.StatusReply(role="replica", name=self.me.name,
                              ready=self._leaf_queue is not None, detail=json.dumps(detail))


async def _fetch_range(ch: grpc.aio.Channel, color: int, sn: int) -> list[StoredEntry]:
    """Committed entries of a peer from the one containing sn, up to CATCHUP_BYTES."""
    req = pb.QueryRequest(ops=[pb.QueryOp(id=0, kind=pb.QueryOp.RANGE, color=color, sn=sn,
                                          max_bytes=CATCHUP_BYTES)])
    call = rpc.raw_stream(ch, "/flexlog.Replica/Query", pb.QueryReply)(iter([req.SerializeToString()]))
    async for reply in call:
        for r in reply.results:
            if r.error:
                raise OSError(f"range read of color {color} at {sn} failed: {r.message}")
            return [StoredEntry(s, n, bytes(p))
                    for s, n, p in zip(r.sns, r.counts, r.payloads, strict=True)]
    return []


async def _fetch_entry(address: str, color: int, sn: int) -> bytes | None:
    """One READ from a peer replica; None when it does not have the entry committed."""
    req = pb.QueryRequest(ops=[pb.QueryOp(id=0, kind=pb.QueryOp.READ, color=color, sn=sn)])
    try:
        async with rpc.channel(address) as ch:
            call = rpc.raw_stream(ch, "/flexlog.Replica/Query", pb.QueryReply)(
                iter([req.SerializeToString()])
            )
            async for reply in call:
                for r in reply.results:
                    if not r.error and r.sns and r.sns[0] == sn:
                        return bytes(r.payloads[0])
                return None
    except grpc.aio.AioRpcError:
        return None
    return None
