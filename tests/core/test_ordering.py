"""The sequencer node's logic alone: counters, aggregation, block splitting."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from flexlog.core.errors import FlexLogError, UnknownOwner
from flexlog.core.ordering import OrderingNode


def make_tree() -> tuple[OrderingNode, OrderingNode]:
    root = OrderingNode(0, None, frozenset())
    leaf = OrderingNode(1, 0, frozenset({0}))
    return root, leaf


def pump(root: OrderingNode, leaf: OrderingNode, rng: random.Random) -> None:
    """Deliver the leaf's aggregated forwards to the root, grants in a random order."""
    forwards = leaf.take_forwards()
    grants = []
    for f in forwards:
        root.submit(f.color, f.owner, f.count, lambda r, fid=f.id: grants.append((fid, r)))
    rng.shuffle(grants)
    for fid, result in grants:
        leaf.on_grant(fid, result)


@settings(max_examples=200)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.sampled_from([0, 1]), st.integers(1, 50)), max_size=200),
    st.lists(st.integers(1, 20), max_size=20),
    st.integers(0, 2**32),
)
def test_blocks_are_dense_disjoint_and_in_request_order(
    requests: list[tuple[int, int, int]], cuts: list[int], seed: int
) -> None:
    rng = random.Random(seed)
    root, leaf = make_tree()
    got: dict[int, list[tuple[int, int, int]]] = {}  # color -> (request index, sn, count)
    pending_cuts = iter(cuts)
    cut = next(pending_cuts, None)
    for i, (color, owner, count) in enumerate(requests):
        def reply(r: int | FlexLogError, i: int = i, color: int = color, count: int = count) -> None:
            assert isinstance(r, int)
            got.setdefault(color, []).append((i, r, count))
        leaf.submit(color, owner, count, reply)
        if cut is not None and i % cut == 0:
            pump(root, leaf, rng)
            cut = next(pending_cuts, None)
    pump(root, leaf, rng)
    for color in got:
        by_leaf_or_root: dict[int, list[tuple[int, int, int]]] = {}
        for i, sn, count in got[color]:
            by_leaf_or_root.setdefault(requests[i][1], []).append((i, sn, count))
        for blocks in by_leaf_or_root.values():
            blocks.sort(key=lambda b: b[1])
            expect = 0
            for _, sn, count in blocks:
                assert sn == expect, "SN blocks of one owner are dense and never overlap"
                expect = sn + count
    for color in range(4):
        total = sum(c for col, owner, c in requests if col == color and owner == 1)
        assert leaf.next_sn(color) == total
        total_root = sum(c for col, owner, c in requests if col == color and owner == 0)
        assert root.next_sn(color) == total_root
    assert leaf.outstanding == 0


def test_aggregated_block_is_split_in_arrival_order() -> None:
    root, leaf = make_tree()
    root.learn_tail(5, 100)
    got: list[int] = []
    for count in (3, 1, 4):
        leaf.submit(5, 0, count, lambda r: got.append(r))  # type: ignore[arg-type, return-value]
    [forward] = leaf.take_forwards()
    assert forward.count == 8
    root.submit(forward.color, forward.owner, forward.count, lambda r: leaf.on_grant(forward.id, r))
    assert got == [100, 103, 104]
    assert root.next_sn(5) == 108


def test_unknown_owner_is_refused_at_once() -> None:
    _, leaf = make_tree()
    errors: list[object] = []
    assert not leaf.submit(1, 42, 1, errors.append)
    assert isinstance(errors[0], UnknownOwner)


def test_learned_tail_never_lowers_a_counter() -> None:
    root, _ = make_tree()
    root.learn_tail(1, 10)
    root.learn_tail(1, 4)
    assert root.assign(1, 2) == 10
    assert root.next_sn(1) == 12


def test_a_child_reports_above_every_sn_it_relayed() -> None:
    """Issue 11: a restarted root learns tails from its children; a child that reported only
    what replicas said when they attached let the new root hand out stored SNs again."""
    root, leaf = make_tree()
    leaf.learn_tail(7, 3)  # what the replicas held when they attached
    for _ in range(5):
        leaf.submit(7, 0, 10, lambda _: None)
    pump(root, leaf, random.Random(1))
    assert leaf.tails()[7] == root.counters[7]
    restarted = OrderingNode(0, None, frozenset())
    for color, tail in leaf.tails().items():
        restarted.learn_tail(color, tail)
    granted = []
    restarted.submit(7, 0, 1, granted.append)
    assert granted == [root.counters[7]]
