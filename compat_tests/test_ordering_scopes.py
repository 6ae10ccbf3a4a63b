"""Ordering scopes (`flexlog.ordering`, docs/ordering.md) with real Kafka clients over real
sockets: partitions of an ordered topic (or of every topic of a group) take their offsets
from one counter, so merging partitions by offset gives the order the log accepted."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as AioTopicPartition
from clients import HAVE_KAFKA_JAVASCRIPT, HAVE_KAFKAJS, HAVE_SARAMA, JS_KIP848, kafkajs, run_sarama
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)
from group_helpers import REBALANCE_DELAY_MS, unique, wait_ready
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition
from kafka.admin import NewTopic as KpNewTopic

from cluster import Cluster, running_cluster
from flexlog.core.client import FlexLogClient
from flexlog.gateway.topics import partition_color

pytestmark = pytest.mark.slow

PRODUCERS = 3
PER_PRODUCER = 120
TOTAL = PRODUCERS * PER_PRODUCER  # records per scope of the merge tests: 90 per partition

Target = tuple[str, int]  # (topic, partition)
Read = dict[Target, list[tuple[int, bytes]]]  # per partition, (offset, value) in the order read


@pytest.fixture(scope="module")
def ordered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, str]]:
    """Two shards, so an ordered topic's partitions spread over both and the root orders them."""
    # Short group delays: several clients below read in a consumer group, and Kafka's defaults
    # (3 s first rebalance, 5 s KIP-848 heartbeat) would be most of their time.
    extra = (f"group_initial_rebalance_delay_ms = {REBALANCE_DELAY_MS}\n"
             "group_consumer_heartbeat_interval_ms = 300")
    with running_cluster(tmp_path_factory.mktemp("ordering"), storage="memory", shards=2,
                         gateways=1, extra=extra) as cluster:
        address = cluster.config.gateways[0].advertised
        wait_ready(address)
        yield cluster, address


def create(bootstrap: str, topics: dict[str, int], ordering: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(t, n, config={"flexlog.ordering": ordering})
                                   for t, n in topics.items()])
    for f in futures.values():
        f.result(15)


def produce_concurrently(bootstrap: str, targets: list[Target]) -> None:
    """PRODUCERS threads with a producer each, every one writing to every target in turn: the
    first with kafka-python, the others with confluent-kafka, so two libraries' batches race."""
    errors: list[object] = []

    def confluent(k: int) -> None:
        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
        for i in range(PER_PRODUCER):
            topic, partition = targets[(i + k) % len(targets)]
            p.produce(topic, b"p%d-%d" % (k, i), partition=partition,
                      on_delivery=lambda err, _m: err and errors.append(err))
            if i % 10 == 0:
                p.poll(0)
        assert p.flush(20) == 0

    def kafka_python(k: int) -> None:
        p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
        sent = []
        for i in range(PER_PRODUCER):
            topic, partition = targets[(i + k) % len(targets)]
            sent.append(p.send(topic, b"p%d-%d" % (k, i), partition=partition))
        p.flush(20)
        assert all(f.succeeded() for f in sent), [f.exception for f in sent if not f.succeeded()]
        p.close()

    def run(k: int) -> None:
        try:
            (kafka_python if k == 0 else confluent)(k)
        except Exception as exc:  # a thread's exception is only printed: the assert below reports it
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(PRODUCERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def native_order(cluster: Cluster, targets: list[Target], n: int) -> list[tuple[int, bytes]]:
    """(offset, value) of the first n records of the targets' family, as the log accepted them."""
    async def read() -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        async with FlexLogClient(cluster.config) as client:
            colors = [partition_color(t, p) for t, p in targets]
            async for _, rec in client.subscribe_family(colors):
                out.append((rec.offset, rec.value or b""))
                if len(out) == n:
                    return out
        return out

    return asyncio.run(asyncio.wait_for(read(), 30))


def by_partition(records: Iterable[tuple[str, int, int, bytes]]) -> Read:
    """(topic, partition, offset, value) as read, grouped per partition in the order read."""
    out: Read = {}
    for topic, partition, offset, value in records:
        out.setdefault((topic, partition), []).append((offset, value))
    return out


def read_confluent(bootstrap: str, counts: dict[Target, int]) -> Read:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("g"),
                  "enable.auto.commit": False})
    c.assign([TopicPartition(t, p, 0) for t, p in counts])
    got: list[tuple[str, int, int, bytes]] = []
    deadline = time.monotonic() + 30
    while len(got) < sum(counts.values()) and time.monotonic() < deadline:
        for m in c.consume(500, 0.5):
            assert m.error() is None, m.error()
            got.append((m.topic(), m.partition(), m.offset(), m.value()))
    c.close()
    return by_partition(got)


