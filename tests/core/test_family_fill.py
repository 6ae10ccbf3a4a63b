"""When a family's reader fills a hole, and what each member is told (core/family_fill.py)."""

from __future__ import annotations

from flexlog.core import record_batch
from flexlog.core.family_fill import FILL_AFTER_S, FORGET_S, RETRY_S, FamilyGaps, fill_ops, holes
from flexlog.core.storage import StoredEntry

A, B, C = 1, 2, 3


def entry(sn: int, count: int = 1) -> StoredEntry:
    return StoredEntry(sn, count, record_batch.build([b"x"] * count, base_offset=sn))


def test_a_fill_is_due_after_readers_waited_at_one_sn() -> None:
    gaps = FamilyGaps()
    assert not gaps.due(7, 10, 0.0)
    assert not gaps.due(7, 10, FILL_AFTER_S - 0.1)
    assert gaps.due(7, 10, FILL_AFTER_S)
    assert not gaps.due(7, 10, FILL_AFTER_S + 0.1), "one try at a time"
    assert gaps.due(7, 10, FILL_AFTER_S + RETRY_S), "a try that did not help is repeated"


def test_readers_at_other_sns_do_not_reset_the_wait() -> None:
    """One gateway serves consumers at many positions of one family."""
    gaps = FamilyGaps()
    for now in (0.0, 1.0, 2.0):
        assert not gaps.due(7, 10, now)
        assert not gaps.due(7, 500, now + 0.5)
    assert gaps.due(7, 10, FILL_AFTER_S)
    assert not gaps.due(8, 10, FILL_AFTER_S), "families wait apart"


def test_a_read_that_moves_on_or_stops_forgets_its_wait() -> None:
    gaps = FamilyGaps()
    gaps.due(7, 10, 0.0)
    gaps.moved(7, 10)
    assert not gaps.due(7, 10, FILL_AFTER_S)
    gaps.due(7, 20, 0.0)
    gaps.due(7, 30, FORGET_S + 1)  # nobody read at 20 since
    assert not gaps.due(7, 20, FORGET_S + 1)


def test_each_member_gets_its_own_entries_and_skips_the_others() -> None:
    found = {
        A: [(entry(11), 0xA1), (entry(11), 0)],  # two replicas answered the same entry
        B: [(entry(13, 2), 0)],
        C: [],
    }
    ops = fill_ops(10, 17, found)
    assert set(ops) == {A, B, C}
    a = ops[A]
    assert (a.color, a.sn, a.end) == (A, 10, 17)
    assert list(a.sns) == [11] and list(a.tokens) == [0xA1], "the token known by any replica"
    assert list(zip(a.skip_sns, a.skip_counts, strict=True)) == [(13, 2)]
    assert list(ops[B].sns) == [13] and list(ops[B].skip_sns) == [11]
    assert list(ops[C].sns) == [] and sorted(ops[C].skip_sns) == [11, 13]
    assert holes(10, 17, found) == [(10, 11), (12, 13), (15, 17)]


def test_a_marker_left_by_an_earlier_fill_holds_nothing() -> None:
    """Model finding (MARKER_HOLDS): a reader stopped after marking one member; counting its
    marker as held left the other member unmarked and unsealed there."""
    marker = StoredEntry(10, 1, record_batch.fill(10, 1))
    found = {A: [(marker, 0)], B: [(entry(11), 0)]}
    ops = fill_ops(10, 12, found)
    assert list(ops[A].sns) == [10], "copied to the member's replicas that lack it"
    assert list(ops[B].skip_sns) == [], "B gets its marker at 10"
    assert list(ops[A].skip_sns) == [11]
    assert holes(10, 12, found) == [(10, 11)]


def test_nothing_found_is_one_hole() -> None:
    assert holes(4, 9, {A: [], B: []}) == [(4, 9)]
    assert holes(4, 9, {A: [(entry(2, 8), 0)]}) == []
