"""Co-partitioning on a REAL broker: the contract's partitioner, the partition-count
check at start, and the count of records that break co-partitioning."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions

from forewarn import metrics
from forewarn.connectors.kafka_publish import publish_lines
from forewarn.connectors.kafka_source import _check_copartitioning
from forewarn.connectors.topics import TOPIC_FOR_TYPE, partition_for
from forewarn.model import Location
from tests.kafka_flow_helpers import flow_cmd, fresh_topics, produce
from tests.kafka_helpers import kafka_broker, kafka_config  # noqa: F401  (fixtures)


def _location(sid: str) -> bytes:
    return orjson.dumps({"type": "location", "subscriber_id": sid, "cell_id": "C1",
                         "event_time": "2026-11-23T10:00:00Z"})


def _consume(config, topic: str, partitions: int) -> list:
    consumer = Consumer({**config, "group.id": "t", "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got, ends = [], set()
    while len(ends) < partitions:
        for msg in consumer.consume(500, 1.0):
            if msg.error() is None:
                got.append(msg)
            else:
                ends.add(msg.partition())
    consumer.close()
    return got


def test_publishers_place_keys_as_java_does_and_mismatches_are_counted(
        kafka_config) -> None:  # noqa: F811
    topics = fresh_topics(kafka_config, partitions=7)
    sids = [f"SUB{i:06d}" for i in range(200)]
    publish_lines(kafka_config, [_location(s) for s in sids], topics=topics)
    msgs = _consume(kafka_config, topics.of("location"), 7)
    assert len(msgs) == 200 and len({m.partition() for m in msgs}) == 7
    assert all(m.partition() == partition_for(m.key(), 7) for m in msgs)

    counter = metrics.COPARTITION_VIOLATIONS.labels(source=TOPIC_FOR_TYPE["location"])
    before = counter._value.get()
    keyed = {topics.of("location"): (7, Location)}
    _check_copartitioning(msgs, keyed)
    assert counter._value.get() == before  # all placed by the contract's partitioner

    # librdkafka's own default partitioner (CRC32), and a key that is not the subscriber
    other = fresh_topics(kafka_config, partitions=7)
    produce(kafka_config, [(other.of("location"), s.encode(), _location(s)) for s in sids],
            {"partitioner": "consistent_random"})
    produce(kafka_config, [(other.of("location"), b"CELL1", _location("SUB999999"))])
    msgs = _consume(kafka_config, other.of("location"), 7)
    wrong = sum(m.partition() != partition_for(m.key(), 7) or m.key() == b"CELL1"
                for m in msgs)
    assert len(msgs) == 201 and wrong > 150
    _check_copartitioning(msgs, {other.of("location"): (7, Location)})
    assert counter._value.get() == before + wrong


def test_a_run_refuses_topics_with_different_partition_counts(kafka_config,  # noqa: F811
                                                              tmp_path: Path) -> None:
    topics = fresh_topics(kafka_config, partitions=2)
    admin = AdminClient(kafka_config)
    admin.create_partitions([NewPartitions(topics.of("call"), 3)])[topics.of("call")].result()
    done = subprocess.run(flow_cmd(kafka_config["bootstrap.servers"], topics, "--exit-at-end"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "input topics must all have the same number of partitions" in done.stderr
    assert f"recreate {topics.of('call')} with 2 partitions" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_recovery_store_of_another_partition_count_is_refused(kafka_config,  # noqa: F811
                                                                tmp_path: Path) -> None:
    """A store written with 2 input shards (2 partitions per topic) is refused by a run on
    topics with 3: its input positions and sequencer state belong to other shards (Bytewax
    would stop on the unknown source partition, or start the new one from scratch)."""
    recovery = str(tmp_path / "recovery")
    bootstrap = kafka_config["bootstrap.servers"]
    two = fresh_topics(kafka_config, partitions=2)
    publish_lines(kafka_config, [b'{"type":"cell","cell_id":"C1","site_id":"S1"}'], topics=two)
    done = subprocess.run(flow_cmd(bootstrap, two, "--exit-at-end", "--recovery", recovery),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    three = fresh_topics(kafka_config, partitions=3)
    done = subprocess.run(flow_cmd(bootstrap, three, "--exit-at-end", "--recovery", recovery),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "panicked" not in done.stderr
    assert "of the source partitions kafka-0, kafka-1, this run reads kafka-0, kafka-1, " \
           "kafka-2" in done.stderr, done.stderr[-3000:]
    assert f"mv {recovery} {recovery}.old" in done.stderr