def read_kafka_python(bootstrap: str, counts: dict[Target, int]) -> Read:
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                      consumer_timeout_ms=10_000)
    c.assign([KpTopicPartition(t, p) for t, p in counts])
    c.seek_to_beginning()
    got = []
    for m in c:
        got.append((m.topic, m.partition, m.offset, m.value))
        if len(got) == sum(counts.values()):
            break
    c.close()
    return by_partition(got)


def read_aiokafka(bootstrap: str, counts: dict[Target, int]) -> Read:
    async def run() -> list[tuple[str, int, int, bytes]]:
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await c.start()
        try:
            c.assign([AioTopicPartition(t, p) for t, p in counts])
            await c.seek_to_beginning()
            got = []
            while len(got) < sum(counts.values()):
                for batch in (await c.getmany(timeout_ms=500)).values():
                    got += [(m.topic, m.partition, m.offset, m.value) for m in batch]
            return got
        finally:
            await c.stop()

    return by_partition(asyncio.run(asyncio.wait_for(run(), 30)))


def read_kcat(bootstrap: str, counts: dict[Target, int]) -> Read:
    """kcat per topic, every partition from the beginning up to its end (-e: each partition's EOF)."""
    got = []
    for topic in sorted({t for t, _ in counts}):
        done = subprocess.run(["kcat", "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e",
                               "-f", "%p|%o|%s\\n"], capture_output=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr.decode()
        for line in done.stdout.splitlines():
            partition, offset, value = line.split(b"|")
            got.append((topic, int(partition), int(offset), value))
    return by_partition(got)


def read_kafkajs(bootstrap: str, counts: dict[Target, int]) -> Read:
    """kafkajs in a group of its own over every topic (it has no assign)."""
    topics = ",".join(sorted({t for t, _ in counts}))
    records = kafkajs(bootstrap, "consume", topics, unique("g"), sum(counts.values()))["records"]
    return by_partition((r["topic"], r["partition"], int(r["offset"]), base64.b64decode(r["value"]))
                        for r in records)


def read_kafka_javascript(bootstrap: str, counts: dict[Target, int]) -> Read:
    """compat_tests/js_kip848/consumer.js: a KIP-848 member alone in its group, so it gets every
    partition; it runs until stopped."""
    topics = ",".join(sorted({t for t, _ in counts}))
    proc = subprocess.Popen(["node", str(JS_KIP848 / "consumer.js"), bootstrap, topics, unique("g")],
                            stdout=subprocess.PIPE, text=True)
    stuck = threading.Timer(40, proc.kill)  # a silent consumer would block the read below for ever
    stuck.start()
    got = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line)
            if "offset" in event:
                got.append((event["topic"], event["partition"], event["offset"], event["value"].encode()))
                if len(got) == sum(counts.values()):
                    break
    finally:
        stuck.cancel()
        proc.terminate()
        proc.wait(30)
    return by_partition(got)


def read_sarama(binary: Path, bootstrap: str, counts: dict[Target, int]) -> Read:
    """Sarama's consumer group over every topic."""
    topics = ",".join(sorted({t for t, _ in counts}))
    done = run_sarama(binary, bootstrap, "max", "consume", topics, unique("g"), sum(counts.values()))
    assert done["error"] == ""
    return by_partition((r["topic"], r["partition"], r["offset"], base64.b64decode(r["value"]))
                        for r in done["records"])


def check_merge(per_partition: Read, expected: list[tuple[int, bytes]]) -> None:
    merged = sorted(r for records in per_partition.values() for r in records)
    offsets = [o for o, _ in merged]
    assert len(set(offsets)) == len(offsets), "no offset appears in two partitions"
    for records in per_partition.values():
        assert [o for o, _ in records] == sorted(o for o, _ in records), "offsets increase"
    assert merged == expected, "merging partitions by offset gives the order the log accepted"


