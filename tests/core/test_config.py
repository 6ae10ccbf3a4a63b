"""Config parsing: defaults, derived topology, and errors that name the bad key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from flexlog.core import config


def test_default_cluster_shape() -> None:
    cfg = config.parse(tomllib.loads(config.default_toml(data_dir="/tmp/x")))
    assert cfg.root == 0
    assert [s.name for s in cfg.sequencers] == ["root", "leaf"]
    assert len(cfg.shards) == 1 and len(cfg.shards[0].replicas) == 3
    assert cfg.region(0) == (0,) and cfg.region(1) == (0,)
    assert cfg.ancestors(1) == [1, 0]
    assert cfg.gateways[0].address == "127.0.0.1:9092"
    assert cfg.data_dir == Path("/tmp/x")
    assert cfg.replica_dir("shard0-r1") == Path("/tmp/x/replicas/shard0-r1")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(storage="disk"), "config.storage"),
        (lambda d: d.update(colour=1), "config.colour: unknown key"),
        (lambda d: d["sequencer"][0].update(address="nowhere"), "sequencer[0].address"),
        (lambda d: d["sequencer"][1]["nodes"][0].update(parent=9), "unknown parent 9"),
        (lambda d: d["shard"][0].update(leaf=7), "shard[0].leaf"),
        (lambda d: d["shard"][0].update(replicas=[]), "shard[0].replicas"),
        (lambda d: d.update(pool_size_bytes="big"), "config.pool_size_bytes: expected int"),
        (lambda d: d["sequencer"][1]["nodes"][0].pop("parent"), "exactly one root"),
        (lambda d: d["gateway"][0].update(address="127.0.0.1:99999"), "gateway[0].address"),
    ],
)
def test_invalid_configs_name_the_bad_key(edit: object, message: str) -> None:
    doc = tomllib.loads(config.default_toml())
    edit(doc)  # type: ignore[operator]
    with pytest.raises(config.ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config.parse(doc)


def test_load_reports_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="does not exist"):
        config.load(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("storage = \n")
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.load(bad)
