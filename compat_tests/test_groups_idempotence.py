"""A lost Produce response makes an idempotent producer retry; the retry must not be stored twice.

The gateway advertises a small TCP proxy in front of itself. The proxy lets the
first Produce request through, swallows its response and drops the connection,
exactly as a network failure after the append would; the producer resends the
same batch (same producer id, epoch and sequence) on a new connection.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import Producer
from group_helpers import wait_ready
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from cluster import Cluster, free_ports, two_level_toml
from flexlog.core import config as config_mod

PRODUCE = 0


class DropFirstProduceResponse:
    """Forwards 127.0.0.1:listen_port to target; loses the first Produce response once per arm()."""

    def __init__(self, listen_port: int, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", listen_port))
        self.armed = False
        self.dropped = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self) -> None:
        with self.lock:
            self.armed = True
            self.dropped = 0

    def close(self) -> None:
        self.server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            produce_ids: set[int] = set()
            threading.Thread(target=self._pump, args=(client, upstream, produce_ids, True),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, produce_ids, False),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, produce_ids: set[int],
              requests: bool) -> None:
        buf = b""
        try:
            while data := src.recv(1 << 16):
                buf += data
                out = b""
                while len(buf) >= 4 and len(buf) >= 4 + struct.unpack_from(">i", buf)[0]:
                    size = struct.unpack_from(">i", buf)[0]
                    frame, buf = buf[:4 + size], buf[4 + size:]
                    if requests:
                        api_key, _, correlation = struct.unpack_from(">hhi", frame, 4)
                        if api_key == PRODUCE:
                            produce_ids.add(correlation)
                    elif struct.unpack_from(">i", frame, 4)[0] in produce_ids and self._take():
                        raise ConnectionAbortedError("response swallowed")
                    out += frame
                dst.sendall(out)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                # shutdown, not just close: it wakes the other pump blocked in recv.
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _take(self) -> bool:
        with self.lock:
            if not self.armed:
                return False
            self.armed = False
            self.dropped += 1
            return True


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DropFirstProduceResponse, str]]:
    tmp: Path = tmp_path_factory.mktemp("proxied")
    [proxy_port] = free_ports(1)
    toml = two_level_toml(tmp / "data", storage="memory", gateways=1)
    # Clients must reach the gateway through the proxy only: advertise the proxy.
    toml = toml.replace('name = "gateway0"\n',
                        f'name = "gateway0"\nadvertised = "127.0.0.1:{proxy_port}"\n')
    path = tmp / "cluster.toml"
    path.write_text(toml)
    cluster = Cluster(config_mod.load(path))
    host, _, port = cluster.config.gateways[0].address.rpartition(":")
    proxy = DropFirstProduceResponse(proxy_port, (host, int(port)))
    try:
        cluster.start()
        wait_ready(cluster.config.gateways[0].address)
        yield proxy, f"127.0.0.1:{proxy_port}"
    finally:
        proxy.close()
        cluster.stop()


def stored(bootstrap: str, topic: str) -> list[bytes]:
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                      consumer_timeout_ms=3_000)
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_beginning()
    out = [m.value for m in c]
    c.close()
    return out


def test_kafka_python_retry_after_lost_response_is_stored_once(proxied, topic):
    proxy, bootstrap = proxied
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=5, linger_ms=5)
    p.send(topic, b"warm-up", partition=0).get(30)  # metadata and producer id first
    proxy.arm()
    futures = [p.send(topic, b"v%d" % i, partition=0) for i in range(10)]
    offsets = [f.get(30).offset for f in futures]
    p.close()
    assert proxy.dropped == 1
    assert offsets == list(range(1, 11))
    assert stored(bootstrap, topic) == [b"warm-up"] + [b"v%d" % i for i in range(10)]


def test_librdkafka_retry_after_lost_response_is_stored_once(proxied, topic):
    proxy, bootstrap = proxied
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    p.produce(topic, b"warm-up", partition=0)
    assert p.flush(30) == 0
    proxy.arm()
    for i in range(10):
        p.produce(topic, b"v%d" % i, partition=0)
    assert p.flush(30) == 0
    assert proxy.dropped == 1
    assert stored(bootstrap, topic) == [b"warm-up"] + [b"v%d" % i for i in range(10)]


async def test_aiokafka_retry_after_lost_response_is_stored_once(proxied, topic):
    proxy, bootstrap = proxied
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5)
    await p.start()
    try:
        await p.send_and_wait(topic, b"warm-up", partition=0)
        proxy.arm()
        futures = [await p.send(topic, b"v%d" % i, partition=0) for i in range(10)]
        for f in futures:
            await f
    finally:
        await p.stop()
    assert proxy.dropped == 1
    assert stored(bootstrap, topic) == [b"warm-up"] + [b"v%d" % i for i in range(10)]
