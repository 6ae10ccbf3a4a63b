"""SCRAM on a cluster of two gateways: an unknown user's first reply is a real user's lookalike,
the same from both gateways, before and after a restart, and no slower.

Its own module, since test_security.py's cluster switches this process's gRPC to TLS.
"""

from __future__ import annotations

import base64
import signal
import statistics
import time
import uuid
from collections.abc import Iterator

import pytest
from test_security import PASSWORDS, add_user, handshake

from cluster import Cluster, free_ports, two_level_toml
from flexlog.core import config as config_mod
from flexlog.gateway.protocol import ApiKey
from wire_client import WireClient, gateway_ready


@pytest.fixture(scope="module")
def two_gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, list[str]]]:
    """Two gateways, each with a SASL_PLAINTEXT listener; yields the cluster and those listeners."""
    tmp = tmp_path_factory.mktemp("decoy")
    listeners = [f"127.0.0.1:{port}" for port in free_ports(2)]
    toml = two_level_toml(tmp / "data", storage="memory", gateways=2)
    for g, address in enumerate(listeners):
        toml = toml.replace(f'name = "gateway{g}"\n', f'name = "gateway{g}"\nlisteners = '
                            f'[{{ protocol = "SASL_PLAINTEXT", address = "{address}" }}]\n')
    path = tmp / "cluster.toml"
    path.write_text(toml)
    cluster = Cluster(config_mod.load(path))
    try:
        cluster.start()
        deadline = time.monotonic() + 30
        while not all(gateway_ready(gw.address) for gw in cluster.config.gateways):
            assert time.monotonic() < deadline, cluster.logs()
            time.sleep(0.1)
        add_user(path, "alice", PASSWORDS["alice"])
        yield cluster, listeners
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()


def scram_first(address: str, mechanism: str, user: str) -> dict[str, str]:
    """The attributes of the server's first SCRAM message to `user`."""
    client = WireClient(address)
    try:
        assert handshake(client, mechanism)["error_code"] == 0
        reply = client.call(ApiKey.SASL_AUTHENTICATE, 2, {"auth_bytes": f"n,,n={user},r=abc".encode()})
        assert reply["error_code"] == 0
        return dict(part.split("=", 1) for part in reply["auth_bytes"].decode().split(","))
    finally:
        client.close()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_unknown_users_look_alike_on_every_gateway(two_gateways, mechanism):
    cluster, listeners = two_gateways
    ghost = f"ghost-{uuid.uuid4().hex[:8]}"

    def salts_and_iterations(user: str) -> list[tuple[str, str]]:
        return [(a["s"], a["i"]) for a in (scram_first(address, mechanism, user) for address in listeners)]

    known, unknown = salts_and_iterations("alice"), salts_and_iterations(ghost)
    # Both gateways give an unknown user the same salt and iteration count, as they do a real one...
    assert unknown[0] == unknown[1] and known[0] == known[1], (known, unknown)
    # ...with a real one's shape, and another unknown user gets another salt.
    assert len(base64.b64decode(unknown[0][0])) == len(base64.b64decode(known[0][0]))
    assert unknown[0][1] == known[0][1]
    assert salts_and_iterations(f"{ghost}-2")[0][0] != unknown[0][0]
    # The decoy secret lives in __users, so a restarted gateway still answers the same.
    gateway = cluster.config.gateways[1]
    cluster.kill(gateway.name, signal.SIGTERM)
    cluster.start_process("gateway", gateway.name)
    deadline = time.monotonic() + 30
    while not gateway_ready(gateway.address):
        assert time.monotonic() < deadline, cluster.logs()
        time.sleep(0.1)
    assert salts_and_iterations(ghost) == unknown


def test_unknown_users_answer_as_fast_as_known_ones(two_gateways):
    _, listeners = two_gateways
    known, unknown = [], []
    for i in range(150):  # interleaved, so load from elsewhere on the machine hits both alike
        for user, took in (("alice", known), (f"ghost-{uuid.uuid4().hex[:8]}", unknown)):
            started = time.perf_counter()
            scram_first(listeners[i % 2], "SCRAM-SHA-256", user)
            took.append(time.perf_counter() - started)
    known_ms, unknown_ms = statistics.median(known) * 1000, statistics.median(unknown) * 1000
    # Re-reading __users on a miss made unknown names about a millisecond slower.
    assert abs(unknown_ms - known_ms) < max(0.4, known_ms / 4), (known_ms, unknown_ms)
