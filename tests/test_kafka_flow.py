"""The flow on a REAL Kafka broker: same outputs as in memory, bad input, scale-out,
a broker restart, and delivery failures that are surfaced instead of lost."""

from __future__ import annotations

import doctest
import logging
import subprocess
from pathlib import Path

import orjson
import pytest

import forewarn.connectors.kafka_publish
import forewarn.connectors.kafka_sink
import forewarn.connectors.kafka_source
from forewarn import metrics
from forewarn.connectors import broker
from forewarn.connectors.kafka_publish import Topics, publish_lines
from forewarn.connectors.kafka_sink import DeliveryError, KafkaOutSink, cleared_status
from forewarn.dataflows.sequencer import AHEAD_QUORUM
from tests.builders import comparable
from tests.kafka_flow_helpers import (
    Expected,
    expected,
    expected_every_rule,
    flow_cmd,
    forewarn_cmd,
    fresh_topics,
    produce,
    records,
    run_flow,
    start_flow,
    tail,
    values,
    wait_until,
    whole_record_diff,
)
from tests.kafka_helpers import (  # noqa: F401  (fixtures)
    create_topic,
    free_port,
    kafka_broker,
    kafka_config,
    unique_topic,
)


@pytest.mark.parametrize("module", [forewarn.connectors.kafka_source,
                                    forewarn.connectors.kafka_sink,
                                    forewarn.connectors.kafka_publish])
def test_doctests(module) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def _check_outputs(config, topics: Topics, exp: Expected | None = None) -> None:
    exp = exp or expected()
    actions = records(config, topics.actions)
    # whole records: ids, kinds, channels, event times, send_after, offers, messages
    got = sorted(comparable(r.value) for r in actions)
    assert got == exp.comparable_actions, whole_record_diff(got, exp.comparable_actions)
    assert all(r.key == orjson.loads(r.value)["subscriber_id"].encode() for r in actions)
    incidents = records(config, topics.incidents)
    assert sorted(r.value for r in incidents) == sorted(exp.incidents)
    assert all(r.key == orjson.loads(r.value)["incident_id"].encode() for r in incidents)
    contexts = records(config, topics.care_context)  # one per complaint, whole records
    assert exp.care_context and sorted(r.value for r in contexts) == sorted(exp.care_context)
    assert all(r.key == orjson.loads(r.value)["subscriber_id"].encode() for r in contexts)
    # care.status: each change of a subscriber's impact, a tombstone when it clears
    def order(kv: tuple) -> tuple:
        return kv[0], kv[1] or b""

    want = sorted(((orjson.loads(v)["subscriber_id"].encode(),
                    None if cleared_status(v) else v) for v in exp.care_status),
                  key=order)
    got = sorted(((r.key, r.value) for r in records(config, topics.care_status)), key=order)
    assert exp.care_status and got == want


def test_simulate_then_run_on_3_partitions_2_workers(kafka_config, tmp_path: Path) -> None:  # noqa: F811
    """`forewarn simulate --bootstrap` + `forewarn run --bootstrap -w 2` == in memory."""
    topics = fresh_topics(kafka_config, partitions=3)
    bootstrap = kafka_config["bootstrap.servers"]
    sim = subprocess.run(forewarn_cmd(
        "simulate", "--bootstrap", bootstrap, "--topic-prefix", topics.prefix, "--seed", "3",
        "--sites", "10", "--hours", "3", "--subscribers-per-cell", "8"),
        capture_output=True, text=True, timeout=120)
    assert sim.returncode == 0, sim.stderr
    assert "dead letters: " in sim.stderr and "failed: none" in sim.stderr
    run_flow(flow_cmd(bootstrap, topics, "-w", "2", "--exit-at-end"), tmp_path / "flow.log")
    _check_outputs(kafka_config, topics, expected(partitions=3))
    dead = values(kafka_config, topics.dead_letters)
    from_flow = [d for d in dead if "offset" in d]
    assert from_flow and all(d["topic"] == d["source"] and d["reason"] for d in from_flow)


def test_two_processes_give_the_same_actions(kafka_config, tmp_path: Path) -> None:  # noqa: F811
    """Two processes on a scenario where every default rule acts: the same whole actions."""
    exp = expected_every_rule(partitions=2)
    topics = fresh_topics(kafka_config, partitions=2)
    publish_lines(kafka_config, exp.lines, topics=topics)
    bootstrap = kafka_config["bootstrap.servers"]
    addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"
    procs = [start_flow(flow_cmd(bootstrap, topics, "-i", str(i), "-a", addresses,
                                 "--exit-at-end"), tmp_path / f"flow{i}.log")
             for i in (0, 1)]
    for i, proc in enumerate(procs):
        try:
            assert proc.wait(120) == 0, tail(tmp_path / f"flow{i}.log")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    _check_outputs(kafka_config, topics, exp)


