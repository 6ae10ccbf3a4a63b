"""SASL (PLAIN, SCRAM-SHA-256/512), TLS and ACLs against one cluster with every listener kind.

The cluster runs gRPC over TLS too, with the authorizer on: `admin` and the
client cert CN=admin-cert are super users, `alice` gets ACLs in the tests.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from tls_helpers import generate_expired_cert

from cluster import Cluster, free_ports, two_level_toml
from flexlog.core import config as config_mod
from flexlog.core import rpc
from flexlog.core.tls import generate_dev_certs
from flexlog.gateway.protocol import ApiKey, ErrorCode, encode_request
from wire_client import WireClient, gateway_ready

FLEXLOG = [sys.executable, "-m", "flexlog.cli"]
PASSWORDS = {"admin": "adm1n-s3cret-pw", "alice": "al1ce-s3cret-pw", "victim": "v1ctim-s3cret-pw",
             "mallory": "m4llory-s3cret-pw"}
MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class Secured:
    def __init__(self, cluster: Cluster, certs: Path, listeners: dict[str, str]) -> None:
        self.cluster = cluster
        self.certs = certs
        self.listeners = listeners  # protocol -> host:port


def add_user(config: Path, name: str, password: str) -> None:
    done = subprocess.run([*FLEXLOG, "users", "add", name, "--config", str(config), "--password-stdin"],
                          input=password + "\n", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    tmp = tmp_path_factory.mktemp("secure")
    certs = tmp / "certs"
    generate_dev_certs(certs, clients=("admin-cert", "nobody-cert"))
    generate_expired_cert(certs, "expired")
    sasl_port, ssl_port, sasl_ssl_port = free_ports(3)
    listeners = {"SASL_PLAINTEXT": f"127.0.0.1:{sasl_port}", "SSL": f"127.0.0.1:{ssl_port}",
                 "SASL_SSL": f"127.0.0.1:{sasl_ssl_port}"}
    extra = (f'[tls]\nca_file = "{certs}/ca.crt"\ncert_file = "{certs}/server.crt"\n'
             f'key_file = "{certs}/server.key"\nclient_auth = "requested"\ngrpc = true\n\n'
             '[security]\nauthorizer = true\nsuper_users = ["User:admin", "User:CN=admin-cert"]\n'
             'connection_failed_authentication_delay_ms = 200\n')
    toml = two_level_toml(tmp / "data", storage="memory", gateways=1, extra=extra, metrics=True)
    toml += "listeners = [" + ", ".join(f'{{ protocol = "{p}", address = "{a}" }}'
                                         for p, a in listeners.items()) + "]\n"
    path = tmp / "cluster.toml"
    path.write_text(toml)
    cfg = config_mod.load(path)
    cluster = Cluster(cfg)
    # This test process asks the cluster over gRPC whether it is healthy: over TLS too.
    rpc.use_tls(cfg.tls)
    try:
        cluster.start()
        deadline = time.monotonic() + 30
        while not gateway_ready(cfg.gateways[0].address):
            assert time.monotonic() < deadline, cluster.logs()
            time.sleep(0.1)
        for name, password in PASSWORDS.items():
            add_user(path, name, password)
        yield Secured(cluster, certs, listeners)
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        rpc.use_tls(None)
        cluster.stop()


def gateway_log(secured: Secured) -> str:
    return (secured.cluster.config.data_dir / "logs" / "gateway0.log").read_text()


def topic_name() -> str:
    return f"sec-{uuid.uuid4().hex[:10]}"


def librdkafka_conf(sec: Secured, protocol: str, mechanism: str | None, user: str = "admin",
                    password: str | None = None, cert: str | None = None) -> dict[str, str]:
    conf = {"bootstrap.servers": sec.listeners[protocol], "security.protocol": protocol}
    if mechanism:
        conf.update({"sasl.mechanism": mechanism, "sasl.username": user,
                     "sasl.password": PASSWORDS.get(user, "") if password is None else password})
    if protocol.endswith("SSL"):
        conf["ssl.ca.location"] = str(sec.certs / "ca.crt")
        if cert:
            conf.update({"ssl.certificate.location": str(sec.certs / f"{cert}.crt"),
                         "ssl.key.location": str(sec.certs / f"{cert}.key")})
    return conf


def python_ssl(sec: Secured, cert: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(sec.certs / "ca.crt"))
    if cert:
        ctx.load_cert_chain(sec.certs / f"{cert}.crt", sec.certs / f"{cert}.key")
    return ctx


# (protocol, mechanism, client cert): SSL authenticates by the cert's CN.
CASES = [("SASL_PLAINTEXT", m, None) for m in MECHANISMS] + [("SASL_SSL", m, None) for m in MECHANISMS]
CASES.append(("SSL", None, "admin-cert"))
CASE_IDS = [f"{p}-{m or c}" for p, m, c in CASES]


def confluent_round_trip(sec: Secured, protocol: str, mechanism: str | None, cert: str | None) -> None:
    topic = topic_name()
    conf = librdkafka_conf(sec, protocol, mechanism, cert=cert)
    producer = Producer(conf)
    producer.produce(topic, b"via-confluent")
    assert producer.flush(20) == 0
    consumer = Consumer({**conf, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                assert msg.value() == b"via-confluent"
                return
        raise AssertionError("nothing consumed")
    finally:
        consumer.close()


def python_client_conf(sec: Secured, protocol: str, mechanism: str | None,
                       cert: str | None) -> dict[str, object]:
    """kafka-python's and aiokafka's settings (they share the names) for admin on a listener."""
    conf: dict[str, object] = {"bootstrap_servers": sec.listeners[protocol], "security_protocol": protocol}
    if mechanism:
        conf.update(sasl_mechanism=mechanism, sasl_plain_username="admin",
                    sasl_plain_password=PASSWORDS["admin"])
    if protocol.endswith("SSL"):
        conf["ssl_context"] = python_ssl(sec, cert)
    return conf


def kafka_python_round_trip(sec: Secured, protocol: str, mechanism: str | None, cert: str | None) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    topic = topic_name()
    conf = python_client_conf(sec, protocol, mechanism, cert)
    producer = KafkaProducer(**conf)
    producer.send(topic, b"via-kafka-python").get(timeout=20)
    producer.close()
    consumer = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=15000, **conf)
    try:
        assert next(iter(consumer)).value == b"via-kafka-python"
    finally:
        consumer.close()


def aiokafka_round_trip(sec: Secured, protocol: str, mechanism: str | None, cert: str | None) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = topic_name()
    conf = python_client_conf(sec, protocol, mechanism, cert)

    async def run() -> None:
        producer = AIOKafkaProducer(**conf)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"via-aiokafka")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", **conf)
        await consumer.start()
        try:
            msg = await asyncio.wait_for(consumer.getone(), 20)
            assert msg.value == b"via-aiokafka"
        finally:
            await consumer.stop()

    asyncio.run(run())


def kcat_args(sec: Secured, protocol: str, mechanism: str | None, cert: str | None) -> list[str]:
    conf = librdkafka_conf(sec, protocol, mechanism, cert=cert)
    args = ["-b", conf.pop("bootstrap.servers")]
    for key, value in conf.items():
        args += ["-X", f"{key}={value}"]
    return args


def kcat_round_trip(sec: Secured, protocol: str, mechanism: str | None, cert: str | None) -> None:
    if shutil.which("kcat") is None:
        pytest.skip("kcat is not installed")
    topic = topic_name()
    args = kcat_args(sec, protocol, mechanism, cert)
    done = subprocess.run(["kcat", *args, "-P", "-t", topic, "-p", "0"], input=b"via-kcat\n",
                          capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    done = subprocess.run(["kcat", *args, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e"],
                          capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"via-kcat\n"


CLIENTS = {"confluent": confluent_round_trip, "kafka-python": kafka_python_round_trip,
           "aiokafka": aiokafka_round_trip, "kcat": kcat_round_trip}


@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize(("protocol", "mechanism", "cert"), CASES, ids=CASE_IDS)
def test_clients_connect_with_every_mechanism(secured, client, protocol, mechanism, cert):
    CLIENTS[client](secured, protocol, mechanism, cert)


def handshake(client: WireClient, mechanism: str, version: int = 1) -> dict:
    return client.call(ApiKey.SASL_HANDSHAKE, version, {"mechanism": mechanism})


def test_wire_failure_answers_58_and_closes(secured):
    client = WireClient(secured.listeners["SASL_PLAINTEXT"])
    try:
        assert handshake(client, "PLAIN")["error_code"] == ErrorCode.NONE
        reply = client.call(ApiKey.SASL_AUTHENTICATE, 2, {"auth_bytes": b"\0alice\0not-her-password"})
        assert reply["error_code"] == ErrorCode.SASL_AUTHENTICATION_FAILED
        assert client.read_frame() is None
    finally:
        client.close()


def test_other_apis_before_authentication_are_illegal(secured):
    client = WireClient(secured.listeners["SASL_PLAINTEXT"])
    try:
        assert client.call(ApiKey.API_VERSIONS, 3, {})["error_code"] == ErrorCode.NONE
        reply = client.call(ApiKey.SASL_AUTHENTICATE, 1, {"auth_bytes": b"\0admin\0x"})
        assert reply["error_code"] == ErrorCode.ILLEGAL_SASL_STATE
        assert client.read_frame() is None
    finally:
        client.close()
    client = WireClient(secured.listeners["SASL_PLAINTEXT"])
    try:
        client.correlation += 1
        client.send_raw(encode_request(ApiKey.METADATA, 1, client.correlation, {"topics": []}))
        assert client.read_frame() is None  # Metadata has no error code to carry it: closed
    finally:
        client.close()


def test_unsupported_mechanism_is_refused(secured):
    client = WireClient(secured.listeners["SASL_PLAINTEXT"])
    try:
        reply = handshake(client, "GSSAPI")
        assert reply["error_code"] == ErrorCode.UNSUPPORTED_SASL_MECHANISM
        assert set(reply["mechanisms"]) == set(MECHANISMS)
    finally:
        client.close()


def test_handshake_v0_raw_plain_token(secured):
    client = WireClient(secured.listeners["SASL_PLAINTEXT"])
    try:
        assert handshake(client, "PLAIN", version=0)["error_code"] == ErrorCode.NONE
        token = b"\0admin\0" + PASSWORDS["admin"].encode()
        client.send_raw(len(token).to_bytes(4, "big") + token)
        assert client.read_frame() == b""  # an empty server token: authenticated
        assert client.call(ApiKey.METADATA, 1, {"topics": []})["brokers"]
    finally:
        client.close()


def test_metadata_advertises_the_listener_used(secured):
    for protocol in ("SASL_PLAINTEXT", "SSL"):
        conf = librdkafka_conf(secured, protocol, "PLAIN" if protocol.startswith("SASL") else None,
                               cert="admin-cert")
        brokers = AdminClient(conf).list_topics(timeout=10).brokers
        assert [f"{b.host}:{b.port}" for b in brokers.values()] == [secured.listeners[protocol]]


def test_expired_client_cert_is_refused(secured):
    host, _, port = secured.listeners["SSL"].rpartition(":")
    # TLS 1.3 reports the server's refusal of the client cert on the first read, or just closes.
    try:
        with (socket.create_connection((host, int(port)), timeout=5) as raw,
              python_ssl(secured, "expired").wrap_socket(raw, server_hostname="localhost") as tls):
            tls.sendall(encode_request(ApiKey.API_VERSIONS, 0, 1, {}))
            assert tls.recv(1) == b""
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        pass
    errors: list[str] = []
    conf = librdkafka_conf(secured, "SSL", None, cert="expired")
    admin = AdminClient({**conf, "error_cb": lambda err: errors.append(str(err))})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=3)
    admin.poll(1)
    assert errors


def test_failed_logins_are_delayed_and_logged_without_passwords(secured):
    user, guesses = "bruteforced", [f"guess-{i}-secret" for i in range(4)]
    took = []
    for guess in guesses:
        client = WireClient(secured.listeners["SASL_PLAINTEXT"])
        try:
            handshake(client, "PLAIN")
            started = time.monotonic()
            reply = client.call(ApiKey.SASL_AUTHENTICATE, 2, {"auth_bytes": f"\0{user}\0{guess}".encode()})
            took.append(time.monotonic() - started)
            assert reply["error_code"] == ErrorCode.SASL_AUTHENTICATION_FAILED
        finally:
            client.close()
    # Each failure is answered 200 ms late, the fourth no later than the first: nothing accumulates.
    assert all(0.18 <= t < 0.7 for t in took), took
    time.sleep(0.3)
    assert gateway_log(secured).count(f"SASL PLAIN authentication failed for user '{user}'") == 4
    leaked = [*guesses, *PASSWORDS.values()]
    log_text = "".join(p.read_text() for p in (secured.cluster.config.data_dir / "logs").glob("*.log"))
    assert not [s for s in leaked if s in log_text]


def admin_wire(secured: Secured) -> WireClient:
    client = WireClient(secured.listeners["SASL_PLAINTEXT"])
    handshake(client, "PLAIN")
    token = b"\0admin\0" + PASSWORDS["admin"].encode()
    assert client.call(ApiKey.SASL_AUTHENTICATE, 2, {"auth_bytes": token})["error_code"] == 0
    return client


def acl_filter(**fields: object) -> dict:
    return {"resource_type_filter": 1, "resource_name_filter": None, "pattern_type_filter": 1,
            "principal_filter": None, "host_filter": None, "operation": 1, "permission_type": 1, **fields}


def test_acls_refuse_unauthorized_topics_and_groups(secured):
    prefix = f"alice-{uuid.uuid4().hex[:6]}-"
    acls = [{"resource_type": 2, "resource_name": prefix, "resource_pattern_type": 4,
             "principal": "User:alice", "host": "*", "operation": op, "permission_type": 3}
            for op in (4, 3, 5)]  # WRITE, READ, CREATE on topics alice-...
    acls.append({"resource_type": 3, "resource_name": prefix, "resource_pattern_type": 4,
                 "principal": "User:alice", "host": "*", "operation": 3, "permission_type": 3})
    admin = admin_wire(secured)
    try:
        results = admin.call(ApiKey.CREATE_ACLS, 3, {"creations": acls})["results"]
        assert [r["error_code"] for r in results] == [0] * 4
        found = admin.call(ApiKey.DESCRIBE_ACLS, 3, acl_filter(principal_filter="User:alice"))
        assert {r["resource_name"] for r in found["resources"]} >= {prefix}
    finally:
        admin.close()

    alice = librdkafka_conf(secured, "SASL_SSL", "SCRAM-SHA-512", user="alice")
    producer = Producer(alice)
    producer.produce(prefix + "ok", b"allowed")
    assert producer.flush(20) == 0

    errors = []
    producer.produce(f"other-{uuid.uuid4().hex[:6]}", b"denied",
                     on_delivery=lambda err, msg: errors.append(err))
    producer.flush(20)
    assert errors and errors[0] is not None and errors[0].name() == "TOPIC_AUTHORIZATION_FAILED"

    client = WireClient(secured.listeners["SASL_PLAINTEXT"])
    try:
        handshake(client, "PLAIN")
        token = b"\0alice\0" + PASSWORDS["alice"].encode()
        assert client.call(ApiKey.SASL_AUTHENTICATE, 2, {"auth_bytes": token})["error_code"] == 0
        join = {"group_id": "", "session_timeout_ms": 10_000, "rebalance_timeout_ms": 10_000,
                "member_id": "", "protocol_type": "consumer",
                "protocols": [{"name": "range", "metadata": b""}]}
        denied = client.call(ApiKey.JOIN_GROUP, 5, {**join, "group_id": f"bob-{prefix}"})
        assert denied["error_code"] == ErrorCode.GROUP_AUTHORIZATION_FAILED
        allowed = client.call(ApiKey.JOIN_GROUP, 5, {**join, "group_id": prefix + "g"})
        assert allowed["error_code"] != ErrorCode.GROUP_AUTHORIZATION_FAILED
        listing = client.call(ApiKey.METADATA, 1, {"topics": None})
        assert {t["name"] for t in listing["topics"]} == {prefix + "ok"}
    finally:
        client.close()

    admin = admin_wire(secured)
    try:
        deleted = admin.call(ApiKey.DELETE_ACLS, 3, {"filters": [acl_filter(
            resource_type_filter=2, resource_name_filter=prefix, pattern_type_filter=4,
            principal_filter="User:alice")]})
        assert len(deleted["filter_results"][0]["matching_acls"]) == 3
    finally:
        admin.close()
    errors.clear()
    producer.produce(prefix + "ok", b"no longer", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(20)
    assert errors and errors[0] is not None and errors[0].name() == "TOPIC_AUTHORIZATION_FAILED"


def test_users_list_and_remove(secured):
    config = str(secured.cluster.config.path)
    add_user(secured.cluster.config.path, "temp-user", "temp-password")
    listed = subprocess.run([*FLEXLOG, "users", "list", "--config", config], capture_output=True,
                            text=True, timeout=60)
    assert {"admin", "alice", "temp-user"} <= set(listed.stdout.split())
    removed = subprocess.run([*FLEXLOG, "users", "remove", "temp-user", "--config", config],
                             capture_output=True, text=True, timeout=60)
    assert removed.returncode == 0, removed.stderr
    admin = AdminClient(librdkafka_conf(secured, "SASL_PLAINTEXT", "PLAIN", user="temp-user",
                                        password="temp-password"))
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)


def test_create_and_describe_acls_over_the_wire(secured):
    client = WireClient(secured.listeners["SASL_PLAINTEXT"])
    try:
        handshake(client, "PLAIN")
        token = b"\0admin\0" + PASSWORDS["admin"].encode()
        assert client.call(ApiKey.SASL_AUTHENTICATE, 2, {"auth_bytes": token})["error_code"] == 0
        acl = {"resource_type": 2, "resource_name": "wire-", "resource_pattern_type": 4,
               "principal": "User:carol", "host": "*", "operation": 3, "permission_type": 3}
        assert client.call(ApiKey.CREATE_ACLS, 3, {"creations": [acl]})["results"][0]["error_code"] == 0
        found = client.call(ApiKey.DESCRIBE_ACLS, 3, {
            "resource_type_filter": 1, "resource_name_filter": None, "pattern_type_filter": 1,
            "principal_filter": "User:carol", "host_filter": None, "operation": 1, "permission_type": 1})
        assert found["resources"][0]["resource_name"] == "wire-"
    finally:
        client.close()


def wire_from(secured: Secured, source: str) -> WireClient:
    """A client on the SASL listener from another loopback address, i.e. another peer host."""
    host, _, port = secured.listeners["SASL_PLAINTEXT"].rpartition(":")
    client = WireClient(secured.listeners["SASL_PLAINTEXT"])
    client.sock.close()
    client.sock = socket.create_connection((host, int(port)), timeout=10, source_address=(source, 0))
    return client


def scram_login(client: WireClient, mechanism: str, user: str, password: str) -> dict:
    """A SCRAM client (RFC 5802) over SaslAuthenticate; the reply to the final message."""
    hash_name = "sha256" if mechanism.endswith("256") else "sha512"
    assert handshake(client, mechanism)["error_code"] == 0
    bare = f"n={user},r=clientnonce123"
    first = client.call(ApiKey.SASL_AUTHENTICATE, 2, {"auth_bytes": f"n,,{bare}".encode()})
    if first["error_code"]:
        return first
    server_first = first["auth_bytes"].decode()
    attrs = dict(part.split("=", 1) for part in server_first.split(","))
    salted = hashlib.pbkdf2_hmac(hash_name, password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", hash_name).digest()
    without_proof = f"c=biws,r={attrs['r']}"
    auth_message = f"{bare},{server_first},{without_proof}".encode()
    signature = hmac.new(hashlib.new(hash_name, client_key).digest(), auth_message, hash_name).digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature, strict=True))).decode()
    return client.call(ApiKey.SASL_AUTHENTICATE, 2, {"auth_bytes": f"{without_proof},p={proof}".encode()})


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize(("user", "password"), [("victim", "wrong-password"), ("ghost", "whatever-pw"),
                                                ("victim", PASSWORDS["victim"])],
                         ids=["wrong-password", "unknown-user", "right-password"])
def test_credentials_are_checked(secured, mechanism, user, password):
    client = WireClient(secured.listeners["SASL_PLAINTEXT"])
    try:
        if mechanism == "PLAIN":
            assert handshake(client, mechanism)["error_code"] == 0
            reply = client.call(ApiKey.SASL_AUTHENTICATE, 2,
                                {"auth_bytes": f"\0{user}\0{password}".encode()})
        else:
            reply = scram_login(client, mechanism, user, password)
        if password == PASSWORDS.get(user):
            assert reply["error_code"] == 0
            assert client.call(ApiKey.METADATA, 1, {"topics": []})["brokers"]
        else:
            assert reply["error_code"] == ErrorCode.SASL_AUTHENTICATION_FAILED
            assert client.read_frame() is None
    finally:
        client.close()


def test_confluent_reports_a_wrong_password(secured):
    errors: list[str] = []
    conf = librdkafka_conf(secured, "SASL_PLAINTEXT", "SCRAM-SHA-512", user="victim", password="nope")
    admin = AdminClient({**conf, "error_cb": lambda err: errors.append(str(err)),
                         "reconnect.backoff.ms": 10_000, "reconnect.backoff.max.ms": 10_000})
    deadline = time.monotonic() + 10
    while not errors and time.monotonic() < deadline:
        admin.poll(0.2)
    assert any("Authentication failed" in e for e in errors), errors
    del admin


def login_wire(secured: Secured, user: str) -> WireClient:
    client = WireClient(secured.listeners["SASL_PLAINTEXT"])
    handshake(client, "PLAIN")
    token = f"\0{user}\0{PASSWORDS[user]}".encode()
    assert client.call(ApiKey.SASL_AUTHENTICATE, 2, {"auth_bytes": token})["error_code"] == 0
    return client


def test_acls_guard_the_admin_and_group_apis_too(secured):
    prefix = f"carol-{uuid.uuid4().hex[:6]}-"
    # (resource type, operation): topics WRITE, READ, CREATE, DESCRIBE_CONFIGS; groups READ.
    grants = [(2, 4), (2, 3), (2, 5), (2, 10), (3, 3)]
    admin = admin_wire(secured)
    try:
        admin.call(ApiKey.CREATE_TOPICS, 5, {"topics": [
            {"name": prefix + "t", "num_partitions": 1, "replication_factor": -1},
            {"name": f"other-{prefix}t", "num_partitions": 1, "replication_factor": -1}],
            "timeout_ms": 10_000})
        results = admin.call(ApiKey.CREATE_ACLS, 3, {"creations": [
            {"resource_type": rt, "resource_name": prefix, "resource_pattern_type": 4,
             "principal": "User:alice", "host": "*", "operation": op, "permission_type": 3}
            for rt, op in grants]})["results"]
        assert [r["error_code"] for r in results] == [0] * len(grants)
    finally:
        admin.close()
    denied_group, own_group = f"bob-{prefix}g", prefix + "g"
    own_topic, other_topic = prefix + "t", f"other-{prefix}t"
    client = login_wire(secured, "alice")
    try:
        found = client.call(ApiKey.FIND_COORDINATOR, 3, {"key": denied_group, "key_type": 0})
        assert found["error_code"] == ErrorCode.GROUP_AUTHORIZATION_FAILED
        assert client.call(ApiKey.FIND_COORDINATOR, 3, {"key": own_group, "key_type": 0})["error_code"] == 0
        fetched = client.call(ApiKey.OFFSET_FETCH, 5, {"group_id": denied_group, "topics": None})
        assert fetched["error_code"] == ErrorCode.GROUP_AUTHORIZATION_FAILED
        described = client.call(ApiKey.DESCRIBE_GROUPS, 5, {"groups": [denied_group, own_group],
                                                            "include_authorized_operations": False})
        codes = [g["error_code"] for g in described["groups"]]
        assert codes[0] == ErrorCode.GROUP_AUTHORIZATION_FAILED
        assert codes[1] != ErrorCode.GROUP_AUTHORIZATION_FAILED
        deleted = client.call(ApiKey.DELETE_GROUPS, 2, {"groups_names": [own_group]})
        assert deleted["results"][0]["error_code"] == ErrorCode.GROUP_AUTHORIZATION_FAILED
        grown = client.call(ApiKey.CREATE_PARTITIONS, 1, {"topics": [
            {"name": own_topic, "count": 2, "assignments": None}], "timeout_ms": 10_000,
            "validate_only": True})
        assert grown["results"][0]["error_code"] == ErrorCode.TOPIC_AUTHORIZATION_FAILED
        trimmed = client.call(ApiKey.DELETE_RECORDS, 1, {"topics": [
            {"name": other_topic, "partitions": [{"partition_index": 0, "offset": 0}]}],
            "timeout_ms": 10_000})
        assert trimmed["topics"][0]["partitions"][0]["error_code"] == ErrorCode.TOPIC_AUTHORIZATION_FAILED
        configs = client.call(ApiKey.DESCRIBE_CONFIGS, 1, {"resources": [
            {"resource_type": 2, "resource_name": other_topic, "configuration_keys": None},
            {"resource_type": 2, "resource_name": own_topic, "configuration_keys": None}],
            "include_synonyms": False})
        assert [r["error_code"] for r in configs["results"]] == [ErrorCode.TOPIC_AUTHORIZATION_FAILED, 0]
        # WRITE on some topic is enough for an idempotent producer id (as in Kafka 3.0+).
        pid = client.call(ApiKey.INIT_PRODUCER_ID, 4, {"transactional_id": None,
                                                      "transaction_timeout_ms": 60_000,
                                                      "producer_id": -1, "producer_epoch": -1})
        assert pid["error_code"] == 0 and pid["producer_id"] >= 0
    finally:
        client.close()
    victim = login_wire(secured, "victim")
    try:
        pid = victim.call(ApiKey.INIT_PRODUCER_ID, 4, {"transactional_id": None,
                                                      "transaction_timeout_ms": 60_000,
                                                      "producer_id": -1, "producer_epoch": -1})
        assert pid["error_code"] == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    finally:
        victim.close()


def test_replica_admin_apis_need_the_cluster_operations_kafka_asks_for(secured):
    """DESCRIBE on the cluster for DescribeLogDirs and ListPartitionReassignments, ALTER for
    AlterReplicaLogDirs, ElectLeaders and AlterPartitionReassignments; alice has neither."""
    wanted = [{"topic": "t", "partitions": [0]}]
    client = login_wire(secured, "alice")
    try:
        assert client.call(ApiKey.DESCRIBE_LOG_DIRS, 4, {"topics": None}) == {
            "throttle_time_ms": 0, "error_code": ErrorCode.CLUSTER_AUTHORIZATION_FAILED, "results": []}
        listed = client.call(ApiKey.LIST_PARTITION_REASSIGNMENTS, 0, {"topics": None})
        assert listed["error_code"] == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        moved = client.call(ApiKey.ALTER_REPLICA_LOG_DIRS, 2, {"dirs": [
            {"path": "/x", "topics": [{"name": "t", "partitions": [0]}]}]})
        assert moved["results"][0]["partitions"][0]["error_code"] == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        elected = client.call(ApiKey.ELECT_LEADERS, 2, {"election_type": 0, "topic_partitions": wanted})
        assert elected["error_code"] == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        assert elected["replica_election_results"][0]["partition_result"][0]["error_code"] == (
            ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
        reassigned = client.call(ApiKey.ALTER_PARTITION_REASSIGNMENTS, 0, {"topics": [
            {"name": "t", "partitions": [{"partition_index": 0, "replicas": [0]}]}]})
        assert reassigned["error_code"] == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    finally:
        client.close()
    admin = admin_wire(secured)
    try:
        assert admin.call(ApiKey.DESCRIBE_LOG_DIRS, 4, {"topics": None})["error_code"] == ErrorCode.NONE
        assert admin.call(ApiKey.LIST_PARTITION_REASSIGNMENTS, 0, {"topics": None})["error_code"] == 0
    finally:
        admin.close()


def test_confluent_admin_client_manages_acls(secured):
    admin = AdminClient(librdkafka_conf(secured, "SASL_PLAINTEXT", "PLAIN", user="admin"))
    name = f"acl-{uuid.uuid4().hex[:6]}"
    binding = AclBinding(ResourceType.TOPIC, name, ResourcePatternType.LITERAL, "User:alice", "*",
                         AclOperation.READ, AclPermissionType.ALLOW)
    for fut in admin.create_acls([binding], request_timeout=20).values():
        assert fut.result(30) is None
    query = AclBindingFilter(ResourceType.TOPIC, name, ResourcePatternType.ANY, None, None,
                             AclOperation.ANY, AclPermissionType.ANY)
    assert admin.describe_acls(query, request_timeout=20).result(30) == [binding]
    for fut in admin.delete_acls([query], request_timeout=20).values():
        assert fut.result(30) == [binding]
    assert admin.describe_acls(query, request_timeout=20).result(30) == []


def sasl_failures(secured: Secured) -> float:
    """flexlog_gateway_sasl_authentication_failures_total over every mechanism, from /metrics."""
    gateway = secured.cluster.config.gateways[0]
    url = f"http://127.0.0.1:{gateway.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("flexlog_gateway_sasl_authentication_failures_total{"))


def guess_alice(secured: Secured, stop: threading.Event, took: list[float], errors: list[BaseException]
                ) -> None:
    """Wrong passwords for alice, one connection after another, as fast as they are answered."""
    try:
        while not stop.is_set():
            client = WireClient(secured.listeners["SASL_PLAINTEXT"], timeout_s=20)
            try:
                handshake(client, "PLAIN")
                started = time.monotonic()
                reply = client.call(ApiKey.SASL_AUTHENTICATE, 2, {"auth_bytes": b"\0alice\0not-her-pw"})
                took.append(time.monotonic() - started)
                assert reply["error_code"] == ErrorCode.SASL_AUTHENTICATION_FAILED
            finally:
                client.close()
    except BaseException as exc:  # reported by the test, not lost in the thread
        errors.append(exc)


def produce_once(conf: dict[str, str], topic: str) -> tuple[float, str | None]:
    """Seconds until one message's delivery report, and its error name (None: delivered)."""
    outcome: list[str | None] = []
    producer = Producer({**conf, "message.timeout.ms": 5000})
    started = time.monotonic()
    producer.produce(topic, b"x", on_delivery=lambda err, msg: outcome.append(err and err.name()))
    producer.flush(10)
    return time.monotonic() - started, outcome[0] if outcome else "no delivery report"