@dataclass(frozen=True)
class Written:
    """What concurrent producers wrote to each scope, and the order the log accepted it in."""

    ordering: dict[str, str]  # per scope ("topic", "group"), its topics' flexlog.ordering
    targets: dict[str, list[Target]]  # per scope, its 4 partitions
    expected: dict[str, list[tuple[int, bytes]]]  # per scope, the native client's merged read


@pytest.fixture(scope="module")
def written(ordered: tuple[Cluster, str]) -> Written:
    """4 partitions of an ordered topic, and 2 x 2 of two topics of one ordering group (created
    with kafka-python's admin client), each written by PRODUCERS producers at once."""
    cluster, bootstrap = ordered
    topic = unique("ordered")
    create(bootstrap, {topic: 4}, "topic")
    group = unique("shop")
    orders, payments = unique("orders"), unique("payments")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([KpNewTopic(t, 2, 1, topic_configs={"flexlog.ordering": f"group:{group}"})
                         for t in (orders, payments)])
    admin.close()
    targets = {"topic": [(topic, p) for p in range(4)],
               "group": [(orders, 0), (orders, 1), (payments, 0), (payments, 1)]}
    expected = {}
    for scope, tps in targets.items():
        produce_concurrently(bootstrap, tps)
        expected[scope] = native_order(cluster, tps, TOTAL)
        assert [o for o, _ in expected[scope]] == list(range(TOTAL)), "one dense order over 4 partitions"
    return Written({"topic": "topic", "group": f"group:{group}"}, targets, expected)


READERS = {
    "confluent-kafka": read_confluent,
    "kafka-python": read_kafka_python,
    "aiokafka": read_aiokafka,
    "kcat": read_kcat,
    "kafkajs": read_kafkajs,
    "kafka-javascript": read_kafka_javascript,
}
MISSING = {"kcat": shutil.which("kcat") is None, "kafkajs": not HAVE_KAFKAJS,
           "kafka-javascript": not HAVE_KAFKA_JAVASCRIPT, "sarama": not HAVE_SARAMA}


@pytest.mark.parametrize("client", [*READERS, "sarama"])
def test_each_client_merges_partitions_to_the_log_order(client, ordered, written, request):
    """Each client library reads the 8 partitions of both scopes (one consumer for all of them);
    per scope, merging its partitions by offset gives the native client's order."""
    _, bootstrap = ordered
    if MISSING.get(client):
        pytest.skip(f"{client} is not installed (./dev test installs it)")
    counts = {tp: TOTAL // 4 for tps in written.targets.values() for tp in tps}
    if client == "sarama":
        read = read_sarama(request.getfixturevalue("sarama"), bootstrap, counts)
    else:
        read = READERS[client](bootstrap, counts)
    for scope, tps in written.targets.items():
        check_merge({tp: read.get(tp, []) for tp in tps}, written.expected[scope])


def test_describe_configs_shows_the_scope(ordered, written):
    _, bootstrap = ordered
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for scope, ordering in written.ordering.items():
        for topic in {t for t, _ in written.targets[scope]}:
            res = ConfigResource(ConfigResource.Type.TOPIC, topic)
            assert admin.describe_configs([res])[res].result(10)["flexlog.ordering"].value == ordering


def test_gaps_cause_no_resets_and_offsets_seeks_and_commits_are_exact(ordered):
    cluster, bootstrap = ordered
    topic = unique("gaps")
    create(bootstrap, {topic: 2}, "topic")
    targets = [(topic, 0), (topic, 1)]
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for i in range(40):
        p.produce(topic, b"v%d" % i, partition=i % 2)
        p.flush(10)  # one at a time: partition 0 holds the even offsets, partition 1 the odd
    mine = [(o, v) for o, v in native_order(cluster, targets, 40) if int(v[1:]) % 2 == 0]
    assert [o for o, _ in mine] == list(range(0, 40, 2))

    # ListOffsets: earliest 0, latest one past the family's last offset (39).
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("g"),
                  "enable.auto.commit": False, "auto.offset.reset": "error"})
    assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 40)
    # A seek into a gap (offset 7 is partition 1's) reads on from the next record of partition 0.
    c.assign([TopicPartition(topic, 0, 7)])
    got = [c.poll(10) for _ in range(3)]
    assert [(m.offset(), m.value()) for m in got] == mine[4:7]
    c.close()

    kc = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                       auto_offset_reset="none", consumer_timeout_ms=10_000)
    tp = KpTopicPartition(topic, 0)
    kc.assign([tp])
    assert kc.end_offsets([tp])[tp] == 40 and kc.beginning_offsets([tp])[tp] == 0
    kc.seek(tp, 21)
    rest = []
    for m in kc:
        rest.append((m.offset, m.value))
        if m.offset == 38:
            break
    assert rest == [r for r in mine if r[0] >= 21]
    assert kc.position(tp) == 39
    kc.close()


