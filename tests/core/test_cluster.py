"""The shared log end to end: real sequencer and replica processes over real gRPC."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cluster import Cluster, running_cluster
from flexlog.core import record_batch, rpc
from flexlog.core.client import FlexLogClient
from flexlog.core.errors import ColorExists, InvalidEntry, NotFound, TooLarge, Trimmed, UnknownColor
from flexlog.core.proto import flexlog_pb2 as pb

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """root + 2 leaves, 2 shards x 3 replicas, in-memory storage."""
    with running_cluster(tmp_path_factory.mktemp("cluster"), shards=2,
                         extra="max_entry_bytes = 2097152") as c:
        yield c


def name() -> str:
    return f"c-{uuid.uuid4().hex[:8]}"


async def test_concurrent_clients_get_dense_unique_increasing_sns(cluster: Cluster) -> None:
    async with FlexLogClient(cluster.config) as admin:
        leaf_color = await admin.create_color(name())
        wide = await admin.create_color(name(), owner=0)  # root-owned: spans both shards
        assert wide.shards == (0, 1)

    async def producer(color: str, n: int) -> list[tuple[int, bytes]]:
        out = []
        async with FlexLogClient(cluster.config) as c:
            last = -1
            for i in range(n):
                value = uuid.uuid4().bytes + bytes([i % 256]) * random.randint(0, 300)
                sn = await c.append([value, value[::-1]], color)
                assert sn > last, "an append that completes before another starts gets a smaller SN"
                last = sn
                out.append((sn, value))
        return out

    for color in (leaf_color, wide):
        results = await asyncio.gather(*(producer(color.name, 60) for _ in range(5)))
        acked = sorted(x for r in results for x in r)
        sns = [sn for sn, _ in acked]
        assert sns == list(range(0, 2 * len(acked), 2)), "two records per entry, dense from 0"
        async with FlexLogClient(cluster.config) as reader:
            assert await reader.tail(color.name) == 2 * len(acked)
            for replica in range(3):
                for sn, value in random.sample(acked, 20):
                    entry = await reader.read_entry(sn, color.name, replica=replica)
                    recs = record_batch.decode(entry.payload)
                    assert [r.value for r in recs] == [value, value[::-1]]
                    assert [r.offset for r in recs] == [sn, sn + 1]
            assert (await reader.read(sns[-1] + 1, color.name)).value == acked[-1][1][::-1]


async def test_subscribe_delivers_everything_once_in_order_including_later_appends(
    cluster: Cluster,
) -> None:
    async with FlexLogClient(cluster.config) as c:
        for owner in (None, 0):
            color = await c.create_color(name(), owner=owner)
            for i in range(30):
                await c.append([f"early-{i}".encode()], color)

            async def consume(color_name: str) -> list[tuple[int, bytes | None]]:
                async with FlexLogClient(cluster.config) as sub:
                    out = []
                    async for rec in sub.subscribe(color_name, from_sn=0):
                        out.append((rec.offset, rec.value))
                        if len(out) == 60:
                            return out
                return out

            task = asyncio.create_task(consume(color.name))
            await asyncio.sleep(0.3)
            await asyncio.gather(*(c.append([f"late-{i}".encode()], color) for i in range(30)))
            got = await asyncio.wait_for(task, 30)
            assert [sn for sn, _ in got] == list(range(60))
            assert {v for _, v in got[:30]} == {f"early-{i}".encode() for i in range(30)}
            assert {v for _, v in got[30:]} == {f"late-{i}".encode() for i in range(30)}


async def test_trim_drops_exactly_up_to_sn_on_every_replica(cluster: Cluster) -> None:
    async with FlexLogClient(cluster.config) as c:
        color = await c.create_color(name())
        for i in range(10):
            await c.append([f"r{i}".encode()], color)
        await c.trim(4, color)
        assert await c.state(color) == (5, 10)
        for replica in range(3):
            with pytest.raises(Trimmed):
                await c.read_entry(4, color, replica=replica)
            entry = await c.read_entry(5, color, replica=replica)
            assert record_batch.decode(entry.payload)[0].value == b"r5"
        with pytest.raises(Trimmed):
            await c.read(0, color)
        with pytest.raises(Trimmed):
            async for _ in c.subscribe(color, from_sn=2):
                pass
        assert (await c.read_range(color, 0 + 5, 1 << 20)).entries[0].sn == 5


async def test_read_beyond_tail_waits_then_reports_not_found(cluster: Cluster) -> None:
    async with FlexLogClient(cluster.config) as c:
        color = await c.create_color(name())
        await c.append([b"only"], color)
        with pytest.raises(NotFound):
            await c.read_entry(5, color, wait_ms=200)
        later = asyncio.create_task(c.read(1, color))
        await asyncio.sleep(0.1)
        await c.append([b"second"], color)
        assert (await asyncio.wait_for(later, 5)).value == b"second"


async def test_registry_is_shared_and_first_create_wins(cluster: Cluster) -> None:
    n = name()
    async with FlexLogClient(cluster.config) as a, FlexLogClient(cluster.config) as b:
        results = await asyncio.gather(a.create_color(n), b.create_color(n), return_exceptions=True)
        winners = [r for r in results if not isinstance(r, BaseException)]
        assert len(winners) == 1
        assert isinstance(next(r for r in results if isinstance(r, BaseException)), ColorExists)
        async with FlexLogClient(cluster.config) as fresh:
            assert (await fresh.color(n)) == winners[0]
            await fresh.delete_color(n)
        await a.sync_registry()
        with pytest.raises(UnknownColor):
            await a.color(n)
        recreated = await b.create_color(n)
        assert recreated.id != winners[0].id, "color ids are never reused"


async def test_bad_input_gets_clear_errors_and_disturbs_nothing(cluster: Cluster) -> None:
    async with FlexLogClient(cluster.config) as c:
        color = await c.create_color(name())
        with pytest.raises(UnknownColor):
            await c.append([b"x"], "no-such-color")
        with pytest.raises(InvalidEntry):
            await c.append_batch(b"\x00" * 100, color)
        flipped = bytearray(record_batch.build([b"hello"]))
        flipped[-1] ^= 0xFF
        with pytest.raises(InvalidEntry):
            await c.append_batch(bytes(flipped), color)
        with pytest.raises(TooLarge):
            await c.append([b"x" * (3 << 20)], color)
        assert await c.append([b"fine"], color) == 0


async def test_replicas_reject_garbage_that_bypasses_the_client(cluster: Cluster) -> None:
    """A client that skips its own checks still cannot store a corrupt entry."""
    async with FlexLogClient(cluster.config) as c:
        color = await c.create_color(name())
        flipped = bytearray(record_batch.build([b"hello"]))
        flipped[-1] ^= 0xFF
        with pytest.raises(InvalidEntry):
            await c.append_batch(bytes(flipped), color, validated=True)
        assert await c.append([b"next"], color) == 0
        assert await c.tail(color) == 1


async def test_a_malformed_append_message_ends_only_its_own_stream(cluster: Cluster) -> None:
    """Replicas decode AppendRequest by hand (`append_wire`): bytes that are no AppendRequest
    fail that one stream with an error, and the replica goes on serving everyone else."""
    replica = cluster.config.shards[0].replicas[0].address
    async with rpc.channel(replica) as ch:
        call = rpc.raw_stream(ch, "/flexlog.Replica/Append", pb.AppendReply)(
            iter([b"\x0a\x05\x10"]))  # an op running past the end of the message
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in call:
                pass
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "malformed AppendRequest" in (info.value.details() or "")
    async with FlexLogClient(cluster.config) as c:
        color = await c.create_color(name())
        assert await c.append([b"after"], color) == 0
        assert (await c.read(0, color)).value == b"after"


def test_client_killed_mid_append_leaves_no_stuck_color(cluster: Cluster, tmp_path: Path) -> None:
    script = tmp_path / "appender.py"
    color = name()
    script.write_text(f"""
