"""Clusters with several gateways for the group tests, and what those tests share."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cluster import Cluster, running_cluster
from wire_client import GATEWAY_READY_S, gateway_ready

# Short, so that every first rebalance does not cost Kafka's default 3 s.
REBALANCE_DELAY_MS = 300
PARTITIONS = 6


def wait_ready(address: str) -> None:
    deadline = time.monotonic() + GATEWAY_READY_S
    while not gateway_ready(address):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gateway {address} did not come up")
        time.sleep(0.1)


@contextmanager
def running_gateways(tmp: Path, gateways: int = 2) -> Iterator[tuple[Cluster, list[str]]]:
    """A cluster with several gateways; yields it and the gateways' Kafka addresses."""
    extra = f"group_initial_rebalance_delay_ms = {REBALANCE_DELAY_MS}\ndefault_partitions = {PARTITIONS}"
    with running_cluster(tmp, storage="memory", gateways=gateways, extra=extra) as cluster:
        addresses = [g.advertised for g in cluster.config.gateways]
        for address in addresses:
            wait_ready(address)
        yield cluster, addresses


def restart_gateway(cluster: Cluster, index: int) -> None:
    gw = cluster.config.gateways[index]
    cluster.kill(gw.name, signal.SIGTERM)
    cluster.start_process("gateway", gw.name)
    wait_ready(gw.advertised)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
