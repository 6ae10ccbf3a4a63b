"""A whole FlexLog cluster in one seeded process: the real protocol state machines over a
simulated network and clock, with crashes, restarts, broken streams and partitions.

What runs is the production decision code: `ReplicaProtocol` for every replica,
`SequencerProtocol` (with `OrderingNode`) for the root and each leaf,
`Controller.decide` for failure detection, the view and its epochs. What is
simulated is everything those classes reach through their ports: streams
(FIFO per direction, random delays, broken by crashes, by chance and by
partitions), one-shot peer calls, the view store and its propagation, the
clock, and clients that follow the native client's rules (`core/client.py`):
write to every member, complete once every readable member acked, resend the
same token after RESEND_AFTER_S or a retriable refusal, give up at a deadline.

Color families run too: members of one family share their owner's counter, and
`SimFamilyReader` reads a family's merged order as the native client does
(`FlexLogClient._family_chain`).

`Checker` watches every commit as it happens and the whole cluster at the end.
Everything random comes from one `random.Random(seed)`, so a seed replays
exactly: `python tests/sim/run.py --seed N`.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flexlog.core import client as client_mod
from flexlog.core import config as config_mod
from flexlog.core import controller as controller_mod
from flexlog.core import record_batch
from flexlog.core import replica as replica_mod
from flexlog.core.append_wire import AppendOp
from flexlog.core.controller import Controller
from flexlog.core.errors import Code, FlexLogError
from flexlog.core.family_fill import FamilyGaps, fill_ops
from flexlog.core.memory_engine import MemoryEngine
from flexlog.core.ordering import ForwardRequest
from flexlog.core.proto import flexlog_pb2 as pb
from flexlog.core.registry import counter_of, family_key
from flexlog.core.replica_protocol import CopiedEntry, Grant, ReplicaProtocol
from flexlog.core.sequencer_protocol import SequencerProtocol, Tail
from flexlog.core.status import ProcessStatus
from flexlog.core.storage import Committed, StoredEntry
from flexlog.core.view import View, ViewConflict, initial_view

SHARDS = 2
REPLICAS = 3
ROOT = 0
# The adapters' timers, as the real processes run them.
TICK_S = replica_mod.TICK_INTERVAL_S
CONTROLLER_S = controller_mod.CHECK_INTERVAL_S
RECONNECT_S = replica_mod.RECONNECT_DELAY_S
CATCHUP_GRACE_S = replica_mod.CATCHUP_GRACE_S
CLIENT_TICK_S = client_mod.RETRY_TICK_S
CLIENT_RESEND_S = client_mod.RESEND_AFTER_S
CLIENT_TIMEOUT_S = 8.0
RPC_TIMEOUT_S = 1.0
BREAK_NOTICE_S = 0.05  # how long a process takes to notice its stream broke
RETRIABLE = {Code.UNAVAILABLE, Code.TIMEOUT, Code.STALE_EPOCH}


class Violation(AssertionError):
    pass


def sim_config() -> config_mod.ClusterConfig:
    """root (node 0) + one leaf per shard (node s+1), 3 replicas each; addresses are names."""
    lines = ['data_dir = "/nonexistent/sim"', 'storage = "memory"',
             '[[sequencer]]\nname = "root"\naddress = "127.0.0.1:1"\nnodes = [{ id = 0 }]']
    port = itertools.count(2)
    for s in range(SHARDS):
        lines.append(f'[[sequencer]]\nname = "leaf{s}"\naddress = "127.0.0.1:{next(port)}"\n'
                     f"nodes = [{{ id = {s + 1}, parent = 0 }}]")
    for s in range(SHARDS):
        addrs = ", ".join(f'"127.0.0.1:{next(port)}"' for _ in range(REPLICAS))
        lines.append(f"[[shard]]\nid = {s}\nleaf = {s + 1}\nreplicas = [{addrs}]")
    import tomllib

    return config_mod.parse(tomllib.loads("\n\n".join(lines)), Path("/nonexistent/sim.toml"))


# ---- the world: time, events, network -------------------------------------------------------


class World:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0.0
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self.processes: dict[str, Process] = {}
        self.cut: set[frozenset[str]] = set()  # partitioned pairs of process names
        self.streams: list[Stream] = []
        self.events_run = 0
        self.slow = 0.0  # extra delay probability (a congested network)
        self.kill_on_grant: set[str] = set()  # leaves that die when the next grant reaches them

    def at(self, delay: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._events, (self.now + max(0.0, delay), next(self._seq), fn))

    def run_until(self, t: float) -> None:
        while self._events and self._events[0][0] <= t:
            when, _, fn = heapq.heappop(self._events)
            self.now = when
            self.events_run += 1
            fn()
        self.now = max(self.now, t)

    def delay(self) -> float:
        d = self.rng.expovariate(1 / 0.002)
        if self.rng.random() < self.slow:
            d += self.rng.uniform(0.05, 0.6)
        return d

    def reachable(self, a: str, b: str) -> bool:
        pa, pb_ = self.processes.get(a), self.processes.get(b)
        return (pa is not None and pb_ is not None and pa.alive and pb_.alive
                and frozenset((a, b)) not in self.cut)

    def partition(self, a: str, b: str) -> None:
        self.cut.add(frozenset((a, b)))
        for s in list(self.streams):
            if {s.a.name, s.b.name} == {a, b}:
                s.close(notice=0.3)  # a keepalive notices a dead peer after a while

    def heal(self) -> None:
        self.cut.clear()
        for p in self.processes.values():
            poll = getattr(p, "poll_view", None)
            if poll is not None:
                self.at(self.rng.uniform(0.0, 0.1), poll)


class Process:
    def __init__(self, world: World, name: str) -> None:
        self.world = world
        self.name = name
        self.alive = False
        self.incarnation = 0
        world.processes[name] = self

    def start(self) -> None:
        self.alive = True
        self.incarnation += 1

    def crash(self) -> None:
        self.alive = False
        for s in list(self.world.streams):
            if s.a is self or s.b is self:
                s.close()

    def later(self, delay: float, fn: Callable[[], None]) -> None:
        """A timer of this incarnation: it dies with the process."""
        inc = self.incarnation

        def run() -> None:
            if self.alive and self.incarnation == inc:
                fn()
        self.world.at(delay, run)

    def every(self, period: float, fn: Callable[[], None]) -> None:
        def tick() -> None:
            fn()
            self.later(period, tick)
        self.later(self.world.rng.uniform(0, period), tick)


class Stream:
    """One long-lived bidirectional stream: FIFO each way, broken as a whole."""

    def __init__(self, world: World, a: Process, b: Process,
                 on_break_a: Callable[[], None], on_break_b: Callable[[], None]) -> None:
        self.world = world
        self.a, self.b = a, b
        self.inc = (a.incarnation, b.incarnation)
        self.open = world.reachable(a.name, b.name)
        self._on_break = (on_break_a, on_break_b)
        self._last = [0.0, 0.0]
        self.sender_out: Any = None  # a leaf's port for refusals to this replica alone
        world.streams.append(self)
        if not self.open:
            world.at(BREAK_NOTICE_S, lambda: self._notify(0))

    def _valid(self) -> bool:
        return (self.open and self.a.alive and self.b.alive
                and (self.a.incarnation, self.b.incarnation) == self.inc)

    def send(self, sender: Process, deliver: Callable[[], None]) -> None:
        """deliver runs at the other end, after every earlier message of this direction."""
        if not self._valid():
            return
        d = 0 if sender is self.a else 1
        when = max(self._last[d], self.world.now + self.world.delay())
        self._last[d] = when

        def arrive() -> None:
            if self._valid():
                deliver()
        self.world.at(when - self.world.now, arrive)

    def close(self, notice: float = BREAK_NOTICE_S) -> None:
        if not self.open:
            return
        self.open = False
        if self in self.world.streams:
            self.world.streams.remove(self)
        self.world.at(notice, lambda: self._notify(0))
        self.world.at(notice, lambda: self._notify(1))

    def _notify(self, side: int) -> None:
        proc = (self.a, self.b)[side]
        if proc.alive and proc.incarnation == self.inc[side]:
            self._on_break[side]()


def call(world: World, caller: Process, callee_name: str, handler: Callable[[Any], Any],
         on_reply: Callable[[Any], None]) -> None:
    """A one-shot request: handler(callee) runs at the callee, on_reply(result) at the caller,
    or on_reply(None) after RPC_TIMEOUT_S when either side is unreachable."""
    inc = caller.incarnation
    done = [False]

    def reply(result: Any) -> None:
        if not done[0] and caller.alive and caller.incarnation == inc:
            done[0] = True
            on_reply(result)

    def arrive() -> None:
        callee = world.processes[callee_name]
        if not world.reachable(caller.name, callee_name):
            return
        result = handler(callee)
        world.at(world.delay(), lambda: reply(result) if world.reachable(caller.name, callee_name)
                 else None)

    if world.reachable(caller.name, callee_name):
        world.at(world.delay(), arrive)
    world.at(RPC_TIMEOUT_S, lambda: reply(None))


# ---- the view store ------------------------------------------------------------------------


class ViewStoreSim:
    """The view with compare-and-set; processes learn a new view after a short delay, or when
    their partition from the store heals."""

    NAME = "viewstore"

    def __init__(self, world: World, view: View) -> None:
        self.world = world
        self.view, self.version = view, 0
        self.proc = Process(world, self.NAME)
        self.proc.start()

    def compare_and_set(self, view: View, expected: int) -> int:
        if expected != self.version:
            raise ViewConflict(f"view is at {self.version}")
        self.view, self.version = view, self.version + 1
        for p in self.world.processes.values():
            watcher = getattr(p, "view_seen", None)
            if watcher is not None:
                self.world.at(self.world.rng.uniform(0.0, 0.1), p.poll_view)
        return self.version

    def get(self) -> tuple[View, int]:
        return self.view, self.version

    def close(self) -> None:
        pass


class Watching(Process):
    """A process that follows the view. ViewWatcher polls every 100 ms; here a new view (or
    the end of a partition from the store) reaches each process within 100 ms instead,
    which is the same and costs no event while nothing changes."""

    def __init__(self, world: World, name: str, store: ViewStoreSim) -> None:
        super().__init__(world, name)
        self.store = store
        self.view_seen = 0

    def start(self) -> None:
        super().start()
        self.view_seen = self.store.version

    def poll_view(self) -> None:
        if not self.alive or not self.world.reachable(self.name, ViewStoreSim.NAME):
            return
        if self.store.version != self.view_seen:
            self.view_seen = self.store.version
            self.view_changed(self.store.view)

    def view_changed(self, view: View) -> None:
        raise NotImplementedError


# ---- sequencers ------------------------------------------------------------------------------


class _ShardOut:
    def __init__(self, leaf: SimSequencer) -> None:
        self.leaf = leaf
        self.streams: list[Stream] = []

    def grant(self, token: int, color: int, sn: int, count: int) -> None:
        g = Grant(token, color, sn, count)
        for s in list(self.streams):
            replica = s.a
            s.send(self.leaf, lambda r=replica: r.protocol.grants([g], r.world.now))

    def reject(self, token: int, color: int, error: FlexLogError) -> None:
        g = Grant(token, color, 0, 0, int(error.code), str(error))
        for s in list(self.streams):
            replica = s.a
            s.send(self.leaf, lambda r=replica: r.protocol.grants([g], r.world.now))


class _ChildOut:
    def __init__(self, parent: SimSequencer, stream: Stream, child: SimSequencer) -> None:
        self.parent, self.stream, self.child = parent, stream, child

    def granted(self, forward_id: int, result: int | FlexLogError) -> None:
        child, node = self.child, self.child.child_node
        world = self.parent.world

        def arrive() -> None:
            if child.name in world.kill_on_grant and isinstance(result, int):
                # The leaf dies holding a block its parent granted: nobody stores those SNs.
                world.kill_on_grant.discard(child.name)
                child.crash()
                world.at(0.3, lambda: None if child.alive else child.start())
                return
            child.protocol.parent_granted(node, forward_id, result)
        self.stream.send(self.parent, arrive)


class SimSequencer(Watching):
    def __init__(self, world: World, name: str, store: ViewStoreSim,
                 config: config_mod.ClusterConfig, nodes: list[int], parent: str | None) -> None:
        super().__init__(world, name, store)
        self.config = config
        self.node_ids = nodes
        self.parent_name = parent
        self.child_node = nodes[0]
        self.protocol: SequencerProtocol
        self.fanouts: dict[int, _ShardOut] = {}
        self.up: Stream | None = None

    def start(self) -> None:
        super().start()
        self.protocol = SequencerProtocol(self.config, self.node_ids, self, self.store.view)
        self.fanouts = {}
        self.up = None
        if self.parent_name is not None:
            self.later(0, self.link_parent)

    def view_changed(self, view: View) -> None:
        self.protocol.view_changed(view)

    # SequencerIO
    def flush_later(self, node_id: int) -> None:
        self.later(0.0005, lambda: self.protocol.flush_up(node_id, self.world.now))

    def forward(self, node_id: int, reqs: list[ForwardRequest]) -> bool:
        up = self.up
        if up is None or not up.open:
            return False
        parent: SimSequencer = self.world.processes[self.parent_name]  # type: ignore[assignment,index]
        rows = [(f.id, f.color, f.owner, f.count) for f in reqs]
        out = _ChildOut(parent, up, self)
        parent_node = self.config.nodes[node_id].parent
        assert parent_node is not None
        up.send(self, lambda: parent.protocol.child_requests(parent_node, rows, out))
        return True

    def report_up(self, node_id: int, shard: int, tails: list[Tail]) -> None:
        up = self.up
        if up is None:
            return
        parent: SimSequencer = self.world.processes[self.parent_name]  # type: ignore[assignment,index]
        parent_node = self.config.nodes[node_id].parent
        assert parent_node is not None
        up.send(self, lambda: parent.protocol.child_ready(parent_node, [shard], tails))

    def link_parent(self) -> None:
        parent = self.world.processes[self.parent_name]  # type: ignore[index]
        node = self.child_node
        stream = Stream(self.world, self, parent, self.parent_broke, lambda: None)
        self.up = stream
        parent_node = self.config.nodes[node].parent
        for shard, tails in self.protocol.parent_hello(node):
            stream.send(self, lambda s=shard, t=tails: parent.protocol.child_ready(  # type: ignore[attr-defined]
                parent_node, [s], t))

    def parent_broke(self) -> None:
        self.up = None
        self.protocol.parent_lost(self.child_node)
        self.later(RECONNECT_S, self.link_parent)

    def attach(self, replica: SimReplica, hello: pb.ReplicaToSequencer) -> Stream:
        """A replica opens its leaf stream; the hello is its first message."""
        fan: list[_ShardOut] = []

        def broke_here() -> None:
            for f in fan:
                if stream in f.streams:
                    f.streams.remove(stream)

        stream = Stream(self.world, replica, self, replica.leaf_broke, broke_here)
        shard = hello.shard

        def hello_arrives() -> None:
            out = self.fanouts.setdefault(shard, _ShardOut(self))
            out.streams.append(stream)
            fan.append(out)
            self.protocol.replica_hello(
                shard, hello.replica, [(t.color, t.tail) for t in hello.tails],
                zip(hello.recent_tokens, hello.recent_colors, hello.recent_sns,
                    hello.recent_counts, strict=True), stream.sender_out)
        stream.sender_out = _SenderOut(self, stream)
        stream.send(replica, hello_arrives)
        return stream


class _SenderOut:
    def __init__(self, leaf: SimSequencer, stream: Stream) -> None:
        self.leaf, self.stream = leaf, stream

    def grant(self, token: int, color: int, sn: int, count: int) -> None:
        g = Grant(token, color, sn, count, 0, "")
        replica = self.stream.a
        self.stream.send(self.leaf, lambda: replica.protocol.grants([g], replica.world.now))  # type: ignore[attr-defined]

    def reject(self, token: int, color: int, error: FlexLogError) -> None:
        g = Grant(token, color, 0, 0, int(error.code), str(error))
        replica = self.stream.a
        self.stream.send(self.leaf, lambda: replica.protocol.grants([g], replica.world.now))  # type: ignore[attr-defined]


# ---- replicas --------------------------------------------------------------------------------


class SimEngine(MemoryEngine):
    """The memory engine, reporting every commit to the checker as it happens."""

    def __init__(self, checker: Checker, where: str) -> None:
        super().__init__()
        self.checker = checker
        self.where = where

    def commit(self, token: int, sn: int) -> Committed:
        color = self._prepared[token][0] if token in self._prepared else -1
        committed = super().commit(token, sn)
        self.checker.stored(self.where, color, self._colors[color].entries[sn])
        return committed


class _AckOut:
    def __init__(self, replica: SimReplica, stream: Stream, client: SimClient) -> None:
        self.replica, self.stream, self.client = replica, stream, client

    def ack(self, token: int, sn: int) -> None:
        index, client = self.replica.index, self.client
        self.stream.send(self.replica, lambda: client.acked(self.replica.shard, index, token, sn))

    def reject(self, token: int, code: Code, message: str) -> None:
        index, client = self.replica.index, self.client
        self.stream.send(self.replica, lambda: client.refused(self.replica.shard, index, token,
                                                              code))


class _ResultOut:
    def __init__(self, replica: SimReplica, stream: Stream,
                 on_result: Callable[[int, pb.QueryResult], None]) -> None:
        self.replica, self.stream, self.on_result = replica, stream, on_result

    def answer(self, result: pb.QueryResult) -> None:
        index = self.replica.index
        self.stream.send(self.replica, lambda: self.on_result(index, result))


class SimReplica(Watching):
    def __init__(self, world: World, store: ViewStoreSim, checker: Checker, shard: int,
                 index: int, leaf: SimSequencer, persistent: bool) -> None:
        super().__init__(world, f"r{shard}.{index}", store)
        self.shard, self.index, self.leaf = shard, index, leaf
        self.checker = checker
        self.persistent = persistent
        self.engine = SimEngine(checker, self.name)
        self.protocol: ReplicaProtocol
        self.leaf_stream: Stream | None = None
        self._flush = False

    def start(self) -> None:
        super().start()
        if not self.persistent:
            self.engine = SimEngine(self.checker, self.name)
        self.protocol = ReplicaProtocol(
            self.shard, self.index, self.engine, self, self.store.view,
            incarnation=self.world.rng.getrandbits(40), copy_tokens=self.world.rng.getrandbits(20),
            now=self.world.now, max_entry_bytes=1 << 20)
        self.protocol.view_changed(self.store.view)
        self.every(TICK_S, self.tick)
        self.later(0, self.attach)

    def view_changed(self, view: View) -> None:
        self.protocol.view_changed(view)

    def tick(self) -> None:
        # The real replica reads the view store every 100 ms; each read renews its lease.
        if self.world.reachable(self.name, ViewStoreSim.NAME):
            self.poll_view()
            self.protocol.view_seen(self.world.now)
        self.protocol.tick(self.world.now)

    def attach(self) -> None:
        self.leaf_stream = self.leaf.attach(self, self.protocol.hello())
        if self.leaf_stream.open:
            self.protocol.leaf_attached()

    def leaf_broke(self) -> None:
        self.leaf_stream = None
        self.protocol.leaf_lost()
        self.later(RECONNECT_S, self.attach)

    # ReplicaIO
    def flush_soon(self) -> None:
        if not self._flush:
            self._flush = True

            def flush() -> None:
                self._flush = False
                self.protocol.flush_orders()
            self.later(0, flush)

    def send_to_leaf(self, message: pb.ReplicaToSequencer) -> None:
        stream, leaf = self.leaf_stream, self.leaf
        if stream is None:
            return
        rows = list(zip(message.tokens, message.colors, message.owners, message.counts, strict=True))
        shard, epoch = message.shard, message.epoch
        stream.send(self, lambda: leaf.protocol.order(
            shard, epoch, rows, leaf.fanouts[shard], stream.sender_out))

    def peer(self, index: int) -> str:
        return f"r{self.shard}.{index}"

    def repair(self, grant: Grant) -> None:
        peers = [i for i in range(REPLICAS) if i != self.index]

        def ask(rest: list[int]) -> None:
            if not rest:
                self.protocol.repaired(grant, None, self.world.now)
                return

            def got(result: pb.QueryResult | None) -> None:
                if result is not None and not result.error and result.sns and result.sns[0] == grant.sn:
                    self.protocol.repaired(grant, _entries(result)[0], self.world.now)
                else:
                    ask(rest[1:])
            op = pb.QueryOp(kind=pb.QueryOp.READ, color=grant.color, sn=grant.sn, with_tokens=True)
            call(self.world, self, self.peer(rest[0]), lambda p: _query_now(p, op), got)
        ask(peers)

    def catch_up(self, epoch: int, peers: list[int]) -> None:
        def start() -> None:
            try_peers(list(peers))

        def try_peers(rest: list[int]) -> None:
            if not rest:
                self.later(0.5, lambda: self.protocol.caught_up(epoch, False))
                return

            def got(snapshot: dict[int, list[CopiedEntry]] | None) -> None:
                if snapshot is None:
                    try_peers(rest[1:])
                    return
                for color, entries in snapshot.items():
                    for e, token in entries:
                        self.protocol.store_copy(color, e, token)
                self.protocol.caught_up(epoch, True)
            call(self.world, self, self.peer(rest[0]), _snapshot, got)
        self.later(CATCHUP_GRACE_S, start)

    def copy_gap(self, color: int, start: int, end: int, peers: tuple[int, ...]) -> None:
        def ask(rest: list[int]) -> None:
            if not rest:
                return

            def got(entries: list[CopiedEntry] | None) -> None:
                if not entries:
                    ask(rest[1:])
                    return
                for e, token in entries:
                    self.protocol.store_copy(color, e, token)

            def committed_in_gap(peer: SimReplica) -> list[CopiedEntry] | None:
                if not peer.protocol.serves_reads(peer.world.now):
                    return None
                high = peer.protocol.color(color).high
                return [(e, peer.engine.token_of(color, e.sn))
                        for e in peer.engine.read_range(color, start, 1 << 40)
                        if e.sn < min(end, high)]
            call(self.world, self, self.peer(rest[0]), committed_in_gap, got)
        ask(list(peers))

    def seal(self, color: int, start: int, end: int, members: tuple[int, ...]) -> None:
        entries: list[CopiedEntry] = []
        pending = list(members)

        def next_member() -> None:
            if not pending:
                self.protocol.sealed(color, start, end, entries)
                return
            index = pending.pop(0)
            if index == self.index:
                add(self.protocol.seal(color, start, end))
                return

            def got(result: pb.QueryResult | None) -> None:
                if result is None:
                    self.protocol.seal_failed(color)
                    return
                add(result)
            call(self.world, self, self.peer(index), lambda p: p.protocol.seal(color, start, end),
                 got)

        def add(result: pb.QueryResult) -> None:
            entries.extend(_entries(result))
            next_member()
        next_member()

    def fill(self, op: pb.QueryOp, members: tuple[int, ...]) -> None:
        for index in members:
            if index == self.index:
                self.protocol.apply_fill(op, self.world.now)
            else:
                call(self.world, self, self.peer(index),
                     lambda p: p.protocol.apply_fill(op, p.world.now), lambda _: None)

    def status(self) -> ProcessStatus:
        """What the controller reads of a replica's Status reply."""
        p = self.protocol
        return ProcessStatus("replica", self.name, "", True, p.attached, {}, p.incarnation, p.epoch,
                             p.caught_up_epoch, p.serves_reads(self.world.now))


