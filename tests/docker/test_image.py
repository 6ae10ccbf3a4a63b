"""The Docker image runs the compose topology that Kafka clients use, proven with a real engine.

Registry images cannot be pulled here, so everything is built locally: a debian:bookworm-slim
base with debootstrap from the Debian archive apt uses, the flexlog image from
docker/Dockerfile, and ZooKeeper from docker/zookeeper. The test runs a Docker engine of its
own (dockerd with vfs storage, its files under the test's tmp folder, no iptables changes)
and removes it afterwards. It is long (about 15 minutes, 20 GB of disk with vfs while it runs), so it is
marked `docker` and runs only when asked: `.venv/bin/python -m pytest -m docker tests/docker`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition

from cluster import free_ports

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
DEBIAN_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
EXTRA_CAS = Path("/usr/local/share/ca-certificates")
# Debian's client, the engine's version: it has BuildKit built in, which reads
# docker/Dockerfile.dockerignore (a newer client would need the buildx plugin for that).
DOCKER = "/usr/bin/docker"
PROJECT = "flexlogtest"
# Not run here: their images cannot be pulled. `docker-compose config` still validates them.
NOT_RUN = ("prometheus", "grafana")
TOPIC = "docker-image"


@dataclass
class Engine:
    env: dict[str, str]
    tmp: Path

    def run(self, *cmd: str | Path, timeout: float = 600, stdin: bytes | None = None) -> str:
        done = subprocess.run([str(c) for c in cmd], env=self.env, input=stdin, capture_output=True,
                              timeout=timeout)
        assert done.returncode == 0, f"{cmd} failed:\n{done.stdout.decode()}\n{done.stderr.decode()}"
        return done.stdout.decode()

    def compose(self, *args: str, timeout: float = 900) -> str:
        return self.run("docker-compose", "-p", PROJECT, "-f", self.tmp / "project/docker/compose.yml",
                        *args, timeout=timeout)


def missing_tools() -> list[str]:
    return [t for t in ("dockerd", DOCKER, "docker-compose", "debootstrap") if shutil.which(t) is None]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    if missing := missing_tools():
        pytest.skip(f"no Docker engine: {', '.join(missing)} missing "
                    "(apt-get install docker.io docker-compose debootstrap)")
    if os.geteuid() != 0:
        pytest.skip("no Docker engine: dockerd and debootstrap need root")
    tmp = tmp_path_factory.mktemp("docker")
    sock = tmp / "docker.sock"
    log = (tmp / "dockerd.log").open("wb")
    # --iptables=false and --bridge=none: the host's firewall and its default bridge stay as
    # they are (other tests use network namespaces); compose's own network and the userland
    # proxy for published ports work without them.
    dockerd = subprocess.Popen(
        ["dockerd", "--storage-driver=vfs", "--data-root", str(tmp / "data"),
         "--exec-root", str(tmp / "exec"), "--pidfile", str(tmp / "dockerd.pid"),
         "--host", f"unix://{sock}", "--iptables=false", "--bridge=none"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_BUILDKIT": "1",
           # Creating a container copies the whole image with vfs: slow on 2 cores.
           "COMPOSE_HTTP_TIMEOUT": "900"}
    eng = Engine(env, tmp)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([DOCKER, "info"], env=env, capture_output=True).returncode != 0:
            if dockerd.poll() is not None or time.monotonic() > deadline:
                tail = (tmp / "dockerd.log").read_text()[-2000:]
                pytest.skip(f"no Docker engine: dockerd did not start here:\n{tail}")
            time.sleep(0.5)
        yield eng
    finally:
        if (tmp / "project").exists():
            subprocess.run(["docker-compose", "-p", PROJECT, "-f", str(tmp / "project/docker/compose.yml"),
                            "down", "-v", "--timeout", "5"], env=env, capture_output=True, timeout=600)
        dockerd.send_signal(signal.SIGTERM)
        try:
            dockerd.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(dockerd.pid, signal.SIGKILL)
            dockerd.wait()
        # dockerd leaves its default network namespace mounted under its exec root.
        for line in Path("/proc/mounts").read_text().splitlines():
            if line.split()[1].startswith(str(tmp)):
                subprocess.run(["umount", line.split()[1]], capture_output=True)
        # vfs keeps a full copy of the image per container: gigabytes.
        shutil.rmtree(tmp / "data", ignore_errors=True)


def debian_mirror() -> str:
    match = re.search(r"^URIs:\s*(\S+/debian)\s*$", DEBIAN_SOURCES.read_text(), re.M)
    assert match, f"no Debian archive in {DEBIAN_SOURCES}"
    return match[1]


@pytest.fixture(scope="module")
def images(engine: Engine) -> Engine:
    """debian:bookworm-slim made here, then flexlog:latest and zookeeper:3.8 built on it."""
    base = engine.tmp / "base"
    engine.run("debootstrap", "--variant=minbase", "bookworm", base, debian_mirror(), timeout=900)
    # apt and pip in the builds reach the archive and the index through this machine's
    # proxy, whose CA the base needs; the archive is the one the machine's apt uses.
    cas = base / "usr/local/share/ca-certificates"
    cas.mkdir(parents=True, exist_ok=True)
    for crt in EXTRA_CAS.glob("*.crt"):
        shutil.copy(crt, cas)
    (base / "etc/apt/sources.list").unlink(missing_ok=True)
    shutil.copy(DEBIAN_SOURCES, base / "etc/apt/sources.list.d/")
    tar = subprocess.run(["tar", "-C", str(base), "-c", "."], capture_output=True, check=True).stdout
    engine.run(DOCKER, "import", "-", "debian:bookworm-slim", stdin=tar)
    shutil.rmtree(base)
    engine.run(DOCKER, "build", "--network", "host", "-f", ROOT / "docker/Dockerfile", "-t", "flexlog:latest",
               ROOT, timeout=1200)
    engine.run(DOCKER, "build", "--network", "host", "-t", "zookeeper:3.8", ROOT / "docker/zookeeper",
               timeout=1200)
    return engine


@pytest.fixture(scope="module")
def bootstrap(images: Engine) -> str:
    """docker/compose.yml and cluster.toml as they are, but for the gateways' published ports:
    free ones on 127.0.0.1 (a developer's cluster may hold 9092), advertised to match."""
    engine = images
    project = engine.tmp / "project"
    (project / "docker").mkdir(parents=True)
    (project / "dashboards").symlink_to(ROOT / "dashboards")
    compose = yaml.safe_load((ROOT / "docker/compose.yml").read_text())
    config = (ROOT / "docker/cluster.toml").read_text()
    published = []
    for name in ("gateway0", "gateway1"):
        service = compose["services"][name]
        (mapping,) = service["ports"]
        old_host_port, listen_port = mapping.split(":")
        port = free_ports(1)[0]
        service["ports"] = [f"127.0.0.1:{port}:{listen_port}"]
        config = config.replace(f'advertised = "localhost:{old_host_port}"',
                                f'advertised = "127.0.0.1:{port}"')
        published.append(f"127.0.0.1:{port}")
    assert all(p in config for p in published)
    for name in NOT_RUN:
        del compose["services"][name]
        del compose["volumes"][name]
    (project / "docker/compose.yml").write_text(yaml.safe_dump(compose, sort_keys=False))
    (project / "docker/cluster.toml").write_text(config)
    return ",".join(published)


def wait_healthy(engine: Engine, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        ids = engine.compose("ps", "-q").split()
        states = json.loads(engine.run(DOCKER, "inspect", *ids))
        health = {s["Name"]: s["State"].get("Health", {}).get("Status", s["State"]["Status"])
                  for s in states}
        expected = len(yaml.safe_load((ROOT / "docker/compose.yml").read_text())["services"]) - len(NOT_RUN)
        if len(health) == expected and set(health.values()) == {"healthy"}:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not healthy after {timeout:.0f}s: {health}")
        time.sleep(2)


def produce(bootstrap: str, values: list[bytes]) -> None:
    acked: list[bytes] = []
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for value in values:
        producer.produce(TOPIC, value, partition=0,
                         on_delivery=lambda err, msg: acked.append(msg.value()) if err is None else None)
    assert producer.flush(60) == 0
    assert acked == values


def consume(bootstrap: str, count: int) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "docker-image-test",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(TOPIC, 0, 0)])
    got: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(got) < count and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and msg.error() is None:
            got.append(msg.value())
    consumer.close()
    return got


