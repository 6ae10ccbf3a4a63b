"""The ZooKeeper view store, against a real ZooKeeper, and a cluster reconfigured through it."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from cluster import running_cluster
from flexlog.core import config as config_mod
from flexlog.core.client import FlexLogClient
from flexlog.core.view import ShardView, View, ViewConflict, ZkViewStore, initial_view
from zookeeper import running_zookeeper

pytestmark = pytest.mark.slow


def test_zookeeper_store_compare_and_set(tmp_path: Path) -> None:
    with running_zookeeper(tmp_path / "zk") as hosts:
        path = tmp_path / "cluster.toml"
        # Top-level keys go before the first table of the generated file.
        path.write_text(f'view_store = "zookeeper"\nzookeeper_hosts = "{hosts}"\n'
                        'zookeeper_path = "/test"\n'
                        + config_mod.default_toml(data_dir=str(tmp_path / "data"), storage="memory"))
        cfg = config_mod.load(path)
        store = ZkViewStore(cfg)
        try:
            assert store.get() == (initial_view(cfg), 0)
            first = View({0: ShardView(1, (0, 2), (0, 2), {0: 5, 2: 7})})
            assert store.compare_and_set(first, 0) == 1
            with pytest.raises(ViewConflict):
                store.compare_and_set(first, 0)
            second = View({0: ShardView(2, (0, 1, 2), (0, 2), {0: 5, 1: 9, 2: 7})})
            assert store.compare_and_set(second, 1) == 2
            with pytest.raises(ViewConflict):
                store.compare_and_set(first, 1)
            other = ZkViewStore(cfg)
            assert other.get() == (second, 2)
            other.close()
        finally:
            store.close()


def test_cluster_keeps_appending_through_a_replica_kill_with_the_view_in_zookeeper(
        tmp_path: Path) -> None:
    with running_zookeeper(tmp_path / "zk") as hosts:
        extra = (f'view_store = "zookeeper"\nzookeeper_hosts = "{hosts}"\n'
                 'zookeeper_path = "/cluster"\nfailure_timeout_ms = 1500')
        (tmp_path / "c").mkdir()
        with running_cluster(tmp_path / "c", controller=True, extra=extra) as cluster:

            async def load() -> None:
                async with FlexLogClient(cluster.config) as c:
                    await c.create_color("zk")
                    acked = [await c.append([f"{i}".encode()], "zk") for i in range(50)]
                    cluster.kill("shard0-r2", signal.SIGKILL)
                    start = time.monotonic()
                    acked += [await c.append([f"{i}".encode()], "zk") for i in range(50, 100)]
                    assert time.monotonic() - start < 15, "appends resumed on the survivors"
                    assert acked == list(range(100))
                    for sn in (0, 49, 50, 99):
                        assert (await c.read(sn, "zk")).value == f"{sn}".encode()
                    store = ZkViewStore(cluster.config)
                    try:
                        view, version = store.get()
                    finally:
                        store.close()
                    assert version >= 1 and 2 not in view.shard(0).members

            asyncio.run(load())
