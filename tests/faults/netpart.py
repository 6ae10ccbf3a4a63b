"""Network partitions for the fault tests: one process of the cluster in its own network namespace.

Every process binds an address of a veth pair created for the test instead of
127.0.0.1: the isolated one the namespace side (10.213.N.2), all others the host
side (10.213.N.1, a local address of this machine, so they reach each other
directly). Taking the namespace's end of the veth down cuts the isolated process
off from every other process and from the test's clients, in both directions
(its sends fail, what is sent to it is dropped); bringing it up heals the
partition. The namespace shares the file system, so the view store
(`data_dir/view.json`) stays reachable: only the network is partitioned.

Needs root and `ip netns` (iproute2); `available()` says whether this machine has them.
Everything created here is on this machine only and removed on exit.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cluster import Cluster, started, two_level_toml
from flexlog.core import config as config_mod


def _ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", *args] if ns is None else ["ip", "netns", "exec", ns, "ip", *args]
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=10)


def available() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    name = f"flchk{os.getpid() % 10_000_000}"
    if _ip("netns", "add", name, check=False).returncode != 0:
        return False
    _ip("netns", "del", name, check=False)
    return True


class NetNs:
    """A namespace joined to this machine by a veth pair: host_ip here, ns_ip inside."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 1_000_000}{random.randrange(100)}"
        self.name = f"flns{tag}"
        self.host_if, self.ns_if = f"flh{tag}", f"fln{tag}"  # at most 15 characters
        used = _ip("-4", "-o", "addr").stdout
        subnet = next(n for n in random.sample(range(1, 250), 249) if f"10.213.{n}." not in used)
        self.host_ip, self.ns_ip = f"10.213.{subnet}.1", f"10.213.{subnet}.2"

    def create(self) -> None:
        _ip("netns", "add", self.name)
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _ip("link", "set", self.ns_if, "netns", self.name)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        _ip("addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if, ns=self.name)
        _ip("link", "set", self.ns_if, "up", ns=self.name)
        _ip("link", "set", "lo", "up", ns=self.name)

    def partition(self) -> None:
        _ip("link", "set", self.ns_if, "down", ns=self.name)

    def heal(self) -> None:
        _ip("link", "set", self.ns_if, "up", ns=self.name)

    def destroy(self) -> None:
        _ip("netns", "del", self.name, check=False)  # removes both ends of the veth
        _ip("link", "del", self.host_if, check=False)


class PartitionableCluster(Cluster):
    """A Cluster whose process `isolated` runs inside `netns`."""

    def __init__(self, config: config_mod.ClusterConfig, netns: NetNs, isolated: str,
                 controller: bool = False) -> None:
        super().__init__(config, controller)
        self.netns = netns
        self.isolated = isolated

    def start_process(self, role: str, name: str) -> None:
        if name != self.isolated:
            super().start_process(role, name)
            return
        log_dir = self.config.data_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        out = (log_dir / f"{name}.log").open("ab")
        # `ip netns exec` execs the command: the Popen pid is the process itself (kill works).
        self.procs[name] = subprocess.Popen(
            ["ip", "netns", "exec", self.netns.name, sys.executable, "-m", "flexlog.cli",
             "--log-level", "WARNING", role, "--config", str(self.config.path), "--id", name],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        out.close()

    def partition(self) -> None:
        self.netns.partition()

    def heal(self) -> None:
        self.netns.heal()


def _address_of(config: config_mod.ClusterConfig, name: str) -> str:
    for seq in config.sequencers:
        if seq.name == name:
            return seq.address
    return config.replica(name).address


@contextmanager
def partitionable_cluster(tmp: Path, isolated: str, controller: bool = True,
                          **kwargs: object) -> Iterator[PartitionableCluster]:
    """running_cluster with process `isolated` (a sequencer or replica name) in its own
    network namespace, ready to be partitioned from the rest."""
    netns = NetNs()
    try:
        netns.create()
        path = tmp / "cluster.toml"
        text = two_level_toml(tmp / "data", **kwargs).replace("127.0.0.1:", f"{netns.host_ip}:")  # type: ignore[arg-type]
        path.write_text(text)
        address = _address_of(config_mod.load(path), isolated)
        port = address.rpartition(":")[2]
        text = re.sub(rf"\b{re.escape(address)}\b", f"{netns.ns_ip}:{port}", text)
        path.write_text(text)
        with started(PartitionableCluster(config_mod.load(path), netns, isolated,
                                          controller)) as cluster:
            try:
                yield cluster
            finally:
                netns.heal()
    finally:
        netns.destroy()
