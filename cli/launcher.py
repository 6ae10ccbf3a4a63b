"""`flexlog up`: run a whole cluster as supervised child processes on this machine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import Counter, Gauge, start_http_server

from flexlog.cli.status import gateway_status
from flexlog.core.client import FlexLogClient
from flexlog.core.config import ClusterConfig
from flexlog.core.errors import Unavailable
from flexlog.core.status import wait_healthy, wait_ready
from flexlog.gateway.users import UserStore

log = logging.getLogger("flexlog.launcher")

RESTARTS = Counter("flexlog_launcher_restarts", "Child processes the launcher restarted after they died",
                   ["role", "name"])
CHILD_UP = Gauge("flexlog_launcher_child_up", "1 while the child process is running", ["role", "name"])

RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)
STOP_GRACE_S = 5.0


STATUS_LINE_INTERVAL_S = 1.0


@dataclass
class Child:
    role: str
    name: str
    listen: str
    metrics: str = ""
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    log_path: Path = field(default_factory=Path)


def _metrics_url(address: str, port: int) -> str:
    return f"http://{address.rpartition(':')[0]}:{port}/metrics" if port else ""


def children_of(config: ClusterConfig) -> list[Child]:
    children = [Child("sequencer", s.name, s.address, _metrics_url(s.address, s.metrics_port))
                for s in config.sequencers]
    children += [Child("replica", r.name, r.address, _metrics_url(r.address, r.metrics_port))
                 for s in config.shards for r in s.replicas]
    children += [Child("gateway", g.name, g.address, _metrics_url(g.address, g.metrics_port))
                 for g in config.gateways]
    # Failure detection and reconfiguration (core/controller.py); supervised like the rest.
    children.append(Child("controller", "controller", ""))
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
        cmd = [sys.executable, "-m", "flexlog.cli", "--log-level", self.log_level,
               child.role, "--config", str(self.config.path), "--id", child.name]
        child.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=os.environ.copy())
        out.close()
        child.started_at = time.monotonic()

    def start(self) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        for child in self.children:
            # Exported at 0 from the start: a counter that appears only at the first
            # restart cannot be graphed or alerted on with increase().
            RESTARTS.labels(child.role, child.name)
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

    def kafka_bootstrap(self) -> str:
        return ",".join(g.advertised for g in self.config.gateways)

    def describe(self) -> str:
        lines = [f"FlexLog cluster (config {self.config.path}, data {self.config.data_dir})"]
        for child in self.children:
            lines.append(f"  {child.role:<9} {child.name:<12} {child.listen:<18} {child.metrics}")
        if self.kafka_bootstrap():
            lines.append(f"  Kafka bootstrap servers: {self.kafka_bootstrap()}")
        if self.config.launcher_metrics_port:
            lines.append(f"  launcher metrics: http://127.0.0.1:{self.config.launcher_metrics_port}/metrics")
        lines.append(f"  logs: {self.log_dir}")
        return "\n".join(lines)

    def status_line(self) -> str:
        """processes up, restarts, where Kafka clients and Prometheus connect."""
        up = sum(1 for c in self.children if c.proc is not None and c.proc.poll() is None)
        restarts = sum(c.restarts for c in self.children)
        parts = [f"{up}/{len(self.children)} processes up", f"{restarts} restarts"]
        if self.kafka_bootstrap():
            parts.append(f"Kafka {self.kafka_bootstrap()}")
        metrics = sum(1 for c in self.children if c.metrics)
        if metrics:
            parts.append(f"metrics on {metrics} processes")
        if self.config.launcher_metrics_port:
            parts.append(f"launcher metrics 127.0.0.1:{self.config.launcher_metrics_port}")
        return "status: " + " | ".join(parts)


async def ensure_admin_user(config: ClusterConfig) -> None:
    """Create `[security] admin_user` if `__users` lacks it. On a cluster whose only listeners use
    SASL nothing could log in to create the first user, so the launcher does it over gRPC."""
    name = config.security.admin_user
    assert name is not None
    async with FlexLogClient(config) as client:
        users = UserStore(client, config)
        await users.open()
        if name not in await users.names():
            await users.set(name, config.security.admin_password())
            log.info("created the admin user %r from %s", name, config.security.admin_password_file)


async def _wait_ready(launcher: Launcher, timeout_s: float) -> None:
    """Sequencers and replicas ready, then every gateway answering Kafka requests."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    await wait_healthy(launcher.config, timeout_s)
    if not launcher.kafka_bootstrap():
        return
    if launcher.config.security.admin_user is not None:
        await ensure_admin_user(launcher.config)

    async def probe() -> tuple[bool, list[str]]:
        gateways = await gateway_status(launcher.config, timeout_s=1.0)
        return all(g.ready for g in gateways), [g.name for g in gateways if not g.ready]
    await wait_ready("gateways", probe, max(0.0, deadline - loop.time()), interval_s=0.2)


def run(config: ClusterConfig, log_level: str = "INFO", ready_timeout_s: float = 60.0) -> int:
    launcher = Launcher(config, log_level)
    stop_requested = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    # A closed terminal hangs up the whole process group; every child takes SIGHUP as "reload the
    # certificates" and lives on, so stopping them falls to the launcher. To rotate certificates,
    # send SIGHUP to the child processes, not to the launcher.
    signal.signal(signal.SIGHUP, request_stop)
    if config.launcher_metrics_port:
        start_http_server(config.launcher_metrics_port, addr="127.0.0.1")
    launcher.start()
    print(launcher.describe(), flush=True)
    live = sys.stdout.isatty()
    try:
        try:
            asyncio.run(_wait_ready(launcher, ready_timeout_s))
            print("cluster ready (Ctrl-C to stop)", flush=True)
        except Unavailable as exc:
            print(f"warning: {exc}; see the logs", file=sys.stderr, flush=True)
        shown = ""
        next_line = 0.0
        while not stop_requested:
            launcher.supervise_once()
            if time.monotonic() >= next_line:
                next_line = time.monotonic() + STATUS_LINE_INTERVAL_S
                line = launcher.status_line()
                # On a terminal the line is rewritten in place; in a log file it is
                # printed only when it changes, so an idle cluster adds nothing.
                if live:
                    print(f"\r{line:<{len(shown)}}", end="", flush=True)
                elif line != shown:
                    print(line, flush=True)
                shown = line
            time.sleep(0.2)
    finally:
        with contextlib.suppress(OSError):  # after a hangup the terminal is gone: stop all the same
            print("\nstopping cluster..." if live else "stopping cluster...", flush=True)
        launcher.stop()
        print("stopped", flush=True)
    return 0
