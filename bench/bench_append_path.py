"""The Python an append costs on its way, without processes, sockets or gRPC.

    .venv/bin/python bench/bench_append_path.py [--entries 512] [--rounds 30]

One replica's `ReplicaProtocol` on the memory engine, fed messages of `entries` 1 KiB
appends as a client's shard writer sends them, and the leaf's grants for them; each
phase timed per entry: the client building the record batch and encoding the op, the
replica decoding the message, preparing, sending its order request, and applying the
grants. Every entry passes these once in the client and once in each of three replicas,
so they bound what `bench_append.py`'s CPU per entry can come down to without fewer
Python steps. The baseline in the same run is a bytes copy of each entry, the least any
stage does with it. Prints the best of 7 trials per phase (the machine is shared).
"""

from __future__ import annotations

import argparse
import itertools
import time

from flexlog.core import record_batch
from flexlog.core.append_wire import AppendOp, decode_request, encode_op
from flexlog.core.errors import Code
from flexlog.core.memory_engine import MemoryEngine
from flexlog.core.proto import flexlog_pb2 as pb
from flexlog.core.replica_protocol import Grant, ReplicaProtocol
from flexlog.core.view import ShardView, View

COLOR = 6  # replica 0, the first readable member, is responsible: it sends the order requests
TRIALS = 7


class _Leaf:
    """What ReplicaProtocol asks of its process: only the order requests are kept."""

    def __init__(self) -> None:
        self.requests: list[pb.ReplicaToSequencer] = []

    def flush_soon(self) -> None:
        pass

    def send_to_leaf(self, message: pb.ReplicaToSequencer) -> None:
        self.requests.append(message)

    def repair(self, grant: Grant) -> None:
        pass

    def catch_up(self, epoch: int, peers: list[int]) -> None:
        pass

    def copy_gap(self, color: int, start: int, end: int, peers: tuple[int, ...]) -> None:
        pass

    def seal(self, color: int, start: int, end: int, members: tuple[int, ...]) -> None:
        pass

    def fill(self, op: pb.QueryOp, members: tuple[int, ...]) -> None:
        pass


class _Acks:
    def ack(self, token: int, sn: int) -> None:
        pass

    def reject(self, token: int, code: Code, message: str) -> None:
        raise AssertionError(f"append {token:x} rejected: {code.name} {message}")


def measure(entries: int, rounds: int) -> dict[str, float]:
    """Seconds per entry of each phase, best of TRIALS."""
    leaf = _Leaf()
    view = View({0: ShardView(1, (0, 1, 2), (0, 1, 2))})
    replica = ReplicaProtocol(0, 0, MemoryEngine(), leaf, view, incarnation=1, copy_tokens=1,
                              now=0.0, max_entry_bytes=1 << 20)
    replica.leaf_attached()
    value = b"x" * 1024
    acks = _Acks()
    tokens = itertools.count(1 << 32)
    sns = itertools.count()
    best: dict[str, float] = {}
    clock = time.perf_counter
    for _ in range(TRIALS):
        spent = dict.fromkeys(("copy (baseline)", "client: build batch", "client: encode op",
                               "replica: decode", "replica: prepare", "replica: order request",
                               "replica: apply grants"), 0.0)
        for _ in range(rounds):
            t = clock()
            for _ in range(entries):
                bytes(memoryview(value))
            spent["copy (baseline)"] += clock() - t
            t = clock()
            batches = [record_batch.build([value]) for _ in range(entries)]
            spent["client: build batch"] += clock() - t
            ops = [AppendOp(next(tokens), COLOR, 1, 1, batch, True) for batch in batches]
            t = clock()
            message = b"".join([encode_op(op) for op in ops])
            spent["client: encode op"] += clock() - t
            t = clock()
            decoded = decode_request(message)
            spent["replica: decode"] += clock() - t
            t = clock()
            replica.prepare(decoded, acks, 1.0)
            spent["replica: prepare"] += clock() - t
            t = clock()
            replica.flush_orders()
            spent["replica: order request"] += clock() - t
            request = leaf.requests.pop()
            grants = [Grant(token, color, next(sns), count)
                      for token, color, count in zip(request.tokens, request.colors, request.counts,
                                                     strict=True)]
            t = clock()
            replica.grants(grants, 1.0)
            spent["replica: apply grants"] += clock() - t
        for phase, seconds in spent.items():
            best[phase] = min(best.get(phase, float("inf")), seconds / (rounds * entries))
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=512, help="appends per message")
    parser.add_argument("--rounds", type=int, default=30, help="messages per trial")
    args = parser.parse_args()
    best = measure(args.entries, args.rounds)
    baseline = best["copy (baseline)"]
    print(f"1 KiB appends, {args.entries} per message, best of {TRIALS} trials of {args.rounds} messages")
    print("| phase | us per entry | / copy |")
    print("|---|---|---|")
    for phase, seconds in best.items():
        print(f"| {phase} | {seconds * 1e6:.2f} | {seconds / baseline:.1f} |")
    replica = sum(v for k, v in best.items() if k.startswith("replica"))
    client = sum(v for k, v in best.items() if k.startswith("client"))
    # Every replica does each step but the order request, which only the responsible one sends.
    total = client + 3 * replica - 2 * best["replica: order request"]
    print(f"client {client * 1e6:.2f} us, each replica {replica * 1e6:.2f} us per entry: "
          f"{total * 1e6:.1f} us ({total / baseline:.0f} copies) of the native append's CPU per "
          "entry is this Python")


if __name__ == "__main__":
    main()
