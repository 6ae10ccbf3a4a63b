"""Every flexlog process runs gRPC core's completion-queue TCP transport unless told otherwise."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

from process_helpers import stop_process, wait_for_line

from cluster import two_level_toml
from flexlog.core import config as config_mod
from flexlog.core import grpc_transport

_CHOOSE = """
import os, sys
if sys.argv[1] == "grpc first":
    import grpc
from flexlog.core import grpc_transport
from flexlog.core import config as config_mod
print(grpc_transport.choose(), repr(os.environ.get("GRPC_EXPERIMENTS")))
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRPC_")}
    return {**env, **extra}


def _choose(mode: str, env: dict[str, str]) -> str:
    return subprocess.run([sys.executable, "-c", _CHOOSE, mode], capture_output=True, text=True,
                          check=True, timeout=60, env=env).stdout.strip()


def test_choose_selects_the_transport_before_grpc_is_imported() -> None:
    assert _choose("fresh", _env()) == f"True {grpc_transport.EXPERIMENTS!r}"


def test_an_operators_choice_is_kept_even_when_empty() -> None:
    assert _choose("fresh", _env(GRPC_EXPERIMENTS="")) == "False ''"
    assert _choose("fresh", _env(GRPC_EXPERIMENTS="-event_engine_client")) == "False '-event_engine_client'"


def test_nothing_is_set_once_grpc_is_imported() -> None:
    # gRPC read the environment at its import: setting it now would only mislead children.
    assert _choose("grpc first", _env()) == "False None"


def test_the_cli_module_does_not_import_grpc() -> None:
    script = "import sys, flexlog.cli.main; print('grpc' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=60, env=_env())
    assert out.stdout.strip() == "False"


def test_a_flexlog_server_accepts_on_the_completion_queue_transport(tmp_path: Path) -> None:
    """gRPC's own trace names the code that accepted a connection: tcp_server_posix is the
    completion-queue transport's (the EventEngine's logs posix_endpoint instead). A grpcio
    that dropped the experiments would also say "Unknown experiment"."""
    config = tmp_path / "cluster.toml"
    config.write_text(two_level_toml(tmp_path / "data"))
    address = config_mod.load(config).sequencers[0].address
    proc = subprocess.Popen(
        [sys.executable, "-m", "flexlog.cli", "sequencer", "--config", str(config), "--id", "root"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=_env(GRPC_VERBOSITY="debug", GRPC_TRACE="tcp,event_engine"))
    # The lines are read as they come; should the one awaited never come, the server is
    # stopped, its output ends and wait_for_line fails with what it printed.
    give_up = threading.Timer(30, proc.terminate)
    give_up.start()
    try:
        printed = wait_for_line(proc, "listening on")
        host, port = address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5):
            printed += wait_for_line(proc, "tcp_server_posix.cc")
    finally:
        give_up.cancel()
        stop_process(proc)
    assert "Unknown experiment" not in printed