def _bad_records(topics: Topics) -> list[tuple[str, bytes | None, bytes | None]]:
    """Defective messages for every input topic (compacted topics need keys)."""
    huge = b'{"type":"location","subscriber_id":"SUB000001","pad":"' + b"x" * 1_000_000 + b'"}'
    t = "2026-11-23T07:30:00Z"
    per_type = {
        "cell": [b'{"type":"cell","cell_id":"CX"}', b'{"type":"cell","cell_id":7,"site_id":[]}'],
        "alarm": [b'{"type":"alarm","alarm_id":"AX","event_time":"' + t.encode()
                  + b'","perceived_severity":"urgent","probable_cause":"lossOfSignal",'
                  b'"cell_id":"CELL0001-1"}',
                  b'{"type":"alarm","alarm_id":"AY","event_time":"' + t.encode()
                  + b'","perceived_severity":"critical","probable_cause":"lossOfSignal",'
                  b'"cell_id":"NOPE-1"}'],
        "location": [b'{"type":"location","subscriber_id":"S","cell_id":"CELL0001-1",'
                     b'"event_time":"2199-01-01T00:00:00Z"}',
                     b'{"type":"location","subscriber_id":"S","cell_id":"CELL0001-1",'
                     b'"event_time":"1999-01-01T00:00:00Z"}', huge],
        "call": [b'{"type":"call","call_id":"K","subscriber_id":"S","cell_id":"CELL0001-1",'
                 b'"start_time":"' + t.encode() + b'","end_time":"' + t.encode()
                 + b'","dropped":"yes"}'],
        "kpi": [b'{"type":"kpi","cell_id":"UNKNOWN-9","period_start":"' + t.encode()
                + b'","period_s":900,"call_attempts":1,"dropped_calls":0}'],
        "subscriber": [b'{"type":"subscriber","subscriber_id":"SX","op":"upsert","updated_at":"'
                       + t.encode() + b'","language":"en","timezone":"UTC",'
                       b'"segment":"platinum","channels":{}}'],
        "maintenance": [b'{"type":"maintenance","window_id":"W","op":"explode"}'],
        "complaint": [b'{"type":"complaint","complaint_id":"Q","subscriber_id":"S",'
                      b'"event_time":"' + t.encode() + b'","category":"angry"}'],
    }
    compacted = {"cell", "subscriber"}
    out = []
    for typ, bad in per_type.items():
        topic = topics.of(typ)
        generic = [b"not json at all", b"\xff\xfe\x00binary", b"[1,2,3]", b"", None,
                   b'{"type":"' + typ.encode() + b'"}']
        for i, value in enumerate(generic + bad):
            key = b"k" if typ in compacted or i % 2 else None  # null keys where allowed
            if value is None and typ in compacted:
                continue  # a null value on a compacted topic is a deletion marker
            out.append((topic, key, value))
    return out


