"""Docs that restate the code: docs/operations.md's configuration reference lists exactly the keys
core/config.py accepts, and docs/gateway.md's API index exactly the handlers' @serves declarations."""

from __future__ import annotations

import copy
import inspect
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ops_helpers import REPO
from prometheus_client import Counter, Gauge, Histogram

from flexlog.core import config as config_mod
from flexlog.core.config import ConfigError

OPERATIONS = REPO / "docs" / "operations.md"
GATEWAY = REPO / "docs" / "gateway.md"

# Reference heading (its start) -> where that table sits in a parsed config.
TABLES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "Top level": lambda doc: doc,
    "`[[sequencer]]`": lambda doc: doc["sequencer"][0],
    "`nodes = [...]`": lambda doc: doc["sequencer"][0]["nodes"][0],
    "`[[shard]]`": lambda doc: doc["shard"][0],
    "`[[gateway]]`": lambda doc: doc["gateway"][0],
    "`listeners = [...]`": lambda doc: doc["gateway"][0].setdefault("listeners", [{}])[0],
    "`[tls]`": lambda doc: doc.setdefault("tls", {}),
    "`[security]`": lambda doc: doc.setdefault("security", {}),
}


def accepted_keys(where: Callable[[dict[str, Any]], dict[str, Any]]) -> set[str]:
    """The keys the parser allows in one table, as its unknown-key error lists them."""
    doc = copy.deepcopy(tomllib.loads(config_mod.default_toml(gateways=1)))
    where(doc)["zz_not_a_key"] = 1
    with pytest.raises(ConfigError) as err:
        config_mod.parse(doc)
    match = re.search(r"\(allowed: (.*)\)", str(err.value))
    assert match, str(err.value)
    return set(match[1].split(", "))


def documented_keys() -> dict[str, set[str]]:
    text = OPERATIONS.read_text()
    section = text.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    out = {}
    for block in section.split("\n### ")[1:]:
        heading, _, body = block.partition("\n")
        out[heading] = set(re.findall(r"^\| `([a-z_]+)` \|", body, re.M))
    return out


def test_config_reference_lists_every_key() -> None:
    documented = documented_keys()
    assert len(documented) == len(TABLES), f"reference sections: {list(documented)}"
    for prefix, where in TABLES.items():
        [heading] = [h for h in documented if h.startswith(prefix)]
        assert documented[heading] == accepted_keys(where), heading


def documented_metrics() -> set[str]:
    text = OPERATIONS.read_text()
    section = text.split("\n## Metrics", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(flexlog_[a-z_]+)` \|", section, re.M))


def test_metrics_reference_names_the_gateway_metrics() -> None:
    """The live check against every process is in test_prometheus; this one needs no cluster."""
    from flexlog.gateway import metrics

    declared = {family.name + ("_total" if family.type == "counter" else "")
                for m in vars(metrics).values() if isinstance(m, Counter | Gauge | Histogram)
                for family in m.describe()}
    assert declared and declared <= documented_metrics()


BEYOND_3_9 = {68}
API_ROW = r"^\| (\d+) \| (\w+) \| (\d+-\d+) \| (\d+-\d+) \| `([\w/]+\.py)` \|"


def api_index_rows() -> list[tuple[str, ...]]:
    """(key, API, versions, Kafka 3.9's versions, handler file) of each row of docs/gateway.md's API index."""
    text = GATEWAY.read_text()
    section = text.split("\n## API index\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(API_ROW, section, re.M)


def test_gateway_api_index_matches_the_handlers() -> None:
    from flexlog.gateway.handlers import ENDPOINTS
    from flexlog.gateway.protocol import API_NAMES

    served = {(key, API_NAMES[key], f"{e.min_version}-{e.max_version}",
               Path(inspect.getfile(e.handle)).relative_to(REPO / "gateway").as_posix())
              for key, e in ENDPOINTS.items()}
    assert {(int(key), name, versions, path) for key, name, versions, _, path in api_index_rows()} == served


def test_every_served_range_ends_where_kafka_3_9s_does() -> None:
    """The gateway presents itself as Kafka 3.9; a range may start later only (the notes say why)."""
    from kafka.protocol.broker_version_data import BROKER_API_VERSIONS

    from flexlog.gateway.handlers import ENDPOINTS

    kafka_3_9 = BROKER_API_VERSIONS[(3, 9)]
    for key, _, _, documented, _ in api_index_rows():
        low, high = kafka_3_9[int(key)]
        assert documented == f"{low}-{high}", key
        endpoint = ENDPOINTS[int(key)]
        # ConsumerGroupHeartbeat goes to Kafka 4.0's end: librdkafka sends v1 only (the notes say so).
        high = BROKER_API_VERSIONS[(4, 0)][int(key)][1] if int(key) in BEYOND_3_9 else high
        assert endpoint.max_version == high and endpoint.min_version >= low, key
