"""The compat tests' clients outside Python (compat_tests/js, js_kip848, go): whether they are
installed, and one step of each run as a process that prints JSON."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

JS = Path(__file__).parent / "js"
JS_KIP848 = Path(__file__).parent / "js_kip848"
GO = Path(__file__).parent / "go"
GOPATH = Path("/usr/share/gocode")  # where Debian's golang-*-dev packages put Go sources

HAVE_KAFKAJS = shutil.which("node") is not None and (JS / "node_modules" / "kafkajs").is_dir()
HAVE_KAFKA_JAVASCRIPT = (shutil.which("node") is not None
                         and (JS_KIP848 / "node_modules" / "@confluentinc").is_dir())
HAVE_SARAMA = shutil.which("go") is not None and (GOPATH / "src/github.com/Shopify/sarama").is_dir()


def kafkajs(bootstrap: str, *args: object) -> dict:
    """One step of compat_tests/js/client.js."""
    done = subprocess.run(["node", str(JS / "client.js"), bootstrap, *map(str, args)],
                          capture_output=True, timeout=40, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


def build_sarama(directory: Path) -> Path:
    """compat_tests/go built into directory, offline: GOPATH mode, because Debian ships Sarama and
    its dependencies as a GOPATH tree, not as modules."""
    binary = directory / "sarama"
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": str(GOPATH)}
    done = subprocess.run(["go", "build", "-o", str(binary), "."], cwd=GO, env=env,
                          capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return binary


def run_sarama(binary: Path, bootstrap: str, version: str, *args: object) -> dict:
    """One step of compat_tests/go, Sarama told the broker runs Kafka `version` ("max": its newest)."""
    done = subprocess.run([str(binary), bootstrap, version, *map(str, args)],
                          capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)
