"""What the transaction tests share: a transactional confluent-kafka producer, and a reader that
consumes whole topics from their beginning at one isolation level and keeps what it read."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from group_helpers import PARTITIONS, unique

READ_COMMITTED = "read_committed"
READ_UNCOMMITTED = "read_uncommitted"


def txn_producer(bootstrap: str, transactional_id: str | None = None, **conf: object) -> Producer:
    """A transactional producer, initialised (so any earlier transaction of its id is finished)."""
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id or unique("tx"),
                  "linger.ms": 5, **conf})
    p.init_transactions(30)
    return p


def send_committed(bootstrap: str, records: Iterable[tuple[str, int, bytes]]) -> None:
    """records (topic, partition, value) in one committed transaction."""
    p = txn_producer(bootstrap)
    p.begin_transaction()
    for topic, partition, value in records:
        p.produce(topic, value=value, partition=partition)
    p.commit_transaction(30)


def send_aborted(bootstrap: str, records: Iterable[tuple[str, int, bytes]]) -> None:
    """records (topic, partition, value) in a transaction that is aborted after every record was
    acknowledged, so the records are in the log (an abort before that could just drop them)."""
    p = txn_producer(bootstrap)
    p.begin_transaction()
    for topic, partition, value in records:
        p.produce(topic, value=value, partition=partition)
    assert p.flush(30) == 0
    p.abort_transaction(30)


def send_plain(bootstrap: str, records: Iterable[tuple[str, int, bytes]]) -> None:
    """records (topic, partition, value) from a non-transactional producer, all acknowledged."""
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    errors: list[KafkaError] = []
    for topic, partition, value in records:
        p.produce(topic, value=value, partition=partition,
                  on_delivery=lambda err, _msg: err and errors.append(err))
    assert p.flush(30) == 0
    assert not errors, errors


class Reader:
    """A consumer assigned every partition of topics from the beginning, at one isolation level;
    `records` holds what it read, as (topic, partition, offset, value)."""

    def __init__(self, bootstrap: str, topics: list[str], isolation: str,
                 partitions: int = PARTITIONS) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("reader"),
                                  "enable.auto.commit": False, "isolation.level": isolation,
                                  "fetch.wait.max.ms": 100})
        self.consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING)
                              for t in topics for p in range(partitions)])
        self.records: list[tuple[str, int, int, bytes]] = []

    def values(self) -> list[bytes]:
        return [r[3] for r in self.records]

    def poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            for m in self.consumer.consume(500, min(0.2, left)):
                assert m.error() is None, m.error()
                self.records.append((m.topic(), m.partition(), m.offset(), m.value()))

    def until(self, done: Callable[[list[bytes]], bool], timeout: float = 30.0) -> None:
        """Poll until done(values) holds; then a little longer, for a duplicate to show up."""
        deadline = time.monotonic() + timeout
        while not done(self.values()):
            assert time.monotonic() < deadline, f"timed out; read {len(self.records)}: {self.values()[:50]}"
            self.poll(0.2)
        self.poll(0.5)

    def until_has(self, wanted: Iterable[bytes], timeout: float = 30.0) -> None:
        want = set(wanted)
        self.until(lambda values: want <= set(values), timeout)

    def counts(self) -> Counter[bytes]:
        return Counter(self.values())

    def by_partition(self) -> dict[tuple[str, int], list[tuple[int, bytes]]]:
        """(offset, value) per partition, in the order read."""
        out: dict[tuple[str, int], list[tuple[int, bytes]]] = {}
        for topic, partition, offset, value in self.records:
            out.setdefault((topic, partition), []).append((offset, value))
        return out

    def close(self) -> None:
        self.consumer.close()
