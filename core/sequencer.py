"""A sequencer process: the gRPC/asyncio adapter around `SequencerProtocol`.

Replicas of a shard attach to their leaf with one long-lived stream; child
nodes in other processes attach to their parent the same way. Grants for a
shard are serialized once and written to every attached replica of it. Every
decision (readiness, parking, token dedupe, stale epochs, what a restarted
parent learns) is `core/sequencer_protocol.py`'s; this module moves its
messages and gives it the time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

import grpc

from flexlog.core import metrics, rpc, tasks
from flexlog.core.batching import Batcher, ByteQueue, RowsAndErrors, serve_stream
from flexlog.core.config import ClusterConfig
from flexlog.core.errors import FlexLogError, from_code
from flexlog.core.ordering import ForwardRequest, OrderingNode
from flexlog.core.proto import flexlog_pb2 as pb
from flexlog.core.sequencer_protocol import SequencerProtocol, Tail
from flexlog.core.view import View, ViewWatcher

log = logging.getLogger("flexlog.sequencer")

RECONNECT_DELAY_S = 0.2


class _ShardFanout(RowsAndErrors[tuple[int, int, int, int], pb.GrantError]):
    """Replica streams of one shard (or one stream alone), and the grants owed to them.

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


class _ChildOut:
    """Grants owed to one child node's stream, batched per loop iteration."""

    def __init__(self, queue: ByteQueue) -> None:
        self._out: Batcher[pb.ForwardGrant] = Batcher(
            lambda grants: queue.put(pb.ParentToChild(grants=grants).SerializeToString()))

    def granted(self, forward_id: int, result: int | FlexLogError) -> None:
        if isinstance(result, FlexLogError):
            self._out.put(pb.ForwardGrant(id=forward_id, error=result.code, message=str(result)))
        else:
            self._out.put(pb.ForwardGrant(id=forward_id, sn=result))


def _tails(tails: list[Tail]) -> list[pb.ColorTail]:
    return [pb.ColorTail(color=c, tail=t) for c, t in tails]