def _query_now(replica: SimReplica, op: pb.QueryOp) -> pb.QueryResult:
    out: list[pb.QueryResult] = []

    class Sink:
        def answer(self, result: pb.QueryResult) -> None:
            out.append(result)
    op.wait_ms = 0
    replica.protocol.query(op, Sink(), replica.world.now)
    return out[0]


def _entries(result: pb.QueryResult) -> list[CopiedEntry]:
    return [(StoredEntry(s, n, bytes(p)), t)
            for s, n, p, t in zip(result.sns, result.counts, result.payloads, result.tokens,
                                  strict=True)]


def _snapshot(replica: SimReplica) -> dict[int, list[CopiedEntry]] | None:
    """What a catch-up copies from a peer (the real one pages through range reads)."""
    if not replica.protocol.serves_reads(replica.world.now):
        return None
    out = {}
    for color, view in replica.protocol.colors.items():
        entries = replica.engine.read_range(color, view.log_start, 1 << 40)
        out[color] = [(e, replica.engine.token_of(color, e.sn)) for e in entries
                      if e.sn < view.high]
    return out


# ---- the controller ------------------------------------------------------------------------


class SimController(Process):
    def __init__(self, world: World, store: ViewStoreSim, config: config_mod.ClusterConfig,
                 replicas: dict[tuple[int, int], SimReplica]) -> None:
        super().__init__(world, "controller")
        self.store = store
        self.config = config
        self.replicas = replicas
        self.controller: Controller

    def start(self) -> None:
        super().start()
        self.controller = Controller(self.config, self.store, now=self.world.now)  # type: ignore[arg-type]
        self.every(CONTROLLER_S, self.step)

    def step(self) -> None:
        if not self.world.reachable(self.name, ViewStoreSim.NAME):
            return
        view, version = self.store.get()
        statuses = {}
        for key, r in self.replicas.items():
            if self.world.reachable(self.name, r.name):
                self.controller.last_ok[key] = self.world.now
                statuses[key] = r.status()
        new = self.controller.decide(view, statuses, self.world.now)
        if new is not None:
            with contextlib.suppress(ViewConflict):
                self.store.compare_and_set(new, version)


