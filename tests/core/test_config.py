"""Config parsing: defaults, derived topology, and errors that name the bad key."""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
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
        (lambda d: d.update(group_min_session_timeout_ms=0), "config.group_min_session_timeout_ms"),
        (lambda d: d.update(group_max_session_timeout_ms=5000), "config.group_min_session_timeout_ms"),
        (lambda d: d.update(log_retention_check_interval_ms=0), "config.log_retention_check_interval_ms"),
        (lambda d: d.update(security={"connection_failed_authentication_delay_ms": -1}),
         "security.connection_failed_authentication_delay_ms: at least 0"),
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


# Names with a unit or limit in them read as config keys to a user, so a message may
# only use them when they are keys (PM errors once named `ssd_max_bytes`, which is not).
_KEY_LIKE = re.compile(
    r"\b(?:max_\w+|[a-z]\w*_(?:bytes|ms|us|minutes|port|ports|dir|colors|water|hosts|iterations))\b")
_REPO = Path(__file__).resolve().parents[2]
_LOG_CALLS = {"debug", "info", "warning", "error", "exception", "critical", "print", "add_argument"}


def _config_keys() -> set[str]:
    """Every key the config accepts: the names _check_keys allows, table by table."""
    keys = set(config._TOP_KEYS)
    for node in ast.walk(ast.parse((_REPO / "core" / "config.py").read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_check_keys":
            keys |= {c.value for c in ast.walk(node.args[1]) if isinstance(c, ast.Constant)}
    return keys


def _messages(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Strings of what users read: exceptions, log lines, printed output, CLI help."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", "")
            shown = name in _LOG_CALLS or name[:1].isupper()  # CapWords: an exception being built
        else:
            shown = isinstance(node, ast.Raise) or (
                isinstance(node, ast.FunctionDef) and node.name.endswith("_message"))
        if shown:
            for sub in ast.walk(node):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                    yield sub.lineno, sub.value


def test_messages_name_only_real_config_keys() -> None:
    keys = _config_keys()
    assert {"pool_size_bytes", "metrics_port", "scram_iterations"} <= keys
    wrong = sorted(
        f"{path.relative_to(_REPO)}:{line}: {name}"
        for package in ("core", "pm", "cli")
        for path in (_REPO / package).rglob("*.py") if "proto" not in path.parts
        for line, text in _messages(ast.parse(path.read_text()))
        for name in _KEY_LIKE.findall(text) if name not in keys
    )
    assert not wrong, "messages naming config keys that do not exist:\n" + "\n".join(wrong)
