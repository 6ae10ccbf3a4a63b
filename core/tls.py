"""TLS for the Kafka listeners (Python ssl) and gRPC, and a development CA.

One CA, cert and key serve the whole cluster (a `[tls]` table): gateways present
the cert on SSL listeners and, when client_auth asks for it, check client certs
against the CA; with grpc = true every gRPC server presents it and every
channel checks it, and presents it back so a server can require it.

Certificates expire and get replaced: `read_cert` reads a certificate's serial,
fingerprint and validity (a few DER fields, so again no crypto dependency) for
the log lines that say which certificate is in use and that it has expired, and
`ServerCerts` holds the Kafka listeners' context, replaced whole on a reload
(core/grpc_certs.py does the same for gRPC).

`flexlog certs` writes a dev CA and certs with the openssl command line tool,
so there is no Python crypto dependency; production certs come from elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from flexlog.core.config import TlsConfig

log = logging.getLogger("flexlog.core.tls")

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


# ---- certificates over time ------------------------------------------------------


class CertError(ValueError):
    """A certificate file that cannot be read, or a certificate not valid now."""


@dataclass(frozen=True)
class CertInfo:
    """What tells one certificate from its replacement, and when it is valid."""

    path: Path
    serial: int
    sha256: str  # of the DER, written as `openssl x509 -fingerprint -sha256` writes it
    not_before: datetime
    not_after: datetime

    def problem(self, now: datetime | None = None) -> str | None:
        """Why a peer refuses this certificate at `now` (default: the current time); None if valid."""
        now = now or datetime.now(UTC)
        if now < self.not_before:
            return f"is not valid before {_when(self.not_before)} (notBefore)"
        if now > self.not_after:
            return f"expired at {_when(self.not_after)} (notAfter)"
        return None

    def describe(self) -> str:
        return (f"{self.path} (serial {self.serial:X}, SHA-256 {self.sha256}, "
                f"valid {_when(self.not_before)} to {_when(self.not_after)})")


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.DOTALL)


def read_cert(path: Path) -> CertInfo:
    """The first certificate in a PEM file: the server's own one in a chain file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise CertError(f"{path}: {exc}") from None
    return parse_cert(path, text)


def parse_cert(path: Path, text: str) -> CertInfo:
    """The first certificate in PEM text read from path (named in errors and descriptions)."""
    try:
        match = _PEM_CERT.search(text)
        if match is None:
            raise ValueError("no PEM certificate in it")
        der = base64.b64decode(match.group(1))
        serial, not_before, not_after = _tbs_fields(der)
    except (ValueError, IndexError) as exc:
        raise CertError(f"{path}: {exc}") from None
    digest = hashlib.sha256(der).hexdigest().upper()
    return CertInfo(path, serial, ":".join(digest[i:i + 2] for i in range(0, len(digest), 2)),
                    not_before, not_after)


def _tlv(der: bytes, pos: int) -> tuple[int, int, int]:
    """The tag of the DER element at pos, and where its value starts and ends."""
    tag, length = der[pos], der[pos + 1]
    pos += 2
    if length & 0x80:
        size = length & 0x7F
        length = int.from_bytes(der[pos:pos + size], "big")
        pos += size
    if pos + length > len(der):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _children(der: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    while start < end:
        out.append(_tlv(der, start))
        start = out[-1][2]
    return out


def _tbs_fields(der: bytes) -> tuple[int, datetime, datetime]:
    """serialNumber, notBefore and notAfter of an X.509 certificate (RFC 5280 section 4.1)."""
    cert_start = _tlv(der, 0)[1]
    _, tbs_start, tbs_end = _tlv(der, cert_start)
    fields = _children(der, tbs_start, tbs_end)
    if fields[0][0] == 0xA0:  # [0] version, absent in v1 certificates
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, ...
    _, serial_start, serial_end = fields[0]
    not_before, not_after = (_asn1_time(der, *t) for t in _children(der, fields[3][1], fields[3][2]))
    return int.from_bytes(der[serial_start:serial_end], "big"), not_before, not_after


def _asn1_time(der: bytes, tag: int, start: int, end: int) -> datetime:
    text = der[start:end].decode("ascii")
    if tag == 0x17:  # UTCTime: two-digit years, 50-99 meaning 19xx (RFC 5280 4.1.2.5.1)
        text = ("19" if int(text[:2]) >= 50 else "20") + text
    elif tag != 0x18:  # GeneralizedTime
        raise ValueError(f"validity time with tag {tag:#x}")
    return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)


class ServerCerts:
    """The context new connections on the Kafka SSL listeners are accepted with, and its certificate.

    `reload` builds a whole new context from the files and swaps it in, rather than
    calling load_cert_chain again on the one in use: that would reach new handshakes
    too (established connections keep the certificate they were made with, either
    way), but a call that fails halfway, say on a key that does not match the new
    certificate because only one file was replaced yet, leaves that context without a
    usable key and every handshake after it fails.
    """

    def __init__(self, tls: TlsConfig) -> None:
        self.tls = tls
        self.context = server_context(tls)
        self.cert = read_cert(tls.cert_file)

    def reload(self) -> CertInfo:
        """Load ca_file, cert_file and key_file again. Raises CertError or ssl.SSLError/OSError, keeping
        the current context, when they do not load or the certificate is not valid now: a peer would
        refuse it, which is never better than what is in use (Kafka checks a new keystore so too)."""
        context = server_context(self.tls)
        cert = read_cert(self.tls.cert_file)
        problem = cert.problem()
        if problem is not None:
            raise CertError(f"{cert.describe()} {problem}")
        self.context, self.cert = context, cert
        return cert


_reported: set[tuple[Path, str]] = set()


def report_invalid(cert: CertInfo, use: str) -> None:
    """Log an error if cert is not valid now, once per process and problem: gRPC builds credentials
    for every channel, and its failed handshakes happen inside grpc's C core, which logs nothing of
    its own here, so this line is what names the file."""
    problem = cert.problem()
    if problem is not None and (cert.path, problem) not in _reported:
        _reported.add((cert.path, problem))
        log.error("%s certificate %s %s: peers refuse TLS handshakes with it until it is replaced",
                  use, cert.describe(), problem)


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
