"""Hostile input on a REAL broker: records on the wrong topic, records days ahead on
two partitions, and times that overflow; the flow keeps running across restarts and
its outputs are those of the clean stream."""

from __future__ import annotations

from pathlib import Path

import orjson

from forewarn.connectors.kafka_publish import publish_lines
from forewarn.dataflows.sequencer import AHEAD_QUORUM
from tests.builders import comparable
from tests.kafka_flow_helpers import (
    expected,
    flow_cmd,
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
from tests.kafka_helpers import free_port, kafka_broker, kafka_config  # noqa: F401

AT = "2026-11-23T07:30:00Z"  # the middle of the scenario
ALARM = orjson.dumps({"type": "alarm", "alarm_id": "EVIL-1", "event_time": AT,
                      "perceived_severity": "critical", "probable_cause": "powerProblem",
                      "site_id": "SITE0001"})
LOCATION = orjson.dumps({"type": "location", "subscriber_id": "SUB000001",
                         "cell_id": "CELL0001-1", "event_time": AT})
SUBSCRIBER = orjson.dumps({"type": "subscriber", "subscriber_id": "SUB000001", "op": "delete",
                           "updated_at": AT})


def _future(sid: str) -> bytes:
    return orjson.dumps({"type": "location", "subscriber_id": sid, "cell_id": "CELL0001-1",
                         "event_time": "2026-11-26T07:30:00Z"})


POISON = [
    ("oss.locations", b"SUB000003", orjson.dumps({
        "type": "location", "subscriber_id": "SUB000003", "cell_id": "CELL0001-1",
        "event_time": "9999-12-31T23:59:59-01:00"})),
    ("oss.kpis", b"CELL0001-1", b'{"type":"kpi","cell_id":"CELL0001-1","period_start":"'
     + AT.encode() + b'","period_s":1e308,"call_attempts":1,"dropped_calls":0}'),
]


def test_hostile_records_on_kafka_change_nothing_across_restarts(kafka_config,  # noqa: F811
                                                                 tmp_path: Path) -> None:
    topics = fresh_topics(kafka_config, partitions=3)
    exp = expected(partitions=3)
    half = len(exp.lines) // 2
    publish_lines(kafka_config, exp.lines[:half], topics=topics)
    hostile = [
        (topics.of("subscriber"), b"SUB000001", ALARM),  # an alarm on bss.subscribers
        (topics.of("alarm"), b"SITE0001", LOCATION),  # a location on oss.alarms
        (topics.of("location"), b"SUB000001", SUBSCRIBER),  # a deletion on oss.locations
        # days ahead: two in a row on one partition, one on another (murmur2: 2, 2, 0)
        (topics.of("location"), b"SUB000002", _future("SUB000002")),
        (topics.of("location"), b"SUB000072", _future("SUB000072")),
        (topics.of("location"), b"SUB000001", _future("SUB000001")),
        *[(topics.prefix + t, k, v) for t, k, v in POISON],
    ]
    spots = produce(kafka_config, hostile, {"partitioner": "murmur2_random"})
    assert len({p for t, p, _ in spots if t == topics.of("location")}) >= 2  # two partitions
    publish_lines(kafka_config, exp.lines[half:], topics=topics)

    bootstrap = kafka_config["bootstrap.servers"]
    cmd = flow_cmd(bootstrap, topics, "--exit-at-end", "--recovery", str(tmp_path / "rec"))
    for i in range(3):  # a first run, then two restarts on the same recovery store
        run_flow(cmd, tmp_path / f"flow{i}.log")

    got = sorted(comparable(r.value) for r in records(kafka_config, topics.actions))
    assert got == exp.comparable_actions, whole_record_diff(got, exp.comparable_actions)
    assert sorted(r.value for r in records(kafka_config, topics.incidents)) \
        == sorted(exp.incidents)
    dead = {d["raw"]: d for d in values(kafka_config, topics.dead_letters) if "offset" in d}
    codes = [dead[value.decode()]["code"] for _, _, value in hostile]
    assert codes == ["wrong_topic"] * 3 + ["future"] * 3 + ["bad_time", "bad_type"]
    assert "which carries only 'subscriber' records" in dead[ALARM.decode()]["reason"]
    where = {(d["topic"], d["partition"], d["offset"]) for d in dead.values()}
    assert set(spots) <= where


def test_records_days_ahead_hold_nothing_back_live(kafka_config, tmp_path: Path) -> None:  # noqa: F811
    """Live: the flow runs first and the stream arrives as producers write it, with
    records days ahead in its middle. They are held (the gauge says so), no timer fires
    early, and the actions are the clean stream's, whole records."""
    topics = fresh_topics(kafka_config, partitions=3)
    exp = expected(partitions=3)
    bootstrap = kafka_config["bootstrap.servers"]
    port = free_port()
    log = tmp_path / "flow.log"
    proc = start_flow([*flow_cmd(bootstrap, topics, "--lateness", "900", "--log-level", "INFO"),
                       "--metrics-port", str(port)], log)
    try:
        wait_until(lambda: "kafka input assigned" in log.read_text(errors="replace"), 60,
                   "the flow to take its input", proc=proc, log=log)
        half = len(exp.lines) // 2
        publish_lines(kafka_config, exp.lines[:half], topics=topics, speed=1000)
        produce(kafka_config, [(topics.of("location"), s.encode(), _future(s))
                               for s in ("SUB000002", "SUB000072", "SUB000001")],
                {"partitioner": "murmur2_random"})
        publish_lines(kafka_config, exp.lines[half:], topics=topics, speed=1000)
        # a run of records a day later: the stream itself moves on past every deadline
        publish_lines(kafka_config, [b'{"type":"cell","cell_id":"FAR-C1","site_id":"FAR"}'] + [
            b'{"type":"location","subscriber_id":"ZZ","cell_id":"FAR-C1",'
            b'"event_time":"2026-11-24T12:00:%02dZ"}' % i for i in range(AHEAD_QUORUM + 8)],
            topics=topics)

        def all_actions():
            got = sorted(comparable(r.value) for r in records(kafka_config, topics.actions,
                                                              quiet=0.2))
            return got if len(got) >= len(exp.comparable_actions) else None

        got = wait_until(all_actions, 90, "every action", proc=proc, log=log)
        assert got == exp.comparable_actions, whole_record_diff(got, exp.comparable_actions)
        held = wait_until(lambda: _gauge(port, "forewarn_records_held_ahead") == 3, 30,
                          "three records held ahead", proc=proc, log=log)
        assert held and proc.poll() is None, tail(log)
    finally:
        proc.terminate()
        proc.wait(30)
    assert proc.returncode == 0, tail(log)


def _gauge(port: int, name: str) -> float | None:
    from urllib.request import urlopen

    with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None