def container(engine: Engine, service: str) -> str:
    (cid,) = engine.compose("ps", "-q", service).split()
    return cid


def test_the_full_compose_file_is_valid(engine: Engine) -> None:
    engine.run("docker-compose", "-f", ROOT / "docker/compose.yml", "config", "-q")


def test_docker_run_flexlog_up_is_a_one_container_cluster_on_the_published_port(images: Engine) -> None:
    engine = images
    port = free_ports(1)[0]
    bootstrap = f"127.0.0.1:{port}"
    # The engine here runs with --bridge=none; a network of its own stands in for the default bridge.
    engine.run(DOCKER, "network", "create", "flexlog-quickstart")
    try:
        # README's quick start, with a free host port and the address that port is published on.
        cid = engine.run(DOCKER, "run", "-d", "--name", "flexlog-quickstart",
                         "--network", "flexlog-quickstart", "-p", f"{bootstrap}:9092",
                         "flexlog:latest", "up", "--advertise", bootstrap).strip()
        deadline = time.monotonic() + 300
        while (health := json.loads(engine.run(DOCKER, "inspect", cid))[0]["State"]
               .get("Health", {}).get("Status")) != "healthy":
            assert time.monotonic() < deadline, f"{health}:\n{engine.run(DOCKER, 'logs', cid)}"
            time.sleep(2)
        values = [f"quickstart-{i}".encode() for i in range(10)]
        produce(bootstrap, values)
        assert consume(bootstrap, len(values)) == values
    finally:
        # Not asserted: the container may never have been created.
        subprocess.run([DOCKER, "rm", "-f", "-v", "flexlog-quickstart"], env=engine.env, capture_output=True)
        engine.run(DOCKER, "network", "rm", "flexlog-quickstart")


