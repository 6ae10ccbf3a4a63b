"""The package as a user gets it: the wheel and the sdist, each installed into a fresh venv
outside the checkout, run a cluster that kcat produces to and consumes from.

Every other test runs against the editable install, which imports straight from the source
tree and so cannot notice a module or a data file missing from the package: the wheel once
shipped without flexlog.gateway.protocol.messages, and no gateway started (issue 16).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from process_helpers import wait_for_line

from cluster import free_up_ports

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
KINDS = ("wheel", "sdist")
# The compiled cffi bindings: no .py in the tree stands for them.
EXTENSIONS = ("flexlog.pm._pmem", "flexlog.core._records_walk", "flexlog.core._append_wire")


def run(cmd: list[str | Path], timeout: float, cwd: Path | None = None) -> str:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, cwd=cwd)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def source_modules() -> list[str]:
    """Every module of the source tree, named as pyproject's package-dir maps its folder."""
    modules = []
    for package, folder in PYPROJECT["tool"]["setuptools"]["package-dir"].items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            # __main__ runs the CLI when imported; the entry point test covers it.
            if parts[-1] == "__main__":
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules.append(".".join((package, *parts)))
    return modules


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The wheel and the sdist, built from a copy of the checkout's files.

    A copy because setuptools writes build/ and *.egg-info/ next to the sources, and a
    build/ left by an earlier build can put a file into the wheel that the tree no longer
    has. The copy holds what git would commit: tracked files and new, unignored ones.
    """
    tmp = tmp_path_factory.mktemp("build")
    files = run(["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                timeout=30).split("\0")
    src = tmp / "src"
    for name in filter(None, files):
        if (ROOT / name).is_file():  # a deleted, not yet committed file is still listed
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes((ROOT / name).read_bytes())
    # No isolation: the checkout's venv has the build requirements, and this works offline.
    run([sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", tmp / "dist",
         src], timeout=300)
    (wheel,) = (tmp / "dist").glob("flexlog-*.whl")
    (sdist,) = (tmp / "dist").glob("flexlog-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


@pytest.fixture(scope="module")
def venvs(artifacts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """kind -> a fresh venv with that artifact installed, both installed side by side.

    The dependencies, and the build requirements pyproject declares, are fetched once
    from the package index into a wheelhouse; both installs then use only that
    (--no-index). So the sdist is built into a wheel in an isolated environment holding
    nothing but its declared build requirements, from nothing but its own files.
    """
    tmp = tmp_path_factory.mktemp("install")
    wheelhouse = tmp / "wheelhouse"
    run([sys.executable, "-m", "pip", "download", "-q", "--dest", wheelhouse, artifacts["wheel"],
         *PYPROJECT["build-system"]["requires"]], timeout=300)
    for own in wheelhouse.glob("flexlog-*"):
        own.unlink()
    installs = {}
    for kind in KINDS:
        venv = tmp / f"venv-{kind}"
        # Without pip: ensurepip costs ~10 s a venv, and the checkout's pip installs into it.
        run([sys.executable, "-m", "venv", "--without-pip", venv], timeout=120)
        installs[kind] = subprocess.Popen(
            [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
             "--no-index", "--find-links", str(wheelhouse), str(artifacts[kind])],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp)
    for kind, proc in installs.items():
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"installing the {kind} failed:\n{out}"
    return {kind: tmp / f"venv-{kind}" for kind in KINDS}


def python_of(venv: Path) -> list[str]:
    # -I: neither PYTHONPATH nor the current folder can lend it the checkout's modules.
    return [str(venv / "bin" / "python"), "-I"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_module_of_the_tree_imports_from_the_installed_package(
        kind: str, venvs: dict[str, Path], tmp_path: Path) -> None:
    venv = venvs[kind]
    modules = [*source_modules(), *EXTENSIONS]
    assert "flexlog.gateway.protocol.messages" in modules
    script = """
import importlib, importlib.resources, sys
failed = []
for name in sys.argv[2:]:
    try:
        module = importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
        continue
    if not module.__file__.startswith(sys.argv[1]):
        failed.append(f"{name} imported from {module.__file__}, not the venv")
if not importlib.resources.files("flexlog.core.proto").joinpath("flexlog.proto").is_file():
    failed.append("flexlog.core.proto has no flexlog.proto")
print("\\n".join(failed))
"""
    out = run([*python_of(venv), "-c", script, venv, *modules], timeout=120, cwd=tmp_path)
    assert out.strip() == "", f"from the installed {kind}:\n{out}"
    # The console script and `python -m flexlog.cli` (the launcher starts every child that way).
    for command in ([venv / "bin" / "flexlog"], [*python_of(venv), "-m", "flexlog.cli"]):
        assert run([*command, "--help"], timeout=60, cwd=tmp_path).startswith("usage: flexlog")


def group_alive(pgid: int, wait_s: float = 0.0) -> bool:
    """Whether any process of the group is left, after waiting up to wait_s for them to exit."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.1)


@contextlib.contextmanager
def cluster(venv: Path, data: Path, base_port: int, kafka_port: int) -> Iterator[subprocess.Popen[str]]:
    """`flexlog up` from the venv in a process group of its own, which its children share:
    whatever it leaves behind is found, and killed here whatever the test's outcome."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [str(venv / "bin" / "flexlog"), "up", "--data-dir", str(data), "--base-port", str(base_port),
         "--kafka-port", str(kafka_port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=data.parent,
        start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        if group_alive(proc.pid, wait_s=10):
            os.killpg(proc.pid, signal.SIGKILL)


def commands_of_children(pid: int) -> list[str]:
    children = run(["pgrep", "-P", str(pid)], timeout=10).split()
    return [Path(f"/proc/{c}/cmdline").read_bytes().split(b"\0")[0].decode() for c in children]


@pytest.mark.parametrize("kind", KINDS)
def test_flexlog_up_from_the_installed_package_serves_kafka(
        kind: str, venvs: dict[str, Path], tmp_path: Path) -> None:
    venv = venvs[kind]
    data = tmp_path / "data"
    base, kafka_port = free_up_ports()
    kafka = f"127.0.0.1:{kafka_port}"
    with cluster(venv, data, base, kafka_port) as proc:
        printed = wait_for_line(proc, "cluster ready", timeout=90)
        assert f"Kafka bootstrap servers: {kafka}" in printed
        # Every process of the cluster (root, leaf, 3 replicas, gateway, controller) runs the
        # venv's Python, so the venv's flexlog.
        commands = commands_of_children(proc.pid)
        assert len(commands) == 7 and set(commands) == {str(venv / "bin" / "python")}, commands
        topic = f"installed-{kind}"
        produced = subprocess.run(["kcat", "-b", kafka, "-P", "-t", topic, "-p", "0"],
                                  input=b"from the installed package\n", capture_output=True, timeout=60)
        assert produced.returncode == 0, produced.stderr
        consumed = subprocess.run(
            ["kcat", "-b", kafka, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e"],
            capture_output=True, timeout=60)
        assert consumed.returncode == 0, consumed.stderr
        assert consumed.stdout == b"from the installed package\n"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert not group_alive(proc.pid, wait_s=10), "flexlog up left processes behind"
    # The replicas stored the record in PM pools, through the package's compiled binding.
    pools = list((data / "replicas").glob("*/pm.pool"))
    assert len(pools) == 3
    # They take 256 MiB each (the default), and pytest keeps the last runs' tmp folders.
    for pool in pools:
        pool.unlink()
