"""Certificates over time: reading validity and fingerprints, swapping the listeners' context, and the
log line that names an expired certificate used for gRPC."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import ssl
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from tls_helpers import generate_cert, generate_expired_cert

from cluster import free_ports
from flexlog.core import rpc, tls
from flexlog.core.config import TlsConfig


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    tls.generate_dev_certs(out, clients=())
    generate_expired_cert(out, "expired", server=True)
    generate_cert(out, "future", "20990101000000Z", "21000101000000Z", server=True)
    generate_cert(out, "far", "20240101000000Z", "20600101000000Z", server=True)
    return out


def config(certs: Path, name: str = "server", client_auth: str = "none") -> TlsConfig:
    return TlsConfig(certs / "ca.crt", certs / f"{name}.crt", certs / f"{name}.key", client_auth, True)


def openssl_fields(path: Path) -> dict[str, str]:
    out = subprocess.run(["openssl", "x509", "-in", str(path), "-noout", "-serial", "-startdate",
                          "-enddate", "-fingerprint", "-sha256"], capture_output=True, text=True, check=True)
    return dict(line.split("=", 1) for line in out.stdout.splitlines())


@pytest.mark.parametrize("name", ["server", "expired", "far"])
def test_read_cert_agrees_with_openssl(certs, name):
    cert = tls.read_cert(certs / f"{name}.crt")
    fields = openssl_fields(certs / f"{name}.crt")
    assert cert.serial == int(fields["serial"], 16)
    assert cert.sha256 == fields["sha256 Fingerprint"]
    for ours, theirs in ((cert.not_before, fields["notBefore"]), (cert.not_after, fields["notAfter"])):
        assert ours == datetime.strptime(theirs, "%b %d %H:%M:%S %Y GMT").replace(tzinfo=UTC)


def test_validity_problems_name_the_date(certs):
    assert tls.read_cert(certs / "server.crt").problem() is None
    assert tls.read_cert(certs / "expired.crt").problem() == "expired at 2021-01-01 00:00:00 UTC (notAfter)"
    assert (tls.read_cert(certs / "future.crt").problem()
            == "is not valid before 2099-01-01 00:00:00 UTC (notBefore)")
    # 2060 is written as GeneralizedTime, earlier dates as UTCTime.
    assert tls.read_cert(certs / "far.crt").not_after == datetime(2060, 1, 1, tzinfo=UTC)


def test_read_cert_refuses_what_is_not_a_certificate(tmp_path, certs):
    (tmp_path / "key.pem").write_text((certs / "server.key").read_text())
    with pytest.raises(tls.CertError, match="no PEM certificate"):
        tls.read_cert(tmp_path / "key.pem")
    with pytest.raises(tls.CertError, match=r"missing\.crt"):
        tls.read_cert(tmp_path / "missing.crt")


async def fingerprint_seen(port: int) -> tuple[str, asyncio.StreamReader, asyncio.StreamWriter]:
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    return hashlib.sha256(der).hexdigest(), reader, writer


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(path.read_text())).hexdigest()


async def test_load_cert_chain_again_reaches_new_handshakes_but_a_failed_one_breaks_the_context(certs):
    """Why ServerCerts swaps whole contexts instead of reloading the one in use."""
    context = tls.server_context(config(certs))
    server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        before, reader, writer = await fingerprint_seen(port)
        assert before == sha256_of(certs / "server.crt")
        context.load_cert_chain(certs / "far.crt", certs / "far.key")
        after, _, new_writer = await fingerprint_seen(port)
        assert after == sha256_of(certs / "far.crt")
        new_writer.close()
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"  # the established connection goes on
        writer.close()

        with pytest.raises(ssl.SSLError, match="KEY_VALUES_MISMATCH"):
            context.load_cert_chain(certs / "server.crt", certs / "far.key")
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            await fingerprint_seen(port)
    finally:
        server.close()


def test_server_certs_reload_swaps_only_a_valid_certificate(tmp_path, certs):
    live = tmp_path / "live"
    live.mkdir()
    for name in ("ca.crt", "server.crt", "server.key"):
        shutil.copy(certs / name, live / name)
    held = tls.ServerCerts(config(live))
    first = held.context
    assert held.cert.sha256 == tls.read_cert(certs / "server.crt").sha256

    shutil.copy(certs / "far.crt", live / "server.crt")  # the key not replaced yet
    with pytest.raises(ssl.SSLError, match="KEY_VALUES_MISMATCH"):
        held.reload()
    shutil.copy(certs / "expired.key", live / "server.key")
    shutil.copy(certs / "expired.crt", live / "server.crt")
    with pytest.raises(tls.CertError, match=r"expired at 2021-01-01 00:00:00 UTC \(notAfter\)"):
        held.reload()
    assert held.context is first and held.cert.sha256 == tls.read_cert(certs / "server.crt").sha256

    shutil.copy(certs / "far.key", live / "server.key")
    shutil.copy(certs / "far.crt", live / "server.crt")
    assert held.reload().sha256 == tls.read_cert(certs / "far.crt").sha256
    assert held.context is not first and held.cert.not_after.year == 2060


async def call_over_grpc(certs: Path, name: str) -> grpc.StatusCode:
    """Any call to a server presenting NAME.crt: UNIMPLEMENTED once the TLS handshake succeeded."""
    [port] = free_ports(1)
    rpc.use_tls(config(certs, name))
    server = rpc.server()
    rpc.listen(server, f"127.0.0.1:{port}")
    await server.start()
    rpc.use_tls(config(certs))
    try:
        async with rpc.channel(f"localhost:{port}") as channel:
            call = channel.unary_unary("/flexlog.Nothing/Call")
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await call(b"", timeout=5)
            return failed.value.code()
    finally:
        rpc.use_tls(None)
        await server.stop(None)


async def test_grpc_with_an_expired_certificate_logs_the_file_and_its_not_after(certs, caplog):
    caplog.set_level(logging.ERROR, logger="flexlog.core.tls")
    assert await call_over_grpc(certs, "server") == grpc.StatusCode.UNIMPLEMENTED
    assert not caplog.records
    assert await call_over_grpc(certs, "expired") == grpc.StatusCode.UNAVAILABLE
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"gRPC server certificate {certs / 'expired.crt'} (serial ")
    assert "expired at 2021-01-01 00:00:00 UTC (notAfter)" in line
    # Once per process: every channel and server builds credentials again.
    await call_over_grpc(certs, "expired")
    assert len(caplog.records) == 1