class SequencerServer:
    def __init__(self, config: ClusterConfig, name: str) -> None:
        self.config = config
        self.me = config.sequencer(name)
        self._interval = config.batch_interval_us / 1e6
        self.fanouts: dict[int, _ShardFanout] = {}
        self._parent_out: dict[int, Batcher[pb.ForwardReq]] = {}
        self._parent_queues: dict[int, ByteQueue] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: grpc.aio.Server | None = None
        self._watcher = ViewWatcher(config, self._view_changed)
        self.protocol = SequencerProtocol(config, self.me.nodes, self, self._watcher.view)

    @property
    def nodes(self) -> dict[int, OrderingNode]:
        return self.protocol.nodes

    @property
    def stale_dropped(self) -> int:
        return self.protocol.stale_dropped

    def _view_changed(self, view: View) -> None:
        self.protocol.view_changed(view)

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
        tasks.supervise(self._watcher.run, f"sequencer {self.me.name}: view watcher", log,
                        self._tasks)
        metrics.register_sequencer(self)
        metrics.serve(self.me.address, self.me.metrics_port)
        for node_id, node in self.protocol.nodes.items():
            if node.parent is not None and node.parent not in self.protocol.nodes:
                tasks.supervise(lambda n=node_id, p=node.parent: self._parent_link(n, p),
                                f"node {node_id}: link to its parent", log, self._tasks)
        log.info("sequencer %s listening on %s, nodes %s", self.me.name, self.me.address,
                 list(self.protocol.nodes))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            await self._server.stop(0.5)

    async def wait(self) -> None:
        assert self._server is not None
        await self._server.wait_for_termination()

    def is_ready(self, node_id: int) -> bool:
        return self.protocol.is_ready(node_id)

    # ---- SequencerIO ----------------------------------------------------------

    def flush_later(self, node_id: int) -> None:
        loop = asyncio.get_running_loop()
        if self._interval > 0:
            loop.call_later(self._interval, self._flush_up, node_id)
        else:
            loop.call_soon(self._flush_up, node_id)

    def _flush_up(self, node_id: int) -> None:
        forwards = self.protocol.flush_up(node_id, time.monotonic())
        if forwards:
            metrics.FORWARD_BATCH.labels(str(node_id)).observe(sum(f.requests for f in forwards))

    def forward(self, node_id: int, reqs: list[ForwardRequest]) -> bool:
        batcher = self._parent_out.get(node_id)
        if batcher is None:
            return False
        for f in reqs:
            batcher.put(pb.ForwardReq(id=f.id, color=f.color, owner=f.owner, count=f.count))
        return True

    def report_up(self, node_id: int, shard: int, tails: list[Tail]) -> None:
        queue = self._parent_queues.get(node_id)
        if queue is not None:
            parent = self.protocol.nodes[node_id].parent
            queue.put(pb.ChildToParent(child=node_id, parent=parent, shards_ready=[shard],
                                       tails=_tails(tails)).SerializeToString())

    def _granted(self, node_id: int, forward_id: int, result: int | FlexLogError) -> None:
        sent_at = self.protocol.parent_granted(node_id, forward_id, result)
        if sent_at is not None:
            metrics.TREE_HOP.labels(str(node_id)).observe(time.monotonic() - sent_at)

    # ---- replica streams -------------------------------------------------------

    async def _attach(self, requests: AsyncIterator[pb.ReplicaToSequencer],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        def detach(queue: ByteQueue) -> None:
            for fan in self.fanouts.values():
                fan.queues.discard(queue)

        async for data in serve_stream(lambda queue: self._read_replica(requests, queue),
                                       "replica stream", detach):
            yield data

    async def _read_replica(self, requests: AsyncIterator[pb.ReplicaToSequencer],
                            queue: ByteQueue) -> None:
        protocol = self.protocol
        fan: _ShardFanout | None = None
        sender = _ShardFanout()
        sender.queues.add(queue)
        try:
            async for msg in requests:
                if fan is None:
                    if protocol.leaf_of(msg.shard) is None:
                        log.error("replica %d/%d attached to the wrong sequencer", msg.shard,
                                  msg.replica)
                        return
                    fan = self.fanouts.setdefault(msg.shard, _ShardFanout())
                    fan.queues.add(queue)
                    log.info("replica %d of shard %d attached", msg.replica, msg.shard)
                    protocol.replica_hello(
                        msg.shard, msg.replica, [(t.color, t.tail) for t in msg.tails],
                        zip(msg.recent_tokens, msg.recent_colors, msg.recent_sns,
                            msg.recent_counts, strict=True), sender)
                if msg.tokens:
                    protocol.order(msg.shard, msg.epoch,
                                   zip(msg.tokens, msg.colors, msg.owners, msg.counts, strict=True),
                                   fan, sender)
        finally:
            queue.close()

    # ---- child streams ---------------------------------------------------------

    async def _forward(self, requests: AsyncIterator[pb.ChildToParent],
                       context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        async for data in serve_stream(
                lambda queue: self._read_child(requests, _ChildOut(queue), queue), "child stream"):
            yield data

    async def _read_child(self, requests: AsyncIterator[pb.ChildToParent], out: _ChildOut,
                          queue: ByteQueue) -> None:
        try:
            async for msg in requests:
                node_id = msg.parent
                if node_id not in self.protocol.nodes:
                    log.error("child %d forwarded to node %d, which is not here", msg.child, node_id)
                    return
                if msg.shards_ready:
                    self.protocol.child_ready(node_id, msg.shards_ready,
                                              [(t.color, t.tail) for t in msg.tails])
                if msg.reqs:
                    self.protocol.child_requests(
                        node_id, ((r.id, r.color, r.owner, r.count) for r in msg.reqs), out)
        finally:
            queue.close()

    async def _parent_link(self, node_id: int, parent: int) -> None:
        """Keep one stream to the parent node's process, reconnecting when it breaks."""
        address = self.config.node_address(parent)
        while True:
            queue = ByteQueue()
            queue.put(pb.ChildToParent(child=node_id, parent=parent).SerializeToString())
            for shard, tails in self.protocol.parent_hello(node_id):
                queue.put(pb.ChildToParent(child=node_id, parent=parent, shards_ready=[shard],
                                           tails=_tails(tails)).SerializeToString())
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
                self.protocol.parent_lost(node_id)
            await asyncio.sleep(RECONNECT_DELAY_S)

    # ---- control ---------------------------------------------------------------

    async def _next_sn(self, req: pb.NextSnRequest,
                       context: grpc.aio.ServicerContext) -> pb.NextSnReply:
        result = self.protocol.next_sn(req.owner, req.color)
        if isinstance(result, FlexLogError):
            return pb.NextSnReply(error=int(result.code), message=str(result))
        return pb.NextSnReply(next_sn=result)

    async def _status(self, req: pb.StatusRequest,
                      context: grpc.aio.ServicerContext) -> pb.StatusReply:
        protocol = self.protocol
        detail = {
            "nodes": {
                str(nid): {
                    "parent": node.parent,
                    "ready": protocol.is_ready(nid),
                    "shards_ready": sorted(protocol.ready_shards[nid]),
                    "colors": len(node.counters),
                    "ordered_requests": node.ordered_requests,
                    "ordered_records": node.ordered_records,
                    "parent_linked": node.parent is None or node.parent in protocol.nodes
                    or nid in self._parent_out,
                }
                for nid, node in protocol.nodes.items()
            },
            "attached": {str(s): len(f.queues) for s, f in self.fanouts.items()},
            "stale_dropped": protocol.stale_dropped,
        }
        ready = all(protocol.is_ready(n) for n in protocol.nodes) and all(
            d["parent_linked"] for d in detail["nodes"].values()
        )
        return pb.StatusReply(role="sequencer", name=self.me.name, ready=ready,
                              detail=json.dumps(detail))
