"""The FlexLog talk's evaluation, reproduced in shape on this machine, in one run (issue 13).

    .venv/bin/python bench/bench_eval.py            # everything, about 3-4 minutes
    .venv/bin/python bench/bench_eval.py --quick    # the same tables with shorter phases, 1-1.5 min
    .venv/bin/python bench/bench_eval.py --only ordering --only storage

Sections (each prints a markdown table; every ratio compares figures of this run):
- ordering: sequencer processes alone (the benchmark attaches as the shard's replica),
  a 2-level and a 3-level chain; per owner level the closed-loop maximum, then a
  throughput-latency curve at fractions of that maximum (bench_ordering.paced);
- boki: the whole append path on 2 leaves x 2 shards; FlexLog's placement (every color
  owned by the leaf above its shard) against Boki's shape (every color owned by the root,
  and one root-owned color over both shards: one total order of everything);
- mixed: append:read 50:50 and 95:5 on 1 leaf x 1 shard, read latency under that load
  against reads on the idle cluster;
- scaling: 1 leaf x 1 shard, 1 leaf x 2 shards, 2 leaves x 2 shards, leaf-owned colors,
  entries/s and entries per CPU-second of every cluster process plus this client;
- storage: the PM engine (emulated PM on /dev/shm, and a pool file on disk) against an
  append file that is fsync'd after every batch, 100 B and 4 KiB, batches of 1, 16, 256.

Clusters use the in-memory engine (storage is measured on its own) and 3 replicas per
shard. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# bench_ordering imports common, which puts tests/ (where `cluster` lives) on sys.path.
from bench_append import latency
from bench_ordering import paced, sequencer_chain, through_tree

from cluster import Cluster, started
from common import cpu_seconds, free_ports, percentile
from flexlog.core import config as config_mod
from flexlog.core import rpc
from flexlog.core.client import FlexLogClient
from flexlog.core.registry import ColorInfo

SECTIONS = ("ordering", "boki", "mixed", "scaling", "storage")
LOADS = (0.1, 0.3, 0.6, 0.9)  # offered ordering load, as a fraction of the owner's maximum
PER_MESSAGE = 100  # order requests per message in the ordering section
ENTRY = 128  # bytes per appended entry: small, so ordering is a visible part of an append
IN_FLIGHT = 256
MIXED_IN_FLIGHT = (16, 256)  # a light load and a saturating one
COLORS = 8


@dataclass
class Phases:
    """How long each measurement runs (--quick shortens all of them)."""

    ordering_s: float
    append_s: float
    warmup_s: float
    latency_n: int
    storage_scale: int
    rounds: int  # boki and scaling: each variant measured once per round, variants alternating


FULL = Phases(ordering_s=2.0, append_s=2.5, warmup_s=0.5, latency_n=400, storage_scale=1, rounds=2)
QUICK = Phases(ordering_s=0.4, append_s=0.8, warmup_s=0.3, latency_n=100, storage_scale=8, rounds=1)


def ms(values_s: list[float], p: float) -> float:
    return percentile(values_s, p) * 1000


# ---- ordering -------------------------------------------------------------------------


def ordering(ph: Phases) -> None:
    print("## ordering layer (sequencer processes only)\n")
    print(f"Order requests of {PER_MESSAGE} per message, 4 records each; the benchmark is the "
          "shard's replica. Both trees run at once. Per owner: the closed-loop maximum "
          "(4 messages in flight), then paced loads at fractions of that owner's own maximum "
          "(latency from send to grant); owners alternate at every step, so load that drifts "
          "on a shared machine is spread over all of them.\n")
    with sequencer_chain(2) as two, sequencer_chain(3) as three:
        # (tree levels, owner label, the leaf's address, owner node), leaf-owned first per tree.
        paths = []
        for levels, cfg in ((2, two), (3, three)):
            names = ["root", "mid", "leaf"] if levels == 3 else ["root", "leaf"]
            for node in reversed(range(levels)):
                hops = levels - node
                paths.append((levels, f"{names[node]} ({hops} level{'s' * (hops > 1)})",
                              cfg.sequencer("leaf").address, node))

        async def run() -> list[list[str]]:
            tops = []
            for _, _, leaf, owner in paths:
                await through_tree(leaf, owner, ph.warmup_s, PER_MESSAGE, 4)
                tops.append((await through_tree(leaf, owner, ph.ordering_s, PER_MESSAGE, 4))[0])
            rows: list[list[str]] = [[] for _ in paths]
            for load in LOADS:
                for i, (_, _, leaf, owner) in enumerate(paths):
                    got, lat = await paced(leaf, owner, load * tops[i], ph.ordering_s, PER_MESSAGE)
                    rows[i].append(f"| {load:.1f} | {load * tops[i]:,.0f} | {got:,.0f} "
                                   f"| {ms(lat, 50):.2f} | {ms(lat, 99):.2f} |")
            leaf_max: dict[int, float] = {}
            for (levels, *_), top in zip(paths, tops, strict=True):
                leaf_max.setdefault(levels, top)
            return [[f"| {levels} levels | {label} | {tops[i]:,.0f} | {tops[i] / leaf_max[levels]:.2f} "
                     + row for row in rows[i]] for i, (levels, label, _, _) in enumerate(paths)]

        table = asyncio.run(run())
    print("| tree | owner | max req/s (closed loop) | vs leaf-owned max | load | offered req/s "
          "| granted req/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for rows in table:
        print("\n".join(rows))
    print()


# ---- clusters for the append path ---------------------------------------------------------


def layout_toml(data_dir: Path, leaves: int, shards: int, replicas: int) -> str:
    """root (node 0), leaves 1..leaves, shard s under leaf s % leaves, every process separate."""
    ports = iter(free_ports(1 + leaves + shards * replicas))
    # Room for every phase's entries: the in-memory store refuses appends once full.
    out = [f'data_dir = "{data_dir}"', 'storage = "memory"', "pool_size_bytes = 1073741824",
           f'[[sequencer]]\nname = "root"\naddress = "127.0.0.1:{next(ports)}"\nnodes = [{{ id = 0 }}]']
    for leaf in range(1, leaves + 1):
        out.append(f'[[sequencer]]\nname = "leaf{leaf}"\naddress = "127.0.0.1:{next(ports)}"\n'
                   f"nodes = [{{ id = {leaf}, parent = 0 }}]")
    for s in range(shards):
        addrs = ", ".join(f'"127.0.0.1:{next(ports)}"' for _ in range(replicas))
        out.append(f"[[shard]]\nid = {s}\nleaf = {s % leaves + 1}\nreplicas = [{addrs}]")
    return "\n\n".join(out) + "\n"


@contextlib.contextmanager
def layout(leaves: int, shards: int, replicas: int = 3) -> Iterator[Cluster]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cluster.toml"
        path.write_text(layout_toml(Path(tmp) / "data", leaves, shards, replicas))
        with started(Cluster(config_mod.load(path))) as cluster:
            yield cluster


@dataclass
class Load:
    entries: int = 0
    cpu_s: float = 0.0  # CPU-seconds of every cluster process and this benchmark
    client_cpu_s: float = 0.0  # the part of cpu_s that this benchmark (the clients) used
    seconds: float = 0.0

    def add(self, other: Load) -> None:
        self.entries += other.entries
        self.cpu_s += other.cpu_s
        self.client_cpu_s += other.client_cpu_s
        self.seconds += other.seconds

    @property
    def entries_per_s(self) -> float:
        return self.entries / self.seconds

    @property
    def cores(self) -> float:
        return self.cpu_s / self.seconds

    @property
    def per_core(self) -> float:
        """Entries per CPU-second: what one core's worth of this pipeline appends."""
        return self.entries / self.cpu_s


