"""What a sequencer process decides, free of I/O: messages and the time in, actions out.

A sequencer process hosts one or more tree nodes (`core/ordering.py` holds one
node's counters and aggregation). This module holds what the process decides
around them: when a node may hand out SNs (every shard below it reported its
tails), what waits until then, deduplication of re-sent order requests by
token, refusing order requests sent under an older epoch of a shard, and what a
node tells a restarted parent. Outputs go through the ports it is given
(`ShardOut` per shard of attached replicas, `ChildOut` per child stream,
`SequencerIO` for the link to a parent in another process). `core/sequencer.py`
is its gRPC/asyncio adapter; `tests/sim` drives the same class.

Where to look:
- a replica attaches: `replica_hello`;
- order requests from the responsible replica: `order`;
- requests from a child node in another process: `child_requests`, `child_ready`;
- a node's batch goes up / comes back: `flush_up`, `parent_granted`, `parent_lost`;
- a (re)linked parent learns this node's tails: `parent_hello`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from flexlog.core.config import ClusterConfig
from flexlog.core.errors import FlexLogError, StaleEpoch, Unavailable
from flexlog.core.ordering import ForwardRequest, OrderingNode, Reply
from flexlog.core.view import View

log = logging.getLogger("flexlog.sequencer")

FORWARD_WINDOW = 2  # forward batches a node keeps in flight to its parent
RECENT_GRANTS = 1 << 19  # token -> grant kept per leaf process for deduplicating re-sent requests
# How far back (in grants) an attaching replica is sent what it may have missed; its hello
# is read a few milliseconds after its stream opened, and a replica away longer catches up.
HELLO_REGRANTS = 1 << 12

# (color, tail): one past the highest SN a replica or node knows of in a color.
Tail = tuple[int, int]
# (token, color, owner, count): one order request from a replica.
OrderRow = tuple[int, int, int, int]


class ShardOut(Protocol):
    """The replicas of one shard attached to this leaf: every grant goes to all of them."""

    def grant(self, token: int, color: int, sn: int, count: int) -> None: ...

    def reject(self, token: int, color: int, error: FlexLogError) -> None: ...


class ChildOut(Protocol):
    """A child node's stream in another process."""

    def granted(self, forward_id: int, result: int | FlexLogError) -> None: ...


class SequencerIO(Protocol):
    def flush_later(self, node_id: int) -> None:
        """Call `flush_up(node_id)` after the batching interval."""

    def forward(self, node_id: int, reqs: list[ForwardRequest]) -> bool:
        """Send reqs to the node's parent in another process; False when not linked."""

    def report_up(self, node_id: int, shard: int, tails: list[Tail]) -> None:
        """Tell the node's parent in another process that shard reported (if linked)."""


