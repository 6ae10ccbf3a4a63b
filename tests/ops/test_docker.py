"""docker/: what can be checked without a Docker engine, and the same topology as local processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml
from confluent_kafka import Producer
from ops_helpers import DASHBOARDS, DOCKER

from cluster import free_ports
from flexlog.core import config as config_mod
from flexlog.core.config import ClusterConfig

FLEXLOG = [sys.executable, "-m", "flexlog.cli"]
CONTAINER_CONFIG = "/etc/flexlog/cluster.toml"


def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yml").read_text())


def cluster() -> ClusterConfig:
    return config_mod.load(DOCKER / "cluster.toml")


def processes(cfg: ClusterConfig) -> dict[str, tuple[str, str, int]]:
    """name -> (role, address, metrics port) of every process of a cluster config."""
    out = {s.name: ("sequencer", s.address, s.metrics_port) for s in cfg.sequencers}
    out |= {r.name: ("replica", r.address, r.metrics_port) for s in cfg.shards for r in s.replicas}
    out |= {g.name: ("gateway", g.address, g.metrics_port) for g in cfg.gateways}
    return out


def flexlog_services() -> dict[str, dict]:
    return {name: svc for name, svc in compose()["services"].items()
            if svc.get("image", "").startswith("flexlog")}


def test_compose_parses_and_every_service_has_one_healthcheck() -> None:
    services = compose()["services"]
    assert {"zookeeper", "prometheus", "grafana"} <= set(services)
    flexlog = flexlog_services()
    for name, svc in services.items():
        if name in flexlog:
            # The image's HEALTHCHECK (one for every role, test_dockerfile_...) is theirs.
            assert "healthcheck" not in svc, f"{name} repeats the image's healthcheck"
        else:
            assert svc["healthcheck"]["test"][0] == "CMD", f"{name} has no healthcheck"
        assert svc["restart"] == "unless-stopped"
    cfg = cluster()
    assert len([n for n in cfg.nodes.values() if n.parent is None]) == 1 and len(cfg.nodes) == 3
    assert [len(s.replicas) for s in cfg.shards] == [3, 3] and len(cfg.gateways) == 2


def test_the_controller_runs_once_against_the_zookeeper_view() -> None:
    cfg = cluster()
    assert (cfg.view_store, cfg.zookeeper_hosts) == ("zookeeper", "zookeeper:2181")
    controller = flexlog_services()["controller"]
    assert controller["command"][0] == "controller"
    assert "zookeeper" in controller["depends_on"]
    local = [str(DOCKER / "cluster.toml") if arg == CONTAINER_CONFIG else arg
             for arg in controller["command"]]
    result = subprocess.run([*FLEXLOG, *local, "--check-config"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_every_process_is_a_service_whose_command_and_config_pass_check_config() -> None:
    cfg = cluster()
    services = flexlog_services()
    services.pop("controller")
    assert set(services) == set(processes(cfg))
    for name, (role, address, metrics_port) in processes(cfg).items():
        svc = services[name]
        # The service's hostname is the host of the address the config gives the process.
        assert svc["hostname"] == name == address.rpartition(":")[0]
        assert f"./cluster.toml:{CONTAINER_CONFIG}:ro" in svc["volumes"]
        command = svc["command"]
        assert command[0] == role and command[command.index("--id") + 1] == name
        # For a Prometheus on the Docker host (tests/docker runs Debian's against them).
        assert f"127.0.0.1:{metrics_port}:{metrics_port}" in svc["ports"]
        local = [str(DOCKER / "cluster.toml") if arg == CONTAINER_CONFIG else arg for arg in command]
        result = subprocess.run([*FLEXLOG, *local, "--check-config"], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, f"{name}: {result.stderr}"
        if role == "replica":
            # Its PM pool and SSD tier live in its own named volume at the data_dir.
            assert f"{name}:{cfg.data_dir}" in svc["volumes"] and name in compose()["volumes"]


def test_gateways_publish_the_ports_they_advertise() -> None:
    services = flexlog_services()
    for gw in cluster().gateways:
        listen_port = gw.address.rpartition(":")[2]
        host, _, advertised_port = gw.advertised.rpartition(":")
        assert host == "localhost"
        assert services[gw.name]["ports"][0] == f"{advertised_port}:{listen_port}"


def test_prometheus_compose_config_scrapes_every_service_at_its_metrics_port() -> None:
    prom = yaml.safe_load((DASHBOARDS / "prometheus-compose.yml").read_text())
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    expected = {f"{address.rpartition(':')[0]}:{port}" for _, address, port in processes(cluster()).values()}
    assert targets == expected
    services = compose()["services"]
    assert {t.rpartition(":")[0] for t in targets} <= set(services)
    mounts = services["prometheus"]["volumes"]
    assert "../dashboards/prometheus-compose.yml:/etc/prometheus/prometheus.yml:ro" in mounts
    # rule_files are relative to the config file's folder in the container.
    assert prom["rule_files"] == ["alerts.yml"]
    assert "../dashboards/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts
    grafana = services["grafana"]["volumes"]
    assert "../dashboards/provisioning:/etc/grafana/provisioning:ro" in grafana
    assert "../dashboards:/var/lib/grafana/dashboards/flexlog:ro" in grafana
    datasource = yaml.safe_load((DASHBOARDS / "provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    assert "9090:9090" in services["prometheus"]["ports"]
    for mount in mounts + grafana:
        source = mount.split(":")[0]
        if source.startswith("."):
            assert (DOCKER / source).exists(), mount


def test_dockerfile_is_one_non_root_bookworm_image_with_libpmemobj() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert all(line.split()[1].startswith("debian:bookworm")
               for line in text.splitlines() if line.startswith("FROM "))
    assert "libpmemobj-dev" in text and "libpmemobj1" in text
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["flexlog"]' in text
    # The healthcheck is the image's, one for every role (compose's flexlog services use it).
    assert re.search(r'^HEALTHCHECK .*CMD \["flexlog", "healthcheck"\]$', text, re.M)
    runtime = text.rpartition("\nFROM ")[2]
    assert "gcc" not in runtime and "FLEXLOG_LISTEN=0.0.0.0" in runtime
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for path in source.split():
            assert (DOCKER.parent / path).exists(), path


def local_copy(tmp: Path) -> Path:
    """docker/local.toml on free ports, in memory, under tmp: the same topology, runnable anywhere."""
    text = (DOCKER / "local.toml").read_text()
    ports = sorted({int(p) for p in re.findall(r"\b1[789]\d{3}\b", text)})
    fresh = iter(free_ports(len(ports)))
    mapping = {p: next(fresh) for p in ports}
    text = re.sub(r"\b1[789]\d{3}\b", lambda m: str(mapping[int(m[0])]), text)
    text = text.replace('storage = "pm"', 'storage = "memory"')
    text = re.sub(r'^data_dir = .*$', f'data_dir = "{tmp / "data"}"', text, flags=re.M)
    path = tmp / "local.toml"
    path.write_text(text)
    return path


def topology(cfg: ClusterConfig) -> tuple:
    return (sorted((n.id, n.parent, n.process) for n in cfg.nodes.values()),
            [(s.id, s.leaf, [r.name for r in s.replicas]) for s in cfg.shards],
            [(g.name, g.node_id) for g in cfg.gateways])


@pytest.mark.slow
def test_the_compose_topology_runs_as_local_processes(tmp_path: Path) -> None:
    local = config_mod.load(DOCKER / "local.toml")
    assert topology(local) == topology(cluster())
    assert {address.rpartition(":")[0] for _, address, _ in processes(local).values()} == {"127.0.0.1"}
    assert tomllib.loads((DOCKER / "local.toml").read_text())["storage"] == "pm"

    path = local_copy(tmp_path)
    cfg = config_mod.load(path)
    proc = subprocess.Popen([*FLEXLOG, "up", "--config", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    printed = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any("status: " in line for line in printed):
            line = proc.stdout.readline()
            if not line:
                break
            printed.append(line)
        out = "".join(printed)
        assert "cluster ready" in out, out
        kafka = ",".join(g.address for g in cfg.gateways)
        # 11 cluster processes and the controller
        assert f"status: 12/12 processes up | 0 restarts | Kafka {kafka}" in out
        status = subprocess.run([*FLEXLOG, "status", "--config", str(path)], capture_output=True,
                                text=True, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.count("  ready") >= 11
        producer = Producer({"bootstrap.servers": cfg.gateways[1].address, "enable.idempotence": False})
        producer.produce("compose-topology", b"hello")
        assert producer.flush(30) == 0
        replica_log = (cfg.data_dir / "logs" / "shard1-r2.log").read_text()
        assert "opening memory store of shard1-r2" in replica_log and "proc=replica/shard1-r2" in replica_log
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