# ---- clients ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColorSpec:
    id: int
    owner: int
    shards: tuple[int, ...]

    @property
    def contiguous(self) -> bool:
        return len(self.shards) == 1 and counter_of(self.id) == self.id


@dataclass
class _Pending:
    op: AppendOp
    shard: int
    index: int  # submission order of this client
    sent_at: float
    deadline: float
    acked: set[int] = field(default_factory=set)
    sn: int = -1


class SimClient(Watching):
    def __init__(self, world: World, store: ViewStoreSim, checker: Checker, client_id: int,
                 colors: list[ColorSpec]) -> None:
        super().__init__(world, f"client{client_id}", store)
        self.checker = checker
        self.client_id = client_id
        self.colors = colors
        self.view = store.view
        self.pending: dict[int, _Pending] = {}
        self.streams: dict[tuple[int, int], Stream] = {}
        self._seq = itertools.count(1)

    def start(self) -> None:
        super().start()
        self.view = self.store.view
        self.every(CLIENT_TICK_S, self.tick)

    def _stream(self, shard: int, index: int) -> Stream | None:
        """The append stream to a replica. A new one first carries every pending append
        that replica has not acked, in submission order (as `_ReplicaLink` does): the
        replica orders what it holds in the order it arrived."""
        key = (shard, index)
        s = self.streams.get(key)
        if s is None or not s.open:
            replica = self.world.processes[f"r{shard}.{index}"]
            s = Stream(self.world, self, replica, lambda: None, lambda: None)
            self.streams[key] = s
            if s.open:
                for p in self.pending.values():
                    if p.shard == shard and index not in p.acked:
                        self._send_one(s, replica, p.op)
        return s if s.open else None

    def _send_one(self, stream: Stream, replica: Process, op: AppendOp) -> None:
        stream.send(self, lambda: replica.protocol.prepare(  # type: ignore[attr-defined]
            [op], _AckOut(replica, stream, self), replica.world.now))  # type: ignore[arg-type]

    def append(self, color: ColorSpec) -> None:
        seq = next(self._seq)
        token = (self.client_id << 32) | seq
        value = f"c{self.client_id}-{seq}".encode()
        payload = record_batch.build([value], timestamp_ms=0)
        op = AppendOp(token=token, color=color.id, owner=color.owner, count=1, payload=payload,
                         contiguous=color.contiguous)
        shard = color.shards[self.client_id % len(color.shards)]
        p = _Pending(op, shard, seq, self.world.now, self.world.now + CLIENT_TIMEOUT_S)
        self.pending[token] = p
        self.checker.invoked(self.client_id, seq, color.id, value)
        self._send(p)

    def _send(self, p: _Pending) -> None:
        p.sent_at = self.world.now
        for member in self.view.shard(p.shard).members:
            if member in p.acked:
                continue
            stream = self._stream(p.shard, member)
            if stream is not None:
                self._send_one(stream, self.world.processes[f"r{p.shard}.{member}"], p.op)

    def acked(self, shard: int, index: int, token: int, sn: int) -> None:
        p = self.pending.get(token)
        self.checker.ack_seen(token, sn)
        if p is None:
            return
        p.acked.add(index)
        p.sn = sn
        self._maybe_done(token, p)

    def _maybe_done(self, token: int, p: _Pending) -> None:
        if p.sn >= 0 and set(self.view.shard(p.shard).readable) <= p.acked:
            del self.pending[token]
            self.checker.completed(self.client_id, p.index, p.op.color, p.sn, p.op.payload,
                                   self.world.now)

    def refused(self, shard: int, index: int, token: int, code: Code) -> None:
        p = self.pending.get(token)
        if p is None:
            return
        if code in RETRIABLE:
            p.sent_at = min(p.sent_at, self.world.now - CLIENT_RESEND_S)
        else:
            del self.pending[token]
            self.checker.failed(self.client_id, p.index)

    def view_changed(self, view: View) -> None:
        self.view = view
        for token, p in list(self.pending.items()):
            self._maybe_done(token, p)
        for p in list(self.pending.values()):
            self._send(p)

    def tick(self) -> None:
        now = self.world.now
        for token, p in list(self.pending.items()):
            if now >= p.deadline:
                del self.pending[token]
                self.checker.failed(self.client_id, p.index)
            elif now - p.sent_at >= CLIENT_RESEND_S:
                self._send(p)