async def closed_loop(clients: list[FlexLogClient], colors: list[ColorInfo], seconds: float,
                      pids: list[int], in_flight: int = IN_FLIGHT) -> Load:
    """in_flight appends kept in flight, spread round-robin over clients and colors."""
    payload = b"x" * ENTRY
    done = 0
    stop = time.perf_counter() + seconds

    async def worker(i: int) -> None:
        nonlocal done
        client, color = clients[i % len(clients)], colors[i % len(colors)]
        while time.perf_counter() < stop:
            await client.append([payload], color)
            done += 1

    cpu0, client0 = cpu_seconds(pids), time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(in_flight)))
    elapsed = time.perf_counter() - start
    return Load(done, cpu_seconds(pids) - cpu0, time.process_time() - client0, elapsed)


async def make_colors(client: FlexLogClient, prefix: str, owner_of: dict[int, int],
                      shards: list[int], count: int = COLORS) -> list[ColorInfo]:
    """count colors, color i on shard shards[i % len], owned by owner_of[that shard]."""
    out = []
    for i in range(count):
        shard = shards[i % len(shards)]
        out.append(await client.create_color(f"{prefix}{i}", owner=owner_of[shard], shards=[shard]))
    return out


async def clients_for(cfg: config_mod.ClusterConfig) -> list[FlexLogClient]:
    """Two clients in this process. A color on several shards is written by each client to
    shard `client_id % shards`; client ids are odd, so the second one is made even to reach
    the other shard (only the one-total-order color needs that)."""
    clients = [FlexLogClient(cfg), FlexLogClient(cfg)]
    clients[1].client_id = clients[0].client_id + 1
    for c in clients:
        await c.wait_ready()
    return clients


