"""The replica's decisions alone (`ReplicaProtocol`), driven by hand: no sockets, no clock."""

from __future__ import annotations

from flexlog.core import record_batch
from flexlog.core.append_wire import AppendOp
from flexlog.core.errors import Code
from flexlog.core.family_fill import fill_ops
from flexlog.core.memory_engine import MemoryEngine
from flexlog.core.proto import flexlog_pb2 as pb
from flexlog.core.registry import family_key
from flexlog.core.replica_protocol import VIEW_LEASE_S, Grant, ReplicaProtocol
from flexlog.core.storage import StoredEntry
from flexlog.core.view import ShardView, View

COLOR = 7


class FakeIO:
    def __init__(self) -> None:
        self.to_leaf: list[pb.ReplicaToSequencer] = []
        self.flushes = 0
        self.seals: list[tuple[int, int, int]] = []
        self.fills: list[pb.QueryOp] = []
        self.copies: list[tuple[int, int, int]] = []

    def flush_soon(self) -> None:
        self.flushes += 1

    def send_to_leaf(self, message: pb.ReplicaToSequencer) -> None:
        self.to_leaf.append(message)

    def repair(self, grant: Grant) -> None:
        pass

    def catch_up(self, epoch: int, peers: list[int]) -> None:
        pass

    def copy_gap(self, color: int, start: int, end: int, peers: tuple[int, ...]) -> None:
        self.copies.append((color, start, end))

    def seal(self, color: int, start: int, end: int, members: tuple[int, ...]) -> None:
        self.seals.append((color, start, end))

    def fill(self, op: pb.QueryOp, members: tuple[int, ...]) -> None:
        self.fills.append(op)


class Acks:
    def __init__(self) -> None:
        self.acked: dict[int, int] = {}
        self.rejected: dict[int, Code] = {}

    def ack(self, token: int, sn: int) -> None:
        self.acked[token] = sn

    def reject(self, token: int, code: Code, message: str) -> None:
        self.rejected[token] = code


class Results:
    def __init__(self) -> None:
        self.results: list[pb.QueryResult] = []

    def answer(self, result: pb.QueryResult) -> None:
        self.results.append(result)


def make(index: int = 0) -> tuple[ReplicaProtocol, FakeIO]:
    """Replica `index` of shard 0; by default the one responsible for its colors."""
    io = FakeIO()
    view = View({0: ShardView(1, (0, 1, 2), (0, 1, 2))})
    protocol = ReplicaProtocol(0, index, MemoryEngine(), io, view, incarnation=1, copy_tokens=1,
                               now=0.0, max_entry_bytes=1 << 20)
    protocol.leaf_attached()
    return protocol, io


def op(token: int, value: bytes, contiguous: bool = True) -> AppendOp:
    return AppendOp(token=token, color=COLOR, owner=1, count=1,
                       payload=record_batch.build([value], timestamp_ms=0), contiguous=contiguous)


def test_a_grant_for_an_sn_holding_another_entry_is_refused_not_acked() -> None:
    """Issue 11: the replica acked the client with an SN another entry held."""
    p, _ = make()
    p.store_copy(COLOR, StoredEntry(5, 1, record_batch.build([b"older"], base_offset=5)), 0)
    acks = Acks()
    p.prepare([op(0x1_00000001, b"newer")], acks, 0.0)
    p.grants([Grant(0x1_00000001, COLOR, 5, 1)], 0.0)
    assert acks.acked == {}
    assert acks.rejected == {0x1_00000001: Code.FILLED}
    assert p.stats["conflicts"] == 1
    assert record_batch.decode(p.engine.read(COLOR, 5).payload)[0].value == b"older"


def test_a_grant_for_the_same_entry_copied_earlier_is_acked() -> None:
    p, _ = make()
    payload = record_batch.build([b"same"], timestamp_ms=0)
    p.store_copy(COLOR, StoredEntry(5, 1, record_batch.with_base_offset(payload, 5)), 0)
    acks = Acks()
    p.prepare([AppendOp(token=0x1_00000001, color=COLOR, owner=1, count=1, payload=payload)],
              acks, 0.0)
    p.grants([Grant(0x1_00000001, COLOR, 5, 1)], 0.0)
    assert acks.acked == {0x1_00000001: 5}


