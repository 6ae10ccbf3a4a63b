"""A throwaway ZooKeeper server (Debian's `zookeeper` package) on 127.0.0.1 for one test."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from process_helpers import stop_process

from cluster import free_ports

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")


@contextmanager
def running_zookeeper(tmp: Path) -> Iterator[str]:
    """Yields host:port once the server answers; stops it afterwards."""
    if not ZOOKEEPER_JAR.exists() or shutil.which("java") is None:
        raise RuntimeError("ZooKeeper is not installed: `./dev test` installs Debian's zookeeper")
    port = free_ports(1)[0]
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = tmp / "zoo.cfg"
    cfg.write_text(f"tickTime=2000\ndataDir={tmp / 'data'}\nclientPort={port}\n"
                   "clientPortAddress=127.0.0.1\nadmin.enableServer=false\n")
    log = (tmp / "zookeeper.log").open("wb")
    proc = subprocess.Popen(["java", "-Xmx256m", "-cp", str(ZOOKEEPER_JAR),
                             "org.apache.zookeeper.server.ZooKeeperServerMain", str(cfg)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    address = f"127.0.0.1:{port}"
    try:
        _wait_until_serving(address, proc)
        yield address
    finally:
        stop_process(proc)


def _wait_until_serving(address: str, proc: subprocess.Popen[bytes]) -> None:
    from kazoo.client import KazooClient

    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"ZooKeeper exited with {proc.returncode}")
        client = KazooClient(hosts=address, timeout=1.0)
        try:
            client.start(timeout=1.0)
            client.stop()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
        finally:
            client.close()
