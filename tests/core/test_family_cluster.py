"""Color families end to end: real sequencer and replica processes over real gRPC."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest

from cluster import Cluster, running_cluster
from flexlog.core import family_fill
from flexlog.core.client import FlexLogClient
from flexlog.core.errors import Filled, NotFound, Trimmed
from flexlog.core.proto import flexlog_pb2 as pb
from flexlog.core.registry import ColorInfo
from flexlog.core.status import wait_healthy
from flexlog.gateway.retention import trim_point
from flexlog.gateway.timestamps import TimestampIndex

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """root + 2 leaves, 2 shards x 3 replicas, in-memory storage."""
    with running_cluster(tmp_path_factory.mktemp("families"), shards=2) as c:
        yield c


def name() -> str:
    return f"f-{uuid.uuid4().hex[:8]}"


async def produce(cluster: Cluster, colors: list[str], n: int) -> list[tuple[int, str, bytes]]:
    """n appends spread over colors from one client: (sn, color, value) of each."""
    out = []
    async with FlexLogClient(cluster.config) as c:
        for i in range(n):
            color = colors[i % len(colors)]
            value = uuid.uuid4().bytes
            out.append((await c.append([value], color), color, value))
    return out


@pytest.mark.parametrize("shards", [(0,), (0, 1)], ids=["leaf-owned", "root-owned"])
async def test_members_share_one_order_and_readers_see_it(cluster: Cluster,
                                                          shards: tuple[int, ...]) -> None:
    async with FlexLogClient(cluster.config) as admin:
        fam = await admin.create_family(name(), shards=shards)
        assert fam.owner == (0 if len(shards) == 2 else 1), "the lowest common ancestor orders it"
        members = [await admin.create_color(f"{fam.name}-{i}", family=fam.name) for i in range(4)]
        assert {m.shards[0] for m in members} == set(shards)
    names = [m.name for m in members]
    results = await asyncio.gather(*(produce(cluster, names[i:] + names[:i], 40) for i in range(3)))
    acked = sorted(x for r in results for x in r)
    sns = [sn for sn, _, _ in acked]
    assert sns == list(range(len(acked))), "the family's SNs are dense and none is issued twice"

    async with FlexLogClient(cluster.config) as reader:
        merged = []
        async for info, rec in reader.subscribe_family(names):
            merged.append((rec.offset, info.name, rec.value))
            if len(merged) == len(acked):
                break
        assert merged == acked, "the merged subscription is the order the log accepted"
        for m in members:
            res = await reader.read_range(m.name, 0, 1 << 20)
            got = [e.sn for e in res.entries]
            assert got == [sn for sn, color, _ in acked if color == m.name]
            assert res.tail == len(acked)
            assert await reader.tail(m.name) == len(acked)
        other = next(sn for sn, color, _ in acked if color != names[0])
        with pytest.raises(NotFound):
            await reader.read(other, names[0])
        mine = next(sn for sn, color, _ in acked if color == names[0])
        assert (await reader.read(mine, names[0])).offset == mine


async def test_a_quiet_member_waits_at_the_tail_and_wakes_on_its_append(cluster: Cluster) -> None:
    async with FlexLogClient(cluster.config) as admin:
        fam = await admin.create_family(name(), shards=(0, 1))
        quiet = await admin.create_color(name(), family=fam.id)
        busy = await admin.create_color(name(), family=fam.id)
        for i in range(30):
            await admin.append([b"%d" % i], busy.name)
        empty = await admin.read_range(quiet.name, 0, 1 << 20, wait_ms=200)
        assert empty.entries == [] and empty.tail == 30
        waiting = asyncio.ensure_future(admin.read_range(quiet.name, 0, 1 << 20, wait_ms=5000))
        await asyncio.sleep(0.2)
        sn = await admin.append([b"late"], quiet.name)
        res = await waiting
        assert [e.sn for e in res.entries] == [sn] == [30]


async def test_a_member_created_later_is_found_by_a_reader_with_an_old_registry(
        cluster: Cluster) -> None:
    async with FlexLogClient(cluster.config) as reader, FlexLogClient(cluster.config) as writer:
        fam = await writer.create_family(name())
        first = await writer.create_color(name(), family=fam.id)
        await writer.append([b"a"], first.name)
        await reader.read_range(first.name, 0, 1 << 20)  # the reader knows one member
        later = await writer.create_color(name(), family=fam.id)
        await writer.append([b"b"], later.name)
        await writer.append([b"c"], first.name)
        res = await reader.read_range(first.name, 1, 1 << 20, wait_ms=2000)
        assert [e.sn for e in res.entries] == [2]


async def test_trim_cuts_the_whole_family(cluster: Cluster) -> None:
    async with FlexLogClient(cluster.config) as c:
        fam = await c.create_family(name(), shards=(0, 1))
        a = await c.create_color(name(), family=fam.id, shards=(0,))
        b = await c.create_color(name(), family=fam.id, shards=(1,))
        for i in range(10):
            await c.append([b"x"], (a, b)[i % 2].name)
        await c.trim(5, a.name)
        assert (await c.state(b.name))[0] == 6
        with pytest.raises(Trimmed):
            await c.read_range(b.name, 3, 1 << 20)
        res = await c.read_range(b.name, 6, 1 << 20)
        assert [e.sn for e in res.entries] == [7, 9]


async def test_restarted_sequencers_never_hand_out_an_sn_a_member_stored(cluster: Cluster) -> None:
    async with FlexLogClient(cluster.config) as admin:
        fam = await admin.create_family(name(), shards=(0, 1))
        a = await admin.create_color(name(), family=fam.id, shards=(0,))
        b = await admin.create_color(name(), family=fam.id, shards=(1,))
        leaf_fam = await admin.create_family(name(), shards=(1,))
        c = await admin.create_color(name(), family=leaf_fam.id)
        d = await admin.create_color(name(), family=leaf_fam.id)
    before = await produce(cluster, [a.name, b.name, c.name, d.name], 40)
    for seq in ("root", "leaf1"):
        cluster.kill(seq)
        cluster.start_process("sequencer", seq)
    await wait_healthy(cluster.config, 30)
    after = await produce(cluster, [b.name, a.name, d.name, c.name], 40)
    for fam_colors in ({a.name, b.name}, {c.name, d.name}):
        old = [sn for sn, color, _ in before if color in fam_colors]
        new = [sn for sn, color, _ in after if color in fam_colors]
        assert min(new) > max(old), "the restarted owner continues above every member"
        assert len(set(old + new)) == len(old) + len(new)


async def _lose_next_sn(c: FlexLogClient, member: ColorInfo) -> tuple[int, asyncio.Task[int]]:
    """An append to member whose SN is ordered and never stored, as when a leaf dies holding a
    grant: every replica of its shard refuses grants at the next SN (a seal) before it comes."""
    sn = await c.tail(member.name)
    writer = c._writer(member.shards[0])
    for i in writer.members:
        r = await writer.links[i].query(pb.QueryOp(kind=pb.QueryOp.SEAL, color=member.id,
                                                   sn=sn, end=sn + 1))
        assert not r.error
    lost = asyncio.ensure_future(c.append([b"lost"], member.name))
    while await c.tail(member.name) == sn:
        await asyncio.sleep(0.01)
    return sn, lost


async def test_an_sn_ordered_and_never_stored_is_filled_by_the_familys_readers(
        cluster: Cluster) -> None:
    """No replica can tell a member's lost SN from another member's; the readers of the family
    seal and fill it (core/family_fill.py) once an entry beyond it is stored, and every
    member's readers move past it. At the tail it stays: a restarted owner could hand it out
    again to a member the seal did not reach."""
    async with FlexLogClient(cluster.config) as c:
        fam = await c.create_family(name(), shards=(0, 1))
        a = await c.create_color(name(), family=fam.id, shards=(0,))
        b = await c.create_color(name(), family=fam.id, shards=(1,))
        first = await c.append([b"first"], b.name)
        hole, lost = await _lose_next_sn(c, a)
        loop = asyncio.get_running_loop()
        start = loop.time()
        while loop.time() - start < family_fill.FILL_AFTER_S + 1:
            res = await c.read_range(b.name, first + 1, 1 << 20, wait_ms=500)
            assert res.tail == hole and not lost.done(), "nothing is filled at the tail"
        after = await c.append([b"after"], b.name)
        start = loop.time()
        res = await c.read_range(b.name, first + 1, 1 << 20, wait_ms=500)
        while res.tail <= hole:  # the reader waits at the hole until it is filled
            assert loop.time() - start < 20, "the hole was never filled"
            res = await c.read_range(b.name, first + 1, 1 << 20, wait_ms=500)
        assert loop.time() - start >= family_fill.FILL_AFTER_S - 0.5
        assert [e.sn for e in res.entries] == [after]
        with pytest.raises(Filled):
            await lost
        with pytest.raises(Filled):
            await c.read(hole, a.name)
        again = await c.append([b"again"], a.name)
        assert again > after
        merged = []
        async for info, rec in c.subscribe_family([a.name, b.name], first):
            merged.append((rec.offset, info.name, rec.value))
            if rec.value == b"again":
                break
        assert merged == [(first, b.name, b"first"), (after, b.name, b"after"),
                          (again, a.name, b"again")]


async def test_a_fill_marker_does_not_pin_a_quiet_members_retention(cluster: Cluster) -> None:
    """Review finding: the marker of a filled SN, read as a quiet partition's only batch,
    was indexed with max timestamp -1, which retention never expires, so the partition kept
    "something" at the marker and the family was never trimmed past it."""
    async with FlexLogClient(cluster.config) as c:
        fam = await c.create_family(name(), shards=(0, 1))
        quiet = await c.create_color(name(), family=fam.id, shards=(0,))
        busy = await c.create_color(name(), family=fam.id, shards=(1,))
        await c.append([b"first"], busy.name)
        hole, lost = await _lose_next_sn(c, quiet)
        await c.append([b"after"], busy.name)
        loop = asyncio.get_running_loop()
        start = loop.time()
        while (await c.read_range(busy.name, hole, 1 << 20, wait_ms=500)).tail <= hole:
            assert loop.time() - start < 20, "the hole was never filled"
        with pytest.raises(Filled):
            await lost
        index, _, tail = await TimestampIndex(c, lambda _, start: start).refresh(quiet)
        assert index.sns == [] and index.upto == tail, "the marker is no batch of the partition"
        assert trim_point(index, retention_ms=0, retention_bytes=-1,
                          now_ms=int(time.time() * 1000)) == 0
