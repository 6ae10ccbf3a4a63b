"""The Docker image runs the compose topology that Kafka clients use, proven with a real engine.

Registry images cannot be pulled here, so everything is built locally: a debian:bookworm-slim
base with mmdebstrap from the Debian archive apt uses, the flexlog image from docker/Dockerfile
and ZooKeeper from docker/zookeeper, both at once. The test runs a Docker engine of its own
(dockerd with the first storage driver of STORAGE_DRIVERS that starts, its files under the
test's tmp folder, no iptables changes) and removes it afterwards. It takes about 5 minutes
with overlay2 on 2 cores (more under load: docs/operations.md) and runs in every `./dev test`;
it skips where no engine can run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition
from process_helpers import stop_process

from cluster import free_ports

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
DEBIAN_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
EXTRA_CAS = Path("/usr/local/share/ca-certificates")
# Debian's client, the engine's version: it has BuildKit built in, which reads
# docker/Dockerfile.dockerignore (a newer client would need the buildx plugin for that).
DOCKER = "/usr/bin/docker"
# overlay2 shares the image's layers between containers; fuse-overlayfs does the same where the
# kernel's overlay cannot be used on the data root; vfs copies the whole image per container and
# layer (minutes for the 13 containers here) but works everywhere.
STORAGE_DRIVERS = ("overlay2", "fuse-overlayfs", "vfs")
PROJECT = "flexlogtest"
# Not run here: their images cannot be pulled. `docker-compose config` still validates them,
# and Debian's Prometheus runs on the host against the published metrics ports instead.
NOT_RUN = ("prometheus", "grafana")
TOPIC = "docker-image"


@dataclass
class Engine:
    env: dict[str, str]
    tmp: Path
    driver: str
    config: pytest.Config = field(repr=False)

    def run(self, *cmd: str | Path, timeout: float = 600, stdin: bytes | None = None) -> str:
        done = subprocess.run([str(c) for c in cmd], env=self.env, input=stdin, capture_output=True,
                              timeout=timeout)
        assert done.returncode == 0, f"{cmd} failed:\n{done.stdout.decode()}\n{done.stderr.decode()}"
        return done.stdout.decode()

    def compose(self, *args: str, timeout: float = 600) -> str:
        return self.run("docker-compose", "-p", PROJECT, "-f", self.tmp / "project/docker/compose.yml",
                        *args, timeout=timeout)

    def say(self, line: str) -> None:
        """A line on the terminal, past pytest's capture: CI logs show the driver and each phase's time."""
        with self.config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
            print(f"\ntests/docker: {line}", flush=True)

    @contextmanager
    def phase(self, what: str) -> Iterator[None]:
        """Says how long `what` took: the test has a time budget in CI (docs/operations.md)."""
        start = time.monotonic()
        yield
        self.say(f"{what}: {time.monotonic() - start:.0f} s")


def missing_tools() -> list[str]:
    return [t for t in ("dockerd", DOCKER, "docker-compose", "mmdebstrap") if shutil.which(t) is None]


def start_dockerd(tmp: Path, driver: str, env: dict[str, str]) -> subprocess.Popen[bytes] | None:
    """dockerd with `driver`, once it answers; None when it exits or stays silent for a minute."""
    log = (tmp / f"dockerd-{driver}.log").open("wb")
    # --iptables=false and --bridge=none: the host's firewall and its default bridge stay as
    # they are (other tests use network namespaces); compose's own network and the userland
    # proxy for published ports work without them.
    dockerd = subprocess.Popen(
        ["dockerd", f"--storage-driver={driver}", "--data-root", str(tmp / "data"),
         "--exec-root", str(tmp / "exec"), "--pidfile", str(tmp / "dockerd.pid"),
         "--host", env["DOCKER_HOST"], "--iptables=false", "--bridge=none"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    deadline = time.monotonic() + 60
    while subprocess.run([DOCKER, "info"], env=env, capture_output=True).returncode != 0:
        if dockerd.poll() is not None or time.monotonic() > deadline:
            stop_dockerd(dockerd, tmp)
            return None
        time.sleep(0.5)
    return dockerd


def stop_dockerd(dockerd: subprocess.Popen[bytes], tmp: Path) -> None:
    if dockerd.poll() is None:
        dockerd.send_signal(signal.SIGTERM)
        try:
            dockerd.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(dockerd.pid, signal.SIGKILL)
            dockerd.wait()
    # dockerd leaves its default network namespace (and, after a crash, layers) mounted under tmp;
    # the deepest first, so that nothing is busy when its parent goes.
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(str(tmp))), reverse=True):
        subprocess.run(["umount", mount], capture_output=True)
    shutil.rmtree(tmp / "data", ignore_errors=True)
    shutil.rmtree(tmp / "exec", ignore_errors=True)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Engine]:
    if missing := missing_tools():
        pytest.skip(f"no Docker engine: {', '.join(missing)} missing "
                    "(apt-get install docker.io docker-compose mmdebstrap; ./dev test does)")
    if os.geteuid() != 0:
        pytest.skip("no Docker engine: dockerd and mmdebstrap need root")
    tmp = tmp_path_factory.mktemp("docker")
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp / 'docker.sock'}", "DOCKER_BUILDKIT": "1",
           "COMPOSE_HTTP_TIMEOUT": "600"}
    dockerd = None
    for driver in STORAGE_DRIVERS:
        if (dockerd := start_dockerd(tmp, driver, env)) is not None:
            break
    if dockerd is None:
        tails = "\n".join(f"--- {log.name}\n{log.read_text()[-1000:]}" for log in tmp.glob("dockerd-*.log"))
        pytest.skip(f"no Docker engine: dockerd started with none of {', '.join(STORAGE_DRIVERS)}:\n{tails}")
    eng = Engine(env, tmp, driver, request.config)
    eng.say(f"dockerd runs with the {driver} storage driver")
    try:
        yield eng
    finally:
        with eng.phase("every container and network removed"):
            # Killed and removed in one call, faster than `docker-compose down`; the volumes go
            # with the engine's data root. A network's bridge does not: it stays on the host
            # after dockerd stops, and once leftovers cover every default address pool no new
            # network can be made (seen after about thirty runs on one machine).
            ids = subprocess.run([DOCKER, "ps", "-aq"], env=env, capture_output=True, text=True,
                                 timeout=60).stdout.split()
            if ids:
                subprocess.run([DOCKER, "rm", "-f", "-v", *ids], env=env, capture_output=True, timeout=600)
            subprocess.run([DOCKER, "network", "prune", "-f"], env=env, capture_output=True, timeout=60)
        with eng.phase("engine stopped, its files deleted"):
            stop_dockerd(dockerd, tmp)


def debian_mirror() -> str:
    match = re.search(r"^URIs:\s*(\S+/debian)\s*$", DEBIAN_SOURCES.read_text(), re.M)
    assert match, f"no Debian archive in {DEBIAN_SOURCES}"
    return match[1]


@pytest.fixture(scope="module")
def images(engine: Engine) -> Engine:
    """debian:bookworm-slim made here, then flexlog:latest and zookeeper:3.8 built on it."""
    base = engine.tmp / "base"
    with engine.phase("base image (mmdebstrap, docker import)"):
        # mmdebstrap: a third of debootstrap's time here (apt downloads in parallel, dpkg without fsync).
        engine.run("mmdebstrap", "--quiet", "--variant=minbase", "--mode=root", "bookworm", base,
                   debian_mirror(), timeout=900)
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
    with engine.phase("flexlog and zookeeper images, built at once"), ThreadPoolExecutor(2) as pool:
        builds = [
            pool.submit(engine.run, DOCKER, "build", "--network", "host", "-f", ROOT / "docker/Dockerfile",
                        "-t", "flexlog:latest", ROOT, timeout=900),
            pool.submit(engine.run, DOCKER, "build", "--network", "host", "-t", "zookeeper:3.8",
                        ROOT / "docker/zookeeper", timeout=900),
        ]
        for build in builds:
            build.result()
    return engine


@dataclass
class Project:
    """The compose copy the test runs: every published port moved to a free one on 127.0.0.1."""
    bootstrap: str
    # "service:container port" -> "127.0.0.1:host port", e.g. "root:8100" -> "127.0.0.1:40123"
    published: dict[str, str]


@pytest.fixture(scope="module")
def project(images: Engine) -> Project:
    """docker/compose.yml and cluster.toml as they are, but for the published ports: free ones on
    127.0.0.1 (a developer's cluster may hold 9092), the gateways advertising theirs."""
    engine = images
    directory = engine.tmp / "project"
    (directory / "docker").mkdir(parents=True)
    (directory / "dashboards").symlink_to(ROOT / "dashboards")
    compose = yaml.safe_load((ROOT / "docker/compose.yml").read_text())
    config = (ROOT / "docker/cluster.toml").read_text()
    for name in NOT_RUN:
        del compose["services"][name]
        del compose["volumes"][name]
    published = {}
    # All at once: ports taken one call at a time may repeat, and two services then race for one.
    host_ports = iter(free_ports(sum(len(s.get("ports", [])) for s in compose["services"].values())))
    for name, service in compose["services"].items():
        ports = []
        for mapping in service.get("ports", []):
            old_host_port, container_port = mapping.split(":")[-2:]
            address = f"127.0.0.1:{next(host_ports)}"
            ports.append(f"{address}:{container_port}")
            published[f"{name}:{container_port}"] = address
            config = config.replace(f'advertised = "localhost:{old_host_port}"', f'advertised = "{address}"')
        service["ports"] = ports
    gateways = [published[f"{name}:{port}"] for name, port in (("gateway0", 9092), ("gateway1", 9093))]
    assert all(f'advertised = "{address}"' in config for address in gateways)
    (directory / "docker/compose.yml").write_text(yaml.safe_dump(compose, sort_keys=False))
    (directory / "docker/cluster.toml").write_text(config)
    return Project(",".join(gateways), published)


def wait_healthy(engine: Engine, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    expected = len(yaml.safe_load((ROOT / "docker/compose.yml").read_text())["services"]) - len(NOT_RUN)
    while True:
        ids = engine.compose("ps", "-q").split()
        states = json.loads(engine.run(DOCKER, "inspect", *ids))
        health = {s["Name"]: s["State"].get("Health", {}).get("Status", s["State"]["Status"])
                  for s in states}
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


@contextmanager
def host_prometheus(engine: Engine, published: dict[str, str]) -> Iterator[str]:
    """Debian's Prometheus on the host with dashboards/prometheus-compose.yml and its alert rules,
    each target replaced by the address its port is published on; yields its API's base URL."""
    directory = engine.tmp / "prometheus"
    directory.mkdir()
    prom = yaml.safe_load((ROOT / "dashboards/prometheus-compose.yml").read_text())
    # The first scrape within a second, not the 15 s the compose file waits between them.
    prom["global"]["scrape_interval"] = "1s"
    for job in prom["scrape_configs"]:
        for static in job["static_configs"]:
            static["targets"] = [published[target] for target in static["targets"]]
    (directory / "prometheus.yml").write_text(yaml.safe_dump(prom, sort_keys=False))
    shutil.copy(ROOT / "dashboards/alerts.yml", directory)
    listen = f"127.0.0.1:{free_ports(1)[0]}"
    log = (directory / "prometheus.log").open("wb")
    proc = subprocess.Popen(["prometheus", f"--config.file={directory / 'prometheus.yml'}",
                             f"--storage.tsdb.path={directory / 'data'}", f"--web.listen-address={listen}"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    try:
        yield f"http://{listen}/api/v1"
    finally:
        stop_process(proc, 30)


def prometheus_api(url: str, path: str, **params: str) -> list[dict]:
    """The API's data (a list of active targets or a query's result); [] until it answers."""
    try:
        with urllib.request.urlopen(f"{url}/{path}?{urllib.parse.urlencode(params)}", timeout=5) as resp:
            data = json.load(resp)["data"]
    except OSError:
        return []
    return data["activeTargets"] if path == "targets" else data["result"]


def test_the_full_compose_file_is_valid(engine: Engine) -> None:
    engine.run("docker-compose", "-f", ROOT / "docker/compose.yml", "config", "-q")


def test_docker_run_flexlog_up_is_a_one_container_cluster_on_the_published_port(images: Engine) -> None:
    engine = images
    port = free_ports(1)[0]
    bootstrap = f"127.0.0.1:{port}"
    with engine.phase("quick start (docker run flexlog up)"):
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
            subprocess.run([DOCKER, "rm", "-f", "-v", "flexlog-quickstart"], env=engine.env,
                           capture_output=True)
            engine.run(DOCKER, "network", "rm", "flexlog-quickstart")


def test_the_compose_topology_from_the_image_serves_kafka_is_scraped_survives_kills_and_keeps_its_data(
        images: Engine, project: Project) -> None:
    engine, bootstrap = images, project.bootstrap
    with engine.phase("compose up, every container healthy"):
        engine.compose("up", "-d")
        wait_healthy(engine)
    with engine.phase("produce, consume and the host's Prometheus scraping every flexlog container"), \
            host_prometheus(engine, project.published) as prometheus:
        first = [f"before-{i}".encode() for i in range(20)]
        produce(bootstrap, first)
        assert consume(bootstrap, len(first)) == first
        targets = sum(len(s["targets"]) for job in yaml.safe_load(
            (ROOT / "dashboards/prometheus-compose.yml").read_text())["scrape_configs"]
            for s in job["static_configs"])
        deadline = time.monotonic() + 120
        while True:
            health = {t["labels"]["process"]: t["health"] for t in prometheus_api(prometheus, "targets")}
            # Every replica's series, and the records just produced committed on some of them.
            committed = prometheus_api(prometheus, "query", query="flexlog_replica_entries_committed_total")
            if (len(health) == targets and set(health.values()) == {"up"} and len(committed) == 6
                    and any(float(series["value"][1]) > 0 for series in committed)):
                break
            assert time.monotonic() < deadline, f"targets {health}, committed {committed}"
            time.sleep(1)

    with engine.phase("docker kill of a replica and a gateway, healed"):
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

    with engine.phase("compose down and up, the data still there"):
        # The pools live in named volumes: a new set of containers finds every acked record.
        engine.compose("down", "--timeout", "10")
        engine.compose("up", "-d")
        wait_healthy(engine)
        assert consume(bootstrap, len(acked)) == acked