ALICE_FAILED = "authentication failed for user 'alice'"


def test_wrong_passwords_for_alice_lock_out_nobody(secured):
    """The lockout of issue 19: a stranger's failures must not slow anyone else's login."""
    topic = topic_name()
    admin = admin_wire(secured)
    try:
        created = admin.call(ApiKey.CREATE_TOPICS, 5, {"topics": [
            {"name": topic, "num_partitions": 1, "replication_factor": -1}], "timeout_ms": 10_000})
        assert created["topics"][0]["error_code"] == 0
        granted = admin.call(ApiKey.CREATE_ACLS, 3, {"creations": [
            {"resource_type": 2, "resource_name": topic, "resource_pattern_type": 3,
             "principal": "User:alice", "host": "*", "operation": 4, "permission_type": 3}]})
        assert granted["results"][0]["error_code"] == 0
    finally:
        admin.close()
    alice = librdkafka_conf(secured, "SASL_PLAINTEXT", "SCRAM-SHA-512", user="alice")
    mallory = librdkafka_conf(secured, "SASL_PLAINTEXT", "SCRAM-SHA-256", user="mallory")
    baseline, error = produce_once(alice, topic)
    assert error is None, error

    failures_before = sasl_failures(secured)
    logged_before = gateway_log(secured).count(ALICE_FAILED)
    stop, took, thread_errors = threading.Event(), [], []
    guesser = threading.Thread(target=guess_alice, args=(secured, stop, took, thread_errors))
    # A misconfigured librdkafka client too, reconnecting as fast as it is let.
    stranger = Producer({**librdkafka_conf(secured, "SASL_PLAINTEXT", "PLAIN", user="alice",
                                           password="still-not-her-pw"),
                         "reconnect.backoff.ms": 1, "reconnect.backoff.max.ms": 10})
    stranger.produce(topic, b"never")
    guesser.start()
    try:
        # A few seconds of guessing: the old per-user delay had grown to its 5 s cap by then.
        deadline = time.monotonic() + 3
        while len(took) < 10 and time.monotonic() < deadline:
            stranger.poll(0.1)
        assert took, "no guess answered"
        # alice (right password), mallory (no ACLs) and alice from another host, all meanwhile.
        alice_took, alice_error = produce_once(alice, topic)
        mallory_took, mallory_error = produce_once(mallory, topic)
        started = time.monotonic()
        other_host = wire_from(secured, "127.0.0.3")
        try:
            handshake(other_host, "PLAIN")
            token = b"\0alice\0" + PASSWORDS["alice"].encode()
            assert other_host.call(ApiKey.SASL_AUTHENTICATE, 2, {"auth_bytes": token})["error_code"] == 0
        finally:
            other_host.close()
        other_host_took = time.monotonic() - started
        stranger.poll(0.5)
    finally:
        stop.set()
        guesser.join(30)
        del stranger
    assert not thread_errors, thread_errors
    measured = {"baseline": baseline, "alice": (alice_took, alice_error),
                "mallory": (mallory_took, mallory_error), "alice from 127.0.0.3": other_host_took,
                "guesses": took}
    assert alice_error is None, measured
    assert mallory_error == "TOPIC_AUTHORIZATION_FAILED", measured
    # Normal latency: what alice took before the guessing started, give or take a second.
    assert alice_took < baseline + 1.0 and mallory_took < baseline + 1.0, measured
    assert other_host_took < 1.0, measured
    # The guesser's own failures are what is slowed, each by the configured delay, no more.
    assert all(0.15 <= t < 1.0 for t in took), measured
    time.sleep(0.5)
    # Each failure counted and logged exactly once.
    failed = sasl_failures(secured) - failures_before
    logged = gateway_log(secured).count(ALICE_FAILED) - logged_before
    assert failed >= len(took) and logged == failed, (failed, logged, len(took))