def test_committed_offsets_inside_gaps_resume_exactly(ordered):
    _, bootstrap = ordered
    topic = unique("commits")
    create(bootstrap, {topic: 2}, "topic")
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for i in range(20):
        p.produce(topic, b"v%d" % i, partition=i % 2)
        p.flush(10)
    group = unique("g")
    conf = {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest"}
    c = Consumer(conf)
    c.assign([TopicPartition(topic, 1)])
    first = [c.poll(10) for _ in range(4)]
    assert [m.offset() for m in first] == [1, 3, 5, 7]
    c.commit(message=first[-1], asynchronous=False)  # commits offset 8: partition 0's SN
    c.close()
    c = Consumer(conf)
    c.assign([TopicPartition(topic, 1)])
    assert c.committed([TopicPartition(topic, 1)], timeout=10)[0].offset == 8
    again = [c.poll(10) for _ in range(6)]
    assert [m.offset() for m in again] == [9, 11, 13, 15, 17, 19]
    assert c.poll(1) is None
    c.close()


def alternating(bootstrap: str, topic: str, n: int, partitions: int) -> None:
    """n records, one at a time, to the partitions in turn: partition k holds offsets k mod partitions."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for i in range(n):
        p.produce(topic, b"v%d" % i, partition=i % partitions)
        p.flush(10)


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed")
def test_gaps_with_kcat(ordered):
    """Debian's kcat (librdkafka 2.0.2): reads a partition's sparse offsets to the end (-e needs the
    partition's EOF at the high watermark), and a start offset inside a gap reads on from the next."""
    _, bootstrap = ordered
    topic = unique("kcat")
    create(bootstrap, {topic: 3}, "topic")
    alternating(bootstrap, topic, 30, 3)

    def kcat(*args: str) -> list[bytes]:
        done = subprocess.run(["kcat", "-b", bootstrap, "-C", "-t", topic, "-p", "1", "-e",
                               "-f", "%o|%s\\n", *args], capture_output=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.splitlines()

    assert kcat("-o", "beginning") == [b"%d|v%d" % (o, o) for o in range(1, 30, 3)]
    assert kcat("-o", "11") == [b"%d|v%d" % (o, o) for o in range(13, 30, 3)]  # 11 is partition 2's
    # Relative to the end counts offsets, not records, as on a compacted Kafka topic: 30 - 2 = 28.
    assert kcat("-o", "-2") == [b"28|v28"]
    assert kcat("-o", "-5") == [b"25|v25", b"28|v28"]


@pytest.mark.skipif(not HAVE_KAFKAJS, reason="node or kafkajs is not installed (./dev test installs both)")
def test_gaps_with_kafkajs_groups_and_commits(ordered):
    """kafkajs 2.2.4 in a group over an ordered topic: every record once at its sparse offset, commits
    that resume exactly, and the committed offsets the admin client reads back."""
    _, bootstrap = ordered
    topic, group = unique("kafkajs"), unique("kafkajs-g")
    create(bootstrap, {topic: 3}, "topic")
    alternating(bootstrap, topic, 24, 3)
    def seen(records: list[dict]) -> set[tuple[int, int]]:
        return {(r["partition"], int(r["offset"])) for r in records}

    first = kafkajs(bootstrap, "consume", topic, group, 24)["records"]
    assert seen(first) == {(i % 3, i) for i in range(24)}
    for part in range(3):
        offsets = [int(r["offset"]) for r in first if r["partition"] == part]
        assert offsets == list(range(part, 24, 3)), "each partition in order, no reset over its gaps"
    committed = kafkajs(bootstrap, "admin-inspect", topic, group)["offsets"]
    # Each partition's commit is one past its own last record (21, 22, 23 -> 22, 23, 24).
    assert sorted((c["partition"], int(c["offset"])) for c in committed) == [(0, 22), (1, 23), (2, 24)]
    alternating(bootstrap, topic, 6, 3)
    again = kafkajs(bootstrap, "consume", topic, group, 6)["records"]
    assert seen(again) == {(i % 3, i) for i in range(24, 30)}, "resumes after the commits, nothing twice"


@pytest.mark.skipif(not HAVE_SARAMA, reason="go or Sarama is not installed (./dev test installs both)")
def test_gaps_with_sarama(ordered, sarama):
    """Sarama 1.22: ListOffsets answers, partition consumers started inside a gap or at the former
    end read on from the partition's next record (Sarama checks the start against ListOffsets and
    resets nothing), and a group that commits inside gaps resumes exactly."""
    _, bootstrap = ordered
    topic, group = unique("sarama"), unique("sarama-g")
    create(bootstrap, {topic: 2}, "topic")
    alternating(bootstrap, topic, 20, 2)  # partition 0 holds the even offsets, partition 1 the odd

    def step(*args: object) -> dict:
        return run_sarama(sarama, bootstrap, "max", *args)

    def offsets(read: dict) -> list[int]:
        assert read["error"] == ""
        return [r["offset"] for r in read["records"]]

    # ListOffsets: earliest (-2) is the family's first offset, latest (-1) one past its last.
    for partition in (0, 1):
        assert [step("offset-at", topic, partition, t)["offset"] for t in (-2, -1)] == [0, 20]
    assert offsets(step("read", topic, 1, -2, 3)) == [1, 3, 5]
    seek = step("read", topic, 0, 7, 3)  # 7 is partition 1's
    assert offsets(seek) == [8, 10, 12] and seek["highWaterMark"] == 20
    alternating(bootstrap, topic, 2, 2)  # offsets 20 (partition 0) and 21 (partition 1)
    assert offsets(step("read", topic, 1, 20, 1)) == [21], "from the former end, 20 being partition 0's"
    assert offsets(step("read", topic, 0, 20, 1)) == [20]
    # Started where the quiet partition has nothing up to the end, Sarama still learns the high
    # watermark (its lag: high watermark - next offset): from the gap's marker, as it reads only
    # answers that hold records.
    quiet = step("read", quiet_partition_topic(bootstrap), 1, 11, 1)
    assert offsets(quiet) == [] and quiet["highWaterMark"] == QUIET_END

    first = step("consume", topic, group, 7)
    assert first["error"] == ""
    committed = {r["partition"]: r["offset"] + 1 for r in first["records"]}
    assert all(o % 2 != p for p, o in committed.items()), "commits inside gaps: the other partition's"
    inspected = step("admin-inspect", topic, group, 2)["offsets"]
    assert {int(p): o for p, o in inspected.items()} == {p: committed.get(p, -1) for p in (0, 1)}
    rest = step("consume", topic, group, 22 - 7)
    assert rest["error"] == ""
    for r in rest["records"]:
        assert r["offset"] >= committed.get(r["partition"], 0), "resumes at the commit, no reset"
    seen = [(r["partition"], r["offset"]) for r in first["records"] + rest["records"]]
    assert sorted(seen) == sorted((o % 2, o) for o in range(22)), "every record once"


def test_create_partitions_adds_members_to_the_order(ordered):
    cluster, bootstrap = ordered
    topic = unique("grow")
    create(bootstrap, {topic: 1}, "topic")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for i in range(5):
        p.produce(topic, b"a%d" % i, partition=0)
    assert p.flush(10) == 0
    admin.create_partitions([NewPartitions(topic, 3)])[topic].result(10)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0,
                  "topic.metadata.refresh.interval.ms": 200})
    for i in range(9):
        p.produce(topic, b"b%d" % i, partition=i % 3)
        p.flush(10)
    targets = [(topic, q) for q in range(3)]
    expected = native_order(cluster, targets, 14)
    assert [o for o, _ in expected] == list(range(14))
    check_merge(read_confluent(bootstrap, dict(zip(targets, (8, 3, 3), strict=True))), expected)


def test_bad_ordering_configs_are_refused_and_change_nothing(ordered):
    _, bootstrap = ordered
    admin = AdminClient({"bootstrap.servers": bootstrap})
    bad = unique("bad")
    for value in ("total", "group:", "group:a/b"):
        f = admin.create_topics([NewTopic(bad, 1, config={"flexlog.ordering": value})])[bad]
        with pytest.raises(KafkaException) as exc:
            f.result(10)
        assert exc.value.args[0].name() == "INVALID_CONFIG"
        assert "flexlog.ordering" in exc.value.args[0].str()
    assert bad not in admin.list_topics(timeout=10).topics

    # A group's name may not be another topic's.
    plain = unique("plain")
    create(bootstrap, {plain: 1}, "partition")
    f = admin.create_topics([NewTopic(bad, 1, config={"flexlog.ordering": f"group:{plain}"})])[bad]
    with pytest.raises(KafkaException) as exc:
        f.result(10)
    assert exc.value.args[0].name() == "INVALID_CONFIG"
    assert bad not in admin.list_topics(timeout=10).topics

    # The scope of an existing topic is fixed, whichever way one tries to change it.
    topic = unique("fixed")
    create(bootstrap, {topic: 1}, "topic")
    changes = [(AlterConfigOpType.SET, "partition"), (AlterConfigOpType.SET, f"group:{unique('g')}"),
               (AlterConfigOpType.DELETE, None)]
    for op, value in changes:
        res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
            ConfigEntry("flexlog.ordering", value, incremental_operation=op)])
        with pytest.raises(KafkaException) as exc:
            admin.incremental_alter_configs([res])[res].result(10)
        assert exc.value.args[0].name() == "INVALID_CONFIG"
        assert "flexlog.ordering" in exc.value.args[0].str()
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    assert admin.describe_configs([res])[res].result(10)["flexlog.ordering"].value == "topic"
    # Setting the value it already has changes nothing and is accepted.
    same = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("flexlog.ordering", "topic", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([same])[same].result(10)


def test_flexlog_topics_create_takes_the_ordering(ordered):
    cluster, bootstrap = ordered
    toml = str(cluster.config.path)

    def flexlog(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "flexlog.cli", "topics", "create", *args,
                               "--config", toml], capture_output=True, text=True, timeout=60)

    topic = unique("cli")
    made = flexlog(topic, "--partitions", "2", "--topic-config", "flexlog.ordering=topic")
    assert made.returncode == 0, made.stderr
    admin = AdminClient({"bootstrap.servers": bootstrap})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    assert admin.describe_configs([res])[res].result(10)["flexlog.ordering"].value == "topic"
    targets = [(topic, 0), (topic, 1)]
    produce_concurrently(bootstrap, targets)
    expected = native_order(cluster, targets, TOTAL)
    assert [o for o, _ in expected] == list(range(TOTAL))

    bad = flexlog(unique("cli"), "--topic-config", "flexlog.ordering=sometimes")
    assert bad.returncode == 2 and "flexlog.ordering" in bad.stderr
    again = flexlog(topic, "--topic-config", "flexlog.ordering=topic")
    assert again.returncode == 1 and "already exists" in again.stderr


