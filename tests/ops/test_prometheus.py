"""Every dashboard panel and alert rule, asked of a real Prometheus scraping a real cluster.

The cluster runs under `flexlog up` (so the launcher is scraped too) on PM
storage (so the PM tier metrics exist), with the scrape config written by the
same generator as dashboards/prometheus.yml. Load comes from a Kafka producer
and consumer through the gateway and from native appends to a root-owned color
(so the tree hop has traffic). Then every PromQL expression must return at
least one sample that is a number (histogram quantiles over no traffic are NaN).

Consumer groups arrive with a later issue: until the gateway serves
OffsetCommit and JoinGroup, the lag and rebalance metrics cannot have samples,
so their expressions are only required to be valid and the metrics declared.
As soon as the gateway serves those APIs, the test consumes as a group and the
exemption no longer applies.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from ops_helpers import DASHBOARDS, alert_rules, alert_signal, dashboard_exprs, tool
from process_helpers import stop_process, wait_for_line
from test_docs import documented_metrics

from cluster import free_ports, two_level_toml
from flexlog.core import config as config_mod
from flexlog.core.client import FlexLogClient
from flexlog.core.config import ClusterConfig
from flexlog.gateway.handlers import ENDPOINTS
from flexlog.gateway.protocol import ApiKey
from wire_client import WireClient

pytestmark = pytest.mark.slow

FLEXLOG = [sys.executable, "-m", "flexlog.cli"]
# Metric -> the API whose absence excuses it from having data (see the module docstring).
AWAITING_GROUPS = {
    "flexlog_gateway_consumer_lag_records": ApiKey.OFFSET_COMMIT,
    "flexlog_gateway_group_rebalances_total": ApiKey.JOIN_GROUP,
}
LOAD_SECONDS = 8.0


def http_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture
def cluster(tmp_path: Path, shm_dir: Path) -> Iterator[ClusterConfig]:
    """A PM cluster with metrics on every process, run by `flexlog up` (launcher included)."""
    path = tmp_path / "cluster.toml"
    path.write_text(two_level_toml(
        tmp_path / "data", storage="pm", gateways=1, metrics=True, launcher_metrics=True,
        extra=(f'pm_dir = "{shm_dir}"\n'
               f"pool_size_bytes = {32 << 20}\ncache_bytes = {4 << 20}")))
    cfg = config_mod.load(path)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PMEM_IS_PMEM_FORCE": "1"}
    proc = subprocess.Popen([*FLEXLOG, "--log-level", "WARNING", "up", "--config", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        wait_for_line(proc, "cluster ready")
        yield cfg
    finally:
        stop_process(proc, 30)


@pytest.fixture
def prometheus(tmp_path: Path, cluster: ClusterConfig, generator: ModuleType) -> Iterator[str]:
    """Debian's prometheus on 127.0.0.1 scraping the cluster every second; yields its base URL."""
    binary = tool("prometheus")
    config = tmp_path / "prometheus.yml"
    config.write_text(generator.scrape_config(cluster, source="test_prometheus", scrape_interval="1s",
                                              rule_files=[str(DASHBOARDS / "alerts.yml")]))
    check = subprocess.run([tool("promtool"), "check", "config", str(config)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    port = free_ports(1)[0]
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
                assert time.monotonic() < deadline, "prometheus did not become ready"
                time.sleep(0.2)
        yield url
    finally:
        stop_process(proc, 30)
        log.close()


def drive_load(cfg: ClusterConfig) -> None:
    """Kafka produce/consume through the gateway, one provoked error, native root-color appends."""
    bootstrap = cfg.gateways[0].address
    groups = ApiKey.JOIN_GROUP in ENDPOINTS and ApiKey.OFFSET_COMMIT in ENDPOINTS
    stop_at = time.monotonic() + LOAD_SECONDS

    async def native() -> None:
        async with FlexLogClient(cfg) as log:
            wide = await log.create_color("ops-wide", owner=cfg.root)
            while time.monotonic() < stop_at:
                await asyncio.gather(*(log.append([b"w" * 64], wide) for _ in range(20)))
                await asyncio.sleep(0.05)

    native_thread = threading.Thread(target=lambda: asyncio.run(native()))
    native_thread.start()
    try:
        # Deleting a topic that does not exist: an UNKNOWN_TOPIC_OR_PARTITION error to count.
        admin = AdminClient({"bootstrap.servers": bootstrap})
        with pytest.raises(Exception, match="UNKNOWN_TOPIC"):
            admin.delete_topics(["ops-no-such-topic"], operation_timeout=10)["ops-no-such-topic"].result()
        # A client held to a produce quota it exceeds at once: the quota metrics get samples. Its
        # request_percentage is loose, so it gets a request-time series without being held past the load.
        quotas = WireClient(bootstrap)
        try:
            quotas.call(ApiKey.ALTER_CLIENT_QUOTAS, 1, {
                "entries": [{"entity": [{"entity_type": "client-id", "entity_name": "ops-quota"}],
                             "ops": [{"key": "producer_byte_rate", "value": 1000.0, "remove": False},
                                     {"key": "request_percentage", "value": 5.0, "remove": False}]}],
                "validate_only": False})
        finally:
            quotas.close()
        limited = Producer({"bootstrap.servers": bootstrap, "client.id": "ops-quota", "linger.ms": 0})
        for _ in range(2):
            limited.produce("ops-quota", b"q" * 2500)
            assert limited.flush(30) == 0
        # One committed transaction, for the transactions metric.
        transactional = Producer({"bootstrap.servers": bootstrap, "transactional.id": "ops-txn"})
        transactional.init_transactions(30)
        transactional.begin_transaction()
        transactional.produce("ops-quota", b"t")
        transactional.commit_transaction(30)
        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": False, "linger.ms": 5})
        conf = {"bootstrap.servers": bootstrap, "group.id": "ops-dashboards", "fetch.wait.max.ms": 200,
                "enable.auto.commit": False, "auto.offset.reset": "earliest"}
        consumer = Consumer(conf)
        produced = consumed = 0
        try:
            while time.monotonic() < stop_at:
                for i in range(50):
                    producer.produce("ops-load", b"x" * 100, key=b"%d" % (i % 5))
                assert producer.flush(10) == 0
                if produced == 0:
                    # Only now does the topic exist to subscribe to or assign.
                    if groups:
                        consumer.subscribe(["ops-load"])
                    else:
                        consumer.assign([TopicPartition("ops-load", 0, 0)])
                produced += 50
                got = 0
                while (msg := consumer.poll(0.3)) is not None:
                    assert msg.error() is None, msg.error()
                    got += 1
                consumed += got
                if groups and got:
                    consumer.commit(asynchronous=False)
        finally:
            consumer.close()
        assert consumed > 0 and produced > 0
    finally:
        native_thread.join(30)


def query(url: str, expr: str) -> list[dict]:
    reply = http_json(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert reply["status"] == "success", f"{expr}: {reply}"
    return reply["data"]["result"]


def has_number(result: list[dict]) -> bool:
    return any(not math.isnan(float(r["value"][1])) for r in result)


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(flexlog_[a-z_]+|up|process_[a-z_]+)\b", expr))


def test_every_dashboard_and_alert_expression_returns_data(cluster: ClusterConfig, prometheus: str) -> None:
    drive_load(cluster)
    time.sleep(3)  # a few more scrapes and one rule evaluation after the load

    targets = http_json(f"{prometheus}/api/v1/targets")["data"]["activeTargets"]
    down = [(t["labels"]["process"], t["lastError"]) for t in targets if t["health"] != "up"]
    expected = 1 + len(cluster.sequencers) + sum(len(s.replicas) for s in cluster.shards) + len(
        cluster.gateways)
    assert len(targets) == expected and not down, down

    rules = http_json(f"{prometheus}/api/v1/rules")["data"]["groups"]
    loaded = {r["name"]: r["health"] for g in rules for r in g["rules"]}
    assert loaded == {r["alert"]: "ok" for r in alert_rules()}

    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.gateways[0].metrics_port}/metrics") as resp:
        gateway_text = resp.read().decode()
    expressions = [(panel, expr) for panel, exprs in dashboard_exprs().items() for expr in exprs]
    expressions += [(f"alert {r['alert']}", alert_signal(r)) for r in alert_rules()]
    pending = []
    for where, expr in expressions:
        awaiting = {m for m in metric_names(expr) if m in AWAITING_GROUPS
                    and AWAITING_GROUPS[m] not in ENDPOINTS}
        result = query(prometheus, expr)
        if awaiting:
            for metric in awaiting:
                assert f"# TYPE {metric} " in gateway_text, f"{where}: {metric} is not declared"
            continue
        if not has_number(result):
            pending.append((where, expr))
    # Consumer lag is refreshed every few seconds after a commit: give late series a moment.
    deadline = time.monotonic() + 15
    while pending and time.monotonic() < deadline:
        time.sleep(1)
        pending = [(where, expr) for where, expr in pending if not has_number(query(prometheus, expr))]
    empty = [f"{where}: {expr} -> {query(prometheus, expr)}" for where, expr in pending]
    assert not empty, "expressions without data:\n" + "\n".join(empty)

    # Every metric some process exports is in docs/operations.md's reference, and the
    # reference names nothing that no process exports.
    names = http_json(f"{prometheus}/api/v1/label/__name__/values")["data"]
    exported = {re.sub(r"_(bucket|sum|count)$", "", n) for n in names
                if n.startswith("flexlog_") and not n.endswith("_created")}
    documented = documented_metrics()
    assert exported - documented == set(), "exported but not documented"
    assert documented - exported == set(AWAITING_GROUPS) - {
        m for m, api in AWAITING_GROUPS.items() if api in ENDPOINTS}, "documented but not exported"
