"""The flexlog command as a user runs it: up, status, one process per role, bad configs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from process_helpers import wait_for_line

from cluster import free_up_ports
from flexlog.core import config as config_mod
from flexlog.core.client import FlexLogClient

pytestmark = pytest.mark.slow

FLEXLOG = [sys.executable, "-m", "flexlog.cli"]


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FLEXLOG, *args], capture_output=True, text=True, timeout=timeout)


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_up_runs_a_cluster_that_resumes_its_log(tmp_path: Path) -> None:
    data = tmp_path / "data"
    base, kafka = free_up_ports()
    args = [*FLEXLOG, "up", "--data-dir", str(data), "--storage", "memory",
            "--base-port", str(base), "--kafka-port", str(kafka)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        printed = wait_for_line(proc, "cluster ready")
        assert f"127.0.0.1:{base}" in printed and "replica" in printed
        cfg = config_mod.load(data / "cluster.toml")
        status = run("status", "--config", str(data / "cluster.toml"))
        assert status.returncode == 0, status.stdout + status.stderr
        assert "cluster healthy" in status.stdout

        async def append() -> int:
            async with FlexLogClient(cfg) as c:
                await c.create_color("cli")
                return await c.append([b"hello"], "cli")

        assert asyncio.run(append()) == 0
        kids = children_of(proc.pid)
        assert len(kids) >= 5
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "stopped" in out
    for pid in kids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    status = run("status", "--config", str(data / "cluster.toml"))
    assert status.returncode == 1
    assert "DOWN" in status.stdout


def test_launcher_restarts_a_killed_child(tmp_path: Path) -> None:
    data = tmp_path / "data"
    base, kafka = free_up_ports()
    proc = subprocess.Popen(
        [*FLEXLOG, "up", "--data-dir", str(data), "--storage", "memory", "--base-port", str(base),
         "--kafka-port", str(kafka)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_for_line(proc, "cluster ready")
        victim = children_of(proc.pid)[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if run("status", "--config", str(data / "cluster.toml")).returncode == 0:
                break
            time.sleep(0.5)
        else:
            raise AssertionError("cluster did not become healthy again")
        assert victim not in children_of(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_invalid_config_exits_non_zero_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(config_mod.default_toml().replace('storage = "pm"', 'storage = "floppy"'))
    result = run("sequencer", "--config", str(bad), "--id", "root")
    assert result.returncode == 2
    assert "config.storage" in result.stderr
    result = run("replica", "--config", str(tmp_path / "missing.toml"), "--id", "x")
    assert result.returncode == 2 and "does not exist" in result.stderr
    good = tmp_path / "good.toml"
    good.write_text(config_mod.default_toml())
    assert run("replica", "--config", str(good), "--id", "shard0-r2", "--check-config").returncode == 0
    wrong = run("replica", "--config", str(good), "--id", "shard9-r0", "--check-config")
    assert wrong.returncode == 2 and "shard9-r0" in wrong.stderr


def test_up_refuses_a_kafka_port_inside_the_base_port_layout(tmp_path: Path) -> None:
    """The gateway on a replica's port would fail to bind while the launcher waited a minute for it;
    instead nothing starts, the clash is named, and the same command with another port works."""
    data = tmp_path / "data"
    base, _ = free_up_ports()
    result = run("up", "--data-dir", str(data), "--storage", "memory", "--base-port", str(base),
                 "--kafka-port", str(base + 100))
    assert result.returncode == 2
    assert f"127.0.0.1:{base + 100} is used by both replica shard0-r0 and gateway gateway0" in result.stderr
    assert result.stderr.count("invalid config") == 1
    assert not (data / "cluster.toml").exists()
    clashing = tmp_path / "clashing.toml"
    clashing.write_text(config_mod.default_toml(data_dir=str(data), base_port=base, kafka_port=base + 1))
    result = run("up", "--config", str(clashing))
    assert result.returncode == 2 and "sequencer leaf and gateway gateway0" in result.stderr
    # A gateway listening on every interface takes its port from the replica on 127.0.0.1 too.
    result = run("up", "--data-dir", str(data), "--storage", "memory", "--base-port", str(base),
                 "--kafka-port", str(base + 101), "--listen", "0.0.0.0")
    assert result.returncode == 2
    assert f"0.0.0.0:{base + 101} is used by both replica shard0-r1 and gateway gateway0" in result.stderr


def test_up_again_on_the_same_data_dir_resumes_the_log(tmp_path: Path) -> None:
    data = tmp_path / "data"
    base, kafka = free_up_ports()
    args = [*FLEXLOG, "up", "--data-dir", str(data), "--storage", "pm", "--base-port", str(base),
            "--kafka-port", str(kafka)]

    async def append(value: bytes, create: bool) -> int:
        async with FlexLogClient(config_mod.load(data / "cluster.toml")) as c:
            if create:
                await c.create_color("durable")
            return await c.append([value], "durable")

    async def read_all() -> list[bytes | None]:
        async with FlexLogClient(config_mod.load(data / "cluster.toml")) as c:
            tail = await c.tail("durable")
            return [(await c.read(sn, "durable")).value for sn in range(tail)]

    for round_no in range(2):
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            wait_for_line(proc, "cluster ready")
            sn = asyncio.run(append(f"round {round_no}".encode(), create=round_no == 0))
            assert sn == round_no, "the second run continues the SNs of the first"
            assert asyncio.run(read_all()) == [f"round {i}".encode() for i in range(round_no + 1)]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
        assert proc.returncode == 0
    assert any((data / "replicas").iterdir())
    assert (data / "logs").is_dir()


def test_a_terminal_hangup_stops_the_whole_cluster(tmp_path: Path) -> None:
    """Closing the terminal of `flexlog up` sends SIGHUP to its process group. Every child takes SIGHUP
    as "reload the certificates" and lives on, so the launcher has to stop them, or they stay orphaned
    on their ports."""
    data = tmp_path / "data"
    base, kafka = free_up_ports()
    proc = subprocess.Popen(
        [*FLEXLOG, "up", "--data-dir", str(data), "--storage", "memory",
         "--base-port", str(base), "--kafka-port", str(kafka)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    kids: list[int] = []
    try:
        wait_for_line(proc, "cluster ready")
        kids = children_of(proc.pid)
        os.killpg(proc.pid, signal.SIGHUP)
        proc.communicate(timeout=30)
        deadline = time.monotonic() + 10
        alive = kids
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = [pid for pid in kids if Path(f"/proc/{pid}").exists()
                     and "zombie" not in Path(f"/proc/{pid}/status").read_text()]
        assert not alive, "processes left running after the hangup"
    finally:
        for pid in [proc.pid, *kids]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.communicate(timeout=30)


def test_a_stop_that_hangs_still_exits_and_names_what_was_running(tmp_path: Path) -> None:
    """SIGTERM ends a process within STOP_GRACE_S even when its server's stop() never returns."""
    script = tmp_path / "hanging.py"
    script.write_text("""
import asyncio, logging, sys
from flexlog.cli.main import _serve

class Server:
    async def start(self):
        print("ready", flush=True)
    async def stop(self):
        while True:  # a task that swallows its cancellation
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass

logging.basicConfig(stream=sys.stderr)
asyncio.run(_serve(Server(), on_hangup=lambda: None))
""")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 1
        assert time.monotonic() - started < 15
        assert err.decode().count("did not stop within") == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