# ---- Boki-like baseline ---------------------------------------------------------------------


@dataclass
class Variant:
    """One workload on one cluster, measured over the rounds."""

    label: str
    clients: list[FlexLogClient]
    colors: list[ColorInfo]
    pids: list[int]
    load: Load
    latency: list[float]
    in_flight: int = IN_FLIGHT


async def boki_variants(cluster: Cluster) -> list[Variant]:
    cfg = cluster.config
    pids = [p.pid for p in cluster.procs.values()]
    clients = await clients_for(cfg)
    shards = [s.id for s in cfg.shards]
    leaf_of = {s.id: s.leaf for s in cfg.shards}
    root_of = {s: cfg.root for s in shards}
    variants = [
        (f"FlexLog: {COLORS} colors, each owned by its shard's leaf",
         await make_colors(clients[0], "leaf", leaf_of, shards)),
        (f"Boki-like: the same {COLORS} colors, each owned by the root",
         await make_colors(clients[0], "root", root_of, shards)),
        ("FlexLog: 1 color per shard, owned by its leaf",
         await make_colors(clients[0], "leaf1-", leaf_of, shards, len(shards))),
        ("Boki-like: 1 root-owned color over both shards (one total order)",
         [await clients[0].create_color("total", owner=cfg.root, shards=shards)]),
    ]
    for c in clients:
        await c.sync_registry()
    return [Variant(label, clients, colors, pids, Load(), []) for label, colors in variants]


async def scaling_variants(clusters: dict[tuple[int, int], Cluster]) -> list[Variant]:
    out = []
    for (leaves, shards), cluster in clusters.items():
        cfg = cluster.config
        client = FlexLogClient(cfg)
        await client.wait_ready()
        colors = await make_colors(client, "scale", {s.id: s.leaf for s in cfg.shards},
                                   [s.id for s in cfg.shards])
        # The same offered load per shard: with a fixed total, each shard's batches would
        # shrink as shards are added, and every message costs the same whatever it carries.
        out.append(Variant(f"{leaves} x {shards}", [client], colors,
                           [p.pid for p in cluster.procs.values()], Load(), [],
                           IN_FLIGHT * shards))
    return out


