"""An exactly-once consume-transform-produce job, run as a process by test_transactions_exactly_once.py.

    python eos_job.py BOOTSTRAP INPUT OUTPUT GROUP TRANSACTIONAL_ID TOTAL [STALL_AT STALL_FILE]

Reads INPUT read_committed as a member of GROUP and writes b"out-" + value for each record to the
same partition of OUTPUT, in transactions of up to BATCH records that also commit the input offsets
(send_offsets_to_transaction). An abortable error aborts the transaction and rewinds to the
committed offsets; a fatal one exits with FATAL_EXIT (a new process with the same transactional
id fences this one and aborts its open transaction). Prints "committed N" (records this process
committed so far) after each transaction; exits 0 once the group's committed offsets cover TOTAL
input records (the input is not transactional: its offsets are 0..n-1 on each partition).

With STALL_AT, the first transaction after STALL_AT committed records stalls once its output is
acknowledged and its offsets are sent, before the commit: it prints "stalled" and waits until
STALL_FILE exists (a test kills the job there, or a gateway, then lets it go on).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

BATCH = 20
FATAL_EXIT = 3


def retrying(op: Callable[[], object], timeout_s: float = 60.0) -> None:
    """op, again while it fails with a retriable error (librdkafka's advice for the transactional calls)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            op()
            return
        except KafkaException as e:
            if not e.args[0].retriable() or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def rewind(consumer: Consumer) -> None:
    """Back to the committed offsets (the beginning where nothing is committed)."""
    committed = consumer.committed(consumer.assignment(), timeout=30)
    for tp in committed:
        offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
        consumer.seek(TopicPartition(tp.topic, tp.partition, offset))


def transact(producer: Producer, consumer: Consumer, sink: str, batch: list[Message],
             stall: Callable[[], None] | None = None) -> bool:
    """batch's output and input offsets in one transaction; False if it was aborted."""
    offsets: dict[tuple[str, int], int] = {}
    for m in batch:
        offsets[(m.topic(), m.partition())] = max(offsets.get((m.topic(), m.partition()), 0), m.offset() + 1)
    try:
        producer.begin_transaction()
        for m in batch:
            producer.produce(sink, value=b"out-" + m.value(), key=m.key(), partition=m.partition())
        positions = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        metadata = consumer.consumer_group_metadata()
        retrying(lambda: producer.send_offsets_to_transaction(positions, metadata, 30))
        if stall is not None:
            assert producer.flush(30) == 0
            stall()
        retrying(lambda: producer.commit_transaction(30))
        return True
    except KafkaException as e:
        err: KafkaError = e.args[0]
        if not err.txn_requires_abort():
            raise
        print(f"aborting: {err}", file=sys.stderr, flush=True)
        retrying(lambda: producer.abort_transaction(30))
        rewind(consumer)
        return False


def covered(consumer: Consumer) -> int:
    """How many input records the group's committed offsets cover (every partition assigned here)."""
    return sum(max(tp.offset, 0) for tp in consumer.committed(consumer.assignment(), timeout=10))


def main() -> int:
    bootstrap, source, sink, group, transactional_id, total_arg = sys.argv[1:7]
    total = int(total_arg)
    stall_at = int(sys.argv[7]) if len(sys.argv) > 7 else None
    stall_file = Path(sys.argv[8]) if len(sys.argv) > 8 else None

    def stall() -> None:
        print("stalled", flush=True)
        while stall_file is not None and not stall_file.exists():
            time.sleep(0.05)

    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id,
                         "linger.ms": 5, "transaction.timeout.ms": 30_000})
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                         "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
                         "max.poll.interval.ms": 20_000})
    batch: list[Message] = []

    def revoked(_consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        # Not produced yet; whoever gets the partitions starts from the committed offsets.
        batch.clear()

    try:
        retrying(lambda: producer.init_transactions(60), 120)
        consumer.subscribe([source], on_revoke=revoked)
        done = 0
        while True:
            msgs = consumer.consume(BATCH - len(batch), 0.2)
            for m in msgs:
                if m.error() is None:
                    batch.append(m)
                else:
                    print(f"consumer: {m.error()}", file=sys.stderr, flush=True)
            if batch and (len(batch) >= BATCH or not msgs):
                stalling = stall_at is not None and done >= stall_at
                if transact(producer, consumer, sink, batch, stall if stalling else None):
                    done += len(batch)
                    print(f"committed {done}", flush=True)
                    if stalling:
                        stall_at = None
                batch.clear()
            elif not batch and not msgs and consumer.assignment():
                try:
                    if covered(consumer) >= total:
                        break
                except KafkaException as e:
                    print(f"committed(): {e}", file=sys.stderr, flush=True)
    except KafkaException as e:
        print(f"fatal: {e}", file=sys.stderr, flush=True)
        return FATAL_EXIT
    consumer.close()
    producer.flush(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
