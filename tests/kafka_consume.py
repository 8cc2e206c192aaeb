#!/usr/bin/env python3
"""Reads Kafka topics from the beginning with a real client (confluent-kafka) and prints
every record as one line: TOPIC<TAB>PARTITION<TAB>KEY<TAB>VALUE, in the order each
partition holds them.

Counts the records it reads instead of trusting the broker's offsets (tansu reports high
watermarks oddly): it stops once every topic has at least its expected count and nothing
more came for --grace seconds (so duplicates show up), or after --timeout seconds.

With --follow it never stops on the counts: it prints (and flushes) each record as it
arrives until --timeout or until it is killed, so that a test can watch a topic live.

usage: kafka_consume.py BROKERS TOPIC=COUNT [TOPIC=COUNT...] [--timeout S] [--grace S] [--follow]
"""
import argparse
import sys
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("brokers")
    ap.add_argument("topics", nargs="+", help="TOPIC=EXPECTED_COUNT")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--grace", type=float, default=1.0)
    ap.add_argument("--follow", action="store_true")
    a = ap.parse_args()
    want = {}
    for t in a.topics:
        name, _, n = t.partition("=")
        want[name] = int(n or 0)

    c = Consumer({
        "bootstrap.servers": a.brokers,
        "group.id": "portent-test-" + uuid.uuid4().hex,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "fetch.wait.max.ms": 50,
    })
    deadline = time.monotonic() + a.timeout
    # Every partition of every topic, read from its first record, without a consumer group.
    parts = []
    while not parts and time.monotonic() < deadline:
        md = c.list_topics(timeout=5)
        for name in want:
            t = md.topics.get(name)
            if t is None or t.error is not None or not t.partitions:
                parts = []
                break
            parts += [TopicPartition(name, p, OFFSET_BEGINNING) for p in sorted(t.partitions)]
        if not parts:
            time.sleep(0.2)
    if not parts:
        print("kafka_consume: topics not found: %s" % ", ".join(want), file=sys.stderr)
        return 2
    c.assign(parts)

    got = {name: 0 for name in want}
    last = time.monotonic()
    out = sys.stdout
    while time.monotonic() < deadline:
        m = c.poll(0.1)
        now = time.monotonic()
        if m is None:
            if not a.follow and all(got[t] >= want[t] for t in want) and now - last >= a.grace:
                break
            continue
        if m.error():
            if m.error().code() != KafkaError._PARTITION_EOF:
                print("kafka_consume: %s" % m.error(), file=sys.stderr)
            continue
        key = (m.key() or b"").decode()
        value = (m.value() or b"").decode()
        out.write("%s\t%d\t%s\t%s\n" % (m.topic(), m.partition(), key, value))
        if a.follow:
            out.flush()
        got[m.topic()] += 1
        last = now
    out.flush()
    c.close()
    print("kafka_consume: read %s" % ", ".join("%s %d" % kv for kv in got.items()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
