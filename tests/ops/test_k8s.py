"""docker/k8s/: the manifests validate against the Kubernetes API schemas (kubernetes-validate,
offline: the schemas ship in the package), and the cluster config they carry parses with flexlog's
own loader and names exactly the pods, ports and volumes the workloads create."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from ops_helpers import DOCKER

from flexlog.core import config as config_mod
from flexlog.core.config import ClusterConfig

K8S = DOCKER / "k8s"
# The oldest Kubernetes release still supported upstream when these were written; every field used
# here is older than it.
KUBERNETES_VERSION = "1.30.0"
CONFIG_MOUNT = "/etc/flexlog/cluster.toml"


def manifests() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


def objects(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in manifests() if doc["kind"] == kind}


def cluster() -> ClusterConfig:
    text = objects("ConfigMap")["flexlog-cluster"]["data"]["cluster.toml"]
    return config_mod.parse(tomllib.loads(text), K8S / "cluster.toml")


def validator() -> Any:
    return pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate is not installed (it is in the test extra: pip install -e '.[test]')")


def test_every_manifest_validates_strictly_against_the_kubernetes_schemas() -> None:
    kv = validator()
    docs = manifests()
    assert len(docs) >= 10
    for doc in docs:
        kv.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_misspelt_field() -> None:
    kv = validator()
    statefulset = objects("StatefulSet")["shard0"]
    statefulset["spec"]["replica"] = statefulset["spec"].pop("replicas")
    with pytest.raises(kv.ValidationError, match="'replica' was unexpected"):
        kv.validate(statefulset, KUBERNETES_VERSION, strict=True)


def test_the_config_passes_flexlogs_own_check(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(objects("ConfigMap")["flexlog-cluster"]["data"]["cluster.toml"])
    for args in (["up"], ["controller", "--id", "controller"]):
        result = subprocess.run([sys.executable, "-m", "flexlog.cli", args[0], "--config", str(path),
                                 *args[1:], "--check-config"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr


def container(statefulset: dict[str, Any]) -> dict[str, Any]:
    (one,) = statefulset["spec"]["template"]["spec"]["containers"]
    return one


def pod_ids(statefulset: dict[str, Any]) -> list[str]:
    """The --id each pod of the StatefulSet runs with, as its container's command works it out."""
    spec = container(statefulset)
    ids = []
    for ordinal in range(statefulset["spec"]["replicas"]):
        pod = f"{statefulset['metadata']['name']}-{ordinal}"
        if "command" in spec:
            # The shell form (replicas): run it with echo for flexlog, as the pod's hostname.
            script = spec["command"][-1].replace("exec flexlog", "exec echo")
            argv = subprocess.run(["/bin/sh", "-c", script], env={"HOSTNAME": pod}, capture_output=True,
                                  text=True, check=True).stdout.split()
        else:
            argv = [arg.replace("$(POD_NAME)", pod) for arg in spec["args"]]
        assert argv[argv.index("--config") + 1] == CONFIG_MOUNT
        ids.append(argv[argv.index("--id") + 1])
    return ids


def test_every_process_of_the_config_is_a_pod_at_its_address() -> None:
    cfg = cluster()
    statefulsets = objects("StatefulSet")
    services = objects("Service")
    processes = {s.name: (s.address, s.metrics_port) for s in cfg.sequencers}
    processes |= {r.name: (r.address, r.metrics_port) for s in cfg.shards for r in s.replicas}
    processes |= {g.name: (g.address, g.metrics_port) for g in cfg.gateways}
    seen = set()
    for name, sts in statefulsets.items():
        if name == "zookeeper":
            continue
        headless = services[sts["spec"]["serviceName"]]["spec"]
        assert headless["clusterIP"] == "None"
        ports = {p["containerPort"] for p in container(sts).get("ports", [])}
        for ordinal, pid in enumerate(pod_ids(sts)):
            seen.add(pid)
            if pid == "controller":
                continue
            address, metrics_port = processes[pid]
            host, _, port = address.rpartition(":")
            # Its own stable DNS name, resolvable before it is ready (it binds on it).
            assert host == f"{name}-{ordinal}.{sts['spec']['serviceName']}"
            assert headless.get("publishNotReadyAddresses") is True, name
            assert {int(port), metrics_port} <= ports, name
    assert seen == set(processes) | {"controller"}


def test_every_replica_keeps_its_pool_on_a_persistent_volume_of_its_own() -> None:
    cfg = cluster()
    for shard in cfg.shards:
        sts = objects("StatefulSet")[f"shard{shard.id}"]
        assert sts["spec"]["replicas"] == len(shard.replicas)
        (claim,) = sts["spec"]["volumeClaimTemplates"]
        mounts = {m["name"]: m["mountPath"] for m in container(sts)["volumeMounts"]}
        assert mounts[claim["metadata"]["name"]] == str(cfg.data_dir)
        # A fresh claim is root's; the image runs as 10001.
        assert sts["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 10001
        assert objects("PodDisruptionBudget")[f"shard{shard.id}"]["spec"]["maxUnavailable"] == 1


def test_every_gateway_has_a_service_of_its_own_for_its_external_listener() -> None:
    services = objects("Service")
    for gw in cluster().gateways:
        (external,) = [lis for lis in gw.listeners if lis.name == "EXTERNAL"]
        service = services[f"{gw.name}-external"]["spec"]
        assert service["selector"] == {"statefulset.kubernetes.io/pod-name": gw.name}
        (port,) = service["ports"]
        assert port["port"] == int(external.address.rpartition(":")[2])
        assert external.advertised != external.address


def test_the_view_store_is_the_zookeeper_statefulset() -> None:
    cfg = cluster()
    assert cfg.view_store == "zookeeper"
    host, _, port = cfg.zookeeper_hosts.rpartition(":")
    assert host == "zookeeper-0.zookeeper" and objects("StatefulSet")["zookeeper"]["spec"]["replicas"] == 1
    assert int(port) in {p["port"] for p in objects("Service")["zookeeper"]["spec"]["ports"]}
    assert objects("StatefulSet")["controller"]["spec"]["replicas"] == 1
