"""gRPC plumbing shared by every process: channel/server options, raw-bytes streams.

Hot streams send bytes that were serialized once (the same AppendRequest goes
to every replica of a shard; a grant batch to every replica), so their
handlers are registered with no response serializer and their client stubs
with no request serializer.

Channels and servers are plaintext unless the process was told to use TLS
(`use_tls`, from the config's `[tls]` table with grpc = true): one process
belongs to one cluster, so the choice is made once, at start. The certificate
is not: `reload_tls` (SIGHUP) puts rotated files to use without a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import grpc

from flexlog.core.config import TlsConfig
from flexlog.core.grpc_certs import GrpcCerts

log = logging.getLogger("flexlog.core.rpc")

MAX_MESSAGE_BYTES = 1 << 30

_SIZES = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]
# Clients ping every 10 s so a dead peer is noticed on an idle stream; servers must
# accept pings that often, or they answer with GOAWAY "too_many_pings" and every
# long-lived stream on the channel breaks.
CHANNEL_OPTIONS = [
    *_SIZES,
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
SERVER_OPTIONS = [
    *_SIZES,
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
]


def install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a declared dependency
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


_tls: TlsConfig | None = None
_certs: GrpcCerts | None = None


def use_tls(tls: TlsConfig | None) -> None:
    """Make every later channel and server of this process TLS (None: plaintext again)."""
    global _tls, _certs
    _tls = tls if tls is not None and tls.grpc else None
    _certs = None


def _grpc_certs(tls: TlsConfig) -> GrpcCerts:
    """Loaded at the first channel or server, so commands that make none need no readable files."""
    global _certs
    if _certs is None:
        _certs = GrpcCerts(tls)
    return _certs


def reload_tls() -> None:
    """SIGHUP: gRPC connections and channels made from now on use the files as they are now; one
    log line says which certificate that is, or why the files did not load and the old one stays."""
    if _tls is None:
        log.info("gRPC is plaintext ([tls] grpc is not true): no certificate to reload")
        return
    certs = _grpc_certs(_tls)
    in_use = certs.files.cert
    try:
        cert = certs.reload()
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError, CertError a ValueError
        log.error("gRPC certificate reload failed, still using %s: %s", in_use.describe(), exc)
        return
    log.info("gRPC certificate reloaded; new connections and channels get %s", cert.describe())


def channel(address: str) -> grpc.aio.Channel:
    if _tls is not None:
        return grpc.aio.secure_channel(address, _grpc_certs(_tls).channel_credentials(),
                                       options=CHANNEL_OPTIONS)
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)


def server() -> grpc.aio.Server:
    return grpc.aio.server(options=SERVER_OPTIONS)


def listen(srv: grpc.aio.Server, address: str) -> None:
    """Bind srv to address, over TLS when the process uses it."""
    if _tls is not None:
        srv.add_secure_port(address, _grpc_certs(_tls).server_credentials())
    else:
        srv.add_insecure_port(address)


def raw_stream(ch: grpc.aio.Channel, method: str, reply_type: Any) -> Callable[..., Any]:
    """A bidi stream whose requests are already-serialized bytes."""
    return ch.stream_stream(method, request_serializer=None, response_deserializer=reply_type.FromString)


def service(name: str, handlers: dict[str, grpc.RpcMethodHandler]) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(name, handlers)


def bidi(fn: Callable[..., Any], request_type: Any) -> grpc.RpcMethodHandler:
    """A bidi handler that yields already-serialized bytes."""
    return grpc.stream_stream_rpc_method_handler(
        fn, request_deserializer=request_type.FromString, response_serializer=None
    )


def bidi_raw(fn: Callable[..., Any]) -> grpc.RpcMethodHandler:
    """A bidi handler that takes and yields bytes: it decodes its requests itself."""
    return grpc.stream_stream_rpc_method_handler(fn, request_deserializer=None, response_serializer=None)


def unary(fn: Callable[..., Any], request_type: Any) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        fn, request_deserializer=request_type.FromString, response_serializer=lambda m: m.SerializeToString()
    )
