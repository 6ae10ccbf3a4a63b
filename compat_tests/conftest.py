"""A real cluster (sequencers, replicas, one gateway) per test module, and helpers."""

from __future__ import annotations

import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from cluster import running_cluster  # noqa: E402

from flexlog.gateway.protocol import ApiKey, FrameReader, decode_response, encode_request  # noqa: E402

GATEWAY_READY_S = 30.0


def gateway_ready(address: str) -> bool:
    """True once the gateway answers Metadata (so it has loaded topic metadata)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2) as sock:
            sock.sendall(encode_request(ApiKey.METADATA, 1, 1, {"topics": []}))
            reader = FrameReader()
            while True:
                data = sock.recv(65536)
                if not data:
                    return False
                frames = reader.feed(data)
                if frames:
                    return bool(decode_response(ApiKey.METADATA, 1, frames[0]).body["brokers"])
    except OSError:
        return False


@pytest.fixture(scope="module")
def bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("cluster")
    with running_cluster(tmp, storage="memory", gateways=1) as cluster:
        address = cluster.config.gateways[0].advertised
        deadline = time.monotonic() + GATEWAY_READY_S
        while not gateway_ready(address):
            if time.monotonic() > deadline:
                raise TimeoutError(f"gateway {address} did not come up:\n{cluster.logs()}")
            time.sleep(0.1)
        yield address


@pytest.fixture
def topic() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def payloads(n: int, size: int = 20) -> list[bytes]:
    return [f"{i:06d}".encode().ljust(size, b"x") for i in range(n)]