def test_expired_long_polls_leave_nothing_behind() -> None:
    """Issue 11: a timed-out waiter stayed until its color's tail moved (idle partitions)."""
    p, _ = make()
    sink = Results()
    for color in range(64):
        deadline = p.query(pb.QueryOp(kind=pb.QueryOp.RANGE, color=color, sn=0, max_bytes=1024,
                                      wait_ms=10, contiguous=True), sink, 0.0)
        assert deadline == 0.01
    assert p.waiting_reads == 64
    p.expire_waiters(0.02)
    assert len(sink.results) == 64
    assert p.waiting_reads == 0
    assert all(not v.waiters for v in p.colors.values())


def test_a_commit_right_after_a_read_parks_wakes_it() -> None:
    """Issue 11: the read registered its waiter one loop iteration after the visibility check."""
    p, _ = make()
    sink = Results()
    assert p.query(pb.QueryOp(kind=pb.QueryOp.RANGE, color=COLOR, sn=0, max_bytes=1024,
                              wait_ms=500, contiguous=True), sink, 0.0) is not None
    acks = Acks()
    p.prepare([op(0x1_00000001, b"a")], acks, 0.0)
    p.grants([Grant(0x1_00000001, COLOR, 0, 1)], 0.0)
    assert [list(r.sns) for r in sink.results] == [[0]]
    p.expire_waiters(1.0)
    assert len(sink.results) == 1


def test_a_closed_query_stream_drops_its_parked_reads() -> None:
    p, _ = make()
    sink = Results()
    p.query(pb.QueryOp(kind=pb.QueryOp.READ, color=COLOR, sn=3, wait_ms=5000), sink, 0.0)
    p.drop_sink(sink)
    assert p.waiting_reads == 0
    p.expire_waiters(10.0)
    assert sink.results == []


def test_a_refused_order_goes_up_again_before_anything_newer_of_its_color() -> None:
    p, io = make()
    acks = Acks()
    p.prepare([op(0x1_00000001, b"first")], acks, 0.0)
    p.flush_orders()
    assert list(io.to_leaf[-1].tokens) == [0x1_00000001]
    p.grants([Grant(0x1_00000001, COLOR, 0, 0, Code.UNAVAILABLE, "parent link broke")], 0.1)
    assert acks.rejected == {}, "a broken link is no reason to fail the append"
    p.prepare([op(0x1_00000002, b"second")], acks, 0.2)
    p.flush_orders()
    assert len(io.to_leaf) == 1, "the newer entry must not go up before the refused one"
    p.tick(0.6)
    p.flush_orders()
    assert list(io.to_leaf[-1].tokens) == [0x1_00000001, 0x1_00000002]


def test_one_batch_per_color_in_flight() -> None:
    p, io = make()
    acks = Acks()
    p.prepare([op(0x1_00000001, b"a")], acks, 0.0)
    p.flush_orders()
    p.prepare([op(0x1_00000002, b"b")], acks, 0.0)
    p.flush_orders()
    assert len(io.to_leaf) == 1
    p.grants([Grant(0x1_00000001, COLOR, 0, 1)], 0.0)
    p.flush_orders()
    assert list(io.to_leaf[-1].tokens) == [0x1_00000002]