class SimReader(Process):
    """Reads a color in SN order from a readable replica, as subscribe does (contiguous colors),
    and checks every entry against what was acknowledged."""

    def __init__(self, world: World, checker: Checker, store: ViewStoreSim, color: ColorSpec) -> None:
        super().__init__(world, f"reader{color.id}")
        self.checker, self.store, self.color = checker, store, color
        self.next_sn = 0
        self.stream: Stream | None = None
        self.waiting = False

    def start(self) -> None:
        super().start()
        self.every(0.5, self.read)

    def read(self) -> None:
        if self.waiting:
            return
        sv = self.store.view.shard(self.color.shards[0])
        if not sv.readable:
            return
        index = self.world.rng.choice(sv.readable)
        replica = self.world.processes[f"r{self.color.shards[0]}.{index}"]
        stream = Stream(self.world, self, replica, self.broke, lambda: None)
        self.stream = stream
        op = pb.QueryOp(kind=pb.QueryOp.RANGE, color=self.color.id, sn=self.next_sn,
                        max_bytes=4096, wait_ms=500, contiguous=True)
        self.waiting = True
        stream.send(self, lambda: replica.protocol.query(  # type: ignore[attr-defined]
            op, _ResultOut(replica, stream, self.got), replica.world.now))  # type: ignore[arg-type]

        def expire() -> None:
            replica.protocol.expire_waiters(replica.world.now)  # type: ignore[attr-defined]
        self.world.at(0.51, lambda: expire() if replica.alive else None)

    def broke(self) -> None:
        self.waiting = False

    def got(self, index: int, result: pb.QueryResult) -> None:
        self.waiting = False
        if self.stream is not None:
            self.stream.close(notice=0)
            self.stream = None
        if result.error:
            return
        for sn, count, payload in zip(result.sns, result.counts, result.payloads, strict=True):
            if sn + count <= self.next_sn:
                continue
            if sn > self.next_sn:
                raise Violation(f"reader of color {self.color.id} skipped from {self.next_sn} to "
                                f"{sn}: a contiguous read returned a gap")
            self.checker.read(self.color.id, StoredEntry(sn, count, bytes(payload)))
            self.next_sn = sn + count


