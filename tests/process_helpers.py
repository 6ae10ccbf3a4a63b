"""Helpers for tests (and benchmarks) that run a command as a child process."""

from __future__ import annotations

import subprocess
import time


def wait_for_line(proc: subprocess.Popen[str], text: str, timeout: float = 60) -> str:
    """Everything proc printed up to and including the first line containing text; fails
    with what it did print if that line never comes (or proc exits) within timeout."""
    assert proc.stdout is not None
    printed = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        printed.append(line)
        if text in line:
            return "".join(printed)
    raise AssertionError(f"{text!r} never printed:\n{''.join(printed)}")


def stop_process(proc: subprocess.Popen, grace_s: float = 10) -> None:
    """SIGTERM, then SIGKILL if proc has not exited within grace_s; returns once it has."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
