"""Helpers for the operations tests: the Prometheus binaries and the dashboards generator."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "dashboards"
DOCKER = REPO / "docker"


def tool(name: str) -> str:
    """Path of a Debian prometheus binary; fails (never skips) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: `./dev test` installs Debian's prometheus package "
                    f"(which provides prometheus and promtool); or run `apt-get install prometheus`")
    return path


def load_generator() -> ModuleType:
    """dashboards/generate.py, which is a script rather than part of the package."""
    spec = importlib.util.spec_from_file_location("dashboards_generate", DASHBOARDS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def generator() -> ModuleType:
    return load_generator()
