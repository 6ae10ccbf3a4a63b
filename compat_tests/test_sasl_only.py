"""A cluster with no plaintext Kafka port: the gateway's one listener is SASL_SSL, gRPC runs over
TLS with client certs required, and `flexlog up`, `status`, `topics`, `groups` and `users` work,
logging in to the gateway as the configured admin."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from confluent_kafka import Producer
from process_helpers import wait_for_line

from cluster import two_level_toml
from flexlog.core import config as config_mod
from flexlog.core.tls import generate_dev_certs
from flexlog.gateway.protocol import ApiKey, encode_request

FLEXLOG = [sys.executable, "-m", "flexlog.cli"]
ADMIN_PASSWORD = "adm1n-only-s3cret"


def flexlog(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FLEXLOG, *args], capture_output=True, text=True, timeout=60)


def sasl_only_config(tmp: Path) -> Path:
    certs = tmp / "certs"
    generate_dev_certs(certs, clients=("client",))
    (tmp / "admin.password").write_text(ADMIN_PASSWORD + "\n")
    extra = (f'[tls]\nca_file = "{certs}/ca.crt"\ncert_file = "{certs}/server.crt"\n'
             f'key_file = "{certs}/server.key"\nclient_auth = "required"\ngrpc = true\n\n'
             '[security]\nauthorizer = true\nsuper_users = ["User:admin"]\nadmin_user = "admin"\n'
             'admin_password_file = "admin.password"\n')
    toml = two_level_toml(tmp / "data", storage="memory", gateways=1, extra=extra)
    toml = toml.replace('name = "gateway0"\n', 'name = "gateway0"\nprotocol = "SASL_SSL"\n')
    (tmp / "cluster.toml").write_text(toml)
    return tmp / "cluster.toml"


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_a_cluster_without_a_plaintext_port(tmp_path):
    path = sasl_only_config(tmp_path)
    cfg = config_mod.load(path)
    [gateway] = cfg.gateways
    assert [lis.protocol for lis in gateway.listeners] == ["SASL_SSL"]
    certs = tmp_path / "certs"
    proc = subprocess.Popen([*FLEXLOG, "up", "--config", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    kids: list[int] = []
    try:
        # Ready means the launcher created the admin user and logged in as it over SASL_SSL.
        wait_for_line(proc, "cluster ready", timeout=90)
        kids = children_of(proc.pid)
        conf = {"bootstrap.servers": gateway.address, "security.protocol": "SASL_SSL",
                "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "admin",
                "sasl.password": ADMIN_PASSWORD, "ssl.ca.location": str(certs / "ca.crt"),
                "ssl.certificate.location": str(certs / "client.crt"),
                "ssl.key.location": str(certs / "client.key")}
        producer = Producer(conf)
        producer.produce("over-sasl-ssl", b"hello")
        assert producer.flush(20) == 0

        status = flexlog("status", "--config", str(path))
        assert status.returncode == 0, status.stdout + status.stderr
        assert "cluster healthy" in status.stdout and "SASL_SSL" in status.stdout
        topics = flexlog("topics", "--config", str(path))
        assert topics.returncode == 0 and "over-sasl-ssl" in topics.stdout, topics.stdout + topics.stderr
        groups = flexlog("groups", "--config", str(path))
        assert groups.returncode == 0, groups.stdout + groups.stderr
        users = flexlog("users", "list", "--config", str(path))
        assert users.returncode == 0 and "admin" in users.stdout.split(), users.stdout + users.stderr

        # A plaintext Kafka request to the gateway gets no Kafka answer: the port speaks TLS only.
        host, _, port = gateway.address.rpartition(":")
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            raw.sendall(encode_request(ApiKey.API_VERSIONS, 0, 7, {}))
            try:
                answer = raw.recv(64)
            except ConnectionResetError:
                answer = b""
        assert answer[4:8] != (7).to_bytes(4, "big"), answer

        # The CLI says why a gateway is not ready when the admin login is refused.
        wrong = tmp_path / "wrong.toml"
        wrong.write_text(path.read_text().replace('"admin.password"', '"wrong.password"'))
        (tmp_path / "wrong.password").write_text("not-the-password\n")
        refused = flexlog("status", "--config", str(wrong))
        assert refused.returncode == 1 and "logging in as admin failed" in refused.stdout, refused.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert kids and not [pid for pid in kids if Path(f"/proc/{pid}").exists()
                         and "zombie" not in Path(f"/proc/{pid}/status").read_text()]


def test_sasl_at_address_needs_an_admin_user(tmp_path):
    path = sasl_only_config(tmp_path)
    path.write_text(path.read_text().replace('admin_user = "admin"\nadmin_password_file = "admin.password"\n',
                                             ""))
    result = flexlog("status", "--config", str(path))
    assert result.returncode == 2 and "security.admin_user" in result.stderr, result.stderr
