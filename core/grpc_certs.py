"""The key, certificate and CA this process's gRPC servers and channels use, reloaded on SIGHUP.

Servers get dynamic credentials: grpc asks `fetch` at each new handshake whether
the certificate changed, so connections accepted after a reload get the new one
while established connections, and the streams on them, keep theirs. Channels are
built from the files as last loaded, so channels made after a reload present the
new certificate and trust the new CA; a channel made before keeps its credentials
(also when it reconnects), which is why a new CA must be trusted next to the old one
until every process has reloaded (docs/security.md).

A reload reads the three files once, checks them together (the key matches the
certificate, the CA parses, the certificate is valid now) and only then swaps them
in: files replaced halfway, or broken, leave the old certificate in use.
"""

from __future__ import annotations

import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import grpc

from flexlog.core.config import TlsConfig
from flexlog.core.tls import CertError, CertInfo, parse_cert, report_invalid


@dataclass(frozen=True)
class GrpcFiles:
    key: bytes
    chain: bytes
    ca: bytes
    cert: CertInfo  # the first certificate in chain


def load(tls: TlsConfig) -> GrpcFiles:
    """Read and check the files; CertError, or ssl.SSLError/OSError, when they do not go together."""
    key, chain, ca = tls.key_file.read_bytes(), tls.cert_file.read_bytes(), tls.ca_file.read_bytes()
    cert = parse_cert(tls.cert_file, chain.decode("ascii", errors="replace"))
    # grpc's C core would only fail the handshakes later, so check with Python's ssl now. It loads
    # a key pair from files only: a private directory holds copies of the bytes read above.
    with tempfile.TemporaryDirectory() as private:
        key_copy, chain_copy = Path(private) / "key.pem", Path(private) / "chain.pem"
        key_copy.write_bytes(key)
        chain_copy.write_bytes(chain)
        check = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        check.load_cert_chain(chain_copy, key_copy)
    try:
        check.load_verify_locations(cadata=ca.decode("ascii"))
    except (UnicodeDecodeError, ssl.SSLError) as exc:
        raise CertError(f"{tls.ca_file}: no usable CA certificate ({exc})") from None
    return GrpcFiles(key, chain, ca, cert)


def _server_configuration(files: GrpcFiles) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration([(files.key, files.chain)], root_certificates=files.ca)


class GrpcCerts:
    def __init__(self, tls: TlsConfig) -> None:
        self.tls = tls
        # At start an expired certificate is still used (and logged): refusing to start would not
        # make peers accept it, and the process comes up ready for a SIGHUP with a valid one.
        self.files = load(tls)

    def reload(self) -> CertInfo:
        """Use the files as they are now. Raises (keeping the files in use) when they do not load or
        the certificate is not valid now: a peer would refuse it, which is never better."""
        files = load(self.tls)
        problem = files.cert.problem()
        if problem is not None:
            raise CertError(f"{files.cert.describe()} {problem}")
        self.files = files
        return files.cert

    def server_credentials(self) -> grpc.ServerCredentials:
        report_invalid(self.files.cert, "gRPC server")
        served = self.files

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            # Called by grpc (on its own threads) before each new handshake; None keeps the current one.
            nonlocal served
            if self.files is served:
                return None
            served = self.files
            return _server_configuration(served)

        return grpc.dynamic_ssl_server_credentials(
            _server_configuration(served), fetch,
            require_client_authentication=self.tls.client_auth == "required")

    def channel_credentials(self) -> grpc.ChannelCredentials:
        files = self.files
        report_invalid(files.cert, "gRPC client")
        return grpc.ssl_channel_credentials(root_certificates=files.ca, private_key=files.key,
                                            certificate_chain=files.chain)
