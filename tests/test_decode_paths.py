"""One decode routine and one stream time for both ways in: the same bytes read from a
file and from Kafka give the same record, or the same dead letter with the same reason
and code, and the same mixed input (KPIs, reference data, dead letters) is merged in the
same order by the file merge and by the Kafka merge.

The Kafka source runs on an in-memory consumer here (no broker): its decoding and its
merge are the product's own, only the transport is replaced. Fetches interleave the
topics at random, as a broker's may.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
from confluent_kafka import KafkaError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forewarn.codec import MAX_RECORD_BYTES, read_input
from forewarn.connectors import kafka_source
from forewarn.connectors.files import merge_by_time
from forewarn.connectors.kafka_publish import Topics, route
from forewarn.dataflows.flow import _decode_batch
from forewarn.model import Call, DeadLetter, Kpi, Location
from forewarn.simulator import ScenarioConfig, simulate
from tests.test_hostile import POISON_LINES, hostile_records

TOPICS = Topics()


class _Message:
    def __init__(self, topic: str, offset: int, value: bytes | None,
                 error: KafkaError | None = None):
        self._topic, self._offset, self._value, self._error = topic, offset, value, error

    def error(self) -> KafkaError | None:
        return self._error

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return None


class MemoryConsumer:
    """What the merge source asks of ``confluent_kafka.Consumer``, over in-memory topics
    of one partition each; each fetch takes 1-7 messages of one topic drawn at random,
    then each partition reports its end."""

    def __init__(self, topics: dict[str, list[bytes]], seed: int):
        self.topics = topics
        self.next = dict.fromkeys(topics, 0)
        self.ended: set[str] = set()
        self.rng = random.Random(seed)

    def __call__(self, settings: dict) -> MemoryConsumer:  # stands for the class
        return self

    def list_topics(self, topic: str, timeout: float | None = None) -> SimpleNamespace:
        meta = SimpleNamespace(error=None, partitions={0: None})
        return SimpleNamespace(topics={topic: meta} if topic in self.topics else {})

    def assign(self, partitions: list) -> None:
        pass

    pause = resume = assign

    def close(self) -> None:
        pass

    def get_watermark_offsets(self, tp, cached: bool = False) -> tuple[int, int]:
        return 0, len(self.topics[tp.topic])

    def consume(self, n: int, timeout: float) -> list[_Message]:
        live = [t for t in self.topics if self.next[t] < len(self.topics[t])]
        if not live:
            ends = [t for t in self.topics if t not in self.ended]
            self.ended.update(ends)
            return [_Message(t, len(self.topics[t]), None,
                             KafkaError(KafkaError._PARTITION_EOF)) for t in ends]
        topic = self.rng.choice(live)
        start = self.next[topic]
        lines = self.topics[topic][start:start + min(n, self.rng.randint(1, 7))]
        self.next[topic] = start + len(lines)
        return [_Message(topic, start + i, line) for i, line in enumerate(lines)]


def by_topic(lines: list[bytes]) -> dict[str, list[bytes]]:
    """Each line on its record type's topic (as ``forewarn replay`` publishes it); a line
    with none on the alarms topic. Every input topic is there, in merge-rank order."""
    topics: dict[str, list[bytes]] = {t: [] for t in TOPICS.inputs}
    for line in lines:
        topic, _ = route(line, TOPICS)
        topics[topic or TOPICS.of("alarm")].append(line)
    return topics


def kafka_batches(monkeypatch, topics: dict[str, list[bytes]], seed: int) -> list:
    """What the Kafka source hands the decode step: its Decoded batches."""
    monkeypatch.setattr(kafka_source, "Consumer", MemoryConsumer(topics, seed))
    part = kafka_source._MergePartition(
        {}, TOPICS.inputs, TOPICS.ranks, None, exit_at_end=True, batch=50, durable=False,
        buffer_limit=100_000, starting_offset=0, types=TOPICS.input_types)
    batches: list = []
    for _ in range(100_000):
        try:
            batches += part.next_batch()
        except StopIteration:
            return batches
    raise AssertionError("the merge never reached the end of its input")


def outcomes(decoded: list) -> Counter:
    """Each input's outcome, wherever it was read: a dead letter's bytes, reason and
    code; a record's (or position's) bytes, value and stream time."""
    out: Counter = Counter()
    for _, items in decoded:
        for item in items:
            if type(item) is DeadLetter:
                out[("dead letter", item.raw, item.reason, str(item.code))] += 1
            else:
                out[("record", item[1], item[2], item[3])] += 1
    return out


def both_ways(monkeypatch, lines: list[bytes], seed: int = 1) -> tuple[Counter, Counter]:
    files = _decode_batch([("input.jsonl", line) for line in lines])
    kafka = _decode_batch(kafka_batches(monkeypatch, by_topic(lines), seed))
    return outcomes(files), outcomes(kafka)


FIXED = [
    *POISON_LINES,
    b"{oops", b"[1]", b"null", b'"cell"', b"\xff\xfe", b"", b'{"type":"bogus","x":1}',
    b'{"type":"cell","cell_id":"C1","site_id":"S1","pad":"' + b"x" * MAX_RECORD_BYTES + b'"}',
    b'{"type":"location","event_time":"2026-11-23T10:00:00Z"}',  # a time, but refused
    b'{"type":"kpi","cell_id":"C1","period_start":"2026-11-23T09:45:00Z","period_s":0,'
    b'"call_attempts":1,"dropped_calls":0}',
    b'{"type":"call","call_id":"K","subscriber_id":"U","cell_id":"C1","dropped":false,'
    b'"start_time":"2026-11-23T10:00:00Z","end_time":"2026-11-23T09:00:00Z"}',
    # an operator's feed event: no adapters tables here, a dead letter both ways
    (Path(__file__).parent / "fixtures" / "ves-fault.jsonl").read_bytes().splitlines()[0],
]


def test_the_same_bytes_decode_alike_from_a_file_and_from_kafka(monkeypatch) -> None:
    valid = simulate(ScenarioConfig(seed=3, sites=6, hours=1.0, subscribers_per_cell=3)).lines
    files, kafka = both_ways(monkeypatch, [*FIXED, *valid])
    assert files == kafka
    dead = [k for k in files if k[0] == "dead letter"]
    assert len(dead) >= len(FIXED) - 1  # (one poison call is a valid record)
    assert {k[3] for k in dead} >= {"not_json", "not_object", "unknown_type", "too_large",
                                    "missing_field", "bad_type", "bad_time", "no_adapter"}


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(hostile_records(), min_size=1, max_size=40), st.integers(0, 1000))
def test_generated_hostile_lines_decode_alike_both_ways(monkeypatch, lines, seed) -> None:
    files, kafka = both_ways(monkeypatch, lines, seed)
    assert files == kafka


def test_a_record_on_a_topic_that_does_not_carry_its_type() -> None:
    """The one difference the paths may have: Kafka knows which type a topic carries."""
    line = (b'{"type":"kpi","cell_id":"C1","period_start":"2026-11-23T09:45:00Z",'
            b'"period_s":900,"call_attempts":3,"dropped_calls":0}')
    rec, kind, at = read_input(line, "input.jsonl")
    assert kind is Kpi and at == rec.period_start + 900
    assert read_input(line, ("oss.kpis", 0, 5), expect=Kpi)[0] == rec
    dead, kind, at = read_input(line, ("oss.locations", 0, 5), expect=Location)
    assert kind is DeadLetter and at is None and dead.code == "wrong_topic"
    assert dead.reason == ("kpi: record type 'kpi' on topic 'oss.locations', which carries "
                           "only 'location' records (wrong topic)")
    position = (b'{"type":"location","subscriber_id":"U1","cell_id":"C1",'
                b'"event_time":"2026-11-23T10:00:00Z"}')
    assert read_input(position, ("oss.calls", 0, 1), expect=Call)[0].code == "wrong_topic"


@pytest.mark.parametrize("seed", [1, 2])
def test_files_and_kafka_merge_a_mixed_input_in_one_order(monkeypatch, seed: int) -> None:
    """The simulator's input (topology, profiles, alarms, KPIs, calls, locations,
    complaints and its bad lines) as one file per topic and as topics: merged by the file
    merge and by the Kafka merge, line for line the same order, however fetches
    interleave. A KPI period merges at its end in both; a line that is a dead letter keeps
    its place in its input in both, whatever time it shows."""
    lines = simulate(ScenarioConfig(seed=11, sites=8, hours=2.0, subscribers_per_cell=4)).lines
    # KPI periods out of place in their topic, refused lines with a time far ahead
    kpi = next(line for line in lines if line.startswith(b'{"type":"kpi"'))
    early = orjson.loads(kpi)
    late = {**early, "period_start": "2026-11-23T23:00:00Z"}
    loc = orjson.loads(next(line for line in lines[200:]
                            if line.startswith(b'{"type":"location"')))
    soon = datetime.fromisoformat(loc["event_time"]) + timedelta(minutes=10)
    refused = {"type": "location", "event_time": soon.isoformat()}  # no subscriber, no cell
    lines = [*lines[:200], orjson.dumps(late), orjson.dumps({**early, "period_s": -1}),
             orjson.dumps(refused), b'{"type":"location","event_time":"2026-11-25T00:00:00Z"}',
             *lines[200:]]
    topics = by_topic(lines)
    assert len(topics[TOPICS.of("kpi")]) > 10
    files = [line for _, line in merge_by_time(list(topics.items()))]
    kafka = [item[1] if type(item) is not DeadLetter else item.raw
             for batch in kafka_batches(monkeypatch, topics, seed) for item in batch.items]
    assert len(files) == len(kafka) == len(lines)
    assert kafka == files
