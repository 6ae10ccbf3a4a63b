"""Certificates only tests need, made against the dev CA of `flexlog.core.tls.generate_dev_certs`."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"openssl {args[0]} failed: {done.stderr.strip()}"


def generate_cert(out: Path, name: str, start: str, end: str, server: bool = False) -> None:
    """NAME.crt/key signed by out's CA, valid from start to end (openssl's YYYYMMDDHHMMSSZ): a client
    cert (CN=NAME), or with server a server cert as generate_dev_certs makes (localhost, 127.0.0.1)."""
    key, csr, crt = out / f"{name}.key", out / f"{name}.csr", out / f"{name}.crt"
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
    usage = ("subjectAltName = DNS:localhost, IP:127.0.0.1\nextendedKeyUsage = serverAuth, clientAuth\n"
             if server else "extendedKeyUsage = clientAuth\n")
    with tempfile.TemporaryDirectory() as tmp:
        # openssl 3.0's x509 cannot backdate; `openssl ca` can, given its small database.
        db = Path(tmp)
        (db / "index.txt").write_text("")
        (db / "serial").write_text("01\n")
        conf = db / "ca.cnf"
        conf.write_text(
            f"[ca]\ndefault_ca = dev\n[dev]\ndatabase = {db}/index.txt\nnew_certs_dir = {db}\n"
            f"serial = {db}/serial\ndefault_md = sha256\npolicy = any\n"
            f"[any]\ncommonName = supplied\n[v3]\n{usage}")
        _openssl("ca", "-batch", "-config", str(conf), "-cert", str(out / "ca.crt"), "-keyfile",
                 str(out / "ca.key"), "-in", str(csr), "-out", str(crt), "-startdate", start,
                 "-enddate", end, "-extensions", "v3", "-notext")
    csr.unlink()


def generate_expired_cert(out: Path, name: str, server: bool = False) -> None:
    """NAME.crt/key, as generate_cert makes them, that expired in 2021."""
    generate_cert(out, name, "20200101000000Z", "20210101000000Z", server)
