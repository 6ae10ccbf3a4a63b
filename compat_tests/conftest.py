"""A real cluster (sequencers, replicas, one gateway) per test module, and helpers."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

_TESTS = Path(__file__).parent.parent / "tests"
sys.path[:0] = [str(_TESTS), str(_TESTS / "gateway")]

from cluster import running_cluster  # noqa: E402
from wire_client import running_gateway  # noqa: E402


@pytest.fixture(scope="module")
def bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_gateway(tmp_path_factory.mktemp("cluster")) as address:
        yield address


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A cluster with one gateway that serves /metrics: its Kafka address and its metrics port,
    for tests of which request versions a client library asks for."""
    from group_helpers import wait_ready

    with running_cluster(tmp_path_factory.mktemp("metered"), storage="memory", gateways=1,
                         metrics=True) as cluster:
        gateway = cluster.config.gateways[0]
        wait_ready(gateway.advertised)
        yield gateway.advertised, gateway.metrics_port


@pytest.fixture
def topic() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, list[str]]]:
    """Two gateways (clients bootstrap on the first only); low initial rebalance delay."""
    from group_helpers import running_gateways

    with running_gateways(tmp_path_factory.mktemp("groups")) as (cluster, addresses):
        yield cluster, addresses


@pytest.fixture(scope="session")
def sarama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """compat_tests/go built once per session, for every module that drives Sarama."""
    from clients import build_sarama

    return build_sarama(tmp_path_factory.mktemp("sarama"))
