"""Ordering layer: order requests/s through a root + leaf tree of separate processes.

Run: .venv/bin/python bench/bench_ordering.py [--seconds 5]
The benchmark attaches to the leaf as if it were the shard's replica and keeps
several messages of order requests in flight (each request asks for 4 SNs).
It measures colors owned by the leaf (one hop) and by the root (aggregated
at the leaf, forwarded, split on the way down), and the node logic alone in
this process as the ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
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


async def through_tree(address: str, owner: int, seconds: float, per_message: int,
                       window: int) -> tuple[float, float]:
    queue = ByteQueue()
    queue.put(pb.ReplicaToSequencer(shard=0, replica=0).SerializeToString())
    token = 0

    def message() -> bytes:
        nonlocal token
        tokens = range(token, token + per_message)
        token += per_message
        return pb.ReplicaToSequencer(
            shard=0, replica=0, tokens=tokens, colors=[t % 8 + 1 for t in tokens],
            owners=[owner] * per_message, counts=[RECORDS_PER_REQUEST] * per_message,
        ).SerializeToString()

    granted = 0
    async with rpc.channel(address) as ch:
        call = rpc.raw_stream(ch, "/flexlog.Sequencer/Attach", pb.SequencerToReplica)(queue.drain())
        for _ in range(window):
            queue.put(message())
        start = time.perf_counter()
        sent = window * per_message
        async for reply in call:
            granted += len(reply.tokens)
            assert not reply.errors, reply.errors[0].message
            elapsed = time.perf_counter() - start
            while sent - granted < window * per_message and elapsed < seconds:
                queue.put(message())
                sent += per_message
            if granted >= sent:
                break
        queue.close()
    elapsed = time.perf_counter() - start
    return granted / elapsed, granted * RECORDS_PER_REQUEST / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--per-message", type=int, default=1000)
    parser.add_argument("--window", type=int, default=4)
    args = parser.parse_args()
    rpc.install_uvloop()
    with tempfile.TemporaryDirectory() as tmp:
        root_port, leaf_port, replica_port = free_ports(3)
        path = Path(tmp) / "cluster.toml"
        path.write_text(f"""
data_dir = "{tmp}"
storage = "memory"
[[sequencer]]
name = "root"
address = "127.0.0.1:{root_port}"
nodes = [{{ id = 0 }}]
[[sequencer]]
name = "leaf"
address = "127.0.0.1:{leaf_port}"
nodes = [{{ id = 1, parent = 0 }}]
[[shard]]
id = 0
leaf = 1
replicas = ["127.0.0.1:{replica_port}"]
""")
        cfg = config_mod.load(path)
        procs = [subprocess.Popen([sys.executable, "-m", "flexlog.cli", "--log-level", "WARNING",
                                   "sequencer", "--config", str(path), "--id", name])
                 for name in ("root", "leaf")]
        try:
            alone = node_alone(min(args.seconds, 2.0))
            leaf_address = cfg.sequencer("leaf").address

            async def run() -> None:
                for owner, label in ((1, "leaf-owned (1 hop)"), (0, "root-owned (2 levels)")):
                    await through_tree(leaf_address, owner, 1.0, args.per_message, args.window)
                    reqs, recs = await through_tree(leaf_address, owner, args.seconds,
                                                    args.per_message, args.window)
                    print(f"  {label:<22} {reqs:>12,.0f} order requests/s  {recs:>12,.0f} records/s  "
                          f"({reqs / alone:.2f} of the node alone)")

            print(f"ordering layer, {args.per_message} requests per message, {args.window} in flight, "
                  f"{RECORDS_PER_REQUEST} records per request:")
            print(f"  node logic alone, in process {alone:>12,.0f} order requests/s")
            asyncio.run(_when_up(cfg, run))
        finally:
            for p in procs:
                p.terminate()
                p.wait()


async def _when_up(cfg: config_mod.ClusterConfig, run: Callable[[], Awaitable[None]]) -> None:
    # Not wait_healthy: the tree only becomes ready once the benchmark attaches as its replica.
    while not all(s.up for s in await cluster_status(cfg) if s.role == "sequencer"):
        await asyncio.sleep(0.1)
    await run()


if __name__ == "__main__":
    main()