class SequencerProtocol:
    def __init__(self, config: ClusterConfig, node_ids: Iterable[int], io: SequencerIO,
                 view: View) -> None:
        self.config = config
        self.io = io
        self.view = view
        self.nodes: dict[int, OrderingNode] = {}
        self.region: dict[int, frozenset[int]] = {}
        self.ready_shards: dict[int, set[int]] = {}
        self._parked: dict[int, list[Callable[[], None]]] = {}
        for node_id in node_ids:
            chain = config.ancestors(node_id)
            self.nodes[node_id] = OrderingNode(node_id, config.nodes[node_id].parent,
                                               frozenset(chain[1:]))
            self.region[node_id] = frozenset(config.region(node_id))
            self.ready_shards[node_id] = set()
            self._parked[node_id] = []
        self._flush_scheduled: set[int] = set()
        # Leaf side of fault tolerance: which members of each shard reported, the tails they
        # reported (passed up once the shard is complete), recent grants and requests in flight.
        self._reported: dict[int, set[int]] = {}
        self._shard_tails: dict[int, dict[int, int]] = {}
        # token -> (shard, color, sn, count)
        self._recent_grants: OrderedDict[int, tuple[int, int, int, int]] = OrderedDict()
        self._in_flight: dict[int, list[ShardOut]] = {}  # token -> the replicas that asked
        self.stale_dropped = 0

    def leaf_of(self, shard: int) -> int | None:
        """The node of this process that shard attaches to, or None if it is not here."""
        leaf = self.config.shard(shard).leaf
        return leaf if leaf in self.nodes else None

    # ---- readiness: a node assigns SNs only once it knows every shard's tails -------------

    def is_ready(self, node_id: int) -> bool:
        return self.ready_shards[node_id] >= self.region[node_id]

    def _shard_reported(self, node_id: int, shard: int, tails: Sequence[Tail]) -> None:
        node = self.nodes[node_id]
        for color, tail in tails:
            node.learn_tail(color, tail)
        was_ready = self.is_ready(node_id)
        self.ready_shards[node_id].add(shard)
        parent = node.parent
        if parent is not None:
            if parent in self.nodes:
                self._shard_reported(parent, shard, tails)
            else:
                self.io.report_up(node_id, shard, list(tails))
        if not was_ready and self.is_ready(node_id):
            log.info("node %d ready: every shard of its region reported", node_id)
            parked, self._parked[node_id] = self._parked[node_id], []
            for retry in parked:
                retry()

    def view_changed(self, view: View) -> None:
        self.view = view
        for shard in list(self._reported):
            self._check_shard(shard)

    def _check_shard(self, shard: int) -> None:
        """A shard counts as reported once every member of the current view reported its tails."""
        leaf = self.config.shard(shard).leaf
        if shard in self.ready_shards[leaf]:
            return
        if set(self.view.shard(shard).members) <= self._reported.get(shard, set()):
            tails = list(self._shard_tails.pop(shard, {}).items())
            self._shard_reported(leaf, shard, tails)

    def replica_hello(self, shard: int, replica: int, tails: Sequence[Tail],
                      recent: Iterable[tuple[int, int, int, int]], sender: ShardOut) -> None:
        """A replica attached: what it stores, and the entries it committed lately
        (token, color, sn, count), so a re-sent request for one of them gets its SN again.

        Grants relayed to the shard while the replica was not attached (between its stream
        opening and this hello being read) go to it now, those it cannot hold already: a
        replica holding a later grant of a color but missing an earlier one would, once this
        leaf died, let a new leaf order the earlier entry after the later."""
        node = self.nodes[self.config.shard(shard).leaf]
        reported = self._shard_tails.setdefault(shard, {})
        held: dict[int, int] = {}
        for color, tail in tails:
            node.learn_tail(color, tail)
            reported[color] = max(reported.get(color, 0), tail)
            held[color] = tail
        self._regrant(shard, held, sender)
        for token, color, sn, count in recent:
            self._remember(token, shard, color, sn, count)
            # An early grant is not in the replica's tails yet, but its SNs are taken.
            node.learn_tail(color, sn + count)
            reported[color] = max(reported.get(color, 0), sn + count)
        self._reported.setdefault(shard, set()).add(replica)
        self._check_shard(shard)

    def _regrant(self, shard: int, held: dict[int, int], sender: ShardOut) -> None:
        missed = []
        for i, (token, (g_shard, color, sn, count)) in enumerate(reversed(self._recent_grants.items())):
            if i == HELLO_REGRANTS:
                break
            if g_shard == shard and sn >= held.get(color, 0):
                missed.append((token, color, sn, count))
        for token, color, sn, count in reversed(missed):
            sender.grant(token, color, sn, count)

    def _remember(self, token: int, shard: int, color: int, sn: int, count: int) -> None:
        self._recent_grants[token] = (shard, color, sn, count)
        if len(self._recent_grants) > RECENT_GRANTS:
            self._recent_grants.popitem(last=False)

    # ---- order requests from replicas --------------------------------------------------

    def order(self, shard: int, epoch: int, rows: Iterable[OrderRow], out: ShardOut,
              sender: ShardOut) -> None:
        """One message of order requests from a replica of shard. Grants go to `out` (every
        attached replica of the shard); a refusal for a stale epoch to `sender` alone: a
        replica that missed a reconfiguration (paused, partitioned) may think it is still
        responsible, and the others must not abort."""
        current = self.view.shard(shard).epoch
        if epoch < current:
            for token, color, _, _ in rows:
                self.stale_dropped += 1
                sender.reject(token, color, StaleEpoch(f"epoch {epoch} < {current}"))
            return
        leaf = self.config.shard(shard).leaf
        for token, color, owner, count in rows:
            self._order(shard, leaf, out, sender, token, color, owner, count)

    def _order(self, shard: int, leaf: int, out: ShardOut, sender: ShardOut, token: int, color: int,
               owner: int, count: int) -> None:
        """One order request: parked until the leaf is ready, deduplicated by token.

        A grant goes to every replica of the shard; a refusal only to the replicas that asked
        for it, each of which sends again in its own order (a refusal another replica caused
        would reach one that has asked again meanwhile, and let later entries overtake)."""
        if not self.is_ready(leaf):
            self._parked[leaf].append(
                lambda: self._order(shard, leaf, out, sender, token, color, owner, count))
            return
        known = self._recent_grants.get(token)
        if known is not None:
            out.grant(token, known[1], known[2], known[3])
            return
        asked = self._in_flight.get(token)
        if asked is not None:
            if sender not in asked:
                asked.append(sender)
            return
        self._in_flight[token] = [sender]
        self._submit(leaf, color, owner, count,
                     self._grant_reply(out, token, shard, color, count))

    def _grant_reply(self, out: ShardOut, token: int, shard: int, color: int,
                     count: int) -> Reply:
        def reply(result: int | FlexLogError) -> None:
            asked = self._in_flight.pop(token, [])
            if isinstance(result, FlexLogError):
                for sender in asked:
                    sender.reject(token, color, result)
            else:
                self._remember(token, shard, color, result, count)
                out.grant(token, color, result, count)
        return reply

    # ---- the tree ----------------------------------------------------------------------

    def _submit(self, node_id: int, color: int, owner: int, count: int, reply: Reply) -> None:
        if owner == node_id and not self.is_ready(node_id):
            self._parked[node_id].append(lambda: self._submit(node_id, color, owner, count, reply))
            return
        if self.nodes[node_id].submit(color, owner, count, reply):
            self._schedule_flush(node_id)

    def _schedule_flush(self, node_id: int) -> None:
        if node_id in self._flush_scheduled or self.nodes[node_id].outstanding >= FORWARD_WINDOW:
            return
        self._flush_scheduled.add(node_id)
        self.io.flush_later(node_id)

    def flush_up(self, node_id: int, now: float) -> list[ForwardRequest]:
        """Send what node_id aggregated to its parent; returns the forwards sent."""
        self._flush_scheduled.discard(node_id)
        node = self.nodes[node_id]
        forwards = node.take_forwards(now)
        parent = node.parent
        assert parent is not None
        if parent in self.nodes:
            for f in forwards:
                self._submit(parent, f.color, f.owner, f.count,
                             lambda r, fid=f.id: self.parent_granted(node_id, fid, r))
        elif forwards and not self.io.forward(node_id, forwards):
            for f in forwards:
                node.on_grant(f.id, Unavailable(f"parent of node {node_id} is not connected"))
        return forwards

    def parent_granted(self, node_id: int, forward_id: int,
                       result: int | FlexLogError) -> float | None:
        """A grant (or refusal) from the parent; returns when its batch went up if this
        completed the batch."""
        node = self.nodes[node_id]
        sent_at = node.on_grant(forward_id, result)
        if node.has_pending:
            self._schedule_flush(node_id)
        return sent_at

    def parent_lost(self, node_id: int) -> None:
        self.nodes[node_id].fail_in_flight(
            Unavailable(f"link from node {node_id} to its parent broke"))

    def parent_hello(self, node_id: int) -> list[tuple[int, list[Tail]]]:
        """On (re)linking to a parent: (shard, tails) for every shard that reported here.
        The tails cover every SN this node handed out or relayed (`OrderingNode.tails`),
        so a restarted parent continues above all of them."""
        tails = list(self.nodes[node_id].tails().items())
        return [(shard, tails) for shard in sorted(self.ready_shards[node_id])]

    # ---- child nodes in other processes ----------------------------------------------------

    def child_ready(self, node_id: int, shards: Iterable[int], tails: Sequence[Tail]) -> None:
        for shard in shards:
            self._shard_reported(node_id, shard, tails)

    def child_requests(self, node_id: int, reqs: Iterable[tuple[int, int, int, int]],
                       out: ChildOut) -> None:
        """Forwarded requests (forward id, color, owner, count) from a child node."""
        for fid, color, owner, count in reqs:
            self._submit(node_id, color, owner, count,
                         lambda r, fid=fid: out.granted(fid, r))

    # ---- control -----------------------------------------------------------------------------

    def next_sn(self, owner: int, color: int) -> int | FlexLogError:
        node = self.nodes.get(owner)
        if node is None:
            return Unavailable(f"node {owner} is not hosted here")
        if not self.is_ready(owner):
            return Unavailable(f"node {owner} is waiting for its shards")
        return node.next_sn(color)