def quiet_partition_topic(bootstrap: str) -> str:
    """Partition 1 holds offset 10 only; partition 0 holds 0-9 and 11-20."""
    topic = unique("quiet")
    create(bootstrap, {topic: 2}, "topic")
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for i in range(21):
        p.produce(topic, b"v%d" % i, partition=1 if i == 10 else 0)
        p.flush(10)
    return topic


def test_a_quiet_partition_reaches_its_high_watermark_confluent(ordered):
    """The consumer's fetch position moves over the other partitions' offsets up to the high
    watermark, so partition EOF fires where nothing is left to read."""
    _, bootstrap = ordered
    topic = quiet_partition_topic(bootstrap)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("g"),
                  "enable.auto.commit": False, "enable.partition.eof": True})
    tp = TopicPartition(topic, 1, 0)
    c.assign([tp])
    got, eof = [], None
    deadline = time.monotonic() + 15
    while eof is None and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            eof = m.offset()
            continue
        got.append((m.offset(), m.value()))
    assert got == [(10, b"v10")]
    assert eof == 21, "librdkafka's fetch position reached the high watermark"
    assert c.get_watermark_offsets(tp, timeout=10) == (0, 21)
    # librdkafka's position() moves over the gap's control record, as over a transaction marker.
    assert c.position([TopicPartition(topic, 1)])[0].offset == 21
    c.close()


