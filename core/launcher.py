"""`flexlog up`: run a whole cluster as supervised child processes on this machine."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import Counter, Gauge, start_http_server

from flexlog.core.config import ClusterConfig
from flexlog.core.errors import Unavailable
from flexlog.core.status import wait_healthy

log = logging.getLogger("flexlog.launcher")

RESTARTS = Counter("flexlog_launcher_restarts", "Child processes the launcher restarted after they died",
                   ["role", "name"])
CHILD_UP = Gauge("flexlog_launcher_child_up", "1 while the child process is running", ["role", "name"])

RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)
STOP_GRACE_S = 5.0


@dataclass
class Child:
    role: str
    name: str
    listen: str
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    log_path: Path = field(default_factory=Path)


def gateway_available() -> bool:
    return importlib.util.find_spec("flexlog.gateway.server") is not None


def children_of(config: ClusterConfig) -> list[Child]:
    children = [Child("sequencer", s.name, s.address) for s in config.sequencers]
    children += [Child("replica", r.name, r.address) for s in config.shards for r in s.replicas]
    if gateway_available():
        children += [Child("gateway", g.name, g.address) for g in config.gateways]
    return children


class Launcher:
    def __init__(self, config: ClusterConfig, log_level: str = "INFO") -> None:
        assert config.path is not None, "the launcher passes its config file to every child"
        self.config = config
        self.log_level = log_level
        self.children = children_of(config)
        self.log_dir = config.data_dir / "logs"
        self._stopping = False

    def _spawn(self, child: Child) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        child.log_path = self.log_dir / f"{child.name}.log"
        out = child.log_path.open("ab")
        cmd = [sys.executable, "-m", "flexlog.core.cli", "--log-level", self.log_level,
               child.role, "--config", str(self.config.path), "--id", child.name]
        child.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=os.environ.copy())
        out.close()
        child.started_at = time.monotonic()

    def start(self) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        for child in self.children:
            self._spawn(child)

    def stop(self) -> None:
        self._stopping = True
        for child in reversed(self.children):
            if child.proc and child.proc.poll() is None:
                child.proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for child in self.children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()

    def supervise_once(self) -> None:
        """Restart children that died, with a growing backoff."""
        for child in self.children:
            running = child.proc is not None and child.proc.poll() is None
            CHILD_UP.labels(child.role, child.name).set(1 if running else 0)
            if self._stopping or child.proc is None or running:
                continue
            code = child.proc.returncode
            backoff = RESTART_BACKOFF_S[min(child.restarts, len(RESTART_BACKOFF_S) - 1)]
            if time.monotonic() - child.started_at < backoff:
                continue
            child.restarts += 1
            RESTARTS.labels(child.role, child.name).inc()
            log.warning("%s %s exited with %s; restart #%d (log: %s)", child.role, child.name,
                        code, child.restarts, child.log_path)
            self._spawn(child)

    def describe(self) -> str:
        lines = [f"FlexLog cluster (config {self.config.path}, data {self.config.data_dir})"]
        for child in self.children:
            lines.append(f"  {child.role:<9} {child.name:<12} {child.listen}")
        if self.config.gateways and gateway_available():
            kafka = ", ".join(g.advertised for g in self.config.gateways)
            lines.append(f"  Kafka bootstrap servers: {kafka}")
        if self.config.launcher_metrics_port:
            lines.append(f"  launcher metrics: http://127.0.0.1:{self.config.launcher_metrics_port}/metrics")
        lines.append(f"  logs: {self.log_dir}")
        return "\n".join(lines)


def run(config: ClusterConfig, log_level: str = "INFO", ready_timeout_s: float = 60.0) -> int:
    launcher = Launcher(config, log_level)
    stop_requested = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    if config.launcher_metrics_port:
        start_http_server(config.launcher_metrics_port, addr="127.0.0.1")
    launcher.start()
    print(launcher.describe(), flush=True)
    try:
        try:
            asyncio.run(wait_healthy(config, ready_timeout_s))
            print("cluster ready (Ctrl-C to stop)", flush=True)
        except Unavailable as exc:
            print(f"warning: {exc}; see the logs", file=sys.stderr, flush=True)
        while not stop_requested:
            launcher.supervise_once()
            time.sleep(0.2)
    finally:
        print("stopping cluster...", flush=True)
        launcher.stop()
        print("stopped", flush=True)
    return 0