class _Box:
    """A query sink that keeps the answer (queries with wait_ms = 0 answer at once)."""

    def __init__(self) -> None:
        self.result: pb.QueryResult | None = None

    def answer(self, result: pb.QueryResult) -> None:
        self.result = result


class SimFamilyReader(Process):
    """Reads a family's merged order as `FlexLogClient._family_chain` does: every member on
    every shard from one readable replica each, merged by SN, followed only while it has no
    gap. The checker holds it to never passing an SN without the acknowledged entry there."""

    def __init__(self, world: World, checker: Checker, store: ViewStoreSim, key: int,
                 members: list[ColorSpec]) -> None:
        super().__init__(world, f"family-reader{key >> 20}")
        self.checker, self.store, self.key, self.members = checker, store, key, members
        self.next_sn = 0
        self.seen: dict[int, tuple[int, bytes]] = {}  # sn -> (color, body) read there
        self.waiting = False
        self.gaps = FamilyGaps()
        self.filling = False
        checker.family_readers.append(self)

    def start(self) -> None:
        super().start()
        self.waiting = False
        self.filling = False
        self.every(0.5, self.read)

    def read(self) -> None:
        if self.waiting:
            return
        asks = []
        for m in self.members:
            for shard in m.shards:
                readable = self.store.view.shard(shard).readable
                if not readable:
                    return
                asks.append((m.id, f"r{shard}.{self.world.rng.choice(readable)}"))
        self.waiting = True
        start = self.next_sn
        replies: dict[int, pb.QueryResult | None] = {}

        def ask(i: int, color: int, replica: str) -> None:
            op = pb.QueryOp(kind=pb.QueryOp.RANGE, color=color, sn=start, max_bytes=300)

            def handler(r: Any) -> pb.QueryResult | None:
                box = _Box()
                r.protocol.query(op, box, r.world.now)
                return box.result

            def got(result: pb.QueryResult | None) -> None:
                replies[i] = result
                if len(replies) == len(asks):
                    self.waiting = False
                    self._merge(start, [(asks[j][0], replies[j]) for j in range(len(asks))])
            call(self.world, self, replica, handler, got)

        for i, (color, replica) in enumerate(asks):
            ask(i, color, replica)

    def _merge(self, start: int, results: list[tuple[int, pb.QueryResult | None]]) -> None:
        if start != self.next_sn or any(r is None or r.error for _, r in results):
            return
        found = sorted((sn, count, color, bytes(payload)) for color, r in results
                       if r is not None
                       for sn, count, payload in zip(r.sns, r.counts, r.payloads, strict=True))
        expect = start
        for sn, count, color, payload in found:
            if sn <= expect < sn + count:
                entry = StoredEntry(sn, count, payload)
                self.checker.read(color, entry)
                for s in range(sn, sn + count):
                    self.seen[s] = (color, self.checker._body(payload))
                expect = sn + count
        self.next_sn = expect
        self.checker.family_passed(self, start, expect)
        if expect > start:
            self.gaps.moved(self.key, start)
        elif found and self.gaps.due(self.key, start, self.world.now):
            self._fill(start, found[0][0])

    def _fill(self, start: int, end: int) -> None:
        """`FlexLogClient._fill_family` over the simulated network: seal [start, end) of every
        member at every member replica of its shards, then fill it if all of them answered and
        no shard's members changed."""
        if end <= start or self.filling:
            return
        self.filling = True
        inc = self.incarnation
        before = {s: self.store.view.shard(s).members for m in self.members for s in m.shards}
        asks = [(m.id, f"r{s}.{i}") for m in self.members for s in m.shards for i in before[s]]
        found: dict[int, list[CopiedEntry]] = {m.id: [] for m in self.members}
        answers: list[pb.QueryResult | None] = []

        def sealed(color: int, result: pb.QueryResult | None) -> None:
            answers.append(result)
            if result is not None:
                found[color].extend(_entries(result))
            if len(answers) < len(asks) or inc != self.incarnation:
                return
            self.filling = False
            changed = any(self.store.view.shard(s).members != before[s] for s in before)
            if any(r is None for r in answers) or changed:
                return
            ops = fill_ops(start, end, found)
            for c, replica in asks:
                call(self.world, self, replica,
                     lambda p, op=ops[c]: p.protocol.apply_fill(op, p.world.now), lambda _: None)

        for color, replica in asks:
            call(self.world, self, replica,
                 lambda p, c=color: p.protocol.seal(c, start, end),
                 lambda r, c=color: sealed(c, r))