def test_a_quiet_partition_reaches_its_high_watermark_kafka_python(ordered):
    _, bootstrap = ordered
    topic = quiet_partition_topic(bootstrap)
    kc = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                       consumer_timeout_ms=3_000)
    tp = KpTopicPartition(topic, 1)
    kc.assign([tp])
    kc.seek_to_beginning()
    assert [(m.offset, m.value) for m in kc] == [(10, b"v10")]
    assert kc.position(tp) == kc.end_offsets([tp])[tp] == 21
    kc.close()


def test_a_quiet_partition_reaches_its_high_watermark_aiokafka(ordered):
    _, bootstrap = ordered
    topic = quiet_partition_topic(bootstrap)

    async def run() -> None:
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest")
        await c.start()
        try:
            tp = AioTopicPartition(topic, 1)
            c.assign([tp])
            m = await asyncio.wait_for(c.getone(), 10)
            assert (m.offset, m.value) == (10, b"v10")
            deadline = time.monotonic() + 10
            while await c.position(tp) < 21 and time.monotonic() < deadline:
                await c.getmany(timeout_ms=200)
            assert await c.position(tp) == 21
            assert c.highwater(tp) == 21, "lag 0: nothing left to read"
            # Seek into the other partition's offsets: on from the next record, no reset.
            c.seek(tp, 3)
            m = await asyncio.wait_for(c.getone(), 10)
            assert m.offset == 10
        finally:
            await c.stop()

    asyncio.run(run())


