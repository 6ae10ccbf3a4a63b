"""A storage replica process: the gRPC/asyncio adapter around `ReplicaProtocol`.

Write-all/read-one: a client sends each entry to every member of the shard;
the one replica responsible for the shard's colors (the first readable member of
the current view, `core/view.py`) asks the leaf for an SN block; the leaf
broadcasts the grant to the whole shard; every replica commits token -> SN and
acks the client. Every decision is `core/replica_protocol.py`'s; this module
moves its messages over streams, gives it the time, and runs the I/O it asks
for: the leaf link, repairs from a peer, catch-up copies, seal and fill rounds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable

import grpc

from flexlog.core import metrics, rpc, tasks
from flexlog.core.append_wire import MalformedAppend, decode_request
from flexlog.core.batching import Batcher, ByteQueue, RowsAndErrors, serve_stream
from flexlog.core.config import ClusterConfig
from flexlog.core.errors import Code
from flexlog.core.proto import flexlog_pb2 as pb
from flexlog.core.replica_protocol import CopiedEntry, Grant, ReplicaProtocol
from flexlog.core.storage import StorageEngine, StoredEntry
from flexlog.core.view import View, ViewWatcher

log = logging.getLogger("flexlog.replica")

RECONNECT_DELAY_S = 0.2
TICK_INTERVAL_S = 0.5
CATCHUP_GRACE_S = 1.0  # after joining: clients and the leaf have seen the new view by then
CATCHUP_RETRY_S = 0.5
CATCHUP_BYTES = 4 << 20
PEER_TIMEOUT_S = 5.0
COLORS_PAGE = 1024  # colors per page of a catch-up's Colors calls


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


class _ResultSink:
    """Query results owed to one query stream, sent together once per loop iteration."""

    def __init__(self, queue: ByteQueue) -> None:
        self._out: Batcher[pb.QueryResult] = Batcher(
            lambda items: queue.put(pb.QueryReply(results=items).SerializeToString()))
        self.owed = 0
        self.settled = asyncio.Event()

    def asked(self) -> None:
        self.owed += 1
        self.settled.clear()

    def answer(self, result: pb.QueryResult) -> None:
        self._out.put(result)
        self.owed -= 1
        if self.owed == 0:
            self.settled.set()


class ReplicaServer:
    def __init__(self, config: ClusterConfig, name: str, engine: StorageEngine) -> None:
        self.config = config
        self.me = config.replica(name)
        self.shard = config.shard(self.me.shard)
        self.engine = engine
        self._leaf_queue: ByteQueue | None = None
        self._flush_scheduled = False
        self._watcher = ViewWatcher(config, self._view_changed, self._view_contact)
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: grpc.aio.Server | None = None
        self.protocol = ReplicaProtocol(
            self.me.shard, self.me.index, engine, self, self._watcher.view,
            # Tells the controller this process apart from an earlier one of the same replica.
            incarnation=random.getrandbits(62), copy_tokens=random.getrandbits(30),
            now=time.monotonic(), max_entry_bytes=config.max_entry_bytes)

    @property
    def stats(self) -> dict[str, int]:
        return self.protocol.stats

    @property
    def attached(self) -> bool:
        return self.protocol.attached

    @property
    def prepared_count(self) -> int:
        return self.protocol.prepared_count

    def engine_stats(self) -> dict[str, float]:
        return self.engine.stats()

    def _view_changed(self, view: View) -> None:
        self.protocol.view_changed(view)

    def _view_contact(self) -> None:
        self.protocol.view_seen(time.monotonic())

    def _spawn(self, work: Awaitable[None], what: str) -> None:
        tasks.spawn(work, f"replica {self.me.name}: {what}", log, self._tasks)

    # ---- lifecycle -------------------------------------------------------

    async def start(self) -> None:
        self._server = rpc.server()
        self._server.add_generic_rpc_handlers([
            rpc.service("flexlog.Replica", {
                "Append": rpc.bidi_raw(self._append),
                "Query": rpc.bidi(self._query, pb.QueryRequest),
                "Status": rpc.unary(self._status, pb.StatusRequest),
                "Colors": rpc.unary(self._colors, pb.ColorsRequest),
            })
        ])
        rpc.listen(self._server, self.me.address)
        await self._server.start()
        metrics.register_replica(self)
        metrics.serve(self.me.address, self.me.metrics_port)
        for loop_fn, what in ((self._leaf_link, "leaf link"), (self._tick, "periodic sweep"),
                              (self._watcher.run, "view watcher")):
            tasks.supervise(loop_fn, f"replica {self.me.name}: {what}", log, self._tasks)
        self.protocol.view_changed(self._watcher.view)
        log.info("replica %s listening on %s", self.me.name, self.me.address)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            await self._server.stop(0.5)
        self.engine.close()

    async def wait(self) -> None:
        assert self._server is not None
        await self._server.wait_for_termination()

    # ---- ReplicaIO: what the protocol asks for ------------------------------------

    def flush_soon(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self.protocol.flush_orders()

    def send_to_leaf(self, message: pb.ReplicaToSequencer) -> None:
        if self._leaf_queue is not None:
            self._leaf_queue.put(message.SerializeToString())

    def repair(self, grant: Grant) -> None:
        self._spawn(self._repair(grant), f"repair of SN {grant.sn} of color {grant.color}")

    def catch_up(self, epoch: int, peers: list[int]) -> None:
        self._spawn(self._catch_up(epoch, peers), "catch-up")

    def copy_gap(self, color: int, start: int, end: int, peers: tuple[int, ...]) -> None:
        self._spawn(self._copy_gap(color, start, end, peers), f"copy of a gap in color {color}")

    def seal(self, color: int, start: int, end: int, members: tuple[int, ...]) -> None:
        self._spawn(self._seal(color, start, end, members), f"seal of color {color}")

    def fill(self, op: pb.QueryOp, members: tuple[int, ...]) -> None:
        self._spawn(self._fill(op, members), f"fill of color {op.color}")

    # ---- append path -------------------------------------------------------

    async def _append(self, requests: AsyncIterator[bytes],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        malformed: list[str] = []
        async for data in serve_stream(
                lambda queue: self._read_appends(requests, _AckSink(queue), queue, malformed),
                f"replica {self.me.name}: append stream"):
            yield data
        if malformed:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, malformed[0])

    async def _read_appends(self, requests: AsyncIterator[bytes], acks: _AckSink,
                            queue: ByteQueue, malformed: list[str]) -> None:
        """Prepare what each message carries; a message that is no AppendRequest ends the
        stream (noted in malformed, logged once): its sender is broken, not this replica."""
        try:
            prepare_time = metrics.PREPARE_BATCH.labels(self.me.name)
            sizes = metrics.ENTRIES_PER_MESSAGE.labels(self.me.name)
            async for data in requests:
                try:
                    ops = decode_request(data)
                except MalformedAppend as exc:
                    log.warning("replica %s: append stream ended: malformed AppendRequest: %s",
                                self.me.name, exc)
                    malformed.append(f"malformed AppendRequest: {exc}")
                    return
                start = time.perf_counter()
                self.protocol.prepare(ops, acks, time.monotonic())
                prepare_time.observe(time.perf_counter() - start)
                sizes.observe(len(ops))
        except grpc.aio.AioRpcError:
            pass
        finally:
            queue.close()

    async def _leaf_link(self) -> None:
        """One stream to the leaf sequencer: order requests up, grants down; reconnects."""
        address = self.config.node_address(self.shard.leaf)
        protocol = self.protocol
        while True:
            queue = ByteQueue()
            queue.put(protocol.hello().SerializeToString())
            try:
                async with rpc.channel(address) as ch:
                    call = rpc.raw_stream(ch, "/flexlog.Sequencer/Attach", pb.SequencerToReplica)(
                        queue.drain()
                    )
                    self._leaf_queue = queue
                    protocol.leaf_attached()
                    log.info("replica %s attached to leaf %d at %s", self.me.name,
                             self.shard.leaf, address)
                    commit_time = metrics.COMMIT_BATCH.labels(self.me.name)
                    async for msg in call:
                        start = time.perf_counter()
                        grants = [Grant(*row) for row in zip(msg.tokens, msg.colors, msg.sns,
                                                             msg.counts, strict=True)]
                        grants.extend(Grant(e.token, e.color, 0, 0, e.error, e.message)
                                      for e in msg.errors)
                        protocol.grants(grants, time.monotonic())
                        commit_time.observe(time.perf_counter() - start)
            except grpc.aio.AioRpcError as exc:
                log.warning("link to leaf %d broke: %s", self.shard.leaf, exc.code().name)
            finally:
                self._leaf_queue = None
                queue.close()
                protocol.leaf_lost()
            await asyncio.sleep(RECONNECT_DELAY_S)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_INTERVAL_S)
            self.protocol.tick(time.monotonic())

    # ---- peers: repair, catch-up, seal and fill ---------------------------------------

    def _peers(self) -> list[tuple[int, str]]:
        return [(r.index, r.address) for r in self.shard.replicas if r.index != self.me.index]

    async def _repair(self, grant: Grant) -> None:
        """Copy an ordered entry this replica never received from a peer that has it."""
        found = None
        for _, address in self._peers():
            found = await _fetch_entry(address, grant.color, grant.sn)
            if found is not None:
                break
        self.protocol.repaired(grant, found, time.monotonic())

    async def _catch_up(self, epoch: int, peers: list[int]) -> None:
        """Copy every committed entry this replica lacks from a readable member.

        It is a member already, so everything granted from now on reaches it (with
        the client's prepare, or as a grant repaired from a peer). Waiting a grace
        period first lets clients and the leaf see the view; what a readable member
        has committed by then is copied here. A peer counts only if it says it is
        readable itself: one restarted a moment ago may still be listed readable.
        """
        ok = False
        try:
            await asyncio.sleep(CATCHUP_GRACE_S)
            for peer in self.shard.replicas:
                if peer.index not in peers:
                    continue
                try:
                    copied = await self._copy_from(peer.address)
                except (grpc.aio.AioRpcError, OSError) as exc:
                    log.warning("catch-up from %s failed: %s", peer.name, exc)
                    continue
                if copied is None:
                    log.info("catch-up: %s is not readable itself; trying another", peer.name)
                    continue
                log.info("replica %s caught up from %s at epoch %d: %d entries copied",
                         self.me.name, peer.name, epoch, copied)
                ok = True
                return
            log.warning("replica %s found no readable member to catch up from; retrying",
                        self.me.name)
            await asyncio.sleep(CATCHUP_RETRY_S)
        finally:
            self.protocol.caught_up(epoch, ok)

    async def _copy_from(self, address: str) -> int | None:
        """Entries copied from the replica at address; None when it is not readable itself."""
        async with rpc.channel(address) as ch:
            status = ch.unary_unary("/flexlog.Replica/Status",
                                    request_serializer=pb.StatusRequest.SerializeToString,
                                    response_deserializer=pb.StatusReply.FromString)
            if not (await status(pb.StatusRequest(), timeout=PEER_TIMEOUT_S)).readable:
                return None
            colors = ch.unary_unary("/flexlog.Replica/Colors",
                                    request_serializer=pb.ColorsRequest.SerializeToString,
                                    response_deserializer=pb.ColorsReply.FromString)
            copied = 0
            start = 0
            while True:
                page = await colors(pb.ColorsRequest(start=start, limit=COLORS_PAGE),
                                    timeout=PEER_TIMEOUT_S)
                for st in page.colors:
                    sn = max(self.protocol.color(st.color).prefix, st.log_start)
                    while sn < st.high:
                        entries = await _fetch_range(ch, st.color, sn)
                        if not entries:
                            break
                        for entry, token in entries:
                            copied += self.protocol.store_copy(st.color, entry, token)
                            sn = max(sn, entry.end)
                if not page.more or not page.colors:
                    return copied
                start = page.colors[-1].color + 1

    async def _copy_gap(self, color: int, start: int, end: int, peers: tuple[int, ...]) -> None:
        for index in peers:
            copied = 0
            try:
                async with rpc.channel(self.shard.replicas[index].address) as ch:
                    sn = start
                    while sn < end:
                        entries = [e for e in await _fetch_range(ch, color, sn) if e[0].sn < end]
                        if not entries:
                            break
                        for entry, token in entries:
                            copied += self.protocol.store_copy(color, entry, token)
                        sn = entries[-1][0].end
            except (grpc.aio.AioRpcError, OSError) as exc:
                log.warning("copy of SNs [%d, %d) of color %d from replica %d failed: %s", start,
                            end, color, index, exc)
                continue
            if copied:
                log.info("copied %d entries of color %d missing here from replica %d", copied,
                         color, index)
                return

    async def _seal(self, color: int, start: int, end: int, members: tuple[int, ...]) -> None:
        op = pb.QueryOp(kind=pb.QueryOp.SEAL, color=color, sn=start, end=end)
        entries: list[CopiedEntry] = []
        for index in members:
            if index == self.me.index:
                result = self.protocol.seal(color, start, end)
                if result.error:
                    self.protocol.seal_failed(color)
                    return
            else:
                result = await _ask_peer(self.shard.replicas[index].address, op)
                if result is None or result.error:
                    self.protocol.seal_failed(color)
                    return
            entries.extend(_entries(result))
        self.protocol.sealed(color, start, end, entries)

    async def _fill(self, op: pb.QueryOp, members: tuple[int, ...]) -> None:
        for index in members:
            if index == self.me.index:
                self.protocol.apply_fill(op, time.monotonic())
            else:
                await _ask_peer(self.shard.replicas[index].address, op)

    # ---- reads -----------------------------------------------------------

    async def _query(self, requests: AsyncIterator[pb.QueryRequest],
                     context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        sinks: list[_ResultSink] = []

        def read(queue: ByteQueue) -> Awaitable[None]:
            sinks.append(_ResultSink(queue))
            return self._read_queries(requests, sinks[0], queue)

        async for data in serve_stream(read, f"replica {self.me.name}: query stream",
                                       lambda _: self.protocol.drop_sink(sinks[0])):
            yield data

    async def _read_queries(self, requests: AsyncIterator[pb.QueryRequest], sink: _ResultSink,
                            queue: ByteQueue) -> None:
        protocol = self.protocol
        loop = asyncio.get_running_loop()
        try:
            async for msg in requests:
                for op in msg.ops:
                    sink.asked()
                    if op.kind == pb.QueryOp.SEAL:
                        result = protocol.seal(op.color, op.sn, op.end)
                        result.id = op.id
                        sink.answer(result)
                    elif op.kind == pb.QueryOp.FILL:
                        protocol.apply_fill(op, time.monotonic())
                        sink.answer(pb.QueryResult(id=op.id))
                    else:
                        now = time.monotonic()
                        with metrics.READ.labels(self.me.name).time():
                            deadline = protocol.query(op, sink, now)
                        if deadline is not None:
                            loop.call_later(deadline - now + 0.001, self._expire_waiters)
            # The client half-closed: answer what it asked before ending the stream.
            if sink.owed:
                await sink.settled.wait()
            await asyncio.sleep(0)
        except grpc.aio.AioRpcError:
            pass
        finally:
            queue.close()

    def _expire_waiters(self) -> None:
        self.protocol.expire_waiters(time.monotonic())

    # ---- control -----------------------------------------------------------

    async def _status(self, req: pb.StatusRequest,
                      context: grpc.aio.ServicerContext) -> pb.StatusReply:
        reply = self.protocol.status(req.detail)
        reply.name = self.me.name
        if req.detail:
            detail = json.loads(reply.detail)
            detail["engine"] = self.engine_stats()
            reply.detail = json.dumps(detail)
        return reply

    async def _colors(self, req: pb.ColorsRequest,
                      context: grpc.aio.ServicerContext) -> pb.ColorsReply:
        return self.protocol.color_states(req.start, req.limit or COLORS_PAGE, req.bytes_of)


async def _ask_peer(address: str, op: pb.QueryOp) -> pb.QueryResult | None:
    """One query op to a peer replica; None when it cannot be reached."""
    req = pb.QueryRequest(ops=[op])
    try:
        async with rpc.channel(address) as ch:
            call = rpc.raw_stream(ch, "/flexlog.Replica/Query", pb.QueryReply)(
                iter([req.SerializeToString()]))
            async with asyncio.timeout(PEER_TIMEOUT_S):
                async for reply in call:
                    for r in reply.results:
                        return r
    except (grpc.aio.AioRpcError, TimeoutError):
        return None
    return None


def _entries(result: pb.QueryResult) -> list[CopiedEntry]:
    return [(StoredEntry(s, n, bytes(p)), t)
            for s, n, p, t in zip(result.sns, result.counts, result.payloads, result.tokens,
                                  strict=True)]


async def _fetch_range(ch: grpc.aio.Channel, color: int, sn: int) -> list[CopiedEntry]:
    """Committed entries of a peer, with their tokens, from the one containing sn, up to
    CATCHUP_BYTES."""
    req = pb.QueryRequest(ops=[pb.QueryOp(id=0, kind=pb.QueryOp.RANGE, color=color, sn=sn,
                                          max_bytes=CATCHUP_BYTES, with_tokens=True)])
    call = rpc.raw_stream(ch, "/flexlog.Replica/Query", pb.QueryReply)(iter([req.SerializeToString()]))
    async for reply in call:
        for r in reply.results:
            if r.error:
                raise OSError(f"range read of color {color} at {sn} failed: {r.message}")
            return _entries(r)
    return []


async def _fetch_entry(address: str, color: int, sn: int) -> CopiedEntry | None:
    """One READ from a peer replica: the entry starting at sn with its token; None when it
    does not have one committed."""
    result = await _ask_peer(address, pb.QueryOp(id=0, kind=pb.QueryOp.READ, color=color, sn=sn,
                                                 with_tokens=True))
    if result is not None and not result.error and result.sns and result.sns[0] == sn:
        return _entries(result)[0]
    return None