def test_bad_input_on_every_topic_is_dead_lettered(kafka_config, tmp_path: Path) -> None:  # noqa: F811
    """`forewarn replay` of the scenario with defective messages in the middle of
    every topic: each becomes a dead letter naming topic/partition/offset; the
    flow runs on and the actions are those without the defects."""
    topics = fresh_topics(kafka_config)
    bootstrap = kafka_config["bootstrap.servers"]
    lines = expected().lines
    half = len(lines) // 2
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_bytes(b"".join(line + b"\n" for line in lines[:half]))
    second.write_bytes(b"".join(line + b"\n" for line in lines[half:]))
    replay = forewarn_cmd("replay", "--bootstrap", bootstrap, "--topic-prefix", topics.prefix)
    done = subprocess.run([*replay, str(first)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    bad = produce(kafka_config, _bad_records(topics), {"message.max.bytes": "2000000"})
    done = subprocess.run([*replay, str(second)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr

    run_flow(flow_cmd(bootstrap, topics, "--exit-at-end"), tmp_path / "flow.log")
    _check_outputs(kafka_config, topics)
    dead = values(kafka_config, topics.dead_letters)
    where = {(d.get("topic"), d.get("partition"), d.get("offset")): d for d in dead}
    for spot in bad:
        assert spot in where, f"no dead letter for {spot}"
        letter = where[spot]
        assert letter["source"] == spot[0] and letter["reason"] and "raw" in letter
    assert {t for t, _, _ in bad} == set(topics.inputs)  # every input topic was attacked
    too_large = [d for d in dead if "too large" in d["reason"]]
    assert len(too_large) == 1 and len(too_large[0]["raw"]) <= 4096
    # lines of the files without an input type are dead letters that name their line
    unplaced = [d for d in dead if "line" in d]
    assert unplaced and all(d["source"] in ("first.jsonl", "second.jsonl") for d in unplaced)


def test_broker_restart_while_the_flow_runs(tmp_path: Path) -> None:
    """A dedicated broker is stopped and started under a running flow: it reconnects,
    and the actions are complete and not doubled."""
    port = free_port()
    info = broker.start(port, tmp_path / "broker", die_with_parent=True)
    config = {"bootstrap.servers": info.bootstrap}
    proc = None
    try:
        topics = fresh_topics(config)
        exp = expected()
        # far-away observations a day later move event time past every deadline, so a
        # flow that never reaches end of input still emits everything: enough of them in
        # a row (AHEAD_QUORUM) that the stream itself has moved on, not one bad clock
        tail_lines = [b'{"type":"cell","cell_id":"FAR-C1","site_id":"FAR"}'] + [
            b'{"type":"location","subscriber_id":"ZZ","cell_id":"FAR-C1",'
            b'"event_time":"2026-11-24T12:00:%02dZ"}' % i for i in range(AHEAD_QUORUM + 8)]
        half = len(exp.lines) // 2
        publish_lines(config, exp.lines[:half], topics=topics)  # read in order at start
        proc = start_flow(flow_cmd(info.bootstrap, topics, "--lateness", "900",
                                   "--log-level", "INFO"), tmp_path / "flow.log")
        wait_until(lambda: len(records(config, topics.incidents, quiet=0.2)) > 0, 60,
                   "first incidents before the broker restart", proc=proc,
                   log=tmp_path / "flow.log")
        broker.stop(info.dir)
        info = broker.start(port, tmp_path / "broker", die_with_parent=True)
        assert proc.poll() is None, tail(tmp_path / "flow.log")
        # The rest arrives live, as producers would write it: at 1000x real time, the
        # skew between topics' fetches (under 0.9 s of wall time) stays inside the
        # 15 min reorder window. (A burst of hours of event time written at once, after
        # the flow has caught up, is merged only as well as it is fetched: docs/kafka.md.)
        publish_lines(config, exp.lines[half:], topics=topics, speed=1000)
        publish_lines(config, tail_lines, topics=topics)

        seen: list[str] = []

        def all_actions():
            seen[:] = [orjson.loads(r.value)["action_id"]
                       for r in records(config, topics.actions, quiet=0.2)]
            return list(seen) if set(seen) >= exp.action_ids else None

        try:
            got = wait_until(all_actions, 90, "every action after the broker restart",
                             proc=proc, log=tmp_path / "flow.log")
        except AssertionError as e:
            missing = sorted((a["event_time"], a["rule_id"], a["action_id"])
                             for a in exp.actions if a["action_id"] not in set(seen))
            raise AssertionError(f"{e}\n{len(missing)} of {len(exp.actions)} missing, "
                                 f"first {missing[:5]}\nflow log:\n"
                                 f"{tail(tmp_path / 'flow.log', 80)}") from None
        assert proc.poll() is None, tail(tmp_path / "flow.log")
        assert sorted(got) == sorted(exp.action_ids)
        whole = sorted(comparable(r.value) for r in records(config, topics.actions))
        assert whole == exp.comparable_actions, whole_record_diff(whole,
                                                                  exp.comparable_actions)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        broker.stop(tmp_path / "broker")


def test_failed_delivery_is_counted_and_raised(kafka_config) -> None:  # noqa: F811
    """The broker refuses a message (over the topic's max.message.bytes): the sink
    counts it, logs it and raises instead of dropping it."""
    topic = unique_topic("tiny")
    create_topic(kafka_config, topic, topic_config={"max.message.bytes": "200"})
    sink = KafkaOutSink(kafka_config, topic, tail=0)
    part = sink.build("step", 0, 1)
    before = metrics.DELIVERY_FAILURES.labels(topic=topic)._value.get()
    part.write_batch([("k", b'{"ok": 1}')])  # small: delivered
    with pytest.raises(DeliveryError, match=topic):
        part.write_batch([("k", b'{"big": "' + b"x" * 1000 + b'"}')])
    assert metrics.DELIVERY_FAILURES.labels(topic=topic)._value.get() == before + 1
    part.close()
    assert [r.value for r in records(kafka_config, topic)] == [b'{"ok": 1}']


def test_the_sink_logs_a_failed_delivery_without_its_key(kafka_config) -> None:  # noqa: F811
    """A failed delivery is logged with topic, partition and error, never the message
    key (a subscriber id)."""
    topic = unique_topic("tiny")
    create_topic(kafka_config, topic, topic_config={"max.message.bytes": "200"})
    logged: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = logged.append
    logger = logging.getLogger("forewarn.kafka.sink")
    logger.addHandler(handler)
    try:
        part = KafkaOutSink(kafka_config, topic, tail=0).build("step", 0, 1)
        with pytest.raises(DeliveryError):
            part.write_batch([("SUB004711", b'{"big": "' + b"x" * 1000 + b'"}')])
        part.close()
    finally:
        logger.removeHandler(handler)
    [failed] = [r for r in logged if r.getMessage() == "kafka delivery failed"]
    fields = {k: v for k, v in vars(failed).items() if k not in logging.makeLogRecord({}).__dict__}
    assert fields["topic"] == topic and fields["partition"] == 0
    assert fields["code"] == "MSG_SIZE_TOO_LARGE"
    assert "SUB004711" not in repr(vars(failed))


def test_without_recovery_a_failed_delivery_surfaces_at_close(kafka_config) -> None:  # noqa: F811
    """Without recovery batches do not wait for their delivery reports; a refused
    message is still counted and raised (at the latest when the sink closes)."""
    topic = unique_topic("tiny")
    create_topic(kafka_config, topic, topic_config={"max.message.bytes": "200"})
    part = KafkaOutSink(kafka_config, topic, tail=0, flush_every_batch=False).build("s", 0, 1)
    before = metrics.DELIVERY_FAILURES.labels(topic=topic)._value.get()
    part.write_batch([("k", b'{"ok": 1}')])
    with pytest.raises(DeliveryError, match=topic):
        part.write_batch([("k", b'{"big": "' + b"x" * 1000 + b'"}')])
        part.close()
    # Unflushed, both may travel in one record batch, which the broker then refuses
    # whole (max.message.bytes is a batch limit): whatever is not on the topic was
    # counted and raised, nothing vanished.
    failed = metrics.DELIVERY_FAILURES.labels(topic=topic)._value.get() - before
    delivered = [r.value for r in records(kafka_config, topic)]
    assert failed >= 1 and failed + len(delivered) == 2
    assert delivered in ([], [b'{"ok": 1}'])


def test_a_drained_partition_is_settled_from_its_watermark(kafka_config) -> None:  # noqa: F811
    """The merge does not wait for a drained partition's EOF event: once everything up
    to its high watermark was released, the partition counts as at its end."""
    from confluent_kafka import OFFSET_BEGINNING

    from forewarn.connectors.kafka_source import _MergePartition
    from tests.kafka_helpers import produce_lines

    cells, moves = unique_topic("cells"), unique_topic("moves")
    create_topic(kafka_config, cells)
    create_topic(kafka_config, moves)
    produce_lines(kafka_config, cells, [
        f'{{"type":"cell","cell_id":"C{i}","site_id":"S1"}}' for i in range(3)])
    produce_lines(kafka_config, moves, [
        f'{{"type":"location","subscriber_id":"U1","cell_id":"C1",'
        f'"event_time":"2026-11-23T10:0{i}:00Z"}}' for i in range(2)])

    def source() -> _MergePartition:
        return _MergePartition(kafka_config, [cells, moves], [0, 6], None, exit_at_end=False,
                               batch=100, durable=False, buffer_limit=1000,
                               starting_offset=OFFSET_BEGINNING)

    fresh = source()
    try:  # nothing read yet: nothing can be known to be at its end
        assert fresh._settle_ends() is False
    finally:
        fresh.close()
    part = source()
    try:
        got: list = []
        wait_until(lambda: got.extend(i for b in part.next_batch() for i in b.items)
                   or len(got) >= 5, 30, "all five records released")
        topology = part._parts[(cells, 0)]
        assert topology.next_offset == 3 and not topology.entries
        topology.at_end = False  # as though its EOF event had not come yet
        assert part._settle_ends() is True
        assert topology.at_end
    finally:
        part.close()
