"""Ordering layer: order requests/s through a chain of sequencer processes (root ... leaf).

Run: .venv/bin/python bench/bench_ordering.py [--seconds 5] [--levels 2]
The benchmark attaches to the leaf as if it were the shard's replica and keeps
several messages of order requests in flight (each request asks for 4 SNs).
It measures colors owned by each node from the leaf (one hop) up to the root
(aggregated at the leaf, forwarded, split on the way down), and the node logic
alone in this process as the ceiling. `paced` offers a fixed load instead and
measures latency (bench/bench_eval.py draws its throughput-latency curves with it).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from common import free_ports
from flexlog.core import config as config_mod
from flexlog.core import rpc
from flexlog.core.batching import ByteQueue
from flexlog.core.ordering import OrderingNode
from flexlog.core.proto import flexlog_pb2 as pb
from flexlog.core.status import cluster_status

RECORDS_PER_REQUEST = 4


def node_alone(seconds: float) -> float:
    root = OrderingNode(0, None, frozenset())
    leaf = OrderingNode(1, 0, frozenset({0}))
    done = 0
    sink = [0]

    def reply(r: object) -> None:
        sink[0] += 1

    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for i in range(1000):
            leaf.submit(i % 8, 0, RECORDS_PER_REQUEST, reply)
        for f in leaf.take_forwards():
            root.submit(f.color, f.owner, f.count, lambda r, fid=f.id: leaf.on_grant(fid, r))
        done += 1000
    return done / (time.perf_counter() - start)


# Each run's tokens start at a new multiple of this: the leaf remembers recent tokens (a
# resent request gets its old SN back), and it sends a shard's grants to every stream
# attached for the shard, so a run must neither reuse nor count another run's tokens.
_RUN_TOKENS = 1 << 40
_runs = itertools.count(1)


class _Requests:
    """Messages of order requests as the shard's replica 0 sends them, tokens counting up."""

    def __init__(self, owner: int, per_message: int) -> None:
        self.owner = owner
        self.per_message = per_message
        self.first = self.token = next(_runs) * _RUN_TOKENS

    def mine(self, tokens: Sequence[int]) -> int:
        """How many of a reply's granted tokens belong to this run."""
        if not tokens or tokens[0] >= self.first:  # the usual case, without a Python loop
            return len(tokens)
        return sum(1 for t in tokens if t >= self.first)

    def message(self) -> bytes:
        tokens = range(self.token, self.token + self.per_message)
        self.token += self.per_message
        return pb.ReplicaToSequencer(
            shard=0, replica=0, tokens=tokens, colors=[t % 8 + 1 for t in tokens],
            owners=[self.owner] * self.per_message, counts=[RECORDS_PER_REQUEST] * self.per_message,
        ).SerializeToString()


def _attach_queue() -> ByteQueue:
    queue = ByteQueue()
    queue.put(pb.ReplicaToSequencer(shard=0, replica=0).SerializeToString())
    return queue


async def through_tree(address: str, owner: int, seconds: float, per_message: int,
                       window: int) -> tuple[float, float]:
    queue = _attach_queue()
    requests = _Requests(owner, per_message)
    granted = 0
    async with rpc.channel(address) as ch:
        call = rpc.raw_stream(ch, "/flexlog.Sequencer/Attach", pb.SequencerToReplica)(queue.drain())
        for _ in range(window):
            queue.put(requests.message())
        start = time.perf_counter()
        sent = window * per_message
        async for reply in call:
            granted += requests.mine(reply.tokens)
            assert not reply.errors, reply.errors[0].message
            elapsed = time.perf_counter() - start
            while sent - granted < window * per_message and elapsed < seconds:
                queue.put(requests.message())
                sent += per_message
            if granted >= sent:
                break
        queue.close()
    elapsed = time.perf_counter() - start
    return granted / elapsed, granted * RECORDS_PER_REQUEST / elapsed


