"""An ordered topic: several producers write to 4 partitions, a consumer merges them by offset.

With `flexlog.ordering=topic` every partition of the topic takes its offsets from one
counter, so the offsets of all partitions together are the order the log accepted the
records in. Run against any FlexLog-Kafka gateway (`flexlog up` starts one on 9092):

    python examples/ordered_topic.py --bootstrap 127.0.0.1:9092

It prints the merged sequence and exits 0 if every offset appears in one partition only.
"""

from __future__ import annotations

import argparse
import threading
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 4


def produce(bootstrap: str, topic: str, name: str, count: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
    for i in range(count):
        p.produce(topic, f"{name}-{i}".encode(), partition=i % PARTITIONS)
    p.flush(30)


def read_all(bootstrap: str, topic: str) -> list[tuple[int, int, bytes]]:
    """(offset, partition, value) of every record up to each partition's end offset, merged by
    offset: the order the log accepted them in."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"merge-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    parts = [TopicPartition(topic, p, 0) for p in range(PARTITIONS)]
    ends = {tp.partition: c.get_watermark_offsets(tp, timeout=10)[1] for tp in parts}
    c.assign(parts)
    records = []
    # An ordered partition's offsets are sparse; the gateway moves the consumer over the other
    # partitions' offsets, so each partition reports EOF once it reached the end offset.
    done: set[int] = set()
    while len(done) < PARTITIONS:
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            if m.offset() >= ends[m.partition()]:  # partition EOF
                done.add(m.partition())
            continue
        records.append((m.offset(), m.partition(), m.value()))
    c.close()
    return sorted(records)  # the merge: by offset, across partitions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--records", type=int, default=40, help="records per producer")
    args = parser.parse_args()
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS,
                                  config={"flexlog.ordering": "topic"})])[topic].result(15)
    producers = [threading.Thread(target=produce, args=(args.bootstrap, topic, name, args.records))
                 for name in ("alice", "bob", "carol")]
    for t in producers:
        t.start()
    for t in producers:
        t.join()
    merged = read_all(args.bootstrap, topic)
    for offset, partition, value in merged:
        print(f"offset {offset:4d}  partition {partition}  {value.decode()}")
    offsets = [o for o, _, _ in merged]
    print(f"{len(merged)} records from {PARTITIONS} partitions in one order; "
          f"offsets unique: {len(set(offsets)) == len(offsets)}")
    return 0 if len(set(offsets)) == len(offsets) == 3 * args.records else 1


if __name__ == "__main__":
    raise SystemExit(main())
