"""Every core process serves Prometheus metrics with the documented names."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import pytest

from cluster import running_cluster
from flexlog.core.client import FlexLogClient

pytestmark = pytest.mark.slow


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def value(text: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(prefix) and not line.startswith("#"))


def test_sequencer_and_replica_metrics(tmp_path: Path) -> None:
    with running_cluster(tmp_path, metrics=True) as cluster:
        cfg = cluster.config

        async def load() -> None:
            async with FlexLogClient(cfg) as c:
                await c.create_color("m")
                wide = await c.create_color("w", owner=0)
                await asyncio.gather(*(c.append([b"x" * 100], "m") for _ in range(200)))
                await asyncio.gather(*(c.append([b"y"], wide) for _ in range(50)))
                await c.read(3, "m")
                await c.trim(5, "m")

        asyncio.run(load())
        root = scrape(cfg.sequencer("root").metrics_port)
        leaf = scrape(cfg.sequencer("leaf0").metrics_port)
        replica = scrape(cfg.shards[0].replicas[0].metrics_port)

    assert value(leaf, "flexlog_sequencer_order_requests_total{") >= 200
    assert value(leaf, "flexlog_sequencer_records_ordered_total{") >= 200
    assert value(root, "flexlog_sequencer_records_ordered_total{") >= 50  # system color + wide color
    assert value(leaf, "flexlog_sequencer_tree_hop_seconds_count") >= 1
    assert value(leaf, "flexlog_sequencer_forward_batch_requests_count") >= 1
    assert value(leaf, 'flexlog_sequencer_attached_replicas{shard="0"}') == 3
    assert value(root, 'flexlog_sequencer_node_ready{node="0"}') == 1
    assert value(replica, "flexlog_replica_entries_committed_total") >= 250
    assert value(replica, "flexlog_replica_prepare_batch_seconds_count") >= 1
    assert value(replica, "flexlog_replica_commit_batch_seconds_count") >= 1
    assert value(replica, "flexlog_replica_trims_total") >= 1
    assert value(replica, "flexlog_replica_store_used_bytes") > 0
    assert value(replica, "flexlog_replica_attached") == 1
    assert "process_cpu_seconds_total" in replica
