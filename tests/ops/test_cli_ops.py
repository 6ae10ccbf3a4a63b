"""flexlog status / topics / groups against a real cluster; --check-config; one-line logs."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Producer

from cluster import running_cluster
from flexlog.cli.main import LogfmtFormatter
from flexlog.core import config as config_mod

pytestmark = pytest.mark.slow

FLEXLOG = [sys.executable, "-m", "flexlog.cli"]


def flexlog(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FLEXLOG, *args], capture_output=True, text=True, timeout=60)


def test_status_topics_groups_and_healthchecks(tmp_path: Path) -> None:
    with running_cluster(tmp_path, gateways=1, metrics=True) as cluster:
        cfg = cluster.config
        toml = str(cfg.path)
        gateway = cfg.gateways[0].address
        producer = Producer({"bootstrap.servers": gateway, "enable.idempotence": False})
        for i in range(7):
            producer.produce("cli-topic", b"v%d" % i)
        assert producer.flush(30) == 0

        status = flexlog("status", "--config", toml)
        assert status.returncode == 0, status.stdout + status.stderr
        out = status.stdout
        assert "sequencer tree:" in out and "node 1" in out
        assert "shard 0 (leaf node 1)" in out and out.count("attached=True") == 3
        assert "gateways:" in out and f"{gateway}" in out
        assert "__topics" in out  # the colors section lists system colors with offsets
        [line] = [x for x in out.splitlines() if x.strip().startswith("cli-topic")]
        assert line.split()[1:] == ["0", "0", "7"]  # partition, log start, high watermark
        assert "consumer groups:" in out and out.rstrip().endswith("cluster healthy")

        topics = flexlog("topics", "--config", toml)
        assert topics.returncode == 0
        assert ["cli-topic", "0", "0", "7"] in [x.split() for x in topics.stdout.splitlines()]
        groups = flexlog("groups", "--config", toml)
        assert groups.returncode == 0 and "consumer groups:" in groups.stdout

        for name in ("root", "shard0-r1", "gateway0"):
            one = flexlog("status", "--config", toml, "--id", name)
            assert one.returncode == 0 and one.stdout.rstrip().endswith("ready"), one.stdout
        assert flexlog("status", "--config", toml, "--id", "nobody").returncode == 2
        # The image's HEALTHCHECK, pointed at each process as if it were a container's PID 1.
        for name in ("root", "shard0-r1", "gateway0"):
            health = flexlog("healthcheck", "--pid", str(cluster.procs[name].pid))
            assert health.returncode == 0 and health.stdout.rstrip().endswith("ready"), health.stdout

        cluster.kill("shard0-r1")
        assert flexlog("status", "--config", toml, "--id", "shard0-r1").returncode == 1
        down = flexlog("status", "--config", toml)
        assert down.returncode == 1
        assert "shard0-r1" in down.stdout and "DOWN" in down.stdout
        assert down.stdout.rstrip().endswith("cluster NOT healthy")


def test_check_config_rejects_two_listeners_on_one_port(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(config_mod.default_toml(storage="memory"))
    assert flexlog("up", "--config", str(good), "--check-config").returncode == 0
    bad = tmp_path / "bad.toml"
    # The gateway's metrics port on the first sequencer's metrics port.
    bad.write_text(config_mod.default_toml(storage="memory").replace("metrics_port = 8300",
                                                                     "metrics_port = 8100"))
    for args in (["up", "--config", str(bad)], ["gateway", "--config", str(bad), "--id", "gateway0"]):
        result = flexlog(*args, "--check-config")
        assert result.returncode == 2
        assert "127.0.0.1:8100 is used by both sequencer root metrics and gateway gateway0 metrics" \
            in result.stderr


def test_log_lines_are_logfmt_one_line_per_event() -> None:
    formatter = LogfmtFormatter("replica/shard0-r0")
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        record = logging.LogRecord("flexlog.replica", logging.ERROR, __file__, 1, 'say "%s"',
                                   ("hi",), sys.exc_info())
    line = formatter.format(record)
    assert "\n" not in line
    assert line.startswith("ts=") and " level=error proc=replica/shard0-r0 logger=flexlog.replica " in line
    assert 'msg="say \\"hi\\""' in line and "ValueError: bad\\nthing" in line
