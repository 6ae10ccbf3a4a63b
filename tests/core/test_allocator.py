"""The malloc settings servers apply keep megabyte buffers' pages across frees."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from flexlog.core import allocator

# Four 1 MiB buffers allocated and freed a hundred times, as a server does per batch;
# prints the page faults this took after a first round.
_CYCLES = """
import resource, sys
from flexlog.core import allocator
if sys.argv[1] == "tuned":
    assert allocator.tune_malloc()
def cycle():
    buffers = [b"x" * (1 << 20) for _ in range(4)]
    del buffers
cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    cycle()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    out = subprocess.run([sys.executable, "-c", _CYCLES, mode], capture_output=True, text=True,
                         check=True, timeout=60, env=env)
    return int(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the settings are glibc's")
def test_freed_batch_buffers_are_reused_not_faulted_in_again() -> None:
    default, tuned = _faults("default"), _faults("tuned")
    pages = 100 * 4 * (1 << 20) // 4096
    assert default > pages // 2  # glibc's defaults give the pages back and fault them in again
    assert tuned < pages // 100


def test_an_operators_malloc_tunables_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert allocator.operator_tunables() and not allocator.tune_malloc()
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=131072")
    assert allocator.operator_tunables() and not allocator.tune_malloc()
