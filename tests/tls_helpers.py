"""Certificates only tests need, made against the dev CA of `flexlog.core.tls.generate_dev_certs`."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"openssl {args[0]} failed: {done.stderr.strip()}"


def generate_expired_cert(out: Path, name: str) -> None:
    """NAME.crt/key: a client cert (CN=NAME) signed by out's CA that expired in 2021."""
    key, csr, crt = out / f"{name}.key", out / f"{name}.csr", out / f"{name}.crt"
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
    with tempfile.TemporaryDirectory() as tmp:
        # openssl 3.0's x509 cannot backdate; `openssl ca` can, given its small database.
        db = Path(tmp)
        (db / "index.txt").write_text("")
        (db / "serial").write_text("01\n")
        conf = db / "ca.cnf"
        conf.write_text(
            f"[ca]\ndefault_ca = dev\n[dev]\ndatabase = {db}/index.txt\nnew_certs_dir = {db}\n"
            f"serial = {db}/serial\ndefault_md = sha256\npolicy = any\n"
            "[any]\ncommonName = supplied\n[v3]\nextendedKeyUsage = clientAuth\n")
        _openssl("ca", "-batch", "-config", str(conf), "-cert", str(out / "ca.crt"), "-keyfile",
                 str(out / "ca.key"), "-in", str(csr), "-out", str(crt), "-startdate", "20200101000000Z",
                 "-enddate", "20210101000000Z", "-extensions", "v3", "-notext")
    csr.unlink()