# ---- the checker -----------------------------------------------------------------------------


class Checker:
    def __init__(self) -> None:
        self.at_sn: dict[tuple[int, int], tuple[bytes, str]] = {}  # (color, sn) -> payload, where
        self.acked: dict[tuple[int, int], bytes] = {}  # (color, sn) -> acknowledged payload
        self.token_sn: dict[int, int] = {}
        self.order: dict[tuple[int, int], list[tuple[int, int]]] = {}  # (client, color) -> (index, sn)
        self.last_ack: dict[int, float] = {}
        self.invocations = 0
        self.completions = 0
        self.failures = 0
        self.reads = 0
        self.family_readers: list[SimFamilyReader] = []

    @staticmethod
    def _body(payload: bytes) -> bytes:
        return payload[12:]  # baseOffset and batchLength: the same entry at any SN

    @staticmethod
    def _is_marker(body: bytes) -> bool:
        """Fill markers of different extents may cover one SN (readers filling a family one
        after another): each says the SN holds nothing."""
        return record_batch.is_fill(bytes(12) + body)

    def stored(self, where: str, color: int, entry: StoredEntry) -> None:
        """Keyed by counter: two members of one family never hold one SN."""
        body = self._body(entry.payload)
        counter = counter_of(color)
        for sn in range(entry.sn, entry.end):
            known = self.at_sn.get((counter, sn))
            if known is None:
                self.at_sn[(counter, sn)] = (body, where)
            elif known[0] != body and not (self._is_marker(known[0]) and self._is_marker(body)):
                raise Violation(f"SN {sn} of color {color} holds two entries: one on {known[1]}, "
                                f"another now on {where}")

    def _check_family_read(self, reader: SimFamilyReader, color: int, sn: int, body: bytes) -> None:
        if sn < reader.next_sn and reader.seen.get(sn) != (color, body):
            raise Violation(f"the reader of family {reader.key >> 20} passed SN {sn} without "
                            f"the acknowledged entry of color {color} there")

    def family_passed(self, reader: SimFamilyReader, start: int, end: int) -> None:
        """A family reader moved from start to end: every entry acknowledged there is read."""
        for (color, sn), body in self.acked.items():
            if counter_of(color) == reader.key and start <= sn < end:
                self._check_family_read(reader, color, sn, body)

    def read(self, color: int, entry: StoredEntry) -> None:
        self.reads += 1
        acked = self.acked.get((color, entry.sn))
        if acked is not None and acked != self._body(entry.payload):
            raise Violation(f"read of SN {entry.sn} of color {color} returned another entry than "
                            "the acknowledged one")

    def invoked(self, client: int, index: int, color: int, value: bytes) -> None:
        self.invocations += 1

    def ack_seen(self, token: int, sn: int) -> None:
        known = self.token_sn.setdefault(token, sn)
        if known != sn:
            raise Violation(f"token {token:x} acknowledged with SN {known} and with SN {sn}")

    def completed(self, client: int, index: int, color: int, sn: int, payload: bytes,
                  now: float) -> None:
        self.completions += 1
        body = self._body(record_batch.with_base_offset(payload, sn))
        self.acked[(color, sn)] = body
        stored = self.at_sn.get((counter_of(color), sn))
        if stored is None or stored[0] != body:
            raise Violation(f"SN {sn} of color {color} acknowledged but not stored as acknowledged")
        for reader in self.family_readers:
            if reader.key == counter_of(color):
                self._check_family_read(reader, color, sn, body)
        self.order.setdefault((client, color), []).append((index, sn))
        self.last_ack[color] = now

    def failed(self, client: int, index: int) -> None:
        self.failures += 1

    def check_order(self) -> None:
        for (client, color), done in self.order.items():
            done.sort()
            for (i, a), (j, b) in itertools.pairwise(done):
                if b <= a:
                    raise Violation(f"client {client}: append #{j} to color {color} got SN {b}, "
                                    f"not above SN {a} of its earlier append #{i}")


