"""Test data shared by the compatibility tests (not in conftest: test modules import it)."""

from __future__ import annotations


def payloads(n: int, size: int = 20) -> list[bytes]:
    return [f"{i:06d}".encode().ljust(size, b"x") for i in range(n)]
