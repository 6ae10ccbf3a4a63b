"""The monitoring files are consistent: generated files current, promtool happy, panels well formed."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from types import ModuleType

import yaml
from ops_helpers import DASHBOARDS, alert_rules, alert_signal, tool


def test_generated_files_are_current(generator: ModuleType) -> None:
    stale = [str(path) for path, text in generator.generated_files().items()
             if not path.exists() or path.read_text() != text]
    assert not stale, f"run `.venv/bin/python dashboards/generate.py`: {stale} are out of date"


def test_promtool_accepts_configs_and_rules(tmp_path: Path) -> None:
    promtool = tool("promtool")
    for config in ("prometheus.yml", "prometheus-compose.yml"):
        result = subprocess.run([promtool, "check", "config", str(DASHBOARDS / config)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
    result = subprocess.run([promtool, "check", "rules", str(DASHBOARDS / "alerts.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_fire_when_they_should() -> None:
    """promtool's rule unit tests: each alert fires on a bad series and stays quiet on a good one."""
    tests = Path(__file__).parent / "alerts_test.yml"
    result = subprocess.run([tool("promtool"), "test", "rules", str(tests)], capture_output=True,
                            text=True, timeout=60, cwd=tests.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", tests.read_text()))
    assert {r["alert"] for r in alert_rules()} <= tested, "every alert needs a promtool test case"


def test_alerts_have_the_checked_form_and_docs() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert {"FlexLogProcessDown", "FlexLogStoreNearlyFull", "FlexLogConsumerLagGrowing",
            "FlexLogGatewayErrorRate"} <= set(names)
    for rule in alert_rules():
        alert_signal(rule)
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_dashboards_are_well_formed_grafana_json() -> None:
    datasource = yaml.safe_load((DASHBOARDS / "provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    provider = yaml.safe_load((DASHBOARDS / "provisioning/dashboards/flexlog.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/flexlog"
    uids = set()
    for path in sorted(DASHBOARDS.glob("*.json")):
        doc = json.loads(path.read_text())
        assert doc["uid"] not in uids
        uids.add(doc["uid"])
        ids = [p["id"] for p in doc["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in doc["panels"]:
            assert panel["datasource"]["uid"] == uid
            assert panel["targets"], f"{path.name}: {panel['title']} has no query"
            grid = panel["gridPos"]
            assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
    assert {"overview", "ordering", "storage", "gateway"} <= {p.stem for p in DASHBOARDS.glob("*.json")}


def test_scrape_config_names_every_process_of_the_default_cluster(generator: ModuleType) -> None:
    doc = yaml.safe_load((DASHBOARDS / "prometheus.yml").read_text())
    targets = {t for job in doc["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    # `flexlog up` defaults: sequencers 8100/8101, replicas 8200-8202, gateway 8300, launcher 8400.
    assert targets == {f"127.0.0.1:{p}" for p in (8100, 8101, 8200, 8201, 8202, 8300, 8400)}
