"""Append throughput and latency through the native client: 1 shard x 3 replicas.

Run: .venv/bin/python bench/bench_append.py [--storage memory|pm] [--shm] [--seconds 5] [--curve]
--shm puts the PM pools on /dev/shm with PMEM_IS_PMEM_FORCE=1 (PM emulation);
without it a pm pool lives in a temporary directory on disk (the durable msync path).
Prints entries/s with many appends in flight, p50/p99 at low load, and the raw
loopback ceiling (length-prefixed frames over asyncio TCP) measured in the same run.
--curve prints the throughput-latency curve instead: for 1 to 1024 appends in flight
(a closed loop), entries/s, each append's p50/p99 and the CPU all processes spent per entry.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import struct
import tempfile
import time
from pathlib import Path

from common import cpu_seconds, percentile, running_cluster, summary
from flexlog.core import rpc
from flexlog.core.client import FlexLogClient
from flexlog.core.registry import ColorInfo

CURVE_IN_FLIGHT = (1, 4, 16, 64, 256, 1024)


async def throughput(client: FlexLogClient, color: str, size: int, seconds: float,
                     in_flight: int) -> tuple[float, list[float]]:
    """Entries/s with in_flight appends always outstanding, and each append's seconds."""
    payload = b"x" * size
    took: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        while (t := time.perf_counter()) < stop:
            await client.append([payload], color)
            took.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return len(took) / (time.perf_counter() - start), took


async def latency(client: FlexLogClient, color: str | ColorInfo, size: int, n: int) -> list[float]:
    payload = b"x" * size
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await client.append([payload], color)
        out.append(time.perf_counter() - t)
    return out


async def loopback_ceiling(size: int, seconds: float, in_flight: int) -> tuple[float, list[float]]:
    """Raw asyncio TCP: a client pipelines size-byte frames, a server acks each with 8 bytes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (n,) = struct.unpack(">I", await reader.readexactly(4))
                await reader.readexactly(n)
                writer.write(b"\x00" * 8)
        except asyncio.IncompleteReadError:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    frame = struct.pack(">I", size) + b"x" * size
    lat = []
    for _ in range(2000):
        t = time.perf_counter()
        writer.write(frame)
        await reader.readexactly(8)
        lat.append(time.perf_counter() - t)
    sent = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        writer.write(frame * in_flight)
        await reader.readexactly(8 * in_flight)
        sent += in_flight
    rate = sent / (time.perf_counter() - start)
    writer.close()
    server.close()
    return rate, lat


def role_cpu(roles: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds used so far per role; "client" is this process."""
    used = {role: cpu_seconds(pids, with_self=False) for role, pids in roles.items()}
    return {"client": time.process_time(), **used}


async def run(cfg: object, roles: dict[str, list[int]], size: int, seconds: float,
              in_flight: int) -> None:
    async with FlexLogClient(cfg) as client:  # type: ignore[arg-type]
        await client.wait_ready()
        await client.create_color("bench")
        await throughput(client, "bench", size, 1.0, in_flight)  # warm-up
        before = role_cpu(roles)
        rate, took = await throughput(client, "bench", size, seconds, in_flight)
        after = role_cpu(roles)
        per_role = {role: (after[role] - before[role]) / len(took) for role in after}
        cpu_per_entry = sum(per_role.values())
        lat = await latency(client, "bench", size, 2000)
    raw_rate, raw_lat = await loopback_ceiling(size, seconds, in_flight)
    print(f"append {size} B entries, 1 shard x 3 replicas, {in_flight} in flight:")
    print(f"  flexlog       {rate:>10,.0f} entries/s  ({rate * size / 1e6:.1f} MB/s)")
    print(f"  raw loopback  {raw_rate:>10,.0f} frames/s   ratio {rate / raw_rate:.3f}")
    print(f"  CPU per entry, client + all cluster processes: {cpu_per_entry * 1e6:.1f} us "
          f"(= {2 / cpu_per_entry:,.0f} entries/s if 2 cores did nothing else)")
    print("    by role: " + ", ".join(f"{role} {cpu * 1e6:.1f} us" for role, cpu in per_role.items()))
    print(f"  latency, one append at a time: {summary(lat)}")
    print(f"  raw loopback round trip:       {summary(raw_lat)}")


async def curve(cfg: object, pids: list[int], size: int, seconds: float) -> None:
    async with FlexLogClient(cfg) as client:  # type: ignore[arg-type]
        await client.wait_ready()
        await client.create_color("bench")
        await throughput(client, "bench", size, 1.0, 64)  # warm-up
        print(f"append {size} B entries, 1 shard x 3 replicas, closed loop, {seconds:g} s per point:")
        print("| in flight | entries/s | p50 ms | p99 ms | CPU per entry, all processes |")
        print("|---|---|---|---|---|")
        for in_flight in CURVE_IN_FLIGHT:
            cpu0 = cpu_seconds(pids)
            rate, took = await throughput(client, "bench", size, seconds, in_flight)
            cpu = (cpu_seconds(pids) - cpu0) / len(took)
            ms = [t * 1000 for t in took]
            print(f"| {in_flight} | {rate:,.0f} | {percentile(ms, 50):.2f} | {percentile(ms, 99):.2f} "
                  f"| {cpu * 1e6:.1f} us |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--storage", default="memory", choices=["memory", "pm"])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--in-flight", type=int, default=512)
    parser.add_argument("--shm", action="store_true", help="PM pools on /dev/shm with PMEM_IS_PMEM_FORCE=1")
    parser.add_argument("--curve", action="store_true", help="the throughput-latency curve instead")
    args = parser.parse_args()
    rpc.install_uvloop()
    extra = ""
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        if args.shm:
            os.environ["PMEM_IS_PMEM_FORCE"] = "1"
            extra = f'pm_dir = "{stack.enter_context(tempfile.TemporaryDirectory(dir="/dev/shm"))}"'
        cl = stack.enter_context(running_cluster(Path(tmp), storage=args.storage, extra=extra))
        pids = [p.pid for p in cl.procs.values()]
        if args.curve:
            asyncio.run(curve(cl.config, pids, args.size, args.seconds))
        else:
            sequencers = {s.name for s in cl.config.sequencers}
            roles = {"sequencers": [p.pid for n, p in cl.procs.items() if n in sequencers],
                     "replicas (3)": [p.pid for n, p in cl.procs.items() if n not in sequencers]}
            asyncio.run(run(cl.config, roles, args.size, args.seconds, args.in_flight))


if __name__ == "__main__":
    main()
