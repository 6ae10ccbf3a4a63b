"""Start a real FlexLog cluster (separate processes, real gRPC) for a test, and stop it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from flexlog.core import config as config_mod
from flexlog.core.config import ClusterConfig
from flexlog.core.status import wait_healthy


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def two_level_toml(data_dir: Path, storage: str = "memory", shards: int = 1,
                   replicas: int = 3, gateways: int = 0, extra: str = "", metrics: bool = False,
                   launcher_metrics: bool = False) -> str:
    """root + one leaf per shard, each in its own process; replicas per shard.

    With metrics, every process also gets a /metrics port; with launcher_metrics, `flexlog up`'s
    launcher too. Every port is picked in one go, so no two are the same.
    """
    if launcher_metrics and not metrics:
        raise ValueError("launcher_metrics needs metrics")
    processes = 1 + shards + shards * replicas + gateways
    allocated = free_ports(processes + (processes + launcher_metrics if metrics else 0))
    ports = iter(allocated[:processes])
    metric_ports = iter(allocated[processes:] if metrics else [0] * processes)
    launcher = f"launcher_metrics_port = {allocated[-1]}" if launcher_metrics else ""
    out = [f'data_dir = "{data_dir}"', f'storage = "{storage}"', launcher, extra,
           f'[[sequencer]]\nname = "root"\naddress = "127.0.0.1:{next(ports)}"\n'
           f"metrics_port = {next(metric_ports)}\nnodes = [{{ id = 0 }}]"]
    for s in range(shards):
        out.append(f'[[sequencer]]\nname = "leaf{s}"\naddress = "127.0.0.1:{next(ports)}"\n'
                   f"metrics_port = {next(metric_ports)}\nnodes = [{{ id = {s + 1}, parent = 0 }}]")
    for s in range(shards):
        addrs = ", ".join(f'"127.0.0.1:{next(ports)}"' for _ in range(replicas))
        mports = ", ".join(str(next(metric_ports)) for _ in range(replicas))
        out.append(f"[[shard]]\nid = {s}\nleaf = {s + 1}\nreplicas = [{addrs}]\nmetrics_ports = [{mports}]")
    for g in range(gateways):
        out.append(f'[[gateway]]\nname = "gateway{g}"\nnode_id = {g}\naddress = "127.0.0.1:{next(ports)}"\n'
                   f"metrics_port = {next(metric_ports)}")
    return "\n\n".join(out) + "\n"


class Cluster:
    def __init__(self, config: ClusterConfig, controller: bool = False) -> None:
        self.config = config
        self.controller = controller  # run core/controller.py: failed replicas leave the view
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start_process(self, role: str, name: str) -> None:
        log_dir = self.config.data_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        out = (log_dir / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "flexlog.cli", "--log-level", "WARNING", role,
             "--config", str(self.config.path), "--id", name],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        out.close()

    def start(self) -> None:
        for seq in self.config.sequencers:
            self.start_process("sequencer", seq.name)
        for shard in self.config.shards:
            for rep in shard.replicas:
                self.start_process("replica", rep.name)
        for gw in self.config.gateways:
            self.start_process("gateway", gw.name)
        if self.controller:
            self.start_process("controller", "controller")
        asyncio.run(wait_healthy(self.config, 30))

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        proc.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            proc.wait(10)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 10
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def logs(self) -> str:
        parts = []
        for path in sorted((self.config.data_dir / "logs").glob("*.log")):
            parts.append(f"--- {path.name}\n{path.read_text()[-3000:]}")
        return "\n".join(parts)


AnyCluster = TypeVar("AnyCluster", bound=Cluster)


@contextmanager
def running_cluster(tmp: Path, controller: bool = False, **kwargs: object) -> Iterator[Cluster]:
    path = tmp / "cluster.toml"
    path.write_text(two_level_toml(tmp / "data", **kwargs))  # type: ignore[arg-type]
    with started(Cluster(config_mod.load(path), controller)) as cluster:
        yield cluster


@contextmanager
def started(cluster: AnyCluster) -> Iterator[AnyCluster]:
    """Start cluster; print its processes' logs if anything fails; always stop it."""
    try:
        cluster.start()
        yield cluster
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base_port(gateways: int = 1, avoid: frozenset[int] = frozenset()) -> int:
    """A base port for `flexlog up --base-port` whose whole default layout is free right now and
    takes none of the ports in avoid."""
    offsets = [0, 1, 100, 101, 102, 1000, 1001, 1100, 1101, 1102, 1300]
    offsets += [1200 + g for g in range(gateways)]
    for _ in range(200):
        base = 20000 + free_ports(1)[0] % 20000
        layout = {base + o for o in offsets}
        if not layout & avoid and all(_bindable(port) for port in layout):
            return base
    raise RuntimeError("no free port layout for a default cluster")


def free_up_ports(gateways: int = 1) -> tuple[int, int]:
    """`--base-port` and `--kafka-port` for `flexlog up`: both free, and the gateways' Kafka ports
    outside the base port's layout (a clash that `flexlog up` refuses)."""
    kafka = free_ports(1)[0]
    return free_base_port(gateways, frozenset(range(kafka, kafka + gateways))), kafka