async def paced(address: str, owner: int, rate: float, seconds: float,
                per_message: int = 50) -> tuple[float, list[float]]:
    """Offer `rate` order requests/s for `seconds`, in messages of per_message requests.

    Returns (granted requests/s, latency of each message in seconds). Sending never waits
    for the tree (the stream's queue takes every message at once), so a message's latency
    runs from the moment it went out. A message counts as answered once as many requests
    have been granted as were sent up to it: grants come back in request order per color,
    and counting keeps per-request Python work out of the measurement.
    """
    queue = _attach_queue()
    requests = _Requests(owner, per_message)
    sent_at: deque[tuple[float, int]] = deque()  # (send time, requests sent up to this message)
    latencies: list[float] = []
    granted = 0
    last_grant = 0.0

    async def receive(call: AsyncIterator[pb.SequencerToReplica]) -> None:
        nonlocal granted, last_grant
        async for reply in call:
            assert not reply.errors, reply.errors[0].message
            granted += requests.mine(reply.tokens)
            last_grant = time.perf_counter()
            while sent_at and sent_at[0][1] <= granted:
                latencies.append(last_grant - sent_at.popleft()[0])

    interval = per_message / rate
    async with rpc.channel(address) as ch:
        call = rpc.raw_stream(ch, "/flexlog.Sequencer/Attach", pb.SequencerToReplica)(queue.drain())
        receiver = asyncio.create_task(receive(call))
        start = time.perf_counter()
        sent = messages = 0
        while (now := time.perf_counter()) - start < seconds:
            while start + messages * interval <= now:
                data = requests.message()
                sent += per_message
                sent_at.append((time.perf_counter(), sent))
                queue.put(data)
                messages += 1
            await asyncio.sleep(max(0.0, start + messages * interval - time.perf_counter()))
        # Let the tree answer what it was offered (bounded: an overloaded tree drains too).
        drain_until = time.perf_counter() + max(5.0, seconds)
        while granted < sent and time.perf_counter() < drain_until:
            await asyncio.sleep(0.001)
        receiver.cancel()
        queue.close()
    return granted / max(1e-9, last_grant - start), latencies


def chain_toml(data_dir: str, levels: int, ports: list[int]) -> str:
    """Sequencer processes root (node 0) ... leaf (node levels-1), each the parent of the next,
    and shard 0 under the leaf. The shard's one replica is the benchmark itself: nothing
    listens at its address; the benchmark attaches to the leaf in its name."""
    names = ["root", *(f"mid{i}" for i in range(1, levels - 1)), "leaf"]
    out = [f'data_dir = "{data_dir}"', 'storage = "memory"']
    for node, name in enumerate(names):
        parent = "" if node == 0 else f", parent = {node - 1}"
        out.append(f'[[sequencer]]\nname = "{name}"\naddress = "127.0.0.1:{ports[node]}"\n'
                   f"nodes = [{{ id = {node}{parent} }}]")
    out.append(f'[[shard]]\nid = 0\nleaf = {levels - 1}\nreplicas = ["127.0.0.1:{ports[levels]}"]')
    return "\n\n".join(out) + "\n"


@contextmanager
def sequencer_chain(levels: int) -> Iterator[config_mod.ClusterConfig]:
    """A running chain of `levels` sequencer processes; yields its config once all are up."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cluster.toml"
        path.write_text(chain_toml(tmp, levels, free_ports(levels + 1)))
        cfg = config_mod.load(path)
        procs = [subprocess.Popen([sys.executable, "-m", "flexlog.cli", "--log-level", "WARNING",
                                   "sequencer", "--config", str(path), "--id", seq.name])
                 for seq in cfg.sequencers]
        try:
            asyncio.run(_when_up(cfg, _nothing))
            yield cfg
        finally:
            for p in reversed(procs):  # leaf first: a parent that goes first makes children warn
                p.terminate()
                p.wait()


async def _nothing() -> None:
    pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--per-message", type=int, default=1000)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--levels", type=int, default=2, help="sequencer processes, root to leaf")
    args = parser.parse_args()
    rpc.install_uvloop()
    with sequencer_chain(args.levels) as cfg:
        alone = node_alone(min(args.seconds, 2.0))
        leaf_address = cfg.sequencer("leaf").address

        async def run() -> None:
            for owner in reversed(range(args.levels)):
                label = f"node {owner} ({args.levels - owner} level{'s' if owner < args.levels - 1 else ''})"
                await through_tree(leaf_address, owner, 1.0, args.per_message, args.window)
                reqs, recs = await through_tree(leaf_address, owner, args.seconds,
                                                args.per_message, args.window)
                print(f"  {label:<22} {reqs:>12,.0f} order requests/s  {recs:>12,.0f} records/s  "
                      f"({reqs / alone:.2f} of the node alone)")

        print(f"ordering layer, {args.levels} levels, {args.per_message} requests per message, "
              f"{args.window} in flight, {RECORDS_PER_REQUEST} records per request "
              f"(node {args.levels - 1} is the leaf, node 0 the root):")
        print(f"  node logic alone, in process {alone:>12,.0f} order requests/s")
        asyncio.run(run())


async def _when_up(cfg: config_mod.ClusterConfig, run: Callable[[], Awaitable[None]]) -> None:
    # Not wait_healthy: the tree only becomes ready once the benchmark attaches as its replica.
    while not all(s.up for s in await cluster_status(cfg) if s.role == "sequencer"):
        await asyncio.sleep(0.1)
    await run()


if __name__ == "__main__":
    main()