import asyncio, sys
from flexlog.core import config
from flexlog.core.client import FlexLogClient

async def main():
    async with FlexLogClient(config.load({str(cluster.config.path)!r})) as c:
        await c.create_color({color!r})
        print("ready", flush=True)
        while True:
            await asyncio.gather(*(c.append([b"x" * 512], {color!r}) for _ in range(200)))

asyncio.run(main())
""")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(0.5)
    proc.kill()
    proc.wait()

    async def check() -> None:
        async with FlexLogClient(cluster.config) as c:
            sn = await c.append([b"after"], color)
            assert (await c.read(sn, color)).value == b"after"
            tail = await c.tail(color)
            assert tail == sn + 1
            seen = 0
            async for rec in c.subscribe(color, 0):
                assert rec.offset == seen
                seen += 1
                if seen == tail:
                    break

    asyncio.run(check())


async def test_pipelined_appends_of_one_client_keep_submission_order(cluster: Cluster) -> None:
    async with FlexLogClient(cluster.config) as c:
        for owner in (None, 0):
            color = await c.create_color(name(), owner=owner)
            futures = [await c.submit_batch(record_batch.build([f"{i}".encode()]), color, validated=True)
                       for i in range(500)]
            sns = [await f for f in futures]
            assert sns == sorted(sns), "SNs follow submission order"
            assert len(set(sns)) == 500


async def test_a_cancelled_append_keeps_its_slot_until_the_replicas_answer(cluster: Cluster) -> None:
    # Cancelling gives up waiting, not the append: it is stored, and until the replicas
    # answer it still counts against max_in_flight (so pending ops never outgrow it).
    async with FlexLogClient(cluster.config, max_in_flight=1) as c:
        color = await c.create_color(name())
        first = await c.submit_batch(record_batch.build([b"first"]), color)
        first.cancel()
        second = asyncio.create_task(c.submit_batch(record_batch.build([b"second"]), color))
        for _ in range(3):
            await asyncio.sleep(0)
        assert not second.done(), "the cancelled append's slot was freed before its acks"
        sn = await (await second)
        assert sn == 1
        assert (await c.read(0, color)).value == b"first"
