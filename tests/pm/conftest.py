"""Fixtures for the PM storage engine tests.

libpmem reads PMEM_IS_PMEM_FORCE once per process, at the first pool it maps,
so every test here runs with it set (and child processes inherit it); the
msync path is exercised in child processes started without it. It is set per
test rather than for the whole session so other suites' processes keep their
own setting.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def emulated_pm(monkeypatch) -> None:
    monkeypatch.setenv("PMEM_IS_PMEM_FORCE", "1")


@pytest.fixture(params=["shm", "disk"])
def data_dir(request, tmp_path) -> Path:
    """A replica directory on /dev/shm (emulated PM) or on a normal file system."""
    if request.param == "disk":
        return tmp_path / "replica"
    return request.getfixturevalue("shm_dir") / "replica"
