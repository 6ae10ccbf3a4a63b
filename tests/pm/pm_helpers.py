"""Shared by the PM tests and the crash-test child process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from flexlog.core import record_batch


def batch(tag: int, records: int = 1, size: int = 20) -> bytes:
    """A valid RecordBatch whose values start with the tag, so entries can be told apart."""
    value = tag.to_bytes(8, "big") + bytes((tag + i) % 251 for i in range(size))
    return record_batch.build([value] * records, timestamp_ms=1_700_000_000_000)


def tag_of(payload: bytes) -> int:
    """The tag batch() put into an entry."""
    return int.from_bytes(record_batch.decode(payload)[0].value[:8], "big")


def run_on_msync_path(script: str) -> str:
    """Run script in a child without PMEM_IS_PMEM_FORCE, so a pool on a normal file is
    persisted with msync (libpmem reads the variable once per process); its stdout."""
    env = {k: v for k, v in os.environ.items() if k != "PMEM_IS_PMEM_FORCE"}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout
