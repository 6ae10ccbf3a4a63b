"""Certificates over time, with real clients on a gateway's SSL listener: an expired server certificate
fails the handshake with a clear error on both sides, and certificates are rotated by replacing the
files and sending SIGHUP, without restarting the gateway or dropping established connections."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import ssl
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient
from kafka import KafkaProducer
from tls_helpers import generate_expired_cert

from cluster import Cluster, free_ports, started, two_level_toml
from flexlog.core import config as config_mod
from flexlog.core.tls import generate_dev_certs
from flexlog.gateway.protocol import ApiKey
from wire_client import WireClient, gateway_ready

SERVER_FILES = ("ca.crt", "server.crt", "server.key")


class SslGateway:
    def __init__(self, cluster: Cluster, live: Path, address: str) -> None:
        self.cluster = cluster
        self.live = live  # the directory [tls] points at
        self.address = address  # the SSL listener

    @property
    def pid(self) -> int:
        return self.cluster.procs["gateway0"].pid

    def log(self) -> str:
        return (self.cluster.config.data_dir / "logs" / "gateway0.log").read_text()

    def install(self, source: Path, files: tuple[str, ...] = SERVER_FILES) -> None:
        """Replace files as an operator should: each one whole, by a rename."""
        for name in files:
            shutil.copy(source / name, self.live / f".{name}.new")
            os.replace(self.live / f".{name}.new", self.live / name)

    def hang_up(self) -> None:
        os.kill(self.pid, signal.SIGHUP)

    def metric(self, name: str) -> float:
        gateway = self.cluster.config.gateways[0]
        url = f"http://127.0.0.1:{gateway.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as page:
            [value] = [line.split()[-1] for line in page.read().decode().splitlines()
                       if line.startswith(name + " ")]
        return float(value)


@contextmanager
def ssl_gateway(tmp: Path, first: Path) -> Iterator[SslGateway]:
    """A one-replica cluster whose gateway has a plaintext address and an SSL listener presenting
    first's server.crt (copied into a directory of its own, which the tests then change)."""
    live = tmp / "live"
    live.mkdir()
    for name in SERVER_FILES:
        shutil.copy(first / name, live / name)
    [ssl_port] = free_ports(1)
    address = f"127.0.0.1:{ssl_port}"
    extra = (f'[tls]\nca_file = "{live}/ca.crt"\ncert_file = "{live}/server.crt"\n'
             f'key_file = "{live}/server.key"\n')
    toml = two_level_toml(tmp / "data", storage="memory", replicas=1, gateways=1, extra=extra, metrics=True)
    toml += f'listeners = [{{ protocol = "SSL", address = "{address}" }}]\n'
    (tmp / "cluster.toml").write_text(toml)
    cluster = Cluster(config_mod.load(tmp / "cluster.toml"))
    with started(cluster):
        wait_for(lambda: gateway_ready(cluster.config.gateways[0].address), "the gateway to serve")
        yield SslGateway(cluster, live, address)


def wait_for(done: Callable[[], object], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"waited {timeout_s}s for {what}"
        time.sleep(0.1)


def fingerprint(cert_file: Path) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert_file.read_text())).hexdigest()


class TlsWireClient(WireClient):
    """Raw Kafka frames over TLS, trusting only cafile; knows the certificate the gateway presented."""

    def __init__(self, address: str, cafile: Path) -> None:
        super().__init__(address, timeout_s=5.0)
        context = ssl.create_default_context(cafile=str(cafile))
        self.sock = context.wrap_socket(self.sock, server_hostname=address.rpartition(":")[0])

    def fingerprint(self) -> str:
        der = self.sock.getpeercert(binary_form=True)
        assert der is not None
        return hashlib.sha256(der).hexdigest()

    def api_versions_answer(self) -> bool:
        return self.call(ApiKey.API_VERSIONS, 0, {})["error_code"] == 0


def producer_conf(gateway: SslGateway, cafile: Path, errors: list[str] | None = None) -> dict[str, object]:
    conf: dict[str, object] = {"bootstrap.servers": gateway.address, "security.protocol": "SSL",
                               "ssl.ca.location": str(cafile), "message.timeout.ms": 10_000}
    if errors is not None:
        conf["error_cb"] = lambda err: errors.append(str(err))
    return conf


def produce(producer: Producer, topic: str, value: bytes) -> None:
    failures: list[str] = []
    producer.produce(topic, value, on_delivery=lambda err, _: err and failures.append(str(err)))
    assert producer.flush(15) == 0 and not failures, failures


def refused(conf: dict[str, object], errors: list[str]) -> None:
    """A new librdkafka client gets no metadata and reports why through error_cb."""
    admin = AdminClient(conf)
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=3)
    admin.poll(1)
    assert errors


def handshake_failures(gateway: SslGateway) -> list[str]:
    return [line for line in gateway.log().splitlines() if "TLS handshake with" in line]