async def append_path(boki_cluster: Cluster | None, scaling: dict[tuple[int, int], Cluster],
                      ph: Phases) -> tuple[list[Variant], list[Variant]]:
    """Boki-like and scaling variants, measured in alternation: on a shared machine the load
    drifts within minutes, and alternating spreads that drift over every variant."""
    boki = await boki_variants(boki_cluster) if boki_cluster else []
    scale = await scaling_variants(scaling) if scaling else []
    try:
        for _ in range(ph.rounds):
            for v in [*boki, *scale]:
                await closed_loop(v.clients, v.colors, ph.warmup_s, v.pids, v.in_flight)
                v.load.add(await closed_loop(v.clients, v.colors, ph.append_s, v.pids, v.in_flight))
                sys.stdout.flush()
        for v in boki:
            v.latency = await latency(v.clients[0], v.colors[0], ENTRY, ph.latency_n)
        return boki, scale
    finally:
        for client in {id(c): c for v in [*boki, *scale] for c in v.clients}.values():
            await client.close()


def print_boki(rows: list[Variant], ph: Phases) -> None:
    print("## Boki-like baseline: one total order at the root vs per-color placement\n")
    print(f"2 leaves x 2 shards x 3 replicas, {ENTRY} B entries, {IN_FLIGHT} appends in flight "
          f"from two clients, {ph.rounds} x {ph.append_s} s per row, rows alternating; then "
          f"{ph.latency_n} appends one at a time. Ratios: the first row / this row.\n")
    print("| colors | entries/s | cores used | of which the clients | entries per CPU-s "
          "| p50 ms | p99 ms | FlexLog/this entries/s | FlexLog/this per CPU-s | this/FlexLog p50 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    base = rows[0]
    for v in rows:
        load, lat = v.load, v.latency
        print(f"| {v.label} | {load.entries_per_s:,.0f} | {load.cores:.2f} "
              f"| {load.client_cpu_s / load.seconds:.2f} | {load.per_core:,.0f} "
              f"| {ms(lat, 50):.2f} | {ms(lat, 99):.2f} "
              f"| {base.load.entries_per_s / load.entries_per_s:.2f} "
              f"| {base.load.per_core / load.per_core:.2f} "
              f"| {ms(lat, 50) / ms(base.latency, 50):.2f} |")
    print()


# ---- mixed append:read ------------------------------------------------------------------------


@dataclass
class Mixed:
    label: str
    in_flight: int
    seconds: float
    append_lat: list[float]
    read_lat: list[float]


async def mixed(cluster: Cluster, ph: Phases) -> tuple[list[float], list[Mixed]]:
    cfg = cluster.config
    async with FlexLogClient(cfg) as client:
        await client.wait_ready()
        colors = await make_colors(client, "mixed", {s.id: s.leaf for s in cfg.shards},
                                   [s.id for s in cfg.shards])
        tails = {c.id: 0 for c in colors}  # every SN below this is appended (and readable)
        payload = b"x" * ENTRY

        async def append(color: ColorInfo) -> None:
            sn = await client.append([payload], color)
            tails[color.id] = max(tails[color.id], sn + 1)

        await asyncio.gather(*(append(c) for c in colors for _ in range(200)))

        async def read_one() -> None:
            color = random.choice(colors)
            await client.read_entry(random.randrange(tails[color.id]), color)

        idle = []
        for _ in range(ph.latency_n):
            t = time.perf_counter()
            await read_one()
            idle.append(time.perf_counter() - t)

        out = []
        for (label, read_share), in_flight in itertools.product(
                (("50:50", 0.5), ("95:5", 0.05)), MIXED_IN_FLIGHT):
            result = Mixed(label, in_flight, 0.0, [], [])
            for seconds, keep in ((ph.warmup_s, False), (ph.append_s, True)):
                stop = time.perf_counter() + seconds

                async def worker(i: int, result: Mixed = result, keep: bool = keep,
                                 stop: float = stop, read_share: float = read_share) -> None:
                    color = colors[i % len(colors)]
                    while time.perf_counter() < stop:
                        is_read = random.random() < read_share
                        t = time.perf_counter()
                        await (read_one() if is_read else append(color))
                        if keep:
                            (result.read_lat if is_read else result.append_lat).append(
                                time.perf_counter() - t)

                start = time.perf_counter()
                await asyncio.gather(*(worker(i) for i in range(in_flight)))
                result.seconds = time.perf_counter() - start
            out.append(result)
        return idle, out


def print_mixed(idle: list[float], rows: list[Mixed]) -> None:
    print("## mixed append:read\n")
    print(f"1 leaf x 1 shard x 3 replicas, {COLORS} leaf-owned colors, {ENTRY} B entries, "
          f"a closed loop of {' or '.join(map(str, MIXED_IN_FLIGHT))} operations in flight; "
          "a read is `read_entry` of a random appended SN (read-one: one replica). "
          "Idle: one read at a time on the same cluster, "
          f"p50 {ms(idle, 50):.2f} ms, p99 {ms(idle, 99):.2f} ms.\n")
    print("| append:read | in flight | ops/s | appends/s | reads/s | append p50 / p99 ms "
          "| read p50 / p99 ms | read p99 under load / idle p99 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        a, rd = len(r.append_lat) / r.seconds, len(r.read_lat) / r.seconds
        print(f"| {r.label} | {r.in_flight} | {a + rd:,.0f} | {a:,.0f} | {rd:,.0f} "
              f"| {ms(r.append_lat, 50):.2f} / {ms(r.append_lat, 99):.2f} "
              f"| {ms(r.read_lat, 50):.2f} / {ms(r.read_lat, 99):.2f} "
              f"| {ms(r.read_lat, 99) / ms(idle, 99):.1f} |")
    print()


# ---- scaling ----------------------------------------------------------------------------------


def print_scaling(rows: list[Variant], ph: Phases) -> None:
    print("## scaling with shards and leaves, per core used\n")
    print(f"Leaf-owned colors ({COLORS}, spread over the shards), 3 replicas per shard, {ENTRY} B "
          f"entries, {IN_FLIGHT} appends in flight per shard from one client, {ph.rounds} x "
          f"{ph.append_s} s per row, rows alternating (all clusters up, the others idle). "
          "CPU-s: every process of the measured cluster plus the benchmark's own.\n")
    print("| leaves x shards | processes | entries/s | cores used | of which the client "
          "| entries per CPU-s | entries/s vs 1x1 | per CPU-s vs 1x1 |")
    print("|---|---|---|---|---|---|---|---|")
    base = rows[0].load
    for v in rows:
        load = v.load
        print(f"| {v.label} | {len(v.pids)} + client | {load.entries_per_s:,.0f} "
              f"| {load.cores:.2f} | {load.client_cpu_s / load.seconds:.2f} | {load.per_core:,.0f} "
              f"| {load.entries_per_s / base.entries_per_s:.2f} "
              f"| {load.per_core / base.per_core:.2f} |")
    print()


# ---- storage ----------------------------------------------------------------------------------

BATCHES = (1, 16, 256)


def fsync_file(parent: str, size: int, n: int, batch: int) -> float:
    """Entries/s into an append-only file, fsync'd after every batch: the SSD log baseline.

    Each entry is written with a 12-byte header (SN, length), as a log file would frame it;
    one write and one fsync per batch, the same grouping the PM engine gets.
    """
    data = os.urandom(size)
    with tempfile.TemporaryDirectory(dir=parent) as d:
        fd = os.open(Path(d) / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            started = time.perf_counter()
            for first in range(0, n, batch):
                os.write(fd, b"".join(struct.pack("<QI", sn, size) + data
                                      for sn in range(first, min(n, first + batch))))
                os.fsync(fd)
            return n / (time.perf_counter() - started)
        finally:
            os.close(fd)


def storage_count(size: int, batch: int, durable_medium: bool, scale: int) -> int:
    """Entries per row: enough calls to average over, few enough to stay within seconds."""
    on_disk = {1: 400, 16: 4_000, 256: 20_480}
    n = on_disk[batch] if durable_medium else 100_000 if size == 100 else 30_000
    # At least 20 calls per row; within a 256 MiB pool.
    return min(max(n // scale, 20 * batch), (200 << 20) // (size + 64))


def storage_child(where: str, scale: int) -> None:
    """Runs in a child process (libpmem reads PMEM_IS_PMEM_FORCE once per process); prints JSON."""
    from bench_pm import batched_appends

    parent = "/dev/shm" if where == "shm" else tempfile.gettempdir()
    out: dict[str, float] = {}
    for size in (100, 4096):
        for batch in BATCHES:
            n = storage_count(size, batch, where == "disk", scale)
            out[f"pm {size} {batch}"] = batched_appends(parent, size, n, batch)
            if where == "disk":
                out[f"file {size} {batch}"] = fsync_file(parent, size, n, batch)
    print(json.dumps(out))


def storage(ph: Phases) -> None:
    figures: dict[str, dict[str, float]] = {}
    for where, force in (("shm", "1"), ("disk", None)):
        env = {k: v for k, v in os.environ.items() if k != "PMEM_IS_PMEM_FORCE"}
        if force:
            env["PMEM_IS_PMEM_FORCE"] = force
        cmd = [sys.executable, __file__, "--storage-child", where, "--scale", str(ph.storage_scale)]
        figures[where] = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True,
                                                   text=True).stdout)
    print("## storage: PM engine vs an fsync'd append file\n")
    print(f"prepare_many + commit_many (the replica's path: one call per batch; a pool file on "
          f"disk pays one msync to prepare and one to commit) against one write + one fsync of the "
          f"same batch to a file on the same disk ({tempfile.gettempdir()}). Entries/s.\n")
    print("| entry | batch | PM, /dev/shm + FORCE | PM, pool file on disk (msync) "
          "| fsync'd file | PM shm / file | PM disk / file |")
    print("|---|---|---|---|---|---|---|")
    shm, disk = figures["shm"], figures["disk"]
    for size in (100, 4096):
        for batch in BATCHES:
            k = f"{size} {batch}"
            file = disk[f"file {k}"]
            print(f"| {size} B | {batch} | {shm[f'pm {k}']:,.0f} | {disk[f'pm {k}']:,.0f} "
                  f"| {file:,.0f} | {shm[f'pm {k}'] / file:.1f} | {disk[f'pm {k}'] / file:.2f} |")
    print()


# ---- main ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="shorter phases, about a minute")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run these sections")
    parser.add_argument("--storage-child", choices=["shm", "disk"], help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.storage_child:
        storage_child(args.storage_child, args.scale)
        return
    ph = QUICK if args.quick else FULL
    only = set(args.only or SECTIONS)
    rpc.install_uvloop()
    started_at = time.perf_counter()
    print(f"bench_eval {'--quick ' if args.quick else ''}on {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start\n")
    # Where the time goes, on stderr: cluster start-up and drains are most of a --quick run.
    def took(what: str) -> None:
        print(f"[{time.perf_counter() - started_at:.0f} s] {what}", file=sys.stderr)

    if "ordering" in only:
        ordering(ph)
        took("ordering")
    if "scaling" in only:
        layouts = [(1, 1), (1, 2), (2, 2)]
    else:
        layouts = [lay for lay, section in (((1, 1), "mixed"), ((2, 2), "boki")) if section in only]
    with contextlib.ExitStack() as stack:
        # Every layout up at once, so the scaling rows can alternate.
        clusters = {lay: stack.enter_context(layout(*lay)) for lay in layouts}
        took("clusters up")
        if "mixed" in only:
            print_mixed(*asyncio.run(mixed(clusters[(1, 1)], ph)))
            sys.stdout.flush()
            took("mixed")
        if {"boki", "scaling"} & only:
            boki, scale = asyncio.run(append_path(
                clusters[(2, 2)] if "boki" in only else None,
                clusters if "scaling" in only else {}, ph))
            if boki:
                print_boki(boki, ph)
            if scale:
                print_scaling(scale, ph)
            took("boki and scaling")
    took("clusters stopped")
    if "storage" in only:
        storage(ph)
        took("storage")
    print(f"load average {os.getloadavg()[0]:.1f} at the end; {time.perf_counter() - started_at:.0f} s")


if __name__ == "__main__":
    main()
