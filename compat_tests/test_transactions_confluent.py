"""Kafka transactions (KIP-98, KIP-447) with confluent-kafka (librdkafka), as a client sees them:
a committed transaction over two topics is read once by a read_committed consumer, an aborted one
never (a read_uncommitted consumer does see it, and both read on past it); an open transaction
holds read_committed consumers at its first offset (the last stable offset), other producers'
later records included, until it ends; consume-transform-produce commits the group's offsets with
the output, and an abort commits neither; a second producer with the same transactional.id
fences the first and aborts its open transaction; a transaction past transaction.timeout.ms is
aborted by the coordinator."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from group_helpers import PARTITIONS, create_topic, produce, unique
from txn_helpers import (
    READ_COMMITTED,
    READ_UNCOMMITTED,
    Reader,
    send_plain,
    txn_producer,
)


def test_committed_is_read_once_and_aborted_only_read_uncommitted(bootstrap):
    a, b = create_topic(bootstrap), create_topic(bootstrap)
    committed = [(t, p, b"c-%s-%d-%d" % (t.encode(), p, i))
                 for t in (a, b) for p in range(PARTITIONS) for i in range(3)]
    p = txn_producer(bootstrap)
    p.begin_transaction()
    for topic, partition, value in committed:
        p.produce(topic, value=value, partition=partition)
    p.commit_transaction(30)

    rc = Reader(bootstrap, [a, b], READ_COMMITTED)
    rc.until(lambda values: len(values) >= len(committed))
    assert sorted(rc.values()) == sorted(v for _, _, v in committed)
    # Within a partition, in the order produced.
    for (topic, partition), read in rc.by_partition().items():
        assert [v for _, v in read] == [v for t, q, v in committed if (t, q) == (topic, partition)]

    # The same producer: an aborted transaction whose records are all in the log, then another
    # committed one on every partition.
    aborted = [(t, q, b"a-%s-%d-%d" % (t.encode(), q, i))
               for t in (a, b) for q in range(PARTITIONS) for i in range(2)]
    p.begin_transaction()
    for topic, partition, value in aborted:
        p.produce(topic, value=value, partition=partition)
    assert p.flush(30) == 0
    p.abort_transaction(30)
    later = [(t, q, b"z-%s-%d" % (t.encode(), q)) for t in (a, b) for q in range(PARTITIONS)]
    p.begin_transaction()
    for topic, partition, value in later:
        p.produce(topic, value=value, partition=partition)
    p.commit_transaction(30)

    rc.until_has(v for _, _, v in later)
    ru = Reader(bootstrap, [a, b], READ_UNCOMMITTED)
    ru.until_has(v for _, _, v in later)
    rc.close()
    ru.close()
    committed_values = [v for _, _, v in committed + later]
    aborted_values = [v for _, _, v in aborted]
    assert sorted(rc.values()) == sorted(committed_values)  # each once, none aborted
    assert sorted(ru.values()) == sorted(committed_values + aborted_values)

    # Both read the same records at the same offsets; read_committed skips the aborted offsets.
    ru_parts = ru.by_partition()
    for key, read in rc.by_partition().items():
        at = dict(ru_parts[key])
        assert all(at[offset] == value for offset, value in read)
        offsets = [o for o, _ in read]
        assert offsets == sorted(offsets)
        aborted_offsets = [o for o, v in ru_parts[key] if v.startswith(b"a-")]
        assert len(aborted_offsets) == 2
        assert not set(aborted_offsets) & set(offsets)
        last_committed = max(o for o, v in read if v.startswith(b"c-"))
        first_later = min(o for o, v in read if v.startswith(b"z-"))
        assert last_committed < min(aborted_offsets) <= max(aborted_offsets) < first_later


def test_an_open_transaction_holds_read_committed_at_its_first_offset(bootstrap):
    """The last stable offset: read_committed consumers read nothing from an open transaction's
    first offset on, other producers' later records included, and ListOffsets (latest) answers
    them the LSO, not the high watermark; all of it shows up once the transaction commits."""
    topic = create_topic(bootstrap)
    send_plain(bootstrap, [(topic, 0, b"before")])
    p = txn_producer(bootstrap)
    p.begin_transaction()
    opened = [b"open-%d" % i for i in range(5)]
    for value in opened:
        p.produce(topic, value=value, partition=0)
    assert p.flush(30) == 0
    after = [b"after-%d" % i for i in range(3)]
    send_plain(bootstrap, [(topic, 0, v) for v in after])

    ru = Reader(bootstrap, [topic], READ_UNCOMMITTED, partitions=1)
    ru.until(lambda values: len(values) >= 9)
    assert ru.values() == [b"before", *opened, *after]
    offset_of = {v: o for _, _, o, v in ru.records}
    rc = Reader(bootstrap, [topic], READ_COMMITTED, partitions=1)
    rc.until(lambda values: len(values) >= 1)
    rc.poll(1.5)
    assert rc.values() == [b"before"]

    tp = TopicPartition(topic, 0)
    _, lso = rc.consumer.get_watermark_offsets(tp, timeout=10)
    _, hwm = ru.consumer.get_watermark_offsets(tp, timeout=10)
    assert lso == offset_of[b"open-0"]
    assert hwm == offset_of[b"after-2"] + 1

    p.commit_transaction(30)
    rc.until(lambda values: len(values) >= 9)
    assert rc.values() == [b"before", *opened, *after]
    assert [o for _, _, o, _ in rc.records] == [offset_of[v] for v in rc.values()]
    # No open transaction is left: the LSO is the high watermark for both isolation levels,
    # and a read_committed consumer that read everything is at most there.
    _, lso = rc.consumer.get_watermark_offsets(tp, timeout=10)
    _, hwm = ru.consumer.get_watermark_offsets(tp, timeout=10)
    assert lso == hwm > offset_of[b"after-2"]
    [position] = rc.consumer.position([tp])
    assert offset_of[b"after-2"] < position.offset <= hwm
    rc.close()
    ru.close()


def committed_offsets(bootstrap: str, group: str, partitions: list[TopicPartition]) -> dict[int, int]:
    """The group's committed offsets per partition (OFFSET_INVALID: none), through a
    read_uncommitted consumer of the group that never joins it: a pending transactional offset
    commit is not among them (read_committed would wait for it to be stable)."""
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                      "isolation.level": READ_UNCOMMITTED})
    try:
        return {tp.partition: tp.offset for tp in probe.committed(partitions, timeout=15)}
    finally:
        probe.close()


def await_committed(bootstrap: str, group: str, partitions: list[TopicPartition],
                    want: dict[int, int]) -> None:
    """Once a transaction commits, its offsets are committed as soon as its marker is written:
    Kafka answers EndTxn before that, so a client may see them a moment later."""
    deadline = time.monotonic() + 15
    while (got := committed_offsets(bootstrap, group, partitions)) != want:
        assert time.monotonic() < deadline, got
        time.sleep(0.1)


def consume_n(c: Consumer, n: int, timeout: float = 30.0) -> list:
    out: list = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        assert time.monotonic() < deadline, f"read {len(out)} of {n}"
        for m in c.consume(n - len(out), 0.5):
            assert m.error() is None, m.error()
            out.append(m)
    return out


def test_consume_transform_produce_commits_offsets_with_the_output(bootstrap):
    source, sink = create_topic(bootstrap), create_topic(bootstrap)
    group = unique("ctp")
    inputs = [b"in-%03d" % i for i in range(90)]
    produce(bootstrap, source, inputs[:60])  # 10 on each partition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                  "isolation.level": READ_COMMITTED, "auto.offset.reset": "earliest"})
    c.subscribe([source])
    p = txn_producer(bootstrap)
    everything = [TopicPartition(source, q) for q in range(PARTITIONS)]

    def transform(messages: list) -> None:
        p.begin_transaction()
        for m in messages:
            p.produce(sink, value=b"out-" + m.value(), partition=m.partition())
        p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 30)

    transform(consume_n(c, 60))
    assert p.flush(30) == 0
    # Sent to the transaction, not committed yet: read_uncommitted sees no commit; read_committed
    # (OffsetFetch's require_stable, KIP-447) waits for the transaction to end.
    assert set(committed_offsets(bootstrap, group, everything).values()) == {OFFSET_INVALID}
    stable = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                       "isolation.level": READ_COMMITTED})
    with pytest.raises(KafkaException) as info:
        stable.committed(everything, timeout=2)
    assert info.value.args[0].code() == KafkaError._TIMED_OUT
    p.commit_transaction(30)
    await_committed(bootstrap, group, everything, {q: 10 for q in range(PARTITIONS)})
    for waited in (c, stable):
        assert {tp.partition: tp.offset for tp in waited.committed(everything, timeout=15)} == \
            {q: 10 for q in range(PARTITIONS)}
    stable.close()

    # An aborted transaction commits neither its output nor its offsets; the job rewinds to the
    # committed offsets and does the work again.
    produce(bootstrap, source, inputs[60:])  # 5 more on each partition
    second = consume_n(c, 30)
    assert sorted(m.value() for m in second) == inputs[60:]
    transform(second)
    assert p.flush(30) == 0
    p.abort_transaction(30)
    assert committed_offsets(bootstrap, group, everything) == {q: 10 for q in range(PARTITIONS)}
    for tp in c.committed(everything, timeout=15):
        c.seek(tp)
    again = consume_n(c, 30)
    assert sorted(m.value() for m in again) == inputs[60:]
    transform(again)
    p.commit_transaction(30)
    await_committed(bootstrap, group, everything, {q: 15 for q in range(PARTITIONS)})
    c.close()

    rc = Reader(bootstrap, [sink], READ_COMMITTED)
    rc.until(lambda values: len(values) >= 90)
    rc.close()
    assert sorted(rc.values()) == sorted(b"out-" + v for v in inputs)


def fatal_or_fenced(err: KafkaError) -> bool:
    return err.fatal() or err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED)


def test_a_second_producer_with_the_same_id_fences_the_first(bootstrap):
    topic = create_topic(bootstrap)
    tid = unique("tx")
    zombie = txn_producer(bootstrap, tid)
    zombie.begin_transaction()
    for i in range(4):
        zombie.produce(topic, value=b"zombie-%d" % i, partition=i % 2)
    assert zombie.flush(30) == 0

    # init_transactions of the new instance aborts the open transaction and fences the old one.
    fresh = txn_producer(bootstrap, tid)
    fresh.begin_transaction()
    for i in range(4):
        fresh.produce(topic, value=b"fresh-%d" % i, partition=i % 2)
    fresh.commit_transaction(30)

    # The old instance can neither produce into its transaction nor commit it: a fatal error,
    # at the latest when it tries to abort after an abortable one.
    with pytest.raises(KafkaException) as info:
        zombie.produce(topic, value=b"late", partition=0)
        zombie.commit_transaction(15)
    err = info.value.args[0]
    if not fatal_or_fenced(err):
        assert err.txn_requires_abort(), err
        with pytest.raises(KafkaException) as info:
            zombie.abort_transaction(15)
        err = info.value.args[0]
    assert fatal_or_fenced(err), err

    # The new instance goes on; the partitions' last stable offsets are not held by the zombie.
    fresh.begin_transaction()
    for q in range(2):
        fresh.produce(topic, value=b"fresh-end-%d" % q, partition=q)
    fresh.commit_transaction(30)
    want = [b"fresh-%d" % i for i in range(4)] + [b"fresh-end-0", b"fresh-end-1"]
    rc = Reader(bootstrap, [topic], READ_COMMITTED, partitions=2)
    rc.until_has(want)
    ru = Reader(bootstrap, [topic], READ_UNCOMMITTED, partitions=2)
    ru.until_has(want)
    rc.close()
    ru.close()
    assert sorted(rc.values()) == sorted(want)
    # The zombie's records reached the log before it was fenced; nothing after.
    assert sorted(ru.values()) == sorted(want + [b"zombie-%d" % i for i in range(4)])


def test_a_transaction_past_its_timeout_is_aborted_by_the_coordinator(bootstrap):
    topic = create_topic(bootstrap)
    p = txn_producer(bootstrap, **{"transaction.timeout.ms": 2000})
    p.begin_transaction()
    for i in range(3):
        p.produce(topic, value=b"expired-%d" % i, partition=0)
    assert p.flush(30) == 0
    time.sleep(2.5)
    # A later record of another producer becomes readable once the coordinator has aborted
    # the transaction (until then the transaction holds the last stable offset); Kafka checks
    # for expired transactions every 10 s by default.
    send_plain(bootstrap, [(topic, 0, b"after")])
    rc = Reader(bootstrap, [topic], READ_COMMITTED, partitions=1)
    rc.until_has([b"after"], timeout=30)
    assert rc.values() == [b"after"]
    rc.close()

    with pytest.raises(KafkaException) as info:
        p.commit_transaction(15)
    err = info.value.args[0]
    assert err.fatal() or err.txn_requires_abort(), err
    committed = [b"after"]
    if err.txn_requires_abort():
        # Abortable: the producer aborts and carries on with a new transaction.
        p.abort_transaction(30)
        p.begin_transaction()
        p.produce(topic, value=b"next", partition=0)
        p.commit_transaction(30)
        committed.append(b"next")
    ru = Reader(bootstrap, [topic], READ_UNCOMMITTED, partitions=1)
    ru.until_has(committed)
    rc = Reader(bootstrap, [topic], READ_COMMITTED, partitions=1)
    rc.until_has(committed)
    ru.close()
    rc.close()
    assert rc.values() == committed
    assert ru.values() == [b"expired-%d" % i for i in range(3)] + committed
