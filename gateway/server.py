"""The Kafka listener: asyncio TCP in front of the sans-IO codec and the handlers.

Per connection, requests are handled one at a time and answered in order, as
Kafka does; connections run in parallel. A handler may answer with a Deferred
body once its order-sensitive work is done (Produce, after submitting its
appends): the connection then starts on the next request while the appends
complete, and a writer sends the responses in request order. The size prefix of every frame is
checked before its body is buffered. Whatever a peer sends can only close its
own connection: a malformed frame is logged once and the socket is dropped.

SSL and SASL_SSL listeners accept sockets themselves and hand each to asyncio
with the context current at that moment, so `reload_certificates` (SIGHUP)
changes the certificate of new connections only, and a failed handshake is
logged, which asyncio's own TLS servers do silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections import deque
from typing import cast

from flexlog.core import tasks, tls
from flexlog.core.client import FlexLogClient
from flexlog.core.config import ClusterConfig, ListenerConfig
from flexlog.gateway import metrics, retention, session
from flexlog.gateway.broker import Broker, split_address
from flexlog.gateway.handlers import ENDPOINTS, CloseConnection, Deferred
from flexlog.gateway.handlers.api_versions import unsupported_version_body
from flexlog.gateway.handlers.registry import Body
from flexlog.gateway.handling_time import HandlingTime
from flexlog.gateway.protocol import (
    ApiKey,
    ErrorCode,
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
from flexlog.gateway.protocol.messages import APIS
from flexlog.gateway.quotas import (
    CONSUMER_BYTE_RATE,
    PRODUCER_BYTE_RATE,
    REQUEST_PERCENTAGE,
    REQUEST_QUOTA_EXEMPT,
)
from flexlog.gateway.sasl import Authenticator, AuthFailed, SaslServer

log = logging.getLogger("flexlog.gateway.server")

MAX_REQUEST_BYTES = 100 << 20
# Frames queued beyond the one being handled before the socket stops being read.
MAX_QUEUED_FRAMES = 8
# Deferred responses one connection may have outstanding before it stops starting new requests,
# and their requests' bytes: enough one-record requests (a producer with linger.ms=0) to keep a
# round trip of the log busy, not so many big ones that a connection holds more than the bytes
# (docs/gateway.md, "Pipelined produce"). A request bigger than the bytes is started alone.
MAX_DEFERRED = 256
MAX_DEFERRED_BYTES = 32 << 20
# A client that has not finished its TLS handshake by then is dropped (asyncio's default).
TLS_HANDSHAKE_TIMEOUT_S = 60.0
# A client retrying a failing handshake every 100 ms must not flood the log: per peer host and reason,
# one line per interval, which says how many failures it stands for (all are counted in metrics).
HANDSHAKE_LOG_INTERVAL_S = 60.0
HANDSHAKE_LOG_KEYS = 1024  # (host, reason) pairs remembered before starting afresh
# How long accepting pauses after accept() fails (out of file descriptors), as asyncio's servers do.
ACCEPT_RETRY_S = 1.0

Response = bytes | None

# What a SASL listener serves before authentication completes.
SASL_PHASE_APIS = (ApiKey.API_VERSIONS, ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE)


class KafkaConnection(asyncio.Protocol):
    def __init__(self, server: GatewayServer, listener: ListenerConfig) -> None:
        self.server = server
        self.listener = listener
        self.session = session.Session(listener, "?")
        self.reader = FrameReader(server.max_request_bytes)
        self.frames: deque[bytes] = deque()
        self.wakeup = asyncio.Event()
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.worker: asyncio.Task[None] | None = None
        self.paused = False
        self.closing = False
        # Responses in request order, each with its request's size if deferred (futures still
        # being produced hold their request's batches); deferred_bytes is those sizes' sum.
        self.outbox: deque[tuple[asyncio.Future[Response], int]] = deque()
        self.deferred_bytes = 0
        self.outbox_changed = asyncio.Event()
        self.writer: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, hence the cast.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.session.peer_host = peer[0] if peer else "?"
        ssl_object = transport.get_extra_info("ssl_object")
        cert_subject = tls.principal_name(ssl_object.getpeercert()) if ssl_object else None
        if cert_subject:
            self.session.tls_principal = f"User:{cert_subject}"
        if self.listener.sasl:
            self.session.sasl = Authenticator(self.server.sasl, self.session.peer_host)
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
        if self.writer is not None:
            self.writer.cancel()

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
        # The handlers of this connection's requests (and tasks they start) see its session.
        session.current.set(self.session)
        while not self.closing:
            if not self.frames:
                self.wakeup.clear()
                await self.wakeup.wait()
                continue
            muted_for = self.session.muted_until - time.monotonic()
            if muted_for > 0:
                await self._mute(muted_for)
                continue
            if self.deferred_bytes and self.deferred_bytes + len(self.frames[0]) > MAX_DEFERRED_BYTES:
                await self._outbox_shrinks()
                continue
            frame = self.frames.popleft()
            if self.paused and len(self.frames) <= MAX_QUEUED_FRAMES // 2:
                self.paused = False
                assert self.transport is not None
                self.transport.resume_reading()
            try:
                response = await self.server.respond(frame)
            except Exception as exc:
                self._fail(exc)
                return
            if isinstance(response, asyncio.Future):
                self.outbox.append((response, len(frame)))
                self.deferred_bytes += len(frame)
                self._start_writer()
                while len(self.outbox) >= MAX_DEFERRED and not self.closing:
                    await self._outbox_shrinks()
            elif self.outbox:
                done: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
                done.set_result(response)
                self.outbox.append((done, 0))
                self._start_writer()
            else:
                self._send(response)

    async def _outbox_shrinks(self) -> None:
        """Until the writer sends the next response."""
        self.outbox_changed.clear()
        await self.outbox_changed.wait()

    async def _mute(self, seconds: float) -> None:
        """Kafka's throttling (KIP-219): read nothing from this client until its quota allows."""
        assert self.transport is not None
        if not self.paused:
            self.transport.pause_reading()
        await asyncio.sleep(seconds)
        if not self.paused and not self.closing:
            self.transport.resume_reading()

    def _fail(self, exc: BaseException) -> None:
        if isinstance(exc, CloseConnection | ProtocolError):
            self.close(str(exc))
        else:
            log.error("request from %s failed; closing the connection", self.peer, exc_info=exc)
            self.close("internal error")

    def _send(self, response: Response) -> None:
        if response is not None and not self.closing:
            assert self.transport is not None
            self.transport.write(response)
            metrics.SENT_BYTES.inc(len(response))
        if self.session.close_reason is not None:
            self.close(self.session.close_reason)

    def _start_writer(self) -> None:
        if self.writer is None or self.writer.done():
            self.writer = asyncio.get_running_loop().create_task(self._write_in_order())

    async def _write_in_order(self) -> None:
        while self.outbox and not self.closing:
            try:
                # Shielded: closing the connection cancels this writer, and must not cancel the
                # response's task with it. A produce's appends are in flight either way, and an
                # idempotent producer's state has to see them land, or its retry on a new
                # connection would pass as a new batch and be stored twice.
                response = await asyncio.shield(self.outbox[0][0])
            except Exception as exc:
                self._fail(exc)
                return
            self.deferred_bytes -= self.outbox.popleft()[1]
            self.outbox_changed.set()
            self._send(response)


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
        self.sasl = SaslServer(self.broker.users, config.security)
        self.connections: set[KafkaConnection] = set()
        self.certs: tls.ServerCerts | None = None  # with an SSL or SASL_SSL listener
        self._servers: list[asyncio.Server] = []
        self._tls_sockets: list[socket.socket] = []
        # (peer host, reason) -> when its last line was logged, failures since then not logged
        self._handshake_logged: dict[tuple[str, str], tuple[float, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if any(listener.tls for listener in self.me.listeners):
            assert self.config.tls is not None, "the config parser requires [tls] for SSL listeners"
            self.certs = tls.ServerCerts(self.config.tls)
            self._log_certificate()
        for listener in self.me.listeners:
            host, port = split_address(listener.address)
            if listener.tls:
                # SO_REUSEADDR is set by create_server on POSIX, as reuse_address=True below does.
                sock = socket.create_server((host, port), backlog=1024,
                                            family=socket.AF_INET6 if ":" in host else socket.AF_INET)
                sock.setblocking(False)
                self._tls_sockets.append(sock)
                tasks.supervise(lambda sock=sock, listener=listener: self._accept_tls(sock, listener),
                                f"gateway {self.me.name}: accepting on {listener.address}", log, self._tasks)
                continue
            self._servers.append(await loop.create_server(
                lambda listener=listener: KafkaConnection(self, listener), host, port,
                reuse_address=True, backlog=1024))
        tasks.spawn(self._open(), f"gateway {self.me.name}: opening the system colors", log,
                    self._tasks)
        for loop_fn, what in ((lambda: retention.run(self.broker), "retention"),
                              (self.metrics.export_lag, "consumer lag export"),
                              (self.broker.groups.run, "group coordinator"),
                              (self.broker.transactions.run, "transaction coordinator")):
            tasks.supervise(loop_fn, f"gateway {self.me.name}: {what}", log, self._tasks)
        metrics.serve(self.me.address, self.me.metrics_port)
        for listener in self.me.listeners:
            log.info("gateway %s listening on %s for %s (advertised %s)", self.me.name,
                     listener.address, listener.protocol, listener.advertised)

    def _log_certificate(self) -> None:
        """Which certificate the SSL listeners present; an error if it is not valid now. The gateway
        runs anyway, as Kafka brokers do: its plaintext and SASL_PLAINTEXT listeners and its part in
        the cluster still work, and a valid certificate can be put in place and loaded with SIGHUP."""
        assert self.certs is not None
        cert = self.certs.cert
        metrics.TLS_CERT_NOT_AFTER.set(cert.not_after.timestamp())
        problem = cert.problem()
        if problem is None:
            log.info("gateway %s: TLS certificate %s", self.me.name, cert.describe())
        else:
            log.error("gateway %s: TLS certificate %s %s: clients will refuse every TLS handshake until "
                      "a valid one replaces it (replace the files, then send SIGHUP to this gateway)",
                      self.me.name, cert.describe(), problem)

    def reload_certificates(self) -> None:
        """SIGHUP: new TLS connections get the certificate, key and CA files as they are now; the
        established ones keep the certificate they were made with. Files that do not load, or a
        certificate that is not valid now, leave the current one in use."""
        if self.certs is None:
            log.info("gateway %s: no SSL or SASL_SSL listener, no certificate to reload", self.me.name)
            return
        try:
            cert = self.certs.reload()
        except (OSError, tls.CertError) as exc:  # ssl.SSLError is an OSError
            log.error("gateway %s: certificate reload failed, still using %s: %s", self.me.name,
                      self.certs.cert.describe(), exc)
            return
        metrics.TLS_CERT_NOT_AFTER.set(cert.not_after.timestamp())
        log.info("gateway %s: certificate reloaded; new TLS connections get %s", self.me.name,
                 cert.describe())

    async def _accept_tls(self, sock: socket.socket, listener: ListenerConfig) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as exc:
                log.warning("gateway %s: accepting on %s failed, pausing %.0fs: %s", self.me.name,
                            listener.address, ACCEPT_RETRY_S, exc)
                await asyncio.sleep(ACCEPT_RETRY_S)
                continue
            tasks.spawn(self._handshake(conn, listener), f"TLS handshake on {listener.address}", log,
                        self._tasks)

    async def _handshake(self, sock: socket.socket, listener: ListenerConfig) -> None:
        assert self.certs is not None
        try:
            host, port = sock.getpeername()[:2]
        except OSError:  # gone already
            sock.close()
            return
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: KafkaConnection(self, listener), sock, ssl=self.certs.context,
                ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT_S)
        except OSError as exc:  # asyncio has closed the socket
            metrics.TLS_HANDSHAKE_FAILURES.inc()
            self._log_handshake_failure(f"{host}:{port}", host, listener, self._why_handshake_failed(exc))

    def _log_handshake_failure(self, peer: str, host: str, listener: ListenerConfig, why: str) -> None:
        now = time.monotonic()
        key = (host, why)
        logged_at, unlogged = self._handshake_logged.get(key, (now - HANDSHAKE_LOG_INTERVAL_S, 0))
        if now - logged_at < HANDSHAKE_LOG_INTERVAL_S:
            self._handshake_logged[key] = (logged_at, unlogged + 1)
            return
        if len(self._handshake_logged) >= HANDSHAKE_LOG_KEYS:
            self._handshake_logged.clear()
        self._handshake_logged[key] = (now, 0)
        also = (f" (and {unlogged} more such failures from {host} in the last "
                f"{now - logged_at:.0f}s)" if unlogged else "")
        log.warning("TLS handshake with %s on the %s listener %s failed: %s%s", peer, listener.protocol,
                    listener.address, why, also)

    def _why_handshake_failed(self, exc: OSError) -> str:
        """What went wrong, and whether this gateway's certificate is why."""
        if isinstance(exc, ssl.SSLCertVerificationError):  # the client's certificate
            why = f"client certificate: {exc.verify_message}"
        elif isinstance(exc, ssl.SSLError):  # e.g. SSLV3_ALERT_CERTIFICATE_EXPIRED: the client's verdict
            why = exc.reason or str(exc)
        else:
            why = str(exc) or f"the client closed the connection ({type(exc).__name__})"
        assert self.certs is not None
        problem = self.certs.cert.problem()
        if problem is not None:
            why += (f"; this gateway's certificate {self.certs.cert.path} {problem}, so clients refuse it "
                    "(replace the files, then send SIGHUP to this gateway)")
        return why

    async def _open(self) -> None:
        await self.broker.open()
        await asyncio.gather(self.broker.topics.watch(), self.broker.partition_starts.log.watch(),
                             self.broker.users.log.watch(),
                             self.broker.acls.log.watch(), self.broker.quotas.log.watch())

    async def stop(self) -> None:
        for listening in self._servers:
            listening.close()
        for conn in list(self.connections):
            conn.close("gateway stopping")
        running = list(self._tasks)
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Only now: the accept loops were still waiting on these sockets.
        for sock in self._tls_sockets:
            sock.close()
        await self.client.close()

    async def respond(self, frame: bytes) -> Response | asyncio.Future[Response]:
        """The response frame to one request frame, None when none is due, or a future of either.

        Raises ProtocolError or CloseConnection when Kafka would drop the connection.
        """
        current = session.get()
        if current.sasl is not None and current.sasl.state == current.sasl.RAW:
            return await self._raw_sasl_token(current.sasl, frame)
        try:
            request = decode_request(frame)
        except UnsupportedVersion as exc:
            if exc.api_key == ApiKey.API_VERSIONS:
                return encode_response(ApiKey.API_VERSIONS, 0, exc.correlation_id,
                                       unsupported_version_body())
            raise
        except MalformedFrame as exc:
            raise MalformedFrame(f"{exc} (frame of {len(frame)} bytes)") from None
        return await self.dispatch(request, len(frame))

    async def dispatch(self, request: Request, size: int = 0) -> Response | asyncio.Future[Response]:
        """size: the request frame's, which a produce byte-rate quota is charged."""
        endpoint = ENDPOINTS.get(request.api_key)
        if endpoint is None:
            # Decodable (a later issue's API) but not served: Kafka closes as for an unknown key.
            raise UnknownApiKey(request.api_key, request.api_version, request.correlation_id)
        if not endpoint.accepts(request.api_version):
            if request.api_key == ApiKey.API_VERSIONS:
                return encode_response(ApiKey.API_VERSIONS, 0, request.correlation_id,
                                       unsupported_version_body())
            raise UnsupportedVersion(request.api_key, request.api_version, request.correlation_id)
        current = session.get()
        if current.authenticating and (request.api_key not in SASL_PHASE_APIS or (
                request.api_key == ApiKey.API_VERSIONS and current.sasl.state != current.sasl.HANDSHAKE)):
            return self._illegal_sasl_state(request, current)
        # SaslHandshake only picks a mechanism; SaslAuthenticate needs the users loaded.
        if request.api_key not in (ApiKey.API_VERSIONS, ApiKey.SASL_HANDSHAKE):
            await self.broker.ready.wait()
        exempt = request.api_key in REQUEST_QUOTA_EXEMPT or current.authenticating
        started = time.perf_counter()
        throttle_s = self._charge(PRODUCER_BYTE_RATE, request, size) if (
            request.api_key == ApiKey.PRODUCE) else 0.0
        handling = HandlingTime(endpoint.handle(self.broker, request))
        body = await handling
        if not exempt:
            throttle_s = max(throttle_s, self._charge(REQUEST_PERCENTAGE, request, handling.seconds))
        if isinstance(body, Deferred):
            return asyncio.ensure_future(self._finish(request, body, started, throttle_s))
        return self._encode(request, body, started, throttle_s)

    def _charge(self, quota: str, request: Request, amount: int) -> float:
        """Charge the quota that applies to this connection's user and client-id; throttle seconds.

        A throttled connection is muted at once: the response still goes out now, with
        throttle_time_ms, and the next request is read once the time has passed.
        """
        current = session.get()
        charged = self.broker.throttler.charge(quota, current.quota_user, request.client_id or "", amount)
        if charged is None:
            return 0.0
        match, throttle_s = charged
        labels = (quota, match.user, match.client_id)
        if quota == REQUEST_PERCENTAGE:
            metrics.QUOTA_REQUEST_SECONDS.labels(match.user, match.client_id).inc(amount)
        else:
            metrics.QUOTA_USAGE.labels(*labels).inc(amount)
        # Every client under a quota has all three series, zero until throttled: alerts on
        # their rates see a quiet client rather than none.
        throttle_seconds = metrics.QUOTA_THROTTLE_SECONDS.labels(*labels)
        throttled = metrics.QUOTA_THROTTLED_REQUESTS.labels(*labels)
        if throttle_s > 0:
            throttle_seconds.inc(throttle_s)
            throttled.inc()
            current.muted_until = max(current.muted_until, time.monotonic() + throttle_s)
        return throttle_s

    async def _raw_sasl_token(self, auth: Authenticator, token: bytes) -> Response:
        """SaslHandshake v0: tokens come and go size-prefixed without Kafka headers."""
        await self.broker.ready.wait()
        try:
            reply = await auth.step(token)
        except AuthFailed as exc:
            raise CloseConnection(str(exc)) from None
        return len(reply).to_bytes(4, "big") + reply

    def _illegal_sasl_state(self, request: Request, current: session.Session) -> Response:
        """ILLEGAL_SASL_STATE where the response has a top-level error code; then (or else) close."""
        reason = f"ILLEGAL_SASL_STATE: {ApiKey(request.api_key).name} before SASL authentication"
        if not any(f.name == "error_code" and f.exists_in(request.api_version)
                   for f in APIS[request.api_key].response):
            raise CloseConnection(reason)
        current.close_reason = reason
        return encode_response(request.api_key, request.api_version, request.correlation_id,
                               {"error_code": ErrorCode.ILLEGAL_SASL_STATE})

    async def _finish(self, request: Request, deferred: Deferred, started: float,
                      throttle_s: float) -> Response:
        return self._encode(request, await deferred.body, started, throttle_s)

    def _encode(self, request: Request, body: Body | None, started: float, throttle_s: float) -> Response:
        self.metrics.observe(request, body, time.perf_counter() - started)
        if body is None:
            return None
        if request.api_key == ApiKey.FETCH:
            # The records are what a consumer quota meters; the encoding adds little and is not done yet.
            fetched = sum(len(p["records"] or b"") for t in body["responses"] for p in t["partitions"])
            throttle_s = max(throttle_s, self._charge(CONSUMER_BYTE_RATE, request, fetched))
        if throttle_s > 0:
            body["throttle_time_ms"] = max(body.get("throttle_time_ms", 0), round(throttle_s * 1000))
        return encode_response(request.api_key, request.api_version, request.correlation_id, body)
