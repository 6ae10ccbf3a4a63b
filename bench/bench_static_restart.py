"""Rolling restart of a consumer group: static (group.instance.id) vs dynamic members.

Run: .venv/bin/python bench/bench_static_restart.py [--rolls 2]

Starts its own cluster (1 root, 1 leaf, 1 shard x 3 replicas, 1 gateway, in
memory, group_initial_rebalance_delay_ms = 0). Three confluent-kafka members
share a 6-partition topic (session timeout 6 s, heartbeat interval 300 ms);
each is closed and recreated in turn (a rolling restart), `--rolls` times.
Prints, per kind of member, for one restart:
- rebalances: how far the group's generation moved (probed with a Heartbeat);
- revokes: revoke callbacks the two members that were not restarted got;
- time to full assignment: from closing the old consumer until a new one holds
  partitions again and all 6 are owned (p50 and max).
Asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from common import percentile, running_cluster

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "compat_tests"))

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from group_helpers import current_generation

from wire_client import gateway_ready

PARTITIONS = 6
MEMBERS = 3


class Member(threading.Thread):
    """A consumer polling on its own thread; `owned` follows its rebalance callbacks."""

    def __init__(self, bootstrap: str, group: str, topic: str, instance: str | None) -> None:
        super().__init__(daemon=True)
        self.instance = instance
        self.owned: frozenset[int] = frozenset()
        self.revokes = 0
        self.member_id = ""
        self.stop = threading.Event()
        conf: dict[str, object] = {"bootstrap.servers": bootstrap, "group.id": group,
                                   "session.timeout.ms": 6_000, "heartbeat.interval.ms": 300,
                                   "enable.auto.commit": False}
        if instance is not None:
            conf["group.instance.id"] = instance
        self.c = Consumer(conf)
        self.c.subscribe([topic], on_assign=self._assigned, on_revoke=self._revoked)

    def _assigned(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        self.member_id = consumer.memberid() or ""
        self.owned = frozenset(p.partition for p in parts)

    def _revoked(self, _consumer: Consumer, _parts: list[TopicPartition]) -> None:
        self.owned = frozenset()
        if not self.stop.is_set():  # closing revokes too: that is not a rebalance
            self.revokes += 1

    def run(self) -> None:
        while not self.stop.is_set():
            self.c.poll(0.05)
        self.c.close()

    def close(self) -> None:
        self.stop.set()
        self.join()


def all_owned(members: list[Member]) -> bool:
    return all(m.owned for m in members) and sum(len(m.owned) for m in members) == PARTITIONS


def wait(predicate: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("the group did not settle")
        time.sleep(0.002)


def rolling_restart(bootstrap: str, topic: str, static: bool, rolls: int) -> tuple[list[int], list[int],
                                                                                   list[float]]:
    """(rebalances, revokes of the others, seconds to full assignment), one entry per restart."""
    group = f"bench-{uuid.uuid4().hex[:8]}"

    def member(i: int) -> Member:
        m = Member(bootstrap, group, topic, f"inst-{i}" if static else None)
        m.start()
        return m

    members = [member(i) for i in range(MEMBERS)]
    wait(lambda: all_owned(members))
    time.sleep(1)  # let the group's formation settle
    rebalances: list[int] = []
    revokes: list[int] = []
    seconds: list[float] = []
    for _ in range(rolls):
        for i in range(MEMBERS):
            others = [m for j, m in enumerate(members) if j != i]
            before = current_generation(bootstrap, group, others[0].member_id, others[0].instance)
            revoked = sum(m.revokes for m in others)
            start = time.perf_counter()
            members[i].close()
            members[i] = member(i)
            wait(lambda: all_owned(members))
            seconds.append(time.perf_counter() - start)
            time.sleep(1)  # a late second rebalance would still count
            after = current_generation(bootstrap, group, others[0].member_id, others[0].instance)
            rebalances.append(after - before)
            revokes.append(sum(m.revokes for m in others) - revoked)
    for m in members:
        m.close()
    return rebalances, revokes, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rolls", type=int, default=2, help="rolling restarts per kind of member")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, running_cluster(
            Path(tmp), storage="memory", gateways=1, extra="group_initial_rebalance_delay_ms = 0") as cluster:
        bootstrap = cluster.config.gateways[0].advertised
        while not gateway_ready(bootstrap):
            time.sleep(0.1)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topic = f"bench-roll-{uuid.uuid4().hex[:6]}"
        for fut in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
            fut.result(30)
        for static in (True, False):
            rebalances, revokes, seconds = rolling_restart(bootstrap, topic, static, args.rolls)
            n = len(seconds)
            print(f"{'static ' if static else 'dynamic'} members, {n} restarts: "
                  f"rebalances per restart {sum(rebalances) / n:.1f} (max {max(rebalances)}), "
                  f"revokes of the others per restart {sum(revokes) / n:.1f}, "
                  f"time to full assignment p50 {percentile(seconds, 50) * 1000:.0f} ms "
                  f"max {max(seconds) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
