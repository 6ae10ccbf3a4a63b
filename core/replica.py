"""A storage replica: prepares entries from clients, commits them when the leaf grants SNs.

Write-all/read-one: a client sends each entry to every replica of the shard;
the one replica responsible for the color (color id mod shard size) asks the
leaf for an SN block; the leaf broadcasts the grant to the whole shard; every
replica commits token -> SN and acks the client. One responsible replica per
color means one ordered path to the leaf, so a client's appends to a color
get SNs in the order it sent them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import grpc

from flexlog.core import metrics, record_batch, rpc
from flexlog.core.batching import Batcher, ByteQueue, Window
from flexlog.core.config import ClusterConfig
from flexlog.core.errors import Code
from flexlog.core.proto import flexlog_pb2 as pb
from flexlog.core.storage import StorageEngine, StoredEntry, StoreFull, UnknownToken

log = logging.getLogger("flexlog.replica")

RECONNECT_DELAY_S = 0.2
REPAIR_AFTER_S = 1.0
PREPARED_TTL_S = 60.0
SWEEP_INTERVAL_S = 0.5


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


class _AckSink:
    """Acks owed to one client stream, sent as one columnar AppendReply per loop iteration."""

    __slots__ = ("_errors", "_queue", "_scheduled", "_sns", "_tokens")

    def __init__(self, queue: ByteQueue) -> None:
        self._queue = queue
        self._tokens: list[int] = []
        self._sns: list[int] = []
        self._errors: list[pb.AppendError] = []
        self._scheduled = False

    def ack(self, token: int, sn: int) -> None:
        self._tokens.append(token)
        self._sns.append(sn)
        self._schedule()

    def reject(self, token: int, code: Code, message: str) -> None:
        self._errors.append(pb.AppendError(token=token, error=code, message=message))
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        reply = pb.AppendReply(tokens=self._tokens, sns=self._sns, errors=self._errors)
        self._tokens, self._sns, self._errors = [], [], []
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
        self._server.add_insecure_port(self.me.address)
        await self._server.start()
        metrics.register_replica(self)
        metrics.serve(self.me.address, self.me.metrics_port)
        self._tasks.append(asyncio.create_task(self._leaf_link()))
        self._tasks.append(asyncio.create_task(self._sweep()))
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
        valid = [op for op in ops if self._valid(op, acks)]
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
            self._prepared_at[token] = time.monotonic()
            grant = self._early.pop(token, None)
            if grant is not None:
                early.append(grant[0])
            elif op.color % self.size == self.me.index:
                self._orders.put((token, op.color, op.owner, op.count))
        if early:
            self._apply_grants(early)
        # Not a client error: an engine fault, raised once the rest of the message is settled.
        if failed is not None:
            raise failed

    def _send_orders(self, reqs: list[tuple[int, int, int, int]]) -> None:
        batch = [len(reqs)]
        tokens, colors, owners, counts = zip(*reqs, strict=True)
        for token in tokens:
            self._order_batch[token] = batch
        queue = self._leaf_queue
        if queue is None:
            for token in tokens:
                self._fail(token, Code.UNAVAILABLE, "replica is not attached to its leaf sequencer")
            return
        queue.put(pb.ReplicaToSequencer(shard=self.me.shard, replica=self.me.index, tokens=tokens,
                                        colors=colors, owners=owners, counts=counts).SerializeToString())

    def _order_resolved(self, token: int) -> None:
        batch = self._order_batch.pop(token, None)
        if batch is not None:
            batch[0] -= 1
            if batch[0] == 0:
                self._orders.done()

    def _fail(self, token: int, code: Code, message: str) -> None:
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

    def _committed(self, g: _Grant, entry: StoredEntry) -> None:
        self.stats["committed"] += 1
        self._order_resolved(g.token)
        self._prepared_at.pop(g.token, None)
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
            queue.put(pb.ReplicaToSequencer(shard=self.me.shard, replica=self.me.index,
                                            tails=tails).SerializeToString())
            try:
                async with rpc.channel(address) as ch:
                    call = rpc.raw_stream(ch, "/flexlog.Sequencer/Attach", pb.SequencerToReplica)(
                        queue.drain()
                    )
                    self._leaf_queue = queue
                    log.info("replica %s attached to leaf %d at %s", self.me.name,
                             self.shard.leaf, address)
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
            "waiting_grants": len(self._early),
            "stats": self.stats,
        }
        detail["engine"] = self.engine_stats()
        return pb.StatusReply(role="replica", name=self.me.name,
                              ready=self._leaf_queue is not None, detail=json.dumps(detail))


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