def test_a_hole_is_sealed_then_filled() -> None:
    p, io = make()
    acks = Acks()
    p.prepare([op(0x1_00000009, b"after the hole", contiguous=True)], acks, 0.0)
    p.grants([Grant(0x1_00000009, COLOR, 4, 1)], 0.0)  # SNs 0-3 were ordered and lost
    for now in (0.5, 1.0, 2.0, 3.0, 4.0):
        p.tick(now)
    assert io.copies[0] == (COLOR, 0, 4), "peers are asked for what they hold first"
    assert io.seals == [(COLOR, 0, 4)]
    sealed = p.seal(COLOR, 0, 4)
    assert list(sealed.sns) == []
    late = Acks()
    p.prepare([op(0x1_00000002, b"late")], late, 4.0)
    p.grants([Grant(0x1_00000002, COLOR, 2, 1)], 4.0)
    assert (late.acked, late.rejected) == ({}, {}), "no grant lands in a sealed range"
    p.sealed(COLOR, 0, 4, [])
    p.apply_fill(io.fills[-1], 4.5)
    assert late.rejected == {0x1_00000002: Code.FILLED}, "the fill did not store it"
    assert p.colors[COLOR].prefix == 5
    entry = p.engine.read(COLOR, 0)
    assert entry is not None and entry.count == 4 and record_batch.is_fill(entry.payload)
    assert p.stats["filled_sns"] == 4


def test_reads_stop_when_the_view_store_is_out_of_reach_for_a_lease() -> None:
    """A replica cut off from the view store may have been removed without knowing it."""
    p, _ = make()
    sink = Results()
    state = pb.QueryOp(kind=pb.QueryOp.STATE, color=COLOR)
    p.query(state, sink, VIEW_LEASE_S - 0.1)
    p.query(state, sink, VIEW_LEASE_S + 0.1)
    p.view_seen(VIEW_LEASE_S + 0.2)
    p.query(state, sink, VIEW_LEASE_S + 0.3)
    assert [r.error for r in sink.results] == [Code.OK, Code.UNAVAILABLE, Code.OK]


def test_a_restarted_replica_reports_the_tokens_its_store_kept() -> None:
    """Model finding 1a: the token -> SN map was volatile. A replica restarted (its store
    kept) next to a restarted leaf reported no token, so an append it had committed and
    acknowledged at SN 0, re-sent by a peer that had not seen the grant yet, got SN 1 too."""
    token = (3 << 32) | 5
    engine = MemoryEngine()
    view = View({0: ShardView(1, (0, 1, 2), (0, 1, 2))})
    first = ReplicaProtocol(0, 1, engine, FakeIO(), view, incarnation=1, copy_tokens=1,
                            now=0.0, max_entry_bytes=1 << 20)
    first.prepare([op(token, b"kept")], Acks(), now=0.0)
    first.grants([Grant(token, COLOR, 0, 1, 0, "")], now=0.0)
    first.store_copy(COLOR, StoredEntry(1, 1, record_batch.build([b"copied"], base_offset=1)), 0)

    restarted = ReplicaProtocol(0, 1, engine, FakeIO(), view, incarnation=2, copy_tokens=2,
                                now=1.0, max_entry_bytes=1 << 20)
    hello = restarted.hello()
    # The client's entry with its SN; the copied one has no client token to report.
    assert list(zip(hello.recent_tokens, hello.recent_sns, strict=True)) == [(token, 0)]
    assert [(t.color, t.tail) for t in hello.tails] == [(COLOR, 2)]


def test_an_entry_copied_with_its_token_settles_that_append_and_is_reported() -> None:
    """A catch-up or fill copies the client's token along: the append waiting here for its
    grant is acknowledged with the SN the peer holds it at, and a restart still knows it."""
    token = (3 << 32) | 9
    p, _ = make()
    acks = Acks()
    payload = record_batch.build([b"x"], timestamp_ms=0)
    p.prepare([AppendOp(token=token, color=COLOR, owner=1, count=1, payload=payload)], acks, 0.0)
    p.store_copy(COLOR, StoredEntry(4, 1, record_batch.with_base_offset(payload, 4)), token)
    assert acks.acked == {token: 4}
    assert p.engine.token_of(COLOR, 4) == token
    restarted = ReplicaProtocol(0, p.index, p.engine, FakeIO(), p.view, incarnation=2,
                                copy_tokens=2, now=1.0, max_entry_bytes=1 << 20)
    assert (token, 4) in zip(restarted.hello().recent_tokens, restarted.hello().recent_sns,
                             strict=True)