def test_consumer_offsets_topic_needs_describe_and_read_as_in_kafka(secured):
    """The derived __consumer_offsets reveals every group's commits: DESCRIBE on it for
    Metadata and ListOffsets, READ for Fetch, like any topic; produce stays refused."""
    name = "__consumer_offsets"
    list_offsets = {"replica_id": -1, "isolation_level": 0, "topics": [
        {"name": name, "partitions": [{"partition_index": 0, "current_leader_epoch": -1,
                                       "timestamp": -2}]}]}
    fetch = {"replica_id": -1, "max_wait_ms": 0, "min_bytes": 1, "max_bytes": 1 << 20,
             "isolation_level": 0, "session_id": 0, "session_epoch": -1, "rack_id": "",
             "forgotten_topics_data": [], "topics": [{"topic": name, "partitions": [
                 {"partition": 0, "current_leader_epoch": -1, "fetch_offset": 0,
                  "log_start_offset": -1, "partition_max_bytes": 1 << 20}]}]}

    def codes(client: WireClient) -> tuple[int, int, int]:
        [md] = client.call(ApiKey.METADATA, 9, {"topics": [{"name": name}],
                                                "allow_auto_topic_creation": False,
                                                "include_topic_authorized_operations": False})["topics"]
        listed = client.call(ApiKey.LIST_OFFSETS, 5, list_offsets)["topics"][0]["partitions"][0]
        fetched = client.call(ApiKey.FETCH, 11, fetch)["responses"][0]["partitions"][0]
        return md["error_code"], listed["error_code"], fetched["error_code"]

    def grant(operation: int, create: bool) -> None:
        acl = {"resource_type": 2, "resource_name": name, "resource_pattern_type": 3,
               "principal": "User:alice", "host": "*", "operation": operation, "permission_type": 3}
        admin = admin_wire(secured)
        try:
            if create:
                assert admin.call(ApiKey.CREATE_ACLS, 3, {"creations": [acl]})["results"][0][
                    "error_code"] == 0
            else:
                admin.call(ApiKey.DELETE_ACLS, 3, {"filters": [acl_filter(
                    resource_type_filter=2, resource_name_filter=name, pattern_type_filter=3,
                    principal_filter="User:alice", operation=operation)]})
        finally:
            admin.close()

    denied = ErrorCode.TOPIC_AUTHORIZATION_FAILED
    client = login_wire(secured, "alice")
    try:
        assert codes(client) == (denied, denied, denied)
        grant(8, create=True)  # DESCRIBE
        try:
            assert codes(client) == (ErrorCode.NONE, ErrorCode.NONE, denied)
            grant(3, create=True)  # READ
            try:
                assert codes(client) == (ErrorCode.NONE, ErrorCode.NONE, ErrorCode.NONE)
            finally:
                grant(3, create=False)
        finally:
            grant(8, create=False)
    finally:
        client.close()