def test_the_compose_topology_from_the_image_serves_kafka_survives_kills_and_keeps_its_data(
        images: Engine, bootstrap: str) -> None:
    engine = images
    engine.compose("up", "-d")
    wait_healthy(engine)
    first = [f"before-{i}".encode() for i in range(20)]
    produce(bootstrap, first)
    assert consume(bootstrap, len(first)) == first

    # One replica of shard 0 dies: the controller drops it from the view, appends go on.
    engine.run(DOCKER, "kill", container(engine, "shard0-r1"))
    during = [f"replica-down-{i}".encode() for i in range(20)]
    produce(bootstrap, during)
    # And a gateway. A container stopped by `docker kill` stays down under
    # `restart: unless-stopped`; starting both again is the operator's (or orchestrator's) part.
    engine.run(DOCKER, "kill", container(engine, "gateway0"))
    engine.run(DOCKER, "start", container(engine, "shard0-r1"), container(engine, "gateway0"))
    wait_healthy(engine)
    after = [f"healed-{i}".encode() for i in range(20)]
    produce(bootstrap, after)
    acked = first + during + after
    assert consume(bootstrap, len(acked)) == acked

    # The pools live in named volumes: a new set of containers finds every acked record.
    engine.compose("down", "--timeout", "10")
    engine.compose("up", "-d")
    wait_healthy(engine)
    assert consume(bootstrap, len(acked)) == acked