def test_a_repair_that_finds_a_fill_or_another_append_acks_nothing() -> None:
    """Model finding 5: a repair committed whatever a peer held at the grant's SN under the
    grant's token, and the append's prepare was then acknowledged with that SN."""
    mine, other = (3 << 32) | 1, (3 << 32) | 2
    for found in [(StoredEntry(6, 1, record_batch.fill(6, 1)), 0),
                  (StoredEntry(6, 1, record_batch.build([b"other"], base_offset=6)), other)]:
        p, _ = make()
        p.grants([Grant(mine, COLOR, 6, 1)], 0.0)  # early: the prepare has not come
        p.repaired(Grant(mine, COLOR, 6, 1), found, 1.5)
        assert p.engine.read(COLOR, 6).payload == found[0].payload
        acks = Acks()
        p.prepare([op(mine, b"mine")], acks, 2.0)
        assert mine not in acks.acked


def test_a_grant_into_a_sealed_range_waits_for_the_fill() -> None:
    """Model finding 4: an append granted an SN being sealed was refused as FILLED at once,
    and the fill (or a gap copy) then stored it from a member that had committed it: the
    log held an append its client was told had failed."""
    token = (3 << 32) | 7
    payload = record_batch.build([b"kept"], timestamp_ms=0)
    committed_elsewhere = StoredEntry(0, 1, record_batch.with_base_offset(payload, 0))
    for fill_entries, acked in [([(committed_elsewhere, token)], {token: 0}),
                                ([(committed_elsewhere, 0)], {token: 0}),  # token unknown: by CRC
                                ([], {})]:
        p, _ = make()
        acks = Acks()
        p.prepare([AppendOp(token=token, color=COLOR, owner=1, count=1, payload=payload)],
                  acks, 0.0)
        p.seal(COLOR, 0, 1)
        p.grants([Grant(token, COLOR, 0, 1)], 0.1)
        assert acks.acked == {} and acks.rejected == {}
        fill = pb.QueryOp(kind=pb.QueryOp.FILL, color=COLOR, sn=0, end=1)
        for e, t in fill_entries:
            fill.sns.append(e.sn)
            fill.counts.append(e.count)
            fill.payloads.append(e.payload)
            fill.tokens.append(t)
        p.apply_fill(fill, 0.2)
        assert acks.acked == acked
        if not acked:
            assert acks.rejected == {token: Code.FILLED}
            assert record_batch.is_fill(p.engine.read(COLOR, 0).payload)


def test_status_names_the_engines_tiers_and_colors_report_bytes_when_asked() -> None:
    """The Kafka gateway's DescribeLogDirs reads these (docs/gateway.md)."""
    p, _ = make()
    entry = StoredEntry(0, 1, record_batch.build([b"x" * 100], base_offset=0))
    p.store_copy(COLOR, entry, 0)
    [tier] = p.status(detail=False).tiers
    assert (tier.name, tier.used_bytes) == ("memory", len(entry.payload))
    [plain] = p.color_states(0, 10).colors
    assert plain.color == COLOR and list(plain.tier_bytes) == []
    [sized] = p.color_states(0, 10, bytes_of=[COLOR, COLOR + 1]).colors
    assert list(sized.tier_bytes) == [len(entry.payload)]


def test_a_family_members_fill_leaves_the_other_members_sns_alone() -> None:
    """A family fill (core/family_fill.py) marks only SNs no member holds, and lifts the seal:
    a member's SNs are sparse, so its prefix never passes the range."""
    member, other = family_key(1) | 1, family_key(1) | 2
    p, _ = make()
    token = (3 << 32) | 9
    payload = record_batch.build([b"late"], timestamp_ms=0)
    acks = Acks()
    p.prepare([AppendOp(token=token, color=member, owner=0, count=1, payload=payload)],
              acks, 0.0)
    mine = StoredEntry(3, 1, record_batch.build([b"mine"], base_offset=3))
    theirs = StoredEntry(5, 2, record_batch.build([b"a", b"b"], base_offset=5))
    found = {member: [(mine, 0)], other: [(theirs, 0)]}
    p.seal(member, 2, 8)
    p.grants([Grant(token, member, 2, 1)], 0.1)  # the lost append's grant, late
    p.apply_fill(fill_ops(2, 8, found)[member], 0.2)
    stored = [(e.sn, e.count, record_batch.is_fill(e.payload))
              for e in p.engine.read_range(member, 0, 1 << 20)]
    assert stored == [(2, 1, True), (3, 1, False), (4, 1, True), (7, 1, True)]
    assert acks.rejected == {token: Code.FILLED}
    assert member not in p._sealed
    again = Acks()
    p.prepare([AppendOp(token=token + 2, color=member, owner=0, count=1, payload=payload)],
              again, 0.3)
    p.grants([Grant(token + 2, member, 4, 1)], 0.3)
    assert again.rejected == {token + 2: Code.FILLED}, "the marker refuses a grant lost in time"


