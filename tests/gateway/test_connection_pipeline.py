"""How many requests one Kafka connection keeps started before their responses are written.

Produce answers with a deferred response once its appends are submitted, and the
connection starts the next request meanwhile (docs/gateway.md, "Pipelined produce"). A
producer with linger.ms=0 sends one-record requests: too few started at once and they
queue in the socket, where the client can no longer batch them; too many big ones and a
connection holds their bytes.
"""

from __future__ import annotations

import asyncio
import struct

from flexlog.core.config import ListenerConfig
from flexlog.gateway import server as gateway_server
from flexlog.gateway.server import KafkaConnection


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def get_extra_info(self, name: str) -> None:
        return None

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        pass


class _Server:
    """Answers every request with a deferred response the test completes."""

    max_request_bytes = gateway_server.MAX_REQUEST_BYTES
    sasl = None

    def __init__(self) -> None:
        self.connections: set[KafkaConnection] = set()
        self.started: list[asyncio.Future[bytes]] = []

    async def respond(self, frame: bytes) -> asyncio.Future[bytes]:
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.started.append(future)
        return future

    def answer_all(self, response: bytes) -> None:
        """Complete every started request still pending."""
        for f in self.started:
            if not f.done():
                f.set_result(response)


def _frame(size: int) -> bytes:
    return struct.pack(">i", size) + bytes(size)


async def _settle() -> None:
    """Run the loop until the feeder, the worker and the writer have done all they can."""
    for _ in range(5000):
        await asyncio.sleep(0)


async def _connection(server: _Server) -> tuple[KafkaConnection, _Transport]:
    listener = ListenerConfig("PLAINTEXT", "PLAINTEXT", "127.0.0.1:0", "127.0.0.1:0")
    conn = KafkaConnection(server, listener)  # type: ignore[arg-type]
    transport = _Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


async def _feed(conn: KafkaConnection, frames: list[bytes]) -> None:
    """Frames as a client writes them, read as the connection's reading allows."""
    for frame in frames:
        while conn.paused:
            await asyncio.sleep(0)
        conn.data_received(frame)
        await asyncio.sleep(0)


def test_small_requests_are_started_up_to_the_count_limit() -> None:
    async def scenario() -> None:
        server = _Server()
        conn, transport = await _connection(server)
        feeding = asyncio.ensure_future(_feed(conn, [_frame(100)] * (gateway_server.MAX_DEFERRED + 40)))
        await _settle()
        # 16 were too few: one-record requests then queued in the socket for seconds.
        assert len(server.started) == gateway_server.MAX_DEFERRED >= 256
        server.started[0].set_result(b"first")
        await _settle()
        assert transport.written == [b"first"]
        assert len(server.started) == gateway_server.MAX_DEFERRED + 1  # one written, one more started
        server.answer_all(b"r")
        await _settle()
        await asyncio.wait_for(feeding, 5)
        server.answer_all(b"r")
        await _settle()
        assert len(server.started) == gateway_server.MAX_DEFERRED + 40
        assert conn.deferred_bytes == 0 and not conn.outbox
        conn.connection_lost(None)

    asyncio.run(scenario())


def test_big_requests_are_started_up_to_the_byte_limit() -> None:
    async def scenario() -> None:
        server = _Server()
        conn, _ = await _connection(server)
        size = 3 << 20  # a frame's size as the server sees it, without its length prefix
        per_limit = gateway_server.MAX_DEFERRED_BYTES // size
        feeding = asyncio.ensure_future(_feed(conn, [_frame(size)] * (per_limit + 10)))
        await _settle()
        # Started while their bytes stay within the limit, never past it.
        assert len(server.started) == per_limit
        assert conn.deferred_bytes == per_limit * size <= gateway_server.MAX_DEFERRED_BYTES
        server.started[0].set_result(b"first")
        await _settle()
        assert len(server.started) == per_limit + 1
        feeding.cancel()
        conn.connection_lost(None)

    asyncio.run(scenario())


def test_one_request_bigger_than_the_byte_limit_is_started_alone() -> None:
    async def scenario() -> None:
        server = _Server()
        conn, transport = await _connection(server)
        big = gateway_server.MAX_DEFERRED_BYTES + 1000
        feeding = asyncio.ensure_future(_feed(conn, [_frame(10), _frame(big), _frame(10)]))
        await _settle()
        assert len(server.started) == 1  # the big one waits until nothing is outstanding
        server.started[0].set_result(b"small")
        await _settle()
        assert len(server.started) == 2  # started alone; the next waits for its response
        server.started[1].set_result(b"big")
        await _settle()
        assert len(server.started) == 3 and transport.written == [b"small", b"big"]
        server.started[2].set_result(b"small again")
        await _settle()
        await asyncio.wait_for(feeding, 5)
        assert transport.written == [b"small", b"big", b"small again"] and conn.deferred_bytes == 0
        conn.connection_lost(None)

    asyncio.run(scenario())


def test_a_closed_connection_leaves_its_responses_in_flight_to_finish() -> None:
    """Closing the connection must not cancel a produce that is still appending: an idempotent
    producer's state would take the batch back although it lands, and the producer's retry on
    its next connection would be stored as a new batch."""

    async def scenario() -> None:
        server = _Server()
        conn, _ = await _connection(server)
        feeding = asyncio.ensure_future(_feed(conn, [_frame(100)] * 3))
        await _settle()
        assert len(server.started) == 3
        conn.connection_lost(ConnectionResetError())
        await _settle()
        assert not any(f.cancelled() for f in server.started)
        server.answer_all(b"late")
        await _settle()
        feeding.cancel()

    asyncio.run(scenario())