# Lag as consumers and monitors compute it: high watermark minus the consumer's position or its
# group's committed offset. Read to the end, it must be 0 on the busy partition and on the quiet one
# (partition 1 of quiet_partition_topic: one record, then only partition 0's offsets up to 21).
QUIET_END = 21


def test_lag_is_zero_once_read_confluent(ordered):
    """librdkafka: its position, its committed offsets and its own statistics' consumer lag."""
    _, bootstrap = ordered
    topic = quiet_partition_topic(bootstrap)
    stats: list[dict] = []
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("g"), "enable.auto.commit": False,
                  "enable.partition.eof": True, "statistics.interval.ms": 100,
                  "stats_cb": lambda s: stats.append(json.loads(s))})
    tps = [TopicPartition(topic, p) for p in (0, 1)]
    c.assign([TopicPartition(topic, p, 0) for p in (0, 1)])
    at_end: set[int] = set()
    deadline = time.monotonic() + 15
    while len(at_end) < 2 and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error() and m.offset() == QUIET_END:  # partition EOF at the end
            at_end.add(m.partition())
    c.commit(asynchronous=False)
    assert {tp.partition: tp.offset for tp in c.position(tps)} == {0: QUIET_END, 1: QUIET_END}
    committed = {tp.partition: tp.offset for tp in c.committed(tps, timeout=10)}
    assert committed == {0: QUIET_END, 1: QUIET_END}, "lag (high watermark - committed) 0"
    stats.clear()
    while not stats:
        c.poll(0.2)
    parts = stats[-1]["topics"][topic]["partitions"]
    assert [parts[str(p)]["consumer_lag"] for p in (0, 1)] == [0, 0]
    c.close()


def test_lag_is_zero_once_read_kafka_python(ordered):
    _, bootstrap = ordered
    topic = quiet_partition_topic(bootstrap)
    kc = KafkaConsumer(bootstrap_servers=bootstrap, group_id=unique("g"), enable_auto_commit=False)
    tps = [KpTopicPartition(topic, p) for p in (0, 1)]
    kc.assign(tps)
    kc.seek_to_beginning()
    deadline = time.monotonic() + 15
    while any(kc.position(tp) < QUIET_END for tp in tps) and time.monotonic() < deadline:
        kc.poll(200)
    kc.commit()
    ends = kc.end_offsets(tps)
    for tp in tps:
        assert kc.position(tp) == kc.committed(tp) == kc.highwater(tp) == ends[tp] == QUIET_END
    kc.close()