# ---- the cluster and its schedule ------------------------------------------------------------


COLORS = [
    ColorSpec(10, 1, (0,)),  # leaf-owned, shard 0
    ColorSpec(11, ROOT, (0,)),  # root-owned, one shard: like every system color
    ColorSpec(12, ROOT, (0, 1)),  # root-owned across both shards
    ColorSpec(13, 2, (1,)),  # leaf-owned, shard 1
]
# Two families: one ordered by the root with a member on each shard, one ordered by leaf 0
# with both members on shard 0.
ROOT_FAMILY = family_key(1)
LEAF_FAMILY = family_key(2)
FAMILIES = {
    ROOT_FAMILY: [ColorSpec(ROOT_FAMILY | 1, ROOT, (0,)), ColorSpec(ROOT_FAMILY | 2, ROOT, (1,))],
    LEAF_FAMILY: [ColorSpec(LEAF_FAMILY | 1, 1, (0,)), ColorSpec(LEAF_FAMILY | 2, 1, (0,))],
}
FAMILY_COLORS = [m for members in FAMILIES.values() for m in members]

FAULTS = ("crash_replica", "crash_leaf", "crash_root", "crash_controller", "break_stream",
          "partition", "partition_store", "slow_network")


@dataclass
class Outcome:
    seed: int
    faults: list[str]
    events: int
    acked: int
    failed: int
    reads: int
    fills: int


