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


def test_a_partition_that_gets_nothing_holds_no_one_back_live(kafka_config,  # noqa: F811
                                                               tmp_path: Path) -> None:
    """Live, two partitions per topic, every subscriber on partition 0: shard 1 reads only
    the topology and alarms (context), never enough to have a watermark. Once its input
    has been at its end a while it says it is idle, and the frontier goes on without it:
    the outage notices come. (Without that, sites, care and dispatch would wait for shard
    1 for ever.)"""
    from forewarn.connectors.topics import partition_for
    from tests.builders import Scenario
    from tests.kafka_flow_helpers import start_flow, tail, wait_until

    sids = [f"U{i}" for i in range(40) if partition_for(f"U{i}".encode(), 2) == 0][:6]
    s = Scenario().site("S1", cells=2)
    for sid in sids:
        s.subscriber(sid).seen(sid, "S1-C1", 1)
    s.alarm("A1", 10, cell="S1-C1")
    for minute in range(11, 25):  # the stream moves on past the hold-down
        s.seen(sids[0], "S1-C2", minute)
    topics = fresh_topics(kafka_config, partitions=2)
    publish_lines(kafka_config, s.lines, topics=topics)
    log = tmp_path / "flow.log"
    proc = start_flow(flow_cmd(kafka_config["bootstrap.servers"], topics), log)
    try:
        def notices() -> set[str]:
            return {orjson.loads(r.value)["subscriber_id"]
                    for r in _records(kafka_config, topics.actions)
                    if orjson.loads(r.value)["kind"] == "outage_notice"}

        got = wait_until(lambda: notices() >= set(sids[1:]) and notices(), 90,
                         "the outage notices", proc=proc, log=log)
        assert got
        assert proc.poll() is None, tail(log)
    finally:
        proc.terminate()
        proc.wait(30)


def _records(config, topic: str) -> list:
    from tests.kafka_flow_helpers import records

    return records(config, topic, quiet=0.2)
