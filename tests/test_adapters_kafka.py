"""Operators' alarm feeds on a REAL Kafka broker: VES fault events on their own topic
(as ONAP's collector publishes them, batches too) and TMF642 notifications on theirs,
read beside the contract's topics, give the contract alarms' incidents and actions."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson

from forewarn.connectors.kafka_publish import publish_lines
from tests.kafka_flow_helpers import flow_cmd, fresh_topics, records, run_flow, values
from tests.kafka_helpers import (  # noqa: F401  (fixtures)
    create_topic,
    kafka_broker,
    kafka_config,
    unique_topic,
)
from tests.test_adapters import (
    normalised,
    outage_scenario,
    rulebook_text,
    run,
    to_tmf642,
    to_ves,
    ves_event,
)


def _produce(config, topic: str, items: list[tuple[bytes, bytes]]) -> None:
    from confluent_kafka import Producer

    producer = Producer({**config, "acks": "all"})
    for key, value in items:
        producer.produce(topic, value=value, key=key)
    assert producer.flush(30) == 0


def test_ves_and_tmf642_topics_beside_the_contract_topics(kafka_config, tmp_path: Path):  # noqa: F811
    topics = fresh_topics(kafka_config)
    ves_topic, tmf_topic = unique_topic("ves"), unique_topic("tmf642")
    create_topic(kafka_config, ves_topic, partitions=2)  # the collector's own partitioning
    create_topic(kafka_config, tmf_topic)
    lines = outage_scenario().lines
    head = orjson.dumps({"type": "cell", "cell_id": "FAR-C1", "site_id": "FAR"})
    alarms = [x for x in lines if b'"type":"alarm"' in x]
    on_s2 = [x for x in alarms if b'"site_id":"S2"' in x]
    ids: dict[str, str] = {}
    ves = [to_ves(x, ids) for x in alarms if x not in on_s2]
    raised: set[str] = set()
    tmf = [to_tmf642(x, raised) for x in on_s2]
    # the blip's raise and clear come as one batch, with an event that cannot be mapped
    i = next(k for k, x in enumerate(ves) if b"powerProblem" in x)
    bad = ves_event("lab-7", "LOS", "MAJOR", orjson.loads(ves[i])["event"][
        "commonEventHeader"]["lastEpochMicrosec"] / 1e6)
    batch = orjson.dumps({"eventList": [orjson.loads(ves[i])["event"], bad,
                                        orjson.loads(ves[i + 1])["event"]]})
    ves = [*ves[:i], batch, *ves[i + 2:]]

    def key(line: bytes) -> bytes:
        return b"S1"  # one partition: a source's raise before its clear

    report = publish_lines(kafka_config, [head, *(x for x in lines if x not in alarms)],
                           topics=topics)
    assert not report.dead_letters
    _produce(kafka_config, ves_topic, [(key(x), x) for x in ves])
    _produce(kafka_config, tmf_topic, [(b"S2", x) for x in tmf])
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "rulebook.yaml").write_text(rulebook_text())
    bootstrap = kafka_config["bootstrap.servers"]
    run_flow(flow_cmd(bootstrap, topics, "--exit-at-end", "--rules", str(rules),
                      "--ves-topic", ves_topic, "--tmf642-topic", tmf_topic),
             tmp_path / "flow.log")
    want = run(lines)
    got_actions = [r.value for r in records(kafka_config, topics.actions)]
    got_incidents = [r.value for r in records(kafka_config, topics.incidents)]
    assert want.actions and normalised(got_actions) == normalised(want.actions, ids)
    assert normalised(got_incidents) == normalised(want.incidents, ids)
    [dead] = values(kafka_config, topics.dead_letters)
    assert dead["code"] == "unknown_source" and dead["topic"] == ves_topic
    assert orjson.loads(dead["raw"]) == bad


def test_a_missing_feed_topic_is_refused_with_what_to_do(kafka_config, tmp_path: Path):  # noqa: F811
    topics = fresh_topics(kafka_config)
    bootstrap = kafka_config["bootstrap.servers"]
    done = subprocess.run(flow_cmd(bootstrap, topics, "--exit-at-end", "--ves-topic"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "unauthenticated.SEC_FAULT_OUTPUT not found" in done.stderr
    assert "--ves-topic" in done.stderr and "Traceback" not in done.stderr
