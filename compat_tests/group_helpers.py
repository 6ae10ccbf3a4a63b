"""Clusters with several gateways for the group tests, and what those tests share."""

from __future__ import annotations

import re
import signal
import struct
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from cluster import Cluster, running_cluster
from flexlog.gateway.protocol import ApiKey, ErrorCode
from wire_client import GATEWAY_READY_S, WireClient, gateway_ready

# Short, so that every first rebalance does not cost Kafka's default 3 s.
REBALANCE_DELAY_MS = 300
PARTITIONS = 6


def wait_ready(address: str) -> None:
    deadline = time.monotonic() + GATEWAY_READY_S
    while not gateway_ready(address):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gateway {address} did not come up")
        time.sleep(0.1)


@contextmanager
def running_gateways(tmp: Path, gateways: int = 2) -> Iterator[tuple[Cluster, list[str]]]:
    """A cluster with several gateways; yields it and the gateways' Kafka addresses."""
    extra = f"group_initial_rebalance_delay_ms = {REBALANCE_DELAY_MS}\ndefault_partitions = {PARTITIONS}"
    with running_cluster(tmp, storage="memory", gateways=gateways, extra=extra) as cluster:
        addresses = [g.advertised for g in cluster.config.gateways]
        for address in addresses:
            wait_ready(address)
        yield cluster, addresses


def restart_gateway(cluster: Cluster, index: int) -> None:
    gw = cluster.config.gateways[index]
    cluster.kill(gw.name, signal.SIGTERM)
    cluster.start_process("gateway", gw.name)
    wait_ready(gw.advertised)


def current_generation(bootstrap: str, group: str, member_id: str, instance_id: str | None) -> int:
    """The group's generation, as its coordinator sees it, probed with a live member's Heartbeat:
    only the current generation is answered without an error (no client library exposes it)."""
    client = WireClient(coordinator(bootstrap, group))
    try:
        for generation in range(1, 100):
            code = client.call(ApiKey.HEARTBEAT, 3, {"group_id": group, "generation_id": generation,
                                                     "member_id": member_id,
                                                     "group_instance_id": instance_id})["error_code"]
            if code == ErrorCode.NONE:
                return generation
            assert code == ErrorCode.ILLEGAL_GENERATION, ErrorCode(code)
    finally:
        client.close()
    raise AssertionError("no generation below 100 is current")


def coordinator(bootstrap: str, group: str) -> str:
    """The address of the gateway coordinating `group`."""
    client = WireClient(bootstrap)
    try:
        found = client.call(ApiKey.FIND_COORDINATOR, 1, {"key": group, "key_type": 0})
    finally:
        client.close()
    assert found["error_code"] == ErrorCode.NONE, found
    return f"{found['host']}:{found['port']}"


def assigned_partitions(assignment: bytes) -> dict[str, list[int]]:
    """The partitions of a consumer protocol assignment (version, then topics with their
    partitions, then user data, which may name topics too: sticky assignors put a member's
    previous assignment there)."""
    pos = 2
    (topics,) = struct.unpack_from(">i", assignment, pos)
    pos += 4
    out: dict[str, list[int]] = {}
    for _ in range(topics):
        (length,) = struct.unpack_from(">h", assignment, pos)
        name = assignment[pos + 2 : pos + 2 + length].decode()
        pos += 2 + length
        (count,) = struct.unpack_from(">i", assignment, pos)
        out[name] = list(struct.unpack_from(f">{count}i", assignment, pos + 4))
        pos += 4 + 4 * count
    return out


def every_member_assigned(bootstrap: str, group: str, topic: str, members: int) -> bool:
    """Whether the group is Stable with `members` members, each holding partitions of `topic`."""
    client = WireClient(coordinator(bootstrap, group))
    try:
        described = client.call(ApiKey.DESCRIBE_GROUPS, 5, {
            "groups": [group], "include_authorized_operations": False})["groups"][0]
    finally:
        client.close()
    return (described["group_state"] == "Stable" and len(described["members"]) == members
            and all(assigned_partitions(m["member_assignment"]).get(topic)
                    for m in described["members"]))


def requests_served(metrics_port: int) -> dict[str, float]:
    """The gateway's request count per "Api vN", from its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {f"{api} v{version}": float(count) for api, version, count in re.findall(
        r'^flexlog_gateway_requests_total\{api="([^"]+)",version="(\d+)"\} (\S+)$', text, re.M)}


def versions_asked(metrics_port: int, before: dict[str, float]) -> set[str]:
    """The "Api vN" the gateway has served since `before` (a requests_served answer)."""
    return {k for k, n in requests_served(metrics_port).items() if n != before.get(k, 0)}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_topic(bootstrap: str) -> str:
    """A new topic of PARTITIONS partitions, created with confluent-kafka's admin client."""
    name = unique("t")
    admin = AdminClient({"bootstrap.servers": bootstrap})  # must outlive its futures
    for fut in admin.create_topics([NewTopic(name, PARTITIONS, 1)]).values():
        fut.result(30)
    return name


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """values spread round-robin over the partitions, all acknowledged."""
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i, v in enumerate(values):
        p.produce(topic, value=v, partition=i % PARTITIONS)
    assert p.flush(30) == 0


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


class MemberThread(threading.Thread):
    """A group member polling on its own thread: what it consumes goes to `seen` and is
    committed before the next poll, so no record is handed out twice; `leave` stops it."""

    def __init__(self, seen: list[bytes], lock: threading.Lock) -> None:
        super().__init__(daemon=True)
        self.seen, self.lock = seen, lock
        self.stop = threading.Event()

    def poll_values(self) -> list[bytes]:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def run(self) -> None:
        while not self.stop.is_set():
            values = self.poll_values()
            if values:
                with self.lock:
                    self.seen.extend(values)
                self.commit()
        self.close()

    def leave(self) -> None:
        self.stop.set()
        self.join(30)


def consume_with_churn(members: list[MemberThread], new_member: Callable[[], MemberThread],
                       produce: Callable[[list[bytes]], None], values: list[bytes],
                       settled: Callable[[int], bool]) -> None:
    """Records flow in thirds while a member joins, then the first one leaves; every value
    must be consumed exactly once (`members` share one `seen` list).

    The member leaves once the join's rebalance has settled (`settled(len(members))`, e.g.
    every_member_assigned): a member whose rejoin is pending has its commits queued behind
    the JoinGroup on the coordinator's connection, where they fail with ILLEGAL_GENERATION,
    and if it then leaves before the group is stable again its last commit fails with
    REBALANCE_IN_PROGRESS. Kafka answers both the same way, and the records it consumed
    meanwhile go to their next owner again: at least once, not exactly once."""
    third = len(values) // 3
    for m in members:
        m.start()
    produce(values[:third])
    wait_for(lambda: len(members[0].seen) >= third // 3)
    members.append(new_member())
    members[-1].start()
    produce(values[third : 2 * third])
    wait_for(lambda: len(members[0].seen) >= third + third // 3)
    wait_for(lambda: settled(len(members)))
    members.pop(0).leave()
    produce(values[2 * third :])
    finish(members, values)


def finish(members: list[MemberThread], values: list[bytes]) -> None:
    """Wait for every value, give a duplicate time to show up, stop the members, check."""
    seen = members[0].seen
    wait_for(lambda: len(seen) >= len(values))
    time.sleep(0.5)
    for m in members:
        m.leave()
    counts = Counter(seen)
    twice = sorted(v for v, n in counts.items() if n > 1)
    missing = sorted(set(values) - counts.keys())
    assert sorted(seen) == values, f"consumed more than once: {twice}; never consumed: {missing}"
