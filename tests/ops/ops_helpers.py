"""Shared by the operations tests: paths, the Prometheus binaries, the dashboards generator, the
expressions of every dashboard panel and alert rule."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

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


# Every alert expression reads `<signal> <comparison> <number>`; the signal is what
# test_prometheus queries against a live cluster.
ALERT_FORM = re.compile(r"^(?P<signal>.+?)\s*(?P<op>==|!=|>=|<=|>|<)\s*(?P<threshold>[0-9.e+-]+)$", re.S)


def alert_rules() -> list[dict]:
    doc = yaml.safe_load((DASHBOARDS / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def alert_signal(rule: dict) -> str:
    match = ALERT_FORM.match(" ".join(rule["expr"].split()))
    assert match, f"alert {rule['alert']}: expr is not `<signal> <op> <threshold>`"
    return match["signal"]


def dashboard_exprs() -> dict[str, list[str]]:
    """panel title -> its PromQL expressions, over every dashboard JSON file."""
    out: dict[str, list[str]] = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            out[f"{path.stem}: {panel['title']}"] = [t["expr"] for t in panel["targets"]]
    return out
