"""What the image relies on, without Docker: the role-aware healthcheck and `flexlog up`'s
--listen/--advertise (FLEXLOG_LISTEN/FLEXLOG_ADVERTISE), which a container needs and the
machine's loopback default must not lose."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from flexlog.cli.main import flexlog_argv
from flexlog.core import config as config_mod
from flexlog.core.config import ConfigError

FLEXLOG = [sys.executable, "-m", "flexlog.cli"]


def flexlog(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FLEXLOG, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize(("cmdline", "argv"), [
    (b"/opt/flexlog/bin/python3\0/opt/flexlog/bin/flexlog\0up\0", ["up"]),
    (b"python3\0-m\0flexlog.cli\0gateway\0--config\0c.toml\0--id\0gateway0\0",
     ["gateway", "--config", "c.toml", "--id", "gateway0"]),
])
def test_the_healthcheck_finds_the_flexlog_arguments_in_a_command_line(cmdline: bytes,
                                                                       argv: list[str]) -> None:
    assert flexlog_argv(cmdline) == argv


def test_the_healthcheck_of_a_process_that_is_not_flexlog_fails_and_says_why() -> None:
    with pytest.raises(ValueError, match="not a flexlog process"):
        flexlog_argv(b"/bin/sh\0-c\0sleep 1\0")
    result = flexlog("healthcheck", "--pid", str(os.getpid()))
    assert result.returncode == 1 and "not a flexlog process" in result.stderr


def generated_gateways(tmp: Path, *args: str, env: dict[str, str] | None = None) -> list[dict]:
    # Empty is unset: the test's own environment must not leak in.
    result = flexlog("up", "--data-dir", str(tmp), "--storage", "memory", "--gateways", "2",
                     *args, "--check-config", env={"FLEXLOG_LISTEN": "", "FLEXLOG_ADVERTISE": "",
                                                   **(env or {})})
    assert result.returncode == 0, result.stderr
    return tomllib.loads((tmp / "cluster.toml").read_text())["gateway"]


def test_up_listens_on_the_loopback_unless_told(tmp_path: Path) -> None:
    gws = generated_gateways(tmp_path)
    assert [g["address"] for g in gws] == ["127.0.0.1:9092", "127.0.0.1:9093"]
    assert not any("advertised" in g for g in gws)


def test_up_in_a_container_listens_everywhere_and_advertises_the_published_port(tmp_path: Path) -> None:
    # The image's ENV: a wildcard listener is advertised on the loopback the port is published on.
    gws = generated_gateways(tmp_path / "env", env={"FLEXLOG_LISTEN": "0.0.0.0"})
    assert [(g["address"], g["advertised"]) for g in gws] == [("0.0.0.0:9092", "127.0.0.1:9092"),
                                                               ("0.0.0.0:9093", "127.0.0.1:9093")]
    # -p 19092:9092 -p 19093:9093 on a host called kafka.example
    gws = generated_gateways(tmp_path / "flags", "--listen", "0.0.0.0", "--advertise", "kafka.example:19092")
    assert [g["advertised"] for g in gws] == ["kafka.example:19092", "kafka.example:19093"]
    gws = generated_gateways(tmp_path / "host", env={"FLEXLOG_LISTEN": "0.0.0.0",
                                                      "FLEXLOG_ADVERTISE": "kafka.example"})
    assert [g["advertised"] for g in gws] == ["kafka.example:9092", "kafka.example:9093"]
    assert all(addr.startswith("127.0.0.1:") for addr in
               tomllib.loads((tmp_path / "host/cluster.toml").read_text())["shard"][0]["replicas"])


def test_a_wildcard_is_never_advertised(tmp_path: Path) -> None:
    text = config_mod.default_toml(storage="memory").replace(
        'address = "127.0.0.1:9092"', 'address = "0.0.0.0:9092"')
    with pytest.raises(ConfigError, match=re.escape("gateway[0].advertised: '0.0.0.0:9092' listens on")):
        config_mod.parse(tomllib.loads(text), tmp_path / "cluster.toml")
