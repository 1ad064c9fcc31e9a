"""Publishing recorded lines to Kafka (``forewarn replay``, ``simulate --bootstrap``) on
a REAL broker: a line that cannot be published as it is becomes a dead letter naming
its line, every good record is delivered, and only failures that would lose good
records stop publishing."""

from __future__ import annotations

import base64
import os
import subprocess
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from forewarn.connectors.files import JsonlFilesSource
from forewarn.connectors.kafka_publish import (
    Publisher,
    PublishError,
    PublishReport,
    Topics,
    place,
    publish_lines,
)
from forewarn.connectors.topics import KEY_FIELD_FOR_TYPE
from forewarn.rules.rulebook import load_rulebook
from forewarn.runner import collect
from forewarn.simulator import simulate
from forewarn.simulator.badlines import KINDS
from tests.kafka_flow_helpers import (
    SCENARIO,
    flow_cmd,
    forewarn_cmd,
    fresh_topics,
    records,
    run_flow,
    values,
)
from tests.kafka_helpers import (  # noqa: F401  (fixtures)
    free_port,
    kafka_broker,
    kafka_config,
    unique_topic,
)

TOPIC_MAX_BYTES = 200_000  # below the flow's own 256 KiB limit: file mode refuses it too


# ---- pure logic -------------------------------------------------------------------


def test_place_checks_keys_and_sizes_before_sending() -> None:
    topics = Topics("p.")
    limits = {"p.oss.locations": 100}
    ok = b'{"type":"location","subscriber_id":"S1","cell_id":"C1","event_time":"t"}'
    assert place(ok, topics, limits) == ("p.oss.locations", b"S1")
    # an empty key field is no key either: a compacted topic refuses it
    assert "required field missing" in place(
        b'{"type":"cell","cell_id":"","site_id":"S"}', topics, limits)
    too_big = ok[:-1] + b',"pad":"' + b"x" * 30 + b'"}'
    assert place(too_big, topics, limits).startswith("record too large for p.oss.locations")
    # a topic with no known limit gets the producer's (1,000,000 bytes less framing)
    assert place(b'{"type":"kpi","cell_id":"C","pad":"' + b"x" * 1_000_000 + b'"}',
                 topics, {}).startswith("record too large for p.oss.kpis")
    assert place(b"\xff\xfe binary", topics, limits).startswith("not JSON")


def test_report_says_whether_every_good_record_was_delivered() -> None:
    good = PublishReport(Counter({"oss.calls": 2}))
    assert good.ok and "failed: none" in good.summary()
    lost = PublishReport(Counter({"oss.calls": 2}), failed=Counter({"oss.calls": 1}),
                         stopped="records to oss.calls at h:1 not delivered within 30 s")
    assert not lost.ok
    assert "failed: 1 record(s) not delivered (oss.calls 1); publishing stopped early" \
        in lost.summary()


# ---- on a real broker -------------------------------------------------------------


def _file_with_every_defect(path: Path) -> tuple[list[bytes], dict[int, str]]:
    """The test scenario's lines (with the simulator's defective lines of every kind)
    plus an unkeyed subscriber, an unkeyed cell and a record larger than the topics
    take; written to ``path``. Returns the lines and {line number: defect} of the
    lines that cannot be published as they are."""
    sc = simulate(SCENARIO)
    lines = list(sc.lines)
    kinds = {r["line"]: r["kind"] for r in sc.truth if r["type"] == "truth_bad_line"}
    assert set(kinds.values()) == set(KINDS)
    first = min(kinds)  # past the leading topology and profiles
    t = orjson.loads(lines[first + 1]).get("event_time", "2026-11-23T06:30:00Z")
    extra = {
        "unkeyed_subscriber": orjson.dumps({
            "type": "subscriber", "op": "upsert", "updated_at": t, "language": "en",
            "timezone": "Europe/London", "segment": "consumer",
            "channels": {"sms": {"address": "+447700900123", "consent": True}}}),
        "unkeyed_cell": orjson.dumps({"type": "cell", "site_id": "SITE0001"}),
        "too_large": orjson.dumps({
            "type": "location", "subscriber_id": "SUB000001", "cell_id": "CELL0001-1",
            "event_time": t, "pad": "x" * (TOPIC_MAX_BYTES + 100_000)}),
    }
    defects: dict[int, str] = {}
    at = first + 2
    for kind, line in extra.items():
        lines.insert(at, line)
        kinds = {(n + 1 if n >= at else n): k for n, k in kinds.items()}
        kinds[at] = kind
        at += 40
    for index, kind in kinds.items():
        line = lines[index]
        if kind in ("not_json", "truncated_json", "json_array", *extra):
            defects[index + 1] = kind
        elif kind == "missing_field":  # only a missing key field stops it at the publisher
            rec = orjson.loads(line)
            if KEY_FIELD_FOR_TYPE[rec["type"]] not in rec:
                defects[index + 1] = kind
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return lines, defects


def _raw(letter: dict) -> bytes:
    raw = letter["raw"]
    return base64.b64decode(raw) if letter.get("raw_encoding") == "base64" else raw.encode()