def test_a_family_member_keeps_no_blocks_beyond_its_prefix() -> None:
    """Its SNs are sparse: a block kept per entry beyond the prefix would never be released."""
    member = family_key(1) | 1
    p, _ = make()
    for sn in range(1, 200, 2):
        p.store_copy(member, StoredEntry(sn, 1, record_batch.build([b"x"], base_offset=sn)), 0)
    view = p.colors[member]
    assert view.ahead == {} and view.high == 200


def _late_grant(replica: ReplicaProtocol, color: int, sn: int, now: float) -> tuple[int, Acks]:
    """An append prepared at now and granted sn 0.1 s later: (its token, its acks)."""
    token = (3 << 32) | 11
    acks = Acks()
    payload = record_batch.build([b"late"], timestamp_ms=0)
    replica.prepare([AppendOp(token=token, color=color, owner=0, count=1, payload=payload)],
                    acks, now)
    replica.grants([Grant(token, color, sn, 1)], now + 0.1)
    return token, acks


def test_a_seal_outlives_a_restart_until_its_fill() -> None:
    """Model finding (core/model/family.pml): a replica restarted between a seal and its fill
    forgot the seal and committed a late grant where its peers stored a fill marker."""
    member = family_key(1) | 1
    p, io = make()
    p.seal(member, 4, 6)
    engine = p.engine
    restarted = ReplicaProtocol(0, p.index, engine, io, p.view, incarnation=2, copy_tokens=2,
                                now=1.0, max_entry_bytes=1 << 20)
    restarted.leaf_attached()
    assert restarted.prepared_count == 0, "a seal is no append waiting to be ordered"
    token, acks = _late_grant(restarted, member, 4, 1.0)
    assert (acks.acked, acks.rejected) == ({}, {}), "the grant waits for the fill"
    restarted.apply_fill(fill_ops(4, 6, {member: []})[member], 1.2)
    assert acks.rejected == {token: Code.FILLED}
    assert restarted._sealed == {}
    again = ReplicaProtocol(0, p.index, engine, io, p.view, incarnation=3, copy_tokens=3,
                            now=2.0, max_entry_bytes=1 << 20)
    assert again._sealed == {}, "the fill released the seal's record"


def _restarted_between_seal_and_fill(member: int) -> ReplicaProtocol:
    """A replica storing SNs 10, 20 and 40 of member, restarted after sealing [4, 6)."""
    p, io = make()
    for sn in (10, 20, 40):
        p.store_copy(member, StoredEntry(sn, 1, record_batch.build([b"x"], base_offset=sn)), 0)
    p.seal(member, 4, 6)
    restarted = ReplicaProtocol(0, p.index, p.engine, io, p.view, incarnation=2,
                                copy_tokens=2, now=1.0, max_entry_bytes=1 << 20)
    restarted.leaf_attached()
    return restarted


def test_a_recovered_seal_is_not_released_by_another_holes_fill() -> None:
    """A replica restarted between the seal of [4, 6) and its fill (which reached its peers,
    not it) recovers prefix == tail == 41. The fill of another hole [30, 32) released the
    seal of [4, 6) too, as lying below the prefix, and a late grant at 4 committed here
    while the peers held a fill marker there."""
    member = family_key(1) | 1
    restarted = _restarted_between_seal_and_fill(member)
    assert restarted._in_sealed(member, 4, 5)
    restarted.seal(member, 30, 32)
    restarted.apply_fill(fill_ops(30, 32, {member: []})[member], 1.2)
    assert restarted._in_sealed(member, 4, 5), "the fill of [30, 32) released the seal of [4, 6)"


