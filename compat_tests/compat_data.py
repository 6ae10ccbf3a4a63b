"""Test data shared by the compatibility tests (not in conftest: test modules import it)."""

from __future__ import annotations

import base64


def payloads(n: int, size: int = 20) -> list[bytes]:
    return [f"{i:06d}".encode().ljust(size, b"x") for i in range(n)]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def keyed_record(i: int, headers: bool = True) -> dict:
    """Record i as compat_tests/js and compat_tests/go send it, as their consume steps report it
    (bytes base64-encoded): every byte value in the value, binary header values."""
    return {"key": b64(b"key-%d" % i), "value": b64(b"value-%d:" % i + bytes(range(256))),
            "headers": {"seq": b64(b"%d" % i), "bin": b64(bytes([0, 255, i % 256]))} if headers else {}}


def check_exactly_once(runs: list[list[dict]], count: int, headers: bool = True) -> None:
    """The consume steps' records, run after run, hold records 0..count-1 once each, byte-exact,
    and each run starts where the previous one committed."""
    committed: dict[int, int] = {}
    for run in runs:
        for r in run:
            assert int(r["offset"]) >= committed.get(r["partition"], 0), r
        for r in run:
            committed[r["partition"]] = max(committed.get(r["partition"], 0), int(r["offset"]) + 1)
    records = [r for run in runs for r in run]
    assert len({(r["partition"], int(r["offset"])) for r in records}) == len(records) == count
    got = sorted(({k: r[k] for k in ("key", "value", "headers")} for r in records), key=lambda r: r["key"])
    assert got == sorted((keyed_record(i, headers) for i in range(count)), key=lambda r: r["key"])
