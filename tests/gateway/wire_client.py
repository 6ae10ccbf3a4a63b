"""A minimal blocking Kafka client for tests: raw frames over a socket, the codec for bytes."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cluster import running_cluster
from flexlog.gateway.protocol import ApiKey, FrameReader, decode_response, encode_request

GATEWAY_READY_S = 30.0


class WireClient:
    def __init__(self, address: str, timeout_s: float = 10.0) -> None:
        host, _, port = address.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        self.reader = FrameReader()
        self.correlation = 0

    def close(self) -> None:
        self.sock.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_frame(self) -> bytes | None:
        """The next response frame, or None when the gateway closed the connection."""
        while True:
            data = self.sock.recv(1 << 20)
            if not data:
                return None
            frames = self.reader.feed(data)
            if frames:
                return frames[0]

    def call(self, api_key: int, version: int, body: dict[str, Any]) -> dict[str, Any]:
        self.correlation += 1
        self.sock.sendall(encode_request(api_key, version, self.correlation, body))
        frame = self.read_frame()
        assert frame is not None, "the gateway closed the connection"
        response = decode_response(api_key, version, frame)
        assert response.correlation_id == self.correlation
        return response.body


def gateway_ready(address: str) -> bool:
    """True once the gateway answers Metadata (so it has loaded topic metadata)."""
    try:
        client = WireClient(address, timeout_s=2.0)
        try:
            return bool(client.call(ApiKey.METADATA, 1, {"topics": []})["brokers"])
        finally:
            client.close()
    except (OSError, AssertionError):
        return False


@contextmanager
def running_gateway(tmp: Path, extra: str = "") -> Iterator[str]:
    """A whole cluster with one gateway; yields the gateway's Kafka address once it serves.

    extra: top-level cluster-file lines, for tests of broker settings.
    """
    with running_cluster(tmp, storage="memory", gateways=1, extra=extra) as cluster:
        address = cluster.config.gateways[0].advertised
        deadline = time.monotonic() + GATEWAY_READY_S
        while not gateway_ready(address):
            if time.monotonic() > deadline:
                raise TimeoutError(f"gateway {address} did not come up:\n{cluster.logs()}")
            time.sleep(0.1)
        yield address
