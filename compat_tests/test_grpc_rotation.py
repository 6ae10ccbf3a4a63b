"""gRPC certificate rotation in a running cluster with `[tls] grpc = true` and client certs required:
every process is sent SIGHUP twice (first to trust a new CA beside the old, then to present a
certificate from the new CA), produce and consume through the established connections go on, and
a gateway started afterwards with only the new CA and certificate joins the cluster."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cluster import Cluster, free_ports, two_level_toml
from flexlog.core import config as config_mod
from flexlog.core import rpc
from flexlog.core.tls import generate_dev_certs
from wire_client import gateway_ready

RELOADED = "gRPC certificate reloaded; new connections and channels get"
FAILED = "gRPC certificate reload failed, still using"


class InfoCluster(Cluster):
    """Processes log at INFO (the reload lines), each from the config file given."""

    def start_process(self, role: str, name: str, config: Path | None = None) -> None:
        log_dir = self.config.data_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        with (log_dir / f"{name}.log").open("ab") as out:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "flexlog.cli", "--log-level", "INFO", role,
                 "--config", str(config or self.config.path), "--id", name],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def log(self, name: str) -> str:
        return (self.config.data_dir / "logs" / f"{name}.log").read_text()

    def hang_up_all(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGHUP)


def wait_for(done: Callable[[], object], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"waited {timeout_s}s for {what}"
        time.sleep(0.1)


def install(source: Path, live: Path, names: tuple[str, ...]) -> None:
    """Each file whole, by a rename, as an operator should."""
    for name in names:
        shutil.copy(source / name, live / f".{name}.new")
        os.replace(live / f".{name}.new", live / name)


def tls_table(directory: Path) -> str:
    return (f'[tls]\nca_file = "{directory}/ca.crt"\ncert_file = "{directory}/server.crt"\n'
            f'key_file = "{directory}/server.key"\nclient_auth = "required"\ngrpc = true\n')


def produced(producer: Producer, topic: str, value: bytes, partition: int = 0) -> None:
    failures: list[str] = []
    producer.produce(topic, value, partition=partition,
                     on_delivery=lambda err, _: err and failures.append(str(err)))
    assert producer.flush(20) == 0 and not failures, failures


def consumed(consumer: Consumer, count: int) -> list[bytes]:
    out: list[bytes] = []
    deadline = time.monotonic() + 20
    while len(out) < count and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None:
            assert msg.error() is None, msg.error()
            out.append(msg.value())
    return out


def test_rotating_grpc_certificates_with_sighup_keeps_the_cluster_up_and_lets_new_processes_join(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    generate_dev_certs(old, clients=())
    generate_dev_certs(new, clients=())  # a CA of its own: a process trusting only it tells them apart
    live = tmp_path / "live"
    live.mkdir()
    install(old, live, ("ca.crt", "server.crt", "server.key"))
    toml = two_level_toml(tmp_path / "data", storage="memory", replicas=2, gateways=1, extra=tls_table(live))
    path = tmp_path / "cluster.toml"
    path.write_text(toml)
    cfg = config_mod.load(path)
    cluster = InfoCluster(cfg)
    # This test process asks the cluster over gRPC whether it is healthy: with the old certificate.
    rpc.use_tls(cfg.tls)
    try:
        cluster.start()
        bootstrap = cfg.gateways[0].address
        wait_for(lambda: gateway_ready(bootstrap), "gateway0 to serve")
        topic = f"rot-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(15)
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "rot", "enable.auto.commit": False})
        consumer.assign([TopicPartition(topic, 0, 0)])
        produced(producer, topic, b"before")
        assert consumed(consumer, 1) == [b"before"]

        # 1. Trust the new CA beside the old one, everywhere.
        (live / ".ca.crt.new").write_bytes((old / "ca.crt").read_bytes() + (new / "ca.crt").read_bytes())
        os.replace(live / ".ca.crt.new", live / "ca.crt")
        cluster.hang_up_all()
        for name in cluster.procs:
            wait_for(lambda n=name: cluster.log(n).count(RELOADED) == 1, f"{name} to reload")
        produced(producer, topic, b"trusting both")

        # A file replaced halfway (the new certificate, the old key) is refused, and logged.
        install(new, live, ("server.crt",))
        leaf = "leaf0"
        cluster.procs[leaf].send_signal(signal.SIGHUP)
        wait_for(lambda: FAILED in cluster.log(leaf), "the failed reload to be logged")
        assert "KEY_VALUES_MISMATCH" in cluster.log(leaf)

        # 2. Present the new certificate, everywhere.
        install(new, live, ("server.key",))
        cluster.hang_up_all()
        for name in cluster.procs:
            wait_for(lambda n=name: cluster.log(n).count(RELOADED) == 2, f"{name} to reload again")
        assert all(p.poll() is None for p in cluster.procs.values()), cluster.logs()

        # The producer's and consumer's connections, and the gateway's gRPC streams, went on.
        produced(producer, topic, b"after")
        assert consumed(consumer, 2) == [b"trusting both", b"after"]

        # 3. A gateway that knows only the new CA and certificate: the servers it connects to must
        # present the new certificate, and accept its own.
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        install(new, fresh, ("ca.crt", "server.crt", "server.key"))
        [port] = free_ports(1)
        fresh_toml = tmp_path / "fresh.toml"
        fresh_toml.write_text(toml.replace(tls_table(live), tls_table(fresh)) + (
            f'\n[[gateway]]\nname = "gateway1"\nnode_id = 1\naddress = "127.0.0.1:{port}"\n'))
        cluster.start_process("gateway", "gateway1", fresh_toml)
        wait_for(lambda: gateway_ready(f"127.0.0.1:{port}"), "the new gateway to serve", timeout_s=60)
        # Partition 1 is the new gateway's (partition % gateways): its appends and reads go over
        # its own gRPC channels to the sequencers and replicas.
        joined = Producer({"bootstrap.servers": f"127.0.0.1:{port}", "linger.ms": 0})
        produced(joined, topic, b"through the new gateway", partition=1)
        reader = Consumer({"bootstrap.servers": f"127.0.0.1:{port}", "group.id": "rot-new",
                           "enable.auto.commit": False})
        reader.assign([TopicPartition(topic, 1, 0)])
        assert consumed(reader, 1) == [b"through the new gateway"]
        reader.close()
        consumer.close()
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        rpc.use_tls(None)
        cluster.stop()