def test_a_late_grant_into_a_recovered_seal_waits_after_another_holes_fill() -> None:
    member = family_key(1) | 1
    restarted = _restarted_between_seal_and_fill(member)
    restarted.seal(member, 30, 32)
    restarted.apply_fill(fill_ops(30, 32, {member: []})[member], 1.2)
    _, acks = _late_grant(restarted, member, 4, 1.3)
    assert acks.acked == {}, "a late grant inside the sealed range was committed and acked"


def test_a_recovered_seal_of_a_plain_color_is_not_released_by_another_holes_fill() -> None:
    """The per-color fill uses the same seals."""
    color = 7
    p, io = make()
    for sn in (0, 1, 2, 3, 6, 7, 8):
        p.store_copy(color, StoredEntry(sn, 1, record_batch.build([b"x"], base_offset=sn)), 0)
    p.seal(color, 4, 6)
    restarted = ReplicaProtocol(0, p.index, p.engine, io, p.view, incarnation=2,
                                copy_tokens=2, now=1.0, max_entry_bytes=1 << 20)
    restarted.leaf_attached()
    restarted.store_copy(color, StoredEntry(11, 1, record_batch.build([b"x"], base_offset=11)), 0)
    restarted.seal(color, 9, 11)
    op = fill_ops(9, 11, {color: []})[color]
    restarted.apply_fill(op, 1.2)
    assert restarted._in_sealed(color, 4, 5), "the fill of [9, 11) released the seal of [4, 6)"


def test_a_seal_wider_than_the_fills_is_released_once_all_of_it_is_stored() -> None:
    """A reader sealed [4, 10) and stopped (members changed, or it crashed); later fills
    resolve [4, 6) and [7, 10). No fill contains [4, 10) again, but every SN of it is
    stored here now: its durable seal is released, not kept forever."""
    member = family_key(1) | 1
    p, _ = make()
    p.store_copy(member, StoredEntry(6, 1, record_batch.build([b"x"], base_offset=6)), 0)
    p.seal(member, 4, 10)
    p.seal(member, 4, 6)
    p.apply_fill(fill_ops(4, 6, {member: []})[member], 1.0)
    p.seal(member, 7, 10)
    p.apply_fill(fill_ops(7, 10, {member: []})[member], 2.0)
    assert not p._in_sealed(member, 4, 10)
    assert p.engine.recover().prepared == [], "the seals' records are gone too"


def test_a_grant_repeated_in_one_message_commits_once_and_frees_its_order_batch() -> None:
    """The leaf answers every replica that asks for a token (a re-order after 1-2 s) by
    granting it to the whole shard again, so one message may carry a grant twice. The second
    copy met the entry just committed as an unknown token and was kept as early; its repair
    then prepared the entry again and left it ungranted for good, and the color's next order
    batch, answered with that same grant, never completed: every later append of the color
    waited for the 60 s prepare timeout (a fault test with a SIGSTOPped replica)."""
    p, io = make()
    acks = Acks()
    token = 0x1_00000021
    p.prepare([op(token, b"once")], acks, 0.0)
    p.flush_orders()
    grant = Grant(token, COLOR, 0, 1)
    p.grants([grant, grant], 0.1)
    assert acks.acked == {token: 0}
    assert p._early == {} and p._ungranted == {}
    assert p._batches_in_flight == 0
    p.grants([grant], 0.2)  # the same grant once more, in a later message
    later = Acks()
    p.prepare([op(0x1_00000023, b"next")], later, 3.0)
    for now in (3.5, 4.5, 5.5):
        p.tick(now)
    p.flush_orders()
    assert list(io.to_leaf[-1].tokens) == [0x1_00000023], "the color's next entry is ordered"
    p.grants([Grant(0x1_00000023, COLOR, 1, 1)], 6.0)
    assert later.acked == {0x1_00000023: 1}
    assert p.engine.recover().prepared == [], "nothing is left prepared"
