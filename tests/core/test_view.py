"""The cluster view store and the controller's decisions, without processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from flexlog.core import config as config_mod
from flexlog.core.controller import Controller
from flexlog.core.status import ProcessStatus
from flexlog.core.view import FileViewStore, ShardView, View, ViewConflict, initial_view


@pytest.fixture
def config(tmp_path: Path) -> config_mod.ClusterConfig:
    path = tmp_path / "cluster.toml"
    path.write_text(config_mod.default_toml(data_dir=str(tmp_path / "data"), storage="memory"))
    return config_mod.load(path)


def test_file_store_starts_from_the_config_and_compare_and_set_guards_versions(
        config: config_mod.ClusterConfig) -> None:
    store = FileViewStore(config)
    view, version = store.get()
    assert (view, version) == (initial_view(config), 0)
    assert view.shard(0) == ShardView(0, (0, 1, 2), (0, 1, 2))
    new = View({0: ShardView(1, (0, 2), (0, 2))})
    assert store.compare_and_set(new, 0) == 1
    with pytest.raises(ViewConflict):
        store.compare_and_set(new, 0)
    assert FileViewStore(config).get() == (new, 1)


def test_responsible_replica_is_the_first_readable_member() -> None:
    assert ShardView(3, (0, 1, 2), (0, 2)).responsible() == 0
    assert ShardView(4, (0, 1, 2), (1, 2)).responsible() == 1
    assert ShardView(5, (1, 2), ()).responsible() == 1


def _up(index: int, incarnation: int | None = None, caught_up: int = -1) -> ProcessStatus:
    """A replica of shard 0 answering its Status, attached."""
    return ProcessStatus("replica", f"shard0-r{index}", "", True, True, {},
                         incarnation=incarnation, caught_up_epoch=caught_up)


def _controller(config: config_mod.ClusterConfig, now: float) -> Controller:
    """A controller that last heard from every replica at now."""
    ctl = Controller(config, FileViewStore(config))
    for key in ctl.last_ok:
        ctl.last_ok[key] = now
    return ctl


def test_controller_removes_silent_members_readds_them_then_makes_them_readable(
        config: config_mod.ClusterConfig) -> None:
    now = 1000.0
    ctl = _controller(config, now)
    view = initial_view(config)
    later = now + ctl.timeout_s + 0.1
    ctl.last_ok[(0, 0)] = ctl.last_ok[(0, 2)] = later
    view = ctl.decide(view, {(0, 0): _up(0), (0, 2): _up(2)}, later)
    assert view is not None and view.shard(0) == ShardView(1, (0, 2), (0, 2))
    # Back and attached: a member, not readable until it reports a catch-up at this epoch.
    ctl.last_ok[(0, 1)] = later
    view = ctl.decide(view, {(0, 0): _up(0), (0, 1): _up(1), (0, 2): _up(2)}, later)
    assert view is not None and view.shard(0) == ShardView(2, (0, 1, 2), (0, 2))
    assert ctl.decide(view, {(0, 1): _up(1, caught_up=1)}, later) is None
    view = ctl.decide(view, {(0, 1): _up(1, caught_up=2)}, later)
    assert view is not None and view.shard(0) == ShardView(3, (0, 1, 2), (0, 1, 2))


def test_controller_never_removes_the_last_readable_member(config: config_mod.ClusterConfig) -> None:
    ctl = Controller(config, FileViewStore(config))
    view = View({0: ShardView(5, (1,), (1,))})
    assert ctl.decide(view, {}, 1e9) is None


def test_a_replica_restarted_between_checks_catches_up_before_serving_reads(
        config: config_mod.ClusterConfig) -> None:
    now = 1000.0
    ctl = _controller(config, now)
    first = {(0, i): _up(i, 10 + i) for i in range(3)}
    view = ctl.decide(initial_view(config), first, now)
    assert view is not None and view.shard(0).incarnations == {0: 10, 1: 11, 2: 12}
    assert view.shard(0).readable == (0, 1, 2)
    assert view.shard(0).knows(1, 11) and not view.shard(0).knows(1, 99)
    # Replica 1 came back as a new process before the failure timeout noticed anything.
    view = ctl.decide(view, {**first, (0, 1): _up(1, 99)}, now)
    assert view is not None and view.shard(0).readable == (0, 2)
    assert view.shard(0).members == (0, 1, 2) and view.shard(0).incarnations[1] == 99
    epoch = view.shard(0).epoch
    view = ctl.decide(view, {**first, (0, 1): _up(1, 99, caught_up=epoch)}, now)
    assert view is not None and view.shard(0).readable == (0, 1, 2)


def test_a_whole_restart_keeps_every_replica_readable(config: config_mod.ClusterConfig) -> None:
    ctl = _controller(config, 1000.0)
    view = ctl.decide(initial_view(config), {(0, i): _up(i, i) for i in range(3)}, 1000.0)
    assert view is not None
    view = ctl.decide(view, {(0, i): _up(i, 50 + i) for i in range(3)}, 1000.0)
    assert view is not None and view.shard(0).readable == (0, 1, 2)
    assert view.shard(0).incarnations == {0: 50, 1: 51, 2: 52}
