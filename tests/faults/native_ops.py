"""Native-client operations for the fault tests, each one recorded in a `History`.

Appends carry one record whose value is a unique payload; reads go to one given
replica (by index in its shard) so a test can check every copy, not just the
one a client happens to pick.
"""

from __future__ import annotations

import asyncio
import time

from history import History

from flexlog.core import record_batch, registry
from flexlog.core.client import FlexLogClient
from flexlog.core.config import ClusterConfig
from flexlog.core.errors import FlexLogError, InvalidEntry, TooLarge, UnknownColor
from flexlog.core.proto import flexlog_pb2 as pb
from flexlog.core.registry import ColorInfo

DEFINITE = (InvalidEntry, TooLarge, UnknownColor)  # refused before anything was stored


async def append(client: FlexLogClient, hist: History, who: str, info: ColorInfo,
                 payload: bytes) -> int | None:
    """One append, recorded; its SN, or None when it failed (recorded as fail or info)."""
    op = hist.invoke(who, info.name, payload)
    try:
        sn = await client.append([payload], info)
    except DEFINITE as exc:
        hist.fail(op, exc)
        return None
    except (FlexLogError, TimeoutError) as exc:
        hist.info(op, exc)
        return None
    hist.ok(op, sn)
    return sn


async def append_acked(client: FlexLogClient, hist: History, who: str, info: ColorInfo,
                       prefix: str, count: int, deadline: float) -> int:
    """Append until `count` entries were acknowledged, one at a time; an attempt that fails
    (e.g. Unavailable while a sequencer restarts) is retried with a new payload until
    `deadline` (time.monotonic()). Returns how many were acknowledged."""
    acked = attempt = 0
    while acked < count and time.monotonic() < deadline:
        sn = await append(client, hist, who, info, f"{prefix}-{acked:04d}.{attempt}".encode())
        if sn is None:
            attempt += 1
            await asyncio.sleep(0.05)
        else:
            acked += 1
    return acked


async def writer(client: FlexLogClient, hist: History, who: str, info: ColorInfo,
                 stop: asyncio.Event, interval_s: float = 0.0,
                 gate: asyncio.Event | None = None) -> None:
    """Append one entry after another (each waits for its ack) until stop is set; with a
    gate, only while the gate is set."""
    n = 0
    while not stop.is_set():
        if gate is not None and not gate.is_set():
            await asyncio.sleep(0.01)
            continue
        sn = await append(client, hist, who, info, f"{who}-{n:05d}".encode())
        n += 1
        if sn is None:
            await asyncio.sleep(0.05)
        elif interval_s:
            await asyncio.sleep(interval_s)


async def read_at(client: FlexLogClient, hist: History, reader: str, replica: int,
                  info: ColorInfo, sn: int, wait_ms: int = 1000) -> None:
    """Read SN from one replica and record what it holds there (the record's value)."""
    try:
        entry = await client.read_entry(sn, info, wait_ms=wait_ms, replica=replica)
    except (FlexLogError, TimeoutError) as exc:
        hist.read(reader, info.name, sn, None, exc)
        return
    for rec in record_batch.decode(entry.payload):
        if rec.offset == sn:
            hist.read(reader, info.name, sn, rec.value)
            return
    hist.read(reader, info.name, sn, None, f"entry at {entry.sn} does not hold SN {sn}")


# How long an acknowledged SN may take to become readable at a replica once the load
# stopped: an SN above a hole becomes readable once the hole is filled (docs/reliability.md,
# "Holes": a peer copy after 1 s, seal and fill after 3 s).
READ_BACK_WAIT_MS = 8000


async def read_back(client: FlexLogClient, hist: History, info: ColorInfo,
                    replicas: dict[str, int], wait_ms: int = READ_BACK_WAIT_MS) -> None:
    """Read every SN the history acknowledged for this color from every given replica
    (name -> index in the shard), concurrently; each read waits up to wait_ms for its SN."""
    sns = sorted({op.sn for op in hist.acked(info.name) if op.sn is not None})
    await asyncio.gather(*(read_at(client, hist, name, index, info, sn, wait_ms)
                           for name, index in replicas.items() for sn in sns))


async def color_state(client: FlexLogClient, info: ColorInfo) -> str:
    """One line for a failure message: each replica's (log start, readable tail) of the color
    and the owner's next SN (an ordered tail above every readable one is a hole)."""
    parts = []
    for shard in info.shards:
        links = client._writer(shard).links
        for index in range(len(links)):
            op = pb.QueryOp(kind=pb.QueryOp.STATE, color=info.id, contiguous=info.contiguous)
            try:
                r = await client._ask(shard, op, index)
                parts.append(f"{shard}/{index}: " + (f"error {r.message}" if r.error
                                                     else f"[{r.log_start}, {r.tail})"))
            except (FlexLogError, TimeoutError) as exc:
                parts.append(f"{shard}/{index}: {exc!r}")
    try:
        next_sn = str(await client._next_sn(info))
    except (FlexLogError, TimeoutError) as exc:
        next_sn = repr(exc)
    return f"{info.name} (owner {info.owner}): " + ", ".join(parts) + f"; owner's next SN {next_sn}"


async def colors_state(config: ClusterConfig, names: list[str]) -> str:
    """color_state of each named color that exists, one per line."""
    lines = []
    async with FlexLogClient(config, timeout_ms=3000) as client:
        try:
            await asyncio.wait_for(client.sync_registry(), 10)
        except (FlexLogError, TimeoutError) as exc:
            lines.append(f"registry not readable: {exc!r}")
        for name in names:
            info = client.registry.by_name.get(name)
            if name == "__colors":
                info = registry.system_color(config)
            if info is not None:
                lines.append(await color_state(client, info))
    return "\n".join(lines)