def test_an_expired_server_certificate_fails_the_handshake_clearly(tmp_path):
    certs = tmp_path / "certs"
    generate_dev_certs(certs, clients=())
    expired = tmp_path / "expired"
    expired.mkdir()
    shutil.copy(certs / "ca.crt", expired / "ca.crt")
    shutil.copy(certs / "ca.key", expired / "ca.key")
    generate_expired_cert(expired, "server", server=True)
    with ssl_gateway(tmp_path, expired) as gateway:
        pid = gateway.pid
        # The gateway starts (as Kafka brokers do) and says at once what is wrong, and with what.
        live_cert = gateway.live / "server.crt"
        assert (f"TLS certificate {live_cert} (serial " in gateway.log()
                and "expired at 2021-01-01 00:00:00 UTC (notAfter): clients will refuse every TLS "
                    "handshake" in gateway.log()), gateway.log()

        with pytest.raises(ssl.SSLCertVerificationError) as python_error:
            TlsWireClient(gateway.address, certs / "ca.crt")
        assert python_error.value.verify_message == "certificate has expired"
        errors: list[str] = []
        refused(producer_conf(gateway, certs / "ca.crt", errors), errors)
        # librdkafka does not pass on OpenSSL's reason; the gateway's log line has it.
        assert any("SSL handshake failed" in e and "certificate verify failed" in e for e in errors), errors

        wait_for(lambda: handshake_failures(gateway), "the handshake failures to be logged")
        lines = handshake_failures(gateway)
        for line in lines:
            assert (f"on the SSL listener {gateway.address} failed: " in line
                    and f"; this gateway's certificate {live_cert} expired at 2021-01-01 00:00:00 UTC "
                    "(notAfter), so clients refuse it" in line), line
        # The client's alert is the reason; a client that resets the connection before its alert
        # is read leaves a line with that reason instead, which still names the expiry.
        assert any("failed: SSLV3_ALERT_CERTIFICATE_EXPIRED; " in line for line in lines), lines
        # librdkafka retried for 3 s, every 100 ms or so: all counted, one line per host and reason.
        assert len(lines) <= 2 and gateway.metric("flexlog_gateway_tls_handshake_failures_total") > 5
        assert gateway.metric("flexlog_gateway_tls_certificate_not_after_seconds") == datetime(
            2021, 1, 1, tzinfo=UTC).timestamp()

        # Put right without a restart: a valid certificate and SIGHUP.
        gateway.install(certs)
        gateway.hang_up()
        wait_for(lambda: _serves(gateway, certs), "the new certificate to be served")
        producer = Producer(producer_conf(gateway, certs / "ca.crt"))
        produce(producer, f"cert-{uuid.uuid4().hex[:8]}", b"after the fix")
        assert gateway.metric("flexlog_gateway_tls_certificate_not_after_seconds") > time.time()
        assert gateway.pid == pid and gateway.cluster.procs["gateway0"].poll() is None


def _serves(gateway: SslGateway, ca: Path) -> bool:
    """True once a new connection gets the server.crt next to ca, as ca is the only CA trusted."""
    try:
        client = TlsWireClient(gateway.address, ca / "ca.crt")
    except ssl.SSLError:
        return False
    try:
        return client.fingerprint() == fingerprint(ca / "server.crt")
    finally:
        client.close()


def test_rotation_keeps_established_connections_and_needs_no_restart(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    generate_dev_certs(old, clients=())
    generate_dev_certs(new, clients=())  # a CA of its own: clients trusting only it tell the two apart
    topic = f"rotation-{uuid.uuid4().hex[:8]}"
    with ssl_gateway(tmp_path, old) as gateway:
        pid = gateway.pid
        raw = TlsWireClient(gateway.address, old / "ca.crt")
        assert raw.fingerprint() == fingerprint(old / "server.crt")
        confluent = Producer(producer_conf(gateway, old / "ca.crt"))
        produce(confluent, topic, b"before")
        kafka_python = KafkaProducer(bootstrap_servers=gateway.address, security_protocol="SSL",
                                     ssl_cafile=str(old / "ca.crt"))
        try:
            kafka_python.send(topic, b"before, kafka-python").get(timeout=15)

            # Halfway through replacing the files: the new certificate with the old key does not
            # load, so the gateway says so and keeps serving the old one.
            gateway.install(new, ("server.crt",))
            gateway.hang_up()
            wait_for(lambda: "certificate reload failed, still using" in gateway.log(),
                     "the failed reload to be logged")
            assert _serves(gateway, old)

            gateway.install(new)
            gateway.hang_up()
            wait_for(lambda: _serves(gateway, new), "the new certificate to be served")
            produce(Producer(producer_conf(gateway, new / "ca.crt")), topic, b"new client")
            errors: list[str] = []
            refused(producer_conf(gateway, old / "ca.crt", errors), errors)

            # The connections made before go on with the old certificate. The clients trust only
            # the old CA, so had any of them reconnected, its handshake would have failed.
            produce(confluent, topic, b"after")
            kafka_python.send(topic, b"after, kafka-python").get(timeout=15)
            assert raw.api_versions_answer() and raw.fingerprint() == fingerprint(old / "server.crt")
            assert gateway.pid == pid and gateway.cluster.procs["gateway0"].poll() is None
        finally:
            kafka_python.close(timeout=5)
            raw.close()
