"""What one Python gRPC stream costs by itself: the floor under every hop of the cluster.

Run: .venv/bin/python bench/bench_grpc_floor.py [--seconds 3] [--transport both|cq|ee]

A server process with the cluster's gRPC options, event loop and malloc settings
(`core/rpc.py`, `core/allocator.py`) takes a bidi stream of raw-bytes messages and
answers each with 8 bytes, as a replica acks an append message; this process is the
sender, keeping `window` messages in flight, as a shard writer does. For each message
size and window it prints messages/s, MB/s and the CPU each side spent per GB and per
message. A replica receives every byte a cluster stores once per copy and the gateway
sends it three times, so these figures bound what the Kafka produce path can cost.

gRPC core has two TCP transports (`core/grpc_transport.py`): the completion-queue one every
`flexlog` process selects ("cq") and grpcio's default, the EventEngine ("ee"). gRPC picks one
when it is imported, so this runs itself once per transport asked for (both by default), in a
fresh process whose environment selects it, and prints a table for each.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from multiprocessing.synchronize import Event

import grpc

from common import cpu_seconds, free_ports
from flexlog.core import allocator, grpc_transport, rpc

CASES = ((1024, 2), (1024, 32), (100 * 1024, 2), (100 * 1024, 32), (1 << 20, 2))
METHOD = "/bench.Floor/Stream"
TRANSPORTS = {"cq": grpc_transport.EXPERIMENTS, "ee": ""}


async def _ack_each(requests: AsyncIterator[bytes], _context: grpc.aio.ServicerContext
                    ) -> AsyncIterator[bytes]:
    async for message in requests:
        yield len(message).to_bytes(8, "little")


def _serve(port: int, ready: Event) -> None:
    allocator.tune_malloc()
    rpc.install_uvloop()

    async def main() -> None:
        server = rpc.server()
        server.add_generic_rpc_handlers([rpc.service("bench.Floor", {"Stream": rpc.bidi_raw(_ack_each)})])
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        ready.set()
        await server.wait_for_termination()

    asyncio.run(main())


async def _send(port: int, size: int, window: int, seconds: float) -> int:
    """Messages sent (and, on return, acknowledged) in `seconds` with `window` in flight."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=rpc.CHANNEL_OPTIONS) as ch:
        call = ch.stream_stream(METHOD, request_serializer=None, response_deserializer=None)()
        payload = os.urandom(size)
        room = asyncio.Semaphore(window)
        stop = time.perf_counter() + seconds

        async def read_acks() -> None:
            async for _ in call:
                room.release()

        reader = asyncio.create_task(read_acks())
        sent = 0
        while time.perf_counter() < stop:
            await room.acquire()
            await call.write(payload)
            sent += 1
        await call.done_writing()
        await reader
        return sent


def measure(seconds: float, transport: str) -> None:
    allocator.tune_malloc()
    rpc.install_uvloop()
    port = free_ports(1)[0]
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=_serve, args=(port, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(30):
            raise SystemExit("the gRPC server did not start")
        asyncio.run(_send(port, 1024, 2, 0.5))  # connection and first allocations warm
        print(f"one gRPC bidi stream on loopback, cluster settings, transport {transport} "
              f"(GRPC_EXPERIMENTS={os.environ.get(grpc_transport.ENV)!r}), {seconds:g} s per case")
        print("| message | in flight | messages/s | MB/s | receiver CPU-s/GB | sender CPU-s/GB "
              "| receiver us per message |")
        print("|---|---|---|---|---|---|---|")
        for size, window in CASES:
            receiver0 = cpu_seconds([server.pid], with_self=False)
            sender0 = time.process_time()
            start = time.perf_counter()
            messages = asyncio.run(_send(port, size, window, seconds))
            elapsed = time.perf_counter() - start
            receiver = cpu_seconds([server.pid], with_self=False) - receiver0
            sender = time.process_time() - sender0
            gb = messages * size / 1e9
            print(f"| {size:,} B | {window} | {messages / elapsed:,.0f} | {gb * 1e3 / elapsed:,.0f} "
                  f"| {receiver / gb:.2f} | {sender / gb:.2f} | {receiver / messages * 1e6:.0f} |",
                  flush=True)
    finally:
        server.terminate()
        server.join(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--transport", default="both", choices=["both", *TRANSPORTS])
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        # A child this process started with the transport's environment, read by the grpc import.
        if os.environ.get(grpc_transport.ENV) != TRANSPORTS[args.transport]:
            raise SystemExit(f"--measure needs {grpc_transport.ENV}={TRANSPORTS[args.transport]!r}")
        measure(args.seconds, args.transport)
        return
    for transport in TRANSPORTS if args.transport == "both" else [args.transport]:
        env = {**os.environ, grpc_transport.ENV: TRANSPORTS[transport]}
        subprocess.run([sys.executable, __file__, "--seconds", str(args.seconds), "--transport", transport,
                        "--measure"], env=env, check=True)
        print(flush=True)


if __name__ == "__main__":
    main()