def test_replay_publishes_a_file_whole_and_the_flow_matches_file_mode(
        kafka_config, tmp_path: Path) -> None:  # noqa: F811
    """Every good line is delivered, every line that cannot be published is a dead
    letter with its line number, exit status 0; the flow's actions from Kafka equal
    file mode's on the same file, record for record."""
    topics = fresh_topics(kafka_config, partitions=3,
                          topic_config={"max.message.bytes": str(TOPIC_MAX_BYTES)})
    path = tmp_path / "events.jsonl"
    lines, defects = _file_with_every_defect(path)
    bootstrap = kafka_config["bootstrap.servers"]
    done = subprocess.run(forewarn_cmd("replay", "--bootstrap", bootstrap, "--topic-prefix",
                                       topics.prefix, str(path)),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "failed: none, every good record was delivered" in done.stderr
    assert "Traceback" not in done.stderr

    # the dead letters: exactly the defective lines, each naming its line
    dead = values(kafka_config, topics.dead_letters)
    assert sorted(d["line"] for d in dead) == sorted(defects)
    for d in dead:
        line = lines[d["line"] - 1]
        assert d["source"] == "events.jsonl" and d["reason"] and d["code"]
        assert _raw(d) == line[:4096]
    codes = {defects[d["line"]]: d["code"] for d in dead}
    assert codes["unkeyed_subscriber"] == codes["unkeyed_cell"] == "missing_field"
    assert codes["too_large"] == "too_large"
    assert f"dead letters: {len(defects)} line(s)" in done.stderr

    # every other non-blank line is on its topic, once
    delivered = Counter(r.value for t in topics.inputs for r in records(kafka_config, t))
    wanted = Counter(line for n, line in enumerate(lines, start=1)
                     if line.strip() and n not in defects)
    assert delivered == wanted

    # the flow from Kafka: the same actions as file mode, whole records
    run_flow(flow_cmd(bootstrap, topics, "--exit-at-end"), tmp_path / "flow.log", timeout=180)
    from_files = collect(JsonlFilesSource([path]), load_rulebook())
    want = sorted((orjson.loads(a) for a in from_files.actions), key=lambda a: a["action_id"])
    got = sorted(values(kafka_config, topics.actions), key=lambda a: a["action_id"])
    assert want and got == want
    # and nothing vanished: file mode's dead letters are those of the publisher plus
    # those of the flow on Kafka
    on_kafka = Counter((d["code"], _raw(d)) for d in values(kafka_config, topics.dead_letters))
    in_files = Counter((d["code"], _raw(d)) for d in map(orjson.loads, from_files.dead_letters))
    assert on_kafka == in_files


def test_a_record_the_broker_refuses_is_dead_lettered_with_its_line(
        kafka_config) -> None:  # noqa: F811
    """A record only the broker can judge (here: the publisher was not told the topic's
    size limit) is refused with its whole record batch; its neighbours are sent again
    alone and delivered, and it becomes a dead letter with its line number."""
    topics = fresh_topics(kafka_config, topic_config={"max.message.bytes": "3000"})
    pub = Publisher(kafka_config, topics, limits={topics.dead_letters: 2900},
                    settings={"batch.size": "1000000"})  # one batch for all of them
    good = [orjson.dumps({"type": "location", "subscriber_id": f"S{i}", "cell_id": "C",
                          "event_time": "2026-11-23T06:00:00Z"}) for i in range(30)]
    noise = base64.b64encode(os.urandom(4000)).decode()  # lz4 cannot shrink it
    big = orjson.dumps({"type": "location", "subscriber_id": "SB", "cell_id": "C",
                        "event_time": "2026-11-23T06:00:00Z", "pad": noise})
    report = publish_lines(kafka_config, [*good[:10], big, *good[10:]], topics=topics,
                           source="day.jsonl", publisher=pub)
    assert report.ok and report.retried_alone >= 1
    assert sorted(r.value for r in records(kafka_config, topics.of("location"))) == sorted(good)
    [letter] = values(kafka_config, topics.dead_letters)
    assert (letter["source"], letter["line"], letter["code"]) == ("day.jsonl", 11, "too_large")
    assert "MSG_SIZE_TOO_LARGE" in letter["reason"]
    assert len(letter["raw"]) < 2900  # shortened to fit the dead-letter topic


def test_a_dead_address_fails_fast_with_a_clear_message(tmp_path: Path) -> None:
    """Nothing listens at the address: publishing stops within its timeout, saying
    where and what to check, with a non-zero exit status and no traceback."""
    address = f"127.0.0.1:{free_port()}"
    began = time.monotonic()
    with pytest.raises(PublishError, match=address):
        publish_lines({"bootstrap.servers": address}, [b'{"type":"cell","cell_id":"C"}'])
    assert time.monotonic() - began < 20
    path = tmp_path / "e.jsonl"
    path.write_bytes(b'{"type":"cell","cell_id":"C","site_id":"S"}\n')
    began = time.monotonic()
    done = subprocess.run(forewarn_cmd("replay", "--bootstrap", address, str(path)),
                          capture_output=True, text=True, timeout=60)
    assert time.monotonic() - began < 30
    assert done.returncode != 0
    message = done.stderr.strip().splitlines()
    assert len(message) == 1 and address in message[0] and "check --bootstrap" in message[0]
    assert "Traceback" not in done.stderr


def test_missing_topics_stop_publishing_before_it_starts(kafka_config, tmp_path) -> None:  # noqa: F811
    topics = Topics(unique_topic("absent") + ".")
    with pytest.raises(PublishError, match="forewarn topics create --bootstrap"):
        Publisher(kafka_config, topics)
