"""The Kafka listener: asyncio TCP in front of the sans-IO codec and the handlers.

Per connection, requests are handled one at a time and answered in order, as
Kafka does; connections run in parallel. The size prefix of every frame is
checked before its body is buffered. Whatever a peer sends can only close its
own connection: a malformed frame is logged once and the socket is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import cast

from flexlog.core.client import FlexLogClient
from flexlog.core.config import ClusterConfig
from flexlog.gateway import metrics, retention
from flexlog.gateway.broker import Broker, split_address
from flexlog.gateway.handlers import ENDPOINTS, CloseConnection
from flexlog.gateway.handlers.api_versions import unsupported_version_body
from flexlog.gateway.protocol import (
    ApiKey,
    FrameReader,
    FrameTooLarge,
    MalformedFrame,
    ProtocolError,
    Request,
    UnknownApiKey,
    UnsupportedVersion,
    decode_request,
    encode_response,
)

log = logging.getLogger("flexlog.gateway.server")

MAX_REQUEST_BYTES = 100 << 20
# Frames queued beyond the one being handled before the socket stops being read.
MAX_QUEUED_FRAMES = 8


class KafkaConnection(asyncio.Protocol):
    def __init__(self, server: GatewayServer) -> None:
        self.server = server
        self.reader = FrameReader(server.max_request_bytes)
        self.frames: deque[bytes] = deque()
        self.wakeup = asyncio.Event()
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.worker: asyncio.Task[None] | None = None
        self.paused = False
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, hence the cast.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.worker = asyncio.get_running_loop().create_task(self._work())
        self.server.connections.add(self)
        metrics.CONNECTIONS_OPENED.inc()
        metrics.CONNECTIONS.inc()

    def connection_lost(self, exc: Exception | None) -> None:
        metrics.CONNECTIONS.dec()
        self.closing = True
        self.server.connections.discard(self)
        if self.worker is not None:
            self.worker.cancel()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        metrics.RECEIVED_BYTES.inc(len(data))
        try:
            frames = self.reader.feed(data)
        except FrameTooLarge as exc:
            self.close(f"request size {exc.size} outside [0, {exc.max_frame_bytes}]")
            return
        if frames:
            self.frames.extend(frames)
            self.wakeup.set()
            if len(self.frames) > MAX_QUEUED_FRAMES and not self.paused:
                self.paused = True
                assert self.transport is not None
                self.transport.pause_reading()

    def close(self, reason: str) -> None:
        """Drop the connection, logging why once."""
        if self.closing:
            return
        self.closing = True
        log.warning("closing Kafka connection from %s: %s", self.peer, reason)
        if self.transport is not None:
            self.transport.close()

    async def _work(self) -> None:
        while not self.closing:
            if not self.frames:
                self.wakeup.clear()
                await self.wakeup.wait()
                continue
            frame = self.frames.popleft()
            if self.paused and len(self.frames) <= MAX_QUEUED_FRAMES // 2:
                self.paused = False
                assert self.transport is not None
                self.transport.resume_reading()
            try:
                response = await self.server.respond(frame)
            except CloseConnection as exc:
                self.close(str(exc))
                return
            except ProtocolError as exc:
                self.close(str(exc))
                return
            except Exception:
                log.exception("request from %s failed; closing the connection", self.peer)
                self.close("internal error")
                return
            if response is not None and not self.closing:
                assert self.transport is not None
                self.transport.write(response)
                metrics.SENT_BYTES.inc(len(response))


class GatewayServer:
    """One gateway process: `flexlog gateway --id NAME` runs start() and stop()."""

    def __init__(self, config: ClusterConfig, name: str, *,
                 max_request_bytes: int = MAX_REQUEST_BYTES) -> None:
        self.config = config
        self.me = config.gateway(name)
        self.max_request_bytes = max_request_bytes
        self.client = FlexLogClient(config)
        self.broker = Broker(config, self.me, self.client)
        self.metrics = metrics.GatewayMetrics(self.broker)
        self.connections: set[KafkaConnection] = set()
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        host, port = split_address(self.me.address)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: KafkaConnection(self), host, port,
                                                reuse_address=True, backlog=1024)
        self._tasks = [loop.create_task(self._open()), loop.create_task(retention.run(self.broker)),
                       loop.create_task(self.metrics.export_lag()),
                       loop.create_task(self.broker.groups.run())]
        metrics.serve(self.me.address, self.me.metrics_port)
        log.info("gateway %s listening on %s (advertised %s)", self.me.name, self.me.address,
                 self.me.advertised)

    async def _open(self) -> None:
        await self.broker.open()
        await self.broker.topics.watch()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close("gateway stopping")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.client.close()

    async def respond(self, frame: bytes) -> bytes | None:
        """The response frame to one request frame, or None when none is due.

        Raises ProtocolError or CloseConnection when Kafka would drop the connection.
        """
        try:
            request = decode_request(frame)
        except UnsupportedVersion as exc:
            if exc.api_key == ApiKey.API_VERSIONS:
                return encode_response(ApiKey.API_VERSIONS, 0, exc.correlation_id,
                                       unsupported_version_body())
            raise
        except MalformedFrame as exc:
            raise MalformedFrame(f"{exc} (frame of {len(frame)} bytes)") from None
        return await self.dispatch(request)

    async def dispatch(self, request: Request) -> bytes | None:
        endpoint = ENDPOINTS.get(request.api_key)
        if endpoint is None:
            # Decodable (a later issue's API) but not served: Kafka closes as for an unknown key.
            raise UnknownApiKey(request.api_key, request.api_version, request.correlation_id)
        if not endpoint.accepts(request.api_version):
            if request.api_key == ApiKey.API_VERSIONS:
                return encode_response(ApiKey.API_VERSIONS, 0, request.correlation_id,
                                       unsupported_version_body())
            raise UnsupportedVersion(request.api_key, request.api_version, request.correlation_id)
        if request.api_key != ApiKey.API_VERSIONS:
            await self.broker.ready.wait()
        started = time.perf_counter()
        body = await endpoint.handle(self.broker, request)
        self.metrics.observe(request, body, time.perf_counter() - started)
        if body is None:
            return None
        return encode_response(request.api_key, request.api_version, request.correlation_id, body)
