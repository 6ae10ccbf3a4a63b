"""gRPC certificate reloads over real sockets, in one process: after rpc.reload_tls (what SIGHUP runs)
a server's new connections get the new certificate while an established stream goes on, new channels
present the new certificate, and files that do not load keep the old one with an error line."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from tls_helpers import generate_expired_cert

from cluster import free_ports
from flexlog.core import rpc, tls
from flexlog.core.config import TlsConfig

ECHO = "/flexlog.Test/Echo"
STREAM = "/flexlog.Test/Stream"


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two dev CAs, each with its server.crt (serverAuth and clientAuth, for localhost)."""
    old, new = tmp_path_factory.mktemp("old"), tmp_path_factory.mktemp("new")
    tls.generate_dev_certs(old, clients=())
    tls.generate_dev_certs(new, clients=())
    return old, new


def live_dir(tmp: Path, old: Path, new: Path) -> TlsConfig:
    """What [tls] points at mid-rotation: old's key pair, and a CA file trusting both CAs."""
    (tmp / "ca.crt").write_bytes((old / "ca.crt").read_bytes() + (new / "ca.crt").read_bytes())
    install(old, tmp)
    return TlsConfig(tmp / "ca.crt", tmp / "server.crt", tmp / "server.key", "required", True)


def install(source: Path, live: Path, names: tuple[str, ...] = ("server.crt", "server.key")) -> None:
    for name in names:
        shutil.copy(source / name, live / f".{name}")
        os.replace(live / f".{name}", live / name)


def trusting_only(ca_dir: Path, address: str) -> grpc.aio.Channel:
    """A client that trusts only ca_dir's CA and presents ca_dir's certificate."""
    creds = grpc.ssl_channel_credentials((ca_dir / "ca.crt").read_bytes(),
                                         (ca_dir / "server.key").read_bytes(),
                                         (ca_dir / "server.crt").read_bytes())
    return grpc.aio.secure_channel(address, creds, options=[("grpc.use_local_subchannel_pool", 1)])


async def answers(channel: grpc.aio.Channel) -> bool:
    try:
        return await channel.unary_unary(ECHO)(b"ping", timeout=5) == b"ping"
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
        return False


async def echo(request: bytes, context: object) -> bytes:
    return request


async def stream(requests: AsyncIterator[bytes], context: object) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request


async def start_server(address: str) -> grpc.aio.Server:
    server = rpc.server()
    server.add_generic_rpc_handlers([rpc.service("flexlog.Test", {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Stream": grpc.stream_stream_rpc_method_handler(stream)})])
    rpc.listen(server, address)
    await server.start()
    return server


async def test_a_server_gives_new_connections_the_reloaded_certificate_and_keeps_streams(
        tmp_path, cas, caplog):
    old, new = cas
    caplog.set_level(logging.INFO, logger="flexlog.core.rpc")
    rpc.use_tls(live_dir(tmp_path, old, new))
    address = f"localhost:{free_ports(1)[0]}"
    server = await start_server(address)
    try:
        before = trusting_only(old, address)
        established = before.stream_stream(STREAM)()
        await established.write(b"one")
        assert await established.read() == b"one"
        assert not await answers(trusting_only(new, address))

        # Only the certificate replaced so far: it does not go with the key, so nothing changes.
        install(new, tmp_path, ("server.crt",))
        rpc.reload_tls()
        assert "gRPC certificate reload failed, still using" in caplog.records[-1].getMessage()
        assert caplog.records[-1].levelno == logging.ERROR
        assert await answers(trusting_only(old, address))

        install(new, tmp_path)
        rpc.reload_tls()
        assert caplog.records[-1].getMessage().startswith(
            f"gRPC certificate reloaded; new connections and channels get {tmp_path / 'server.crt'}")
        assert await answers(trusting_only(new, address))
        assert not await answers(trusting_only(old, address))
        # The stream made before the reload is still up, on its old connection.
        await established.write(b"two")
        assert await established.read() == b"two"
        await established.done_writing()
        await before.close()
    finally:
        rpc.use_tls(None)
        await server.stop(None)


async def test_channels_made_after_a_reload_present_the_new_certificate(tmp_path, cas, caplog):
    old, new = cas
    # A peer that has already moved on: it trusts and presents only the new CA's certificates.
    peer_tls = TlsConfig(new / "ca.crt", new / "server.crt", new / "server.key", "required", True)
    rpc.use_tls(peer_tls)
    address = f"localhost:{free_ports(1)[0]}"
    peer = await start_server(address)
    try:
        rpc.use_tls(live_dir(tmp_path, old, new))
        async with rpc.channel(address) as channel:
            assert not await answers(channel)
        install(new, tmp_path)
        rpc.reload_tls()
        async with rpc.channel(address) as channel:
            assert await answers(channel)
    finally:
        rpc.use_tls(None)
        await peer.stop(None)


def test_a_reload_with_an_expired_or_unreadable_certificate_keeps_the_old_one(tmp_path, cas, caplog):
    old, new = cas
    caplog.set_level(logging.INFO, logger="flexlog.core.rpc")
    rpc.use_tls(live_dir(tmp_path, old, new))
    try:
        rpc.reload_tls()
        assert caplog.records[-1].getMessage().startswith("gRPC certificate reloaded")
        (tmp_path / "ca.crt").write_text("not a certificate\n")
        rpc.reload_tls()
        message = caplog.records[-1].getMessage()
        assert message.startswith(f"gRPC certificate reload failed, still using {tmp_path / 'server.crt'}")
        assert f"{tmp_path / 'ca.crt'}: no usable CA certificate" in message
        (tmp_path / "server.key").unlink()
        rpc.reload_tls()
        assert "No such file or directory" in caplog.records[-1].getMessage()
        assert len([r for r in caplog.records if "reload" in r.getMessage()]) == 3
    finally:
        rpc.use_tls(None)


def test_no_grpc_tls_no_reload(caplog):
    caplog.set_level(logging.INFO, logger="flexlog.core.rpc")
    rpc.use_tls(None)
    rpc.reload_tls()
    assert caplog.records[-1].getMessage() == (
        "gRPC is plaintext ([tls] grpc is not true): no certificate to reload")


def test_an_expired_certificate_is_refused_by_a_reload(tmp_path, cas, caplog):
    old, new = cas
    expired = tmp_path / "expired"
    expired.mkdir()
    for name in ("ca.crt", "ca.key"):
        shutil.copy(old / name, expired / name)
    generate_expired_cert(expired, "server", server=True)
    live = tmp_path / "live"
    live.mkdir()
    rpc.use_tls(live_dir(live, old, new))
    try:
        install(expired, live)
        rpc.reload_tls()
        message = caplog.records[-1].getMessage()
        assert message.startswith("gRPC certificate reload failed, still using")
        assert "expired at 2021-01-01 00:00:00 UTC (notAfter)" in message
    finally:
        rpc.use_tls(None)