class ClusterSim:
    def __init__(self, seed: int, persistent: bool | None = None, families: bool = True) -> None:
        self.world = World(seed)
        rng = self.world.rng
        self.persistent = rng.random() < 0.5 if persistent is None else persistent
        self.config = sim_config()
        self.checker = Checker()
        self.store = ViewStoreSim(self.world, initial_view(self.config))
        w = self.world
        self.root = SimSequencer(w, "root", self.store, self.config, [ROOT], None)
        self.leaves = [SimSequencer(w, f"leaf{s}", self.store, self.config, [s + 1], "root")
                       for s in range(SHARDS)]
        self.replicas = {(s, i): SimReplica(w, self.store, self.checker, s, i, self.leaves[s],
                                            self.persistent)
                         for s in range(SHARDS) for i in range(REPLICAS)}
        self.controller = SimController(w, self.store, self.config, self.replicas)
        self.colors = COLORS + (FAMILY_COLORS if families else [])
        self.clients = [SimClient(w, self.store, self.checker, c + 1, self.colors)
                        for c in range(2)]
        self.readers: list[Process] = [SimReader(w, self.checker, self.store, c)
                                       for c in COLORS if c.contiguous]
        if families:
            self.readers += [SimFamilyReader(w, self.checker, self.store, key, members)
                             for key, members in FAMILIES.items()]
        self.faults: list[str] = []
        self.down: set[tuple[int, int]] = set()  # memory replicas whose store is gone for now

    def everything(self) -> list[Process]:
        return [self.root, *self.leaves, *self.replicas.values(), self.controller, *self.clients,
                *self.readers]

    def run(self, load_s: float = 3.5, settle_s: float = 10.0, faults: int = 2) -> Outcome:
        w = self.world
        rng = w.rng
        for p in self.everything():
            p.start()
        # The controller starts from the config's view; it must have recorded incarnations
        # before the first fault, as it has in any cluster that ran for a while.
        w.run_until(0.5)
        for _ in range(faults):
            w.at(rng.uniform(0.5, load_s), self._fault)
        t = w.now
        while t < load_s:
            t += rng.uniform(0.02, 0.12)
            w.at(t - w.now, self._append)
        w.run_until(load_s)
        w.at(0, self._heal)
        # Liveness bound: settle_s after the faults healed, every replica is readable and
        # every contiguous reader can reach the last acknowledged SN. Stop as soon as it holds.
        while w.now < load_s + settle_s:
            w.run_until(w.now + 0.5)
            if self.unsettled() is None:
                break
        self.checker.check_order()
        problem = self.unsettled()
        if problem is not None:
            raise Violation(f"{problem}, {settle_s:.0f}s after the faults healed")
        return Outcome(w.seed, self.faults, w.events_run, self.checker.completions,
                       self.checker.failures, self.checker.reads,
                       sum(r.protocol.stats["fills"] for r in self.replicas.values()))

    def _append(self) -> None:
        client = self.world.rng.choice(self.clients)
        if len(client.pending) < 8:
            client.append(self.world.rng.choice(self.colors))

    def _restart(self, p: Process, after: float) -> None:
        def start() -> None:
            if not p.alive:
                p.start()
        self.world.at(after, start)

    def _fault(self) -> None:
        w, rng = self.world, self.world.rng
        kind = rng.choice(FAULTS)
        self.faults.append(kind)
        if kind == "crash_replica":
            key = rng.choice(list(self.replicas))
            # A memory store loses everything: keep one replica of each shard with its data.
            if not self.persistent and any(k[0] == key[0] and not self.replicas[k].alive
                                           for k in self.replicas):
                return
            self.replicas[key].crash()
            self._restart(self.replicas[key], rng.uniform(0.1, 3.0))
        elif kind == "crash_leaf":
            leaf = rng.choice(self.leaves)
            leaf.crash()
            self._restart(leaf, rng.uniform(0.1, 1.5))
        elif kind == "crash_root":
            self.root.crash()
            self._restart(self.root, rng.uniform(0.1, 1.5))
        elif kind == "crash_controller":
            self.controller.crash()
            self._restart(self.controller, rng.uniform(0.1, 2.0))
        elif kind == "break_stream":
            for s in rng.sample(w.streams, min(3, len(w.streams))):
                s.close()
        elif kind == "partition":
            names = [p.name for p in self.everything() if not p.name.startswith("reader")]
            a = rng.choice(names)
            for b in [*names, ViewStoreSim.NAME]:
                if b != a and rng.random() < 0.6:
                    w.partition(a, b)
            w.at(rng.uniform(0.5, 3.0), w.heal)
        elif kind == "partition_store":
            a = rng.choice([p.name for p in self.everything()])
            w.partition(a, ViewStoreSim.NAME)
            w.at(rng.uniform(0.5, 3.0), w.heal)
        elif kind == "slow_network":
            w.slow = 0.2
            w.at(rng.uniform(0.5, 2.0), lambda: setattr(w, "slow", 0.0))

    def _heal(self) -> None:
        self.world.heal()
        self.world.slow = 0.0
        for p in self.everything():
            if not p.alive:
                p.start()

    # ---- the end state ---------------------------------------------------------------

    def unsettled(self) -> str | None:
        """What still keeps the cluster from its healthy end state, or None."""
        checker = self.checker
        view = self.store.view
        for (s, i), r in self.replicas.items():
            sv = view.shard(s)
            if not r.alive or i not in sv.readable or not r.protocol.readable:
                return (f"replica {r.name} is not readable (view epoch {sv.epoch}, readable "
                        f"{sv.readable}, members {sv.members}, caught up at "
                        f"{r.protocol.caught_up_epoch})")
        for (color, sn), body in checker.acked.items():
            spec = next(c for c in self.colors if c.id == color)
            for s in spec.shards:
                for i in range(REPLICAS):
                    r = self.replicas[(s, i)]
                    entry = r.engine.read(color, sn)
                    if entry is None and len(spec.shards) > 1:
                        continue  # stored on the other shard
                    if entry is None or entry.sn != sn or checker._body(entry.payload) != body:
                        return f"acknowledged SN {sn} of color {color} is not stored on {r.name}"
        for spec in COLORS:
            if not spec.contiguous:
                continue
            last = max((sn for (c, sn) in checker.acked if c == spec.id), default=-1)
            for i in range(REPLICAS):
                r = self.replicas[(spec.shards[0], i)]
                view_ = r.protocol.colors.get(spec.id)
                prefix = view_.prefix if view_ is not None else 0
                if prefix <= last:
                    return (f"color {spec.id} on {r.name}: readable prefix {prefix} stops below "
                            f"acknowledged SN {last} (a hole nobody filled)")
        for reader in self.checker.family_readers:
            last = max((sn for (c, sn) in checker.acked if counter_of(c) == reader.key),
                       default=-1)
            if reader.next_sn <= last:
                return (f"the reader of family {reader.key >> 20} stays at SN {reader.next_sn}, "
                        f"below acknowledged SN {last}")
        for client in self.clients:
            if client.pending:
                return f"{client.name} still has {len(client.pending)} appends pending"
        acked_tokens = set(checker.token_sn)
        for r in self.replicas.values():
            p = r.protocol
            stuck = [t for t in p._ungranted if t in acked_tokens]
            if p._early or stuck or p._sealed or p.waiting_reads > 4:
                return (f"{r.name} holds state that should have drained: {len(p._early)} early "
                        f"grants, {len(stuck)} acknowledged entries ungranted, {len(p._sealed)} "
                        f"sealed ranges, {p.waiting_reads} waiting reads")
        for seq in (self.root, *self.leaves):
            if any(seq.protocol._parked.values()) or seq.protocol._in_flight:
                return f"{seq.name} still parks or waits for requests"
        return None
