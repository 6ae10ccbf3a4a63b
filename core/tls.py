"""TLS for the Kafka listeners (Python ssl) and gRPC, and a development CA.

One CA, cert and key serve the whole cluster (a `[tls]` table): gateways present
the cert on SSL listeners and, when client_auth asks for it, check client certs
against the CA; with grpc = true every gRPC server presents it and every
channel checks it, and presents it back so a server can require it.

`flexlog certs` writes a dev CA and certs with the openssl command line tool,
so there is no Python crypto dependency; production certs come from elsewhere.
"""

from __future__ import annotations

import ssl
import subprocess
import tempfile
from pathlib import Path

import grpc

from flexlog.core.config import TlsConfig

_VERIFY = {"none": ssl.CERT_NONE, "requested": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def server_context(tls: TlsConfig) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(tls.cert_file, tls.key_file)
    ctx.verify_mode = _VERIFY[tls.client_auth]
    if tls.client_auth != "none":
        ctx.load_verify_locations(tls.ca_file)
    return ctx


def client_context(tls: TlsConfig) -> ssl.SSLContext:
    """For the CLI on a gateway's SSL listener: checks the gateway against the CA and presents the
    cluster's cert (it carries clientAuth), so a listener that requires client certs lets it in."""
    ctx = ssl.create_default_context(cafile=tls.ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(tls.cert_file, tls.key_file)
    return ctx


def principal_name(peer_cert: dict | None) -> str | None:
    """A client cert's subject as Kafka writes it (RFC 2253 order: most specific first)."""
    if not peer_cert:
        return None
    rdns = [f"{_SHORT.get(k, k)}={v}" for rdn in peer_cert.get("subject", ()) for k, v in rdn]
    return ",".join(reversed(rdns)) or None


_SHORT = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
          "countryName": "C", "localityName": "L", "stateOrProvinceName": "ST"}


def grpc_server_credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())],
        root_certificates=tls.ca_file.read_bytes(),
        require_client_auth=tls.client_auth == "required")


def grpc_channel_credentials(tls: TlsConfig) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=tls.ca_file.read_bytes(), private_key=tls.key_file.read_bytes(),
        certificate_chain=tls.cert_file.read_bytes())


# ---- dev certificates ------------------------------------------------------------


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()}")


def _sign(out: Path, ca: Path, name: str, subject: str, days: int, extensions: str) -> None:
    key, csr, crt = out / f"{name}.key", out / f"{name}.csr", out / f"{name}.crt"
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(csr), "-subj", subject)
    with tempfile.TemporaryDirectory() as tmp:
        ext = Path(tmp) / "ext.cnf"
        ext.write_text(f"[v3]\n{extensions}\n")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca / "ca.crt"), "-CAkey",
                 str(ca / "ca.key"), "-CAcreateserial", "-days", str(days), "-out", str(crt),
                 "-extfile", str(ext), "-extensions", "v3")
    csr.unlink()
    key.chmod(0o600)


def generate_dev_certs(out: Path, clients: tuple[str, ...] = ("client",), days: int = 365,
                       hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> None:
    """ca.crt/ca.key, server.crt/key for `hosts`, and NAME.crt/key per client (CN=NAME)."""
    out.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(out / "ca.key"), "-out", str(out / "ca.crt"), "-days", str(days),
             "-subj", "/CN=flexlog dev CA")
    (out / "ca.key").chmod(0o600)
    san = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() else f"DNS:{h}" for h in hosts)
    # Every process uses the server cert for gRPC in both directions, hence clientAuth too.
    _sign(out, out, "server", "/CN=flexlog", days,
          f"subjectAltName = {san}\nextendedKeyUsage = serverAuth, clientAuth")
    for client in clients:
        _sign(out, out, client, f"/CN={client}", days, "extendedKeyUsage = clientAuth")
