"""A sequencer process: hosts tree nodes and moves ordering messages over gRPC.

Replicas of a shard attach to their leaf with one long-lived stream; child
nodes in other processes attach to their parent the same way. Grants for a
shard are serialized once and written to every attached replica of it.

A leaf remembers recent grants by token, so an order request re-sent after a
reconfiguration (or a client's retry) gets the SN its entry already has, never
a second one; after a restart it learns them from the replicas' reports. It
orders nothing before every member of each of its shards reported (so no SN a
member stores is handed out again), and drops requests sent under an older
epoch of the shard.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from flexlog.core import metrics, rpc
from flexlog.core.batching import Batcher, ByteQueue, RowsAndErrors
from flexlog.core.config import ClusterConfig
from flexlog.core.errors import Code, FlexLogError, Unavailable, from_code
from flexlog.core.ordering import OrderingNode
from flexlog.core.proto import flexlog_pb2 as pb
from flexlog.core.view import View, ViewWatcher

log = logging.getLogger("flexlog.sequencer")

RECONNECT_DELAY_S = 0.2
FORWARD_WINDOW = 2  # forward batches a node keeps in flight to its parent
RECENT_GRANTS = 1 << 19  # token -> grant kept per leaf process for deduplicating re-sent requests


class _ShardFanout(RowsAndErrors[tuple[int, int, int, int], pb.GrantError]):
    """The replicas of one shard attached to this leaf, and their pending grants.

    Each message is serialized once and written to every attached replica of the shard.
    """

    def __init__(self) -> None:
        super().__init__()
        self.queues: set[ByteQueue] = set()

    def grant(self, token: int, color: int, sn: int, count: int) -> None:
        self.add_row((token, color, sn, count))

    def reject(self, token: int, color: int, error: FlexLogError) -> None:
        self.add_error(pb.GrantError(token=token, color=color, error=error.code, message=str(error)))

    def send(self, columns: list[tuple[int, ...]], errors: list[pb.GrantError]) -> None:
        tokens, colors, sns, counts = columns or ((), (), (), ())
        data = pb.SequencerToReplica(tokens=tokens, colors=colors, sns=sns, counts=counts,
                                     errors=errors).SerializeToString()
        for queue in self.queues:
            queue.put(data)


class SequencerServer:
    def __init__(self, config: ClusterConfig, name: str) -> None:
        self.config = config
        self.me = config.sequencer(name)
        interval = config.batch_interval_us / 1e6
        self.nodes: dict[int, OrderingNode] = {}
        self.region: dict[int, frozenset[int]] = {}
        self.ready_shards: dict[int, set[int]] = {}
        self._parked: dict[int, list[Callable[[], None]]] = {}
        for node_id in self.me.nodes:
            chain = config.ancestors(node_id)
            self.nodes[node_id] = OrderingNode(node_id, config.nodes[node_id].parent, frozenset(chain[1:]))
            self.region[node_id] = frozenset(config.region(node_id))
            self.ready_shards[node_id] = set()
            self._parked[node_id] = []
        self.fanouts: dict[int, _ShardFanout] = {}
        self._parent_out: dict[int, Batcher[pb.ForwardReq]] = {}
        self._parent_queues: dict[int, ByteQueue] = {}
        self._flush_scheduled: set[int] = set()
        self._interval = interval
        self._tasks: list[asyncio.Task[None]] = []
        self._server: grpc.aio.Server | None = None
        # Leaf side of fault tolerance: which members of each shard reported, the tails they
        # reported (passed up once the shard is complete), recent grants and requests in flight.
        self._reported: dict[int, set[int]] = {}
        self._shard_tails: dict[int, dict[int, int]] = {}
        # token -> (color, sn, count)
        self._recent_grants: OrderedDict[int, tuple[int, int, int]] = OrderedDict()
        self._in_flight: set[int] = set()
        self._watcher = ViewWatcher(config, self._view_changed)
        self.stale_dropped = 0

    # ---- lifecycle -------------------------------------------------------

    async def start(self) -> None:
        self._server = rpc.server()
        self._server.add_generic_rpc_handlers([
            rpc.service("flexlog.Sequencer", {
                "Attach": rpc.bidi(self._attach, pb.ReplicaToSequencer),
                "Forward": rpc.bidi(self._forward, pb.ChildToParent),
                "NextSn": rpc.unary(self._next_sn, pb.NextSnRequest),
                "Status": rpc.unary(self._status, pb.StatusRequest),
            })
        ])
        rpc.listen(self._server, self.me.address)
        await self._server.start()
        self._tasks.append(asyncio.create_task(self._watcher.run()))
        metrics.register_sequencer(self)
        metrics.serve(self.me.address, self.me.metrics_port)
        for node_id, node in self.nodes.items():
            if node.parent is not None and node.parent not in self.nodes:
                self._tasks.append(asyncio.create_task(self._parent_link(node_id, node.parent)))
        log.info("sequencer %s listening on %s, nodes %s", self.me.name, self.me.address,
                 list(self.nodes))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._server is not None:
            await self._server.stop(0.5)

    async def wait(self) -> None:
        assert self._server is not None
        await self._server.wait_for_termination()

    # ---- readiness: a node assigns SNs only once it knows every shard's tails

    def is_ready(self, node_id: int) -> bool:
        return self.ready_shards[node_id] >= self.region[node_id]

    def _shard_reported(self, node_id: int, shard: int, tails: Any) -> None:
        node = self.nodes[node_id]
        for t in tails:
            node.learn_tail(t.color, t.tail)
        was_ready = self.is_ready(node_id)
        self.ready_shards[node_id].add(shard)
        parent = node.parent
        if parent is not None:
            if parent in self.nodes:
                self._shard_reported(parent, shard, tails)
            else:
                queue = self._parent_queues.get(node_id)
                if queue is not None:
                    queue.put(pb.ChildToParent(
                        child=node_id, parent=parent, shards_ready=[shard], tails=tails
                    ).SerializeToString())
        if not was_ready and self.is_ready(node_id):
            log.info("node %d ready: every shard of its region reported", node_id)
            parked, self._parked[node_id] = self._parked[node_id], []
            for retry in parked:
                retry()

    def _view_changed(self, view: View) -> None:
        for shard in list(self._reported):
            self._check_shard(shard)

    def _check_shard(self, shard: int) -> None:
        """A shard counts as reported once every member of the current view reported its tails."""
        leaf = self.config.shard(shard).leaf
        if shard in self.ready_shards[leaf]:
            return
        if set(self._watcher.view.shard(shard).members) <= self._reported.get(shard, set()):
            tails = [pb.ColorTail(color=c, tail=t) for c, t in self._shard_tails.pop(shard, {}).items()]
            self._shard_reported(leaf, shard, tails)

    def _replica_hello(self, leaf: int, msg: pb.ReplicaToSequencer) -> None:
        node = self.nodes[leaf]
        tails = self._shard_tails.setdefault(msg.shard, {})
        for t in msg.tails:
            node.learn_tail(t.color, t.tail)
            tails[t.color] = max(tails.get(t.color, 0), t.tail)
        for token, color, sn, count in zip(msg.recent_tokens, msg.recent_colors, msg.recent_sns,
                                           msg.recent_counts, strict=True):
            self._remember(token, color, sn, count)
        self._reported.setdefault(msg.shard, set()).add(msg.replica)
        self._check_shard(msg.shard)

    def _remember(self, token: int, color: int, sn: int, count: int) -> None:
        self._recent_grants[token] = (color, sn, count)
        if len(self._recent_grants) > RECENT_GRANTS:
            self._recent_grants.popitem(last=False)

    def _order(self, leaf: int, fan: _ShardFanout, token: int, color: int, owner: int,
               count: int) -> None:
        """One order request from a replica: parked until the leaf is ready, deduplicated by token."""
        if not self.is_ready(leaf):
            self._parked[leaf].append(lambda: self._order(leaf, fan, token, color, owner, count))
            return
        known = self._recent_grants.get(token)
        if known is not None:
            fan.grant(token, known[0], known[1], known[2])
            return
        if token in self._in_flight:
            return  # its grant goes to every replica of the shard anyway
        self._in_flight.add(token)
        self._submit(leaf, color, owner, count, self._grant_reply(fan, token, color, count))

    # ---- ordering ----------------------------------------------------------

    def _submit(self, node_id: int, color: int, owner: int, count: int,
                reply: Callable[[int | FlexLogError], None]) -> None:
        if owner == node_id and not self.is_ready(node_id):
            self._parked[node_id].append(lambda: self._submit(node_id, color, owner, count, reply))
            return
        if self.nodes[node_id].submit(color, owner, count, reply):
            self._schedule_flush(node_id)

    def _schedule_flush(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node_id in self._flush_scheduled or node.outstanding >= FORWARD_WINDOW:
            return
        self._flush_scheduled.add(node_id)
        loop = asyncio.get_running_loop()
        if self._interval > 0:
            loop.call_later(self._interval, self._flush_up, node_id)
        else:
            loop.call_soon(self._flush_up, node_id)

    def _flush_up(self, node_id: int) -> None:
        self._flush_scheduled.discard(node_id)
        node = self.nodes[node_id]
        forwards = node.take_forwards(time.monotonic())
        if forwards:
            metrics.FORWARD_BATCH.labels(str(node_id)).observe(sum(f.requests for f in forwards))
        parent = node.parent
        assert parent is not None
        if parent in self.nodes:
            for f in forwards:
                self._submit(parent, f.color, f.owner, f.count,
                             lambda r, fid=f.id: self._granted(node_id, fid, r))
            return
        batcher = self._parent_out.get(node_id)
        if batcher is None:
            for f in forwards:
                node.on_grant(f.id, Unavailable(f"parent of node {node_id} is not connected"))
            return
        for f in forwards:
            batcher.put(pb.ForwardReq(id=f.id, color=f.color, owner=f.owner, count=f.count))

    def _granted(self, node_id: int, forward_id: int, result: int | FlexLogError) -> None:
        node = self.nodes[node_id]
        sent_at = node.on_grant(forward_id, result)
        if sent_at is not None:
            metrics.TREE_HOP.labels(str(node_id)).observe(time.monotonic() - sent_at)
        if node.has_pending:
            self._schedule_flush(node_id)

    # ---- replica streams -------------------------------------------------------

    async def _attach(self, requests: AsyncIterator[pb.ReplicaToSequencer],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        queue = ByteQueue()
        reader = asyncio.create_task(self._read_replica(requests, queue))
        try:
            async for data in queue.drain():
                yield data
        finally:
            reader.cancel()
            for fan in self.fanouts.values():
                fan.queues.discard(queue)

    async def _read_replica(self, requests: AsyncIterator[pb.ReplicaToSequencer],
                            queue: ByteQueue) -> None:
        fan: _ShardFanout | None = None
        leaf = -1
        try:
            async for msg in requests:
                if fan is None:
                    leaf = self.config.shard(msg.shard).leaf
                    if leaf not in self.nodes:
                        log.error("replica %d/%d attached to the wrong sequencer", msg.shard,
                                  msg.replica)
                        return
                    fan = self.fanouts.setdefault(msg.shard, _ShardFanout())
                    fan.queues.add(queue)
                    log.info("replica %d of shard %d attached to node %d", msg.replica,
                             msg.shard, leaf)
                    self._replica_hello(leaf, msg)
                if not msg.tokens:
                    continue
                epoch = self._watcher.view.shard(msg.shard).epoch
                if msg.epoch < epoch:
                    # A replica that missed a reconfiguration (paused, partitioned) may think it
                    # is still responsible: refuse to it alone, the others must not abort.
                    self.stale_dropped += len(msg.tokens)
                    queue.put(pb.SequencerToReplica(errors=[
                        pb.GrantError(token=t, color=c, error=Code.STALE_EPOCH,
                                      message=f"epoch {msg.epoch} < {epoch}")
                        for t, c in zip(msg.tokens, msg.colors, strict=True)
                    ]).SerializeToString())
                    continue
                for token, color, owner, count in zip(msg.tokens, msg.colors, msg.owners, msg.counts,
                                                      strict=True):
                    self._order(leaf, fan, token, color, owner, count)
        finally:
            queue.close()

    def _grant_reply(self, fan: _ShardFanout, token: int, color: int,
                     count: int) -> Callable[[int | FlexLogError], None]:
        def reply(result: int | FlexLogError) -> None:
            self._in_flight.discard(token)
            if isinstance(result, FlexLogError):
                fan.reject(token, color, result)
            else:
                self._remember(token, color, result, count)
                fan.grant(token, color, result, count)
        return reply

    # ---- child streams ---------------------------------------------------------

    async def _forward(self, requests: AsyncIterator[pb.ChildToParent],
                       context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        queue = ByteQueue()
        out: Batcher[pb.ForwardGrant] = Batcher(
            lambda grants: queue.put(pb.ParentToChild(grants=grants).SerializeToString())
        )
        reader = asyncio.create_task(self._read_child(requests, out, queue))
        try:
            async for data in queue.drain():
                yield data
        finally:
            reader.cancel()

    async def _read_child(self, requests: AsyncIterator[pb.ChildToParent],
                          out: Batcher[pb.ForwardGrant], queue: ByteQueue) -> None:
        try:
            async for msg in requests:
                node_id = msg.parent
                if node_id not in self.nodes:
                    log.error("child %d forwarded to node %d, which is not here", msg.child, node_id)
                    return
                for shard in msg.shards_ready:
                    self._shard_reported(node_id, shard, msg.tails)
                for req in msg.reqs:
                    self._submit(node_id, req.color, req.owner, req.count,
                                 self._forward_reply(out, req.id))
        finally:
            queue.close()

    @staticmethod
    def _forward_reply(out: Batcher[pb.ForwardGrant],
                       fid: int) -> Callable[[int | FlexLogError], None]:
        def reply(result: int | FlexLogError) -> None:
            if isinstance(result, FlexLogError):
                out.put(pb.ForwardGrant(id=fid, error=result.code, message=str(result)))
            else:
                out.put(pb.ForwardGrant(id=fid, sn=result))
        return reply

    async def _parent_link(self, node_id: int, parent: int) -> None:
        """Keep one stream to the parent node's process, reconnecting when it breaks."""
        node = self.nodes[node_id]
        address = self.config.node_address(parent)
        while True:
            queue = ByteQueue()
            hello = pb.ChildToParent(child=node_id, parent=parent)
            queue.put(hello.SerializeToString())
            for shard in self.ready_shards[node_id]:
                queue.put(pb.ChildToParent(
                    child=node_id, parent=parent, shards_ready=[shard],
                    tails=[pb.ColorTail(color=c, tail=t) for c, t in node.counters.items()],
                ).SerializeToString())
            self._parent_queues[node_id] = queue
            self._parent_out[node_id] = Batcher(
                lambda reqs, q=queue: q.put(
                    pb.ChildToParent(child=node_id, parent=parent, reqs=reqs).SerializeToString()
                )
            )
            try:
                async with rpc.channel(address) as ch:
                    call = rpc.raw_stream(ch, "/flexlog.Sequencer/Forward", pb.ParentToChild)(
                        queue.drain()
                    )
                    log.info("node %d linked to parent %d at %s", node_id, parent, address)
                    async for msg in call:
                        for g in msg.grants:
                            self._granted(node_id, g.id,
                                          from_code(g.error, g.message) if g.error else g.sn)
            except grpc.aio.AioRpcError as exc:
                log.warning("link from node %d to parent %d broke: %s", node_id, parent,
                            exc.code().name)
            finally:
                queue.close()
                self._parent_out.pop(node_id, None)
                self._parent_queues.pop(node_id, None)
                node.fail_in_flight(Unavailable(f"link from node {node_id} to its parent broke"))
            await asyncio.sleep(RECONNECT_DELAY_S)

    # ---- control ---------------------------------------------------------------

    async def _next_sn(self, req: pb.NextSnRequest,
                       context: grpc.aio.ServicerContext) -> pb.NextSnReply:
        node = self.nodes.get(req.owner)
        if node is None:
            return pb.NextSnReply(error=int(Unavailable.code),
                                  message=f"node {req.owner} is not hosted here")
        if not self.is_ready(req.owner):
            return pb.NextSnReply(error=int(Unavailable.code),
                                  message=f"node {req.owner} is waiting for its shards")
        return pb.NextSnReply(next_sn=node.next_sn(req.color))

    async def _status(self, req: pb.StatusRequest,
                      context: grpc.aio.ServicerContext) -> pb.StatusReply:
        detail = {
            "nodes": {
                str(nid): {
                    "parent": node.parent,
                    "ready": self.is_ready(nid),
                    "shards_ready": sorted(self.ready_shards[nid]),
                    "colors": len(node.counters),
                    "ordered_requests": node.ordered_requests,
                    "ordered_records": node.ordered_records,
                    "parent_linked": node.parent is None or node.parent in self.nodes
                    or nid in self._parent_out,
                }
                for nid, node in self.nodes.items()
            },
            "attached": {str(s): len(f.queues) for s, f in self.fanouts.items()},
            "stale_dropped": self.stale_dropped,
        }
        ready = all(self.is_ready(n) for n in self.nodes) and all(
            d["parent_linked"] for d in detail["nodes"].values()
        )
        return pb.StatusReply(role="sequencer", name=self.me.name, ready=ready,
                              detail=json.dumps(detail))