def test_lag_is_zero_once_read_aiokafka(ordered):
    _, bootstrap = ordered
    topic = quiet_partition_topic(bootstrap)

    async def run() -> None:
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=unique("g"), enable_auto_commit=False,
                             auto_offset_reset="earliest")
        await c.start()
        try:
            tps = [AioTopicPartition(topic, p) for p in (0, 1)]
            c.assign(tps)
            while [await c.position(tp) for tp in tps] != [QUIET_END] * 2:
                await c.getmany(timeout_ms=200)
            await c.commit()
            assert await c.beginning_offsets(tps) == dict.fromkeys(tps, 0)
            assert await c.end_offsets(tps) == dict.fromkeys(tps, QUIET_END)
            for tp in tps:
                assert await c.committed(tp) == c.highwater(tp) == QUIET_END
        finally:
            await c.stop()

    asyncio.run(asyncio.wait_for(run(), 20))


@pytest.mark.skipif(not HAVE_KAFKAJS, reason="node or kafkajs is not installed (./dev test installs both)")
def test_lag_is_zero_once_read_kafkajs(ordered):
    """kafkajs with auto-commit: its batches' offset lag, and the lag its admin client shows."""
    _, bootstrap = ordered
    group = unique("g")
    topic = quiet_partition_topic(bootstrap)
    drained = kafkajs(bootstrap, "drain", topic, group)
    assert sorted((o["partition"], int(o["offset"])) for o in drained["offsets"]) == \
        [(0, o) for o in range(QUIET_END) if o != 10] + [(1, 10)]
    assert drained["lags"] == {"0": "0", "1": "0"}
    lag = kafkajs(bootstrap, "admin-lag", topic, group)
    assert lag == [{"partition": p, "high": str(QUIET_END), "committed": str(QUIET_END)} for p in (0, 1)]


def test_the_example_runs(ordered):
    _, bootstrap = ordered
    example = Path(__file__).parent.parent / "examples" / "ordered_topic.py"
    run = subprocess.run([sys.executable, str(example), "--bootstrap", bootstrap, "--records", "20"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "60 records from 4 partitions in one order; offsets unique: True" in run.stdout


def test_an_ordered_topic_deleted_and_created_again_starts_a_new_order(ordered):
    cluster, bootstrap = ordered
    topic = unique("again")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for round_ in range(2):
        create(bootstrap, {topic: 2}, "topic")
        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
        for i in range(6):
            p.produce(topic, b"r%d-%d" % (round_, i), partition=i % 2)
            p.flush(10)
        expected = native_order(cluster, [(topic, 0), (topic, 1)], 6)
        assert expected == [(i, b"r%d-%d" % (round_, i)) for i in range(6)], \
            "the new incarnation's offsets start at 0 in a family of its own"
        admin.delete_topics([topic])[topic].result(10)
        deadline = time.monotonic() + 10
        while topic in admin.list_topics(timeout=10).topics and time.monotonic() < deadline:
            time.sleep(0.2)

    async def families() -> set[str]:
        async with FlexLogClient(cluster.config) as client:
            await client.sync_registry()
            return set(client.registry.families)

    assert f"kafka/topic/{topic}" not in asyncio.run(families()), "a topic's family goes with it"


def test_list_offsets_by_time_on_an_ordered_partition(ordered):
    _, bootstrap = ordered
    topic = unique("times")
    create(bootstrap, {topic: 2}, "topic")
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    base = 1_700_000_000_000
    for i in range(12):
        p.produce(topic, b"v%d" % i, partition=0 if i in (2, 9) else 1, timestamp=base + i)
        p.flush(10)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("g")})
    asked = [TopicPartition(topic, 0, base + t) for t in (0, 3, 9, 10)]
    found = []
    for tp in asked:
        [answer] = c.offsets_for_times([tp], timeout=10)
        found.append(answer.offset)
    # Partition 0 holds offsets 2 (time base+2) and 9 (base+9): the first at or after each time.
    assert found == [2, 9, 9, -1]
    c.close()
