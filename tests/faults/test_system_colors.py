"""Sequencer failures under Kafka's system colors (issue 11): real processes, real Kafka clients.

Committed offsets (`__consumer_offsets`), topics (`__topics`) and the color
registry are root-owned colors. The leaf variant "holding grants" forces the
interleaving of issue 11 (`inject.sigkill_and_restart`): the leaf dies holding
SNs the root granted for these colors. While a consumer commits offsets synchronously,
one commit after another, and an AdminClient creates topics one after another,
a sequencer is SIGKILLed and restarted (as `flexlog up` would, 0.5 s later).
Afterwards:

- a fresh consumer of the group sees, per partition, the last acknowledged
  commit (or a later one whose outcome the committer did not learn), and so does
  the fold of `__consumer_offsets` read natively (what a restarting gateway
  rebuilds): 0 lost commits;
- every topic whose CreateTopics succeeded exists and takes a produce and a
  consume: 0 lost topics; no CreateTopics of a new name answered TOPIC_ALREADY_EXISTS;
- the same holds after the gateway restarts and rebuilds its state from the log.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from history import History
from inject import sigkill_and_restart
from native_ops import colors_state
from test_faults import bootstrap, wait_gateways

from cluster import Cluster, running_cluster
from flexlog.core.client import FlexLogClient
from flexlog.gateway.committed_offsets import OFFSETS_COLOR, OffsetState

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

PARTITIONS = 2
BEFORE_S = 1.5  # commits and creates before the fault
AFTER_COMMITS = 30  # acknowledged commits after the restart (then the committer stops)
MIN_AFTER_TOPICS = 5  # acknowledged CreateTopics after the restart, at least
AFTER_DEADLINE_S = 15.0
LOG_SETTLE_S = 10.0  # for the log to show every acknowledged commit (a hole is filled by then)
SYSTEM_COLORS = ["__colors", "__topics", OFFSETS_COLOR]
EXTRA = "failure_timeout_ms = 2000\ngroup_initial_rebalance_delay_ms = 0\nrequest_timeout_ms = 5000"


@contextmanager
def kafka_cluster(tmp: Path) -> Iterator[Cluster]:
    with running_cluster(tmp, controller=True, gateways=1, extra=EXTRA) as cluster:
        wait_gateways(cluster)
        yield cluster


@dataclass
class Workload:
    hist: History = field(default_factory=History)  # commits: key "commit/<partition>", payload offset
    created: list[str] = field(default_factory=list)
    created_at: dict[str, float] = field(default_factory=dict)
    already_exists: list[str] = field(default_factory=list)
    create_errors: list[str] = field(default_factory=list)
    commit_errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    restarted: float | None = None  # when the killed sequencer was started again


def _commit_key(partition: int) -> str:
    return f"commit/{partition}"


def _committer(boot: str, group: str, topic: str, w: Workload) -> None:
    """Commit offsets 1, 2, 3... to every partition, synchronously, one commit at a time."""
    consumer = Consumer({"bootstrap.servers": boot, "group.id": group, "enable.auto.commit": False,
                         "socket.timeout.ms": 10_000})
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    offset = 0
    try:
        while not w.stop.is_set():
            # Fewer commits after the restart than before it: a commit given a reused
            # (lower) SN is then shadowed by an older one in the fold.
            if w.restarted is not None and w.hist.acked_after(w.restarted) >= AFTER_COMMITS:
                break
            offset += 1
            for p in range(PARTITIONS):
                op = w.hist.invoke("committer", _commit_key(p), str(offset).encode())
                try:
                    res = consumer.commit(offsets=[TopicPartition(topic, p, offset)],
                                          asynchronous=False)
                except KafkaException as exc:
                    w.hist.info(op, exc)  # may have been stored anyway
                    w.commit_errors.append(str(exc))
                    time.sleep(0.05)
                    continue
                errs = [tp.error for tp in res or [] if tp.error is not None]
                if errs:
                    w.hist.info(op, errs[0])
                    w.commit_errors.append(str(errs[0]))
                else:
                    w.hist.ok(op, offset)  # the "SN" of a commit is the offset it wrote
    finally:
        consumer.close()


def _creator(boot: str, prefix: str, w: Workload) -> None:
    """Create topics with new names, one CreateTopics after the other."""
    admin = AdminClient({"bootstrap.servers": boot})
    i = 0
    while not w.stop.is_set():
        name = f"{prefix}-{i:04d}"
        i += 1
        future = admin.create_topics([NewTopic(name, 1, 1)], request_timeout=15)[name]
        try:
            future.result(20)
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                w.already_exists.append(name)
            else:
                w.create_errors.append(f"{name}: {err.name()}")
            time.sleep(0.05)
            continue
        except Exception as exc:  # a future that timed out: outcome unknown
            w.create_errors.append(f"{name}: {exc!r}")
            continue
        w.created.append(name)
        w.created_at[name] = time.monotonic()


def _run(cluster: Cluster, sequencer: str, holding_grants: bool) -> tuple[Workload, str, str, float]:
    boot = bootstrap(cluster)
    topic = f"data-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": boot})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": boot, "linger.ms": 5})
    for i in range(400):
        producer.produce(topic, f"m{i}".encode(), partition=i % PARTITIONS)
    assert producer.flush(30) == 0, "could not fill the data topic"
    group = f"g-{uuid.uuid4().hex[:6]}"
    w = Workload()
    threads = [threading.Thread(target=_committer, args=(boot, group, topic, w)),
               threading.Thread(target=_creator, args=(boot, f"new-{uuid.uuid4().hex[:4]}", w))]
    for t in threads:
        t.start()
    try:
        time.sleep(BEFORE_S)
        sigkill_and_restart(cluster, "sequencer", sequencer, holding_grants)
        restarted = w.restarted = time.monotonic()
        deadline = restarted + AFTER_DEADLINE_S
        while time.monotonic() < deadline:
            commits = w.hist.acked_after(restarted)
            topics = sum(1 for t in w.created_at.values() if t > restarted)
            if commits >= AFTER_COMMITS and topics >= MIN_AFTER_TOPICS:
                break
            time.sleep(0.1)
    finally:
        w.stop.set()
        for t in threads:
            t.join(60)
    return w, topic, group, restarted


def _committed_lost(cluster: Cluster, w: Workload, topic: str, group: str) -> list[str]:
    """Acknowledged commits that a fresh consumer of the group does not see."""
    consumer = Consumer({"bootstrap.servers": bootstrap(cluster), "group.id": group,
                         "enable.auto.commit": False})
    try:
        seen = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=20)
    except KafkaException as exc:
        return [f"OffsetFetch failed: {exc}"]
    finally:
        consumer.close()
    return _commit_problems(w, {tp.partition: tp.offset for tp in seen}, "a fresh consumer")


def _committed_in_log(cluster: Cluster, w: Workload, topic: str, group: str) -> list[str]:
    """Acknowledged commits missing from __consumer_offsets, read natively: its fold (what a
    gateway rebuilds at start) must give the last one, and every acknowledged commit must
    be a record of the log (none overwritten; the test stays far below the snapshot
    threshold, so nothing was compacted away)."""
    deadline = time.monotonic() + LOG_SETTLE_S
    while True:  # a hole is filled a few seconds after it appears: give it LOG_SETTLE_S
        problems = _commits_in_log_once(cluster, w, topic, group)
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(0.5)


def _commits_in_log_once(cluster: Cluster, w: Workload, topic: str, group: str) -> list[str]:
    records: list[tuple[int, bytes | None]] = []

    async def read() -> None:
        async with FlexLogClient(cluster.config, timeout_ms=5000) as client:
            color = await client.color(OFFSETS_COLOR)
            await client.catch_up(color, 0, lambda sn, value: records.append((sn, value)))

    try:
        asyncio.run(asyncio.wait_for(read(), 20))
    except Exception as exc:
        return [f"cannot read {OFFSETS_COLOR}: {exc!r}"]
    state = OffsetState()
    log = History()  # the commits again, this time read back from the log
    for op in w.hist.appends.values():
        log.appends[op.id] = op
    for sn, value in records:
        state.apply(sn, value)
        try:
            event = json.loads(value or b"{}")
        except ValueError:  # not a commit record (e.g. a fill marker)
            continue
        if event.get("op") == "commit" and event.get("group") == group:
            for t, partition, offset, *_ in event["offsets"]:
                if t == topic:
                    log.read("log", _commit_key(int(partition)), int(offset), str(offset).encode())
    seen = {}
    for p in range(PARTITIONS):
        entry = state.get((group, topic, p))
        seen[p] = entry.offset if entry is not None else -1001
    problems = _commit_problems(w, seen, f"the fold of {OFFSETS_COLOR}")
    report = log.check(["log"])
    if report.lost:
        problems.append(f"{len(report.lost)} acknowledged commits are not in {OFFSETS_COLOR} "
                        f"(of {len(records)} records), e.g. {report.lost[:3]}")
    return problems


def _commit_problems(w: Workload, seen: dict[int, int], who: str) -> list[str]:
    problems = []
    for partition, offset in sorted(seen.items()):
        key = _commit_key(partition)
        writes = sorted((op for op in w.hist.appends.values() if op.key == key),
                        key=lambda op: op.invoked)
        acked = [int(op.payload) for op in writes if op.status == "ok"]
        last = max(acked, default=-1001)
        maybe = {int(op.payload) for op in writes if op.status == "info" and int(op.payload) > last}
        if offset == last or offset in maybe:
            continue
        lost = [o for o in acked if o > offset]
        problems.append(f"partition {partition}: {who} sees offset {offset}, last acknowledged "
                        f"commit {last} ({len(lost)} acknowledged commits after the one seen lost)")
    return problems


def _topics_lost(cluster: Cluster, w: Workload) -> list[str]:
    """Topics whose CreateTopics succeeded but that are missing or take no produce/consume."""
    boot = bootstrap(cluster)
    try:
        existing = AdminClient({"bootstrap.servers": boot}).list_topics(timeout=20).topics
    except KafkaException as exc:
        return [f"Metadata failed: {exc}"]
    problems = [f"{t}: created but not in metadata" for t in w.created if t not in existing]
    usable = [t for t in w.created if t in existing]
    failed: dict[str, str] = {}

    def delivered(err: object, msg: object) -> None:
        if err is not None:
            failed[msg.topic()] = str(err)  # type: ignore[attr-defined]

    producer = Producer({"bootstrap.servers": boot, "message.timeout.ms": 15_000})
    for t in usable:
        producer.produce(t, t.encode(), partition=0, on_delivery=delivered)
    producer.flush(30)
    problems += [f"{t}: produce failed: {e}" for t, e in sorted(failed.items())]
    wanted = {t for t in usable if t not in failed}
    if wanted:
        consumer = Consumer({"bootstrap.servers": boot, "group.id": f"check-{uuid.uuid4().hex[:6]}",
                            "enable.auto.commit": False})
        consumer.assign([TopicPartition(t, 0, 0) for t in sorted(wanted)])
        deadline = time.monotonic() + 20
        got: set[str] = set()
        try:
            while got != wanted and time.monotonic() < deadline:
                msg = consumer.poll(0.2)
                if msg is not None and not msg.error() and msg.value() == msg.topic().encode():
                    got.add(msg.topic())
        finally:
            consumer.close()
        problems += [f"{t}: produced but not consumed" for t in sorted(wanted - got)]
    return problems


def _summary(w: Workload, restarted: float) -> str:
    acked = w.hist.acked()
    return (f"{len(acked)} commits acknowledged ({w.hist.acked_after(restarted)} after the restart), "
            f"{len(w.commit_errors)} failed; {len(w.created)} topics created "
            f"({sum(1 for t in w.created_at.values() if t > restarted)} after the restart), "
            f"{len(w.create_errors)} CreateTopics failed (e.g. {w.create_errors[:3]}), "
            f"{len(w.already_exists)} answered TOPIC_ALREADY_EXISTS for a new name")


@pytest.mark.parametrize("sequencer,holding_grants", [("root", False), ("leaf0", False),
                                                       ("leaf0", True)],
                         ids=["root", "leaf", "leaf-holding-grants"])
def test_sigkill_sequencer_while_committing_offsets_and_creating_topics(
        tmp_path: Path, sequencer: str, holding_grants: bool) -> None:
    what = f"SIGKILL {sequencer}" + (" holding grants of the root" if holding_grants else "")
    with kafka_cluster(tmp_path) as cluster:
        w, topic, group, restarted = _run(cluster, sequencer, holding_grants)
        summary = _summary(w, restarted)
        print(f"{what}: {summary}")
        problems = [f"TOPIC_ALREADY_EXISTS for new topics {w.already_exists[:5]}"] if w.already_exists else []
        problems += [f"lost commit, {p}" for p in _committed_lost(cluster, w, topic, group)]
        problems += [f"lost commit, {p}" for p in _committed_in_log(cluster, w, topic, group)]
        problems += [f"lost topic {p}" for p in _topics_lost(cluster, w)]
        if w.hist.acked_after(restarted) < AFTER_COMMITS:
            problems.append(f"fewer than {AFTER_COMMITS} commits acknowledged within "
                            f"{AFTER_DEADLINE_S}s of the restart")
        if sum(1 for t in w.created_at.values() if t > restarted) < MIN_AFTER_TOPICS:
            problems.append(f"fewer than {MIN_AFTER_TOPICS} topics created within "
                            f"{AFTER_DEADLINE_S}s of the restart")
        if not problems:
            # The gateway's state is a fold of the log: rebuild it from the log and ask again.
            gateway = cluster.config.gateways[0].name
            cluster.kill(gateway, signal.SIGKILL)
            cluster.start_process("gateway", gateway)
            wait_gateways(cluster)
            problems += [f"after a gateway restart, lost commit, {p}"
                         for p in _committed_lost(cluster, w, topic, group)]
            problems += [f"after a gateway restart, lost topic {p}" for p in _topics_lost(cluster, w)]
        if problems:
            pytest.fail(f"{what} while committing offsets and creating topics: {summary}\n  "
                        + "\n  ".join(problems[:20])
                        + (f"\n  ... {len(problems) - 20} more" if len(problems) > 20 else "")
                        + f"\nsystem colors:\n{_system_colors(cluster)}", pytrace=False)


def _system_colors(cluster: Cluster) -> str:
    try:
        return asyncio.run(colors_state(cluster.config, SYSTEM_COLORS))
    except Exception as exc:  # diagnostics only: never hide the failure above
        return f"(could not read them: {exc!r})"
