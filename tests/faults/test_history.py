"""The history checker finds each anomaly it claims to, and nothing in a clean history."""

from __future__ import annotations

from history import History


def _write(h: History, client: str, payload: str, sn: int | None, status: str = "ok",
           key: str = "c") -> int:
    op = h.invoke(client, key, payload.encode())
    if status == "ok":
        assert sn is not None
        h.ok(op, sn)
    elif status == "info":
        h.info(op, "timeout")
    elif status == "fail":
        h.fail(op, "refused")
    return op


def test_clean_history() -> None:
    h = History()
    for i in range(5):
        _write(h, "a", f"a{i}", i)
    for r in ("r0", "r1"):
        for i in range(5):
            h.read(r, "c", i, f"a{i}".encode())
    rep = h.check(["r0", "r1"])
    assert rep.ok, rep.summary()
    assert rep.acked == 5 and rep.reads == 10


def test_lost_write_not_read_back_by_one_replica() -> None:
    h = History()
    _write(h, "a", "a0", 0)
    _write(h, "a", "a1", 1)
    for i in range(2):
        h.read("r0", "c", i, f"a{i}".encode())
    h.read("r1", "c", 0, b"a0")
    h.read("r1", "c", 1, None, "NotFound")
    rep = h.check(["r0", "r1", "r2"])
    assert len(rep.lost) == 3  # r1 at SN 1, r2 never read SN 0 and 1
    assert "NotFound" in rep.lost[0] or "NotFound" in " ".join(rep.lost)


def test_sn_acknowledged_twice_and_overwritten() -> None:
    h = History()
    _write(h, "a", "old", 0)
    _write(h, "a", "new", 0)
    h.read("r0", "c", 0, b"old")
    rep = h.check(["r0"])
    assert len(rep.conflicting_sns) == 1
    assert len(rep.overwritten) == 1 and "read old" in rep.overwritten[0]
    assert len(rep.order_violations) == 1


def test_two_replicas_disagree_and_duplicates_and_phantoms() -> None:
    h = History()
    _write(h, "a", "x", 0)
    _write(h, "a", "maybe", None, status="info")
    _write(h, "a", "never", None, status="fail")
    h.read("r0", "c", 0, b"x")
    h.read("r1", "c", 0, b"y")  # another payload at SN 0: conflict, phantom, overwritten
    h.read("r0", "c", 1, b"maybe")  # an indeterminate write may show up
    h.read("r0", "c", 2, b"maybe")  # ...but once
    h.read("r0", "c", 3, b"never")  # a failed write must not
    rep = h.check(["r0", "r1"])
    assert len(rep.conflicting_sns) == 1
    assert len(rep.overwritten) == 1
    assert len(rep.duplicated) == 1 and "maybe" in rep.duplicated[0]
    assert sorted(p.split()[2] for p in rep.phantoms) == ["never", "y"]
    assert not rep.lost


def test_order_is_per_client_and_key() -> None:
    h = History()
    _write(h, "a", "a0", 5)
    _write(h, "b", "b0", 3)  # another client may land lower
    _write(h, "a", "a1", 7, key="other")  # another key too
    _write(h, "a", "a2", 4)  # but not the same client on the same key
    rep = h.check([])
    assert len(rep.order_violations) == 1 and "a2" in rep.order_violations[0]
