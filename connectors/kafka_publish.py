"""Publishing JSONL records to the contract's input topics (``replay``, ``simulate``).

Each line goes to the topic of its ``type`` with the contract's key
(:func:`connectors.topics.key_for`). A line that is not a JSON object of an
input type - not JSON, a JSON array, an unknown or output ``type`` - has no
topic: it is published as a dead letter on ``forewarn.deadletter`` (``source``
the file name, ``reason``, ``raw``, and its ``line`` number), where the flow
would have put it, and counted in the report. Blank lines are skipped, as by
the file reader. A line of an input type with bad fields goes to its topic:
judging it is the flow's job.

Pacing: ``speed=0`` as fast as possible; ``speed=N`` N x real time by stream
time (1 = real time); ``rate=R`` a fixed R records/s.

>>> route(b'{"type":"call","subscriber_id":"S1","call_id":"c"}', Topics())
('oss.calls', b'S1')
>>> route(b'{"type":"action","action_id":"x"}', Topics())[0] is None
True
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Producer

from connectors.kafka_sink import SAFE_PRODUCER
from connectors.kafka_source import NEG_INF, TYPE_RANK, stream_time
from connectors.topics import ALL_TOPICS, INPUT_TOPICS, TOPIC_FOR_TYPE, key_for
from forewarn.codec import RAW_LIMIT, dead_letter, dead_letter_dict, decode

__all__ = [
    "CONTRACT_TOPICS","PublishReport", "Publisher", "Topics", "paced", "publish_lines", "route"]

log = logging.getLogger("forewarn.kafka.publish")

INPUT_TYPES = frozenset(s.record_type for s in INPUT_TOPICS)


@dataclass(frozen=True)
class Topics:
    """The contract's topic names behind an optional prefix."""

    prefix: str = ""

    def of(self, record_type: str) -> str:
        return self.prefix + TOPIC_FOR_TYPE[record_type]

    @property
    def input_types(self) -> list[str]:
        """Input record types in merge-rank order (topology first)."""
        return sorted((s.record_type for s in INPUT_TOPICS), key=TYPE_RANK.__getitem__)

    @property
    def inputs(self) -> list[str]:
        """Input topics in merge-rank order (topology first), one per :attr:`input_types`."""
        return [self.of(t) for t in self.input_types]

    @property
    def ranks(self) -> list[int]:
        return sorted(TYPE_RANK[s.record_type] for s in INPUT_TOPICS)

    @property
    def actions(self) -> str:
        return self.of("action")

    @property
    def incidents(self) -> str:
        return self.of("incident")

    @property
    def dead_letters(self) -> str:
        return self.of("dead_letter")

    @property
    def all(self) -> list[str]:
        return [self.prefix + s.name for s in ALL_TOPICS]


CONTRACT_TOPICS = Topics()


def route(line: bytes, topics: Topics) -> tuple[str | None, bytes | None]:
    """``(topic, key)`` of a line, or ``(None, None)`` when it has no input topic."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(obj, dict) or obj.get("type") not in INPUT_TYPES:
        return None, None
    return topics.of(obj["type"]), key_for(obj)


def _no_topic_reason(line: bytes, source: str) -> str:
    rec = decode(line, source)
    reason = getattr(rec, "reason", None)
    if reason and not reason.startswith("type: expected one of"):
        return reason
    try:
        typ = orjson.loads(line).get("type")
    except (orjson.JSONDecodeError, AttributeError):
        return reason or "not a JSON object"
    return f"type: expected one of {','.join(sorted(INPUT_TYPES))} (an input record), got {typ!r}"


@dataclass
class PublishReport:
    """What a publish did: records per topic, dead letters, blank lines skipped."""

    by_topic: Counter = field(default_factory=Counter)
    dead_letters: list[dict] = field(default_factory=list)
    blank: int = 0
    seconds: float = 0.0

    @property
    def published(self) -> int:
        return sum(self.by_topic.values())

    def summary(self) -> str:
        topics = ", ".join(f"{t} {n}" for t, n in sorted(self.by_topic.items()))
        rate = self.published / self.seconds if self.seconds > 0 else 0.0
        text = (f"{self.published} records in {self.seconds:.1f} s ({rate:,.0f}/s): {topics}")
        if self.dead_letters:
            first = self.dead_letters[0]
            text += (f"; {len(self.dead_letters)} line(s) without an input type sent to the "
                     f"dead-letter topic (first: {first['source']} line {first['line']}: "
                     f"{first['reason']})")
        if self.blank:
            text += f"; {self.blank} blank line(s) skipped"
        return text


class Publisher:
    """An idempotent producer that refuses to lose records (raises on failed delivery)."""

    def __init__(self, config: Mapping[str, str], topics: Topics = CONTRACT_TOPICS,
                 settings: Mapping[str, str] | None = None):
        self.topics = topics
        self.report = PublishReport()
        self._errors: list[KafkaError] = []
        self._producer = Producer({
            "linger.ms": "10",
            "compression.type": "lz4",
            "logger": logging.getLogger("forewarn.kafka.producer"),
            **dict(settings or {}),
            **config,
            **SAFE_PRODUCER,
        })

    def _report(self, err: KafkaError | None, _msg) -> None:
        if err is not None:
            self._errors.append(err)

    def _produce(self, topic: str, value: bytes, key: bytes | None) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=self._report)
                break
            except BufferError:
                self._producer.poll(0.05)
        self._producer.poll(0)
        if self._errors:
            self._raise()

    def publish(self, line: bytes, source: str = "replay", number: int = 0) -> str | None:
        """Publish one line; returns its topic (``None``: blank line skipped)."""
        if not line.strip():
            self.report.blank += 1
            return None
        topic, key = route(line, self.topics)
        if topic is None:
            topic = self.topics.of("dead_letter")
            record = {**dead_letter_dict(dead_letter(line[:RAW_LIMIT], source,
                                                     _no_topic_reason(line, source))),
                      "line": number}
            self.report.dead_letters.append(record)
            self._produce(topic, orjson.dumps(record), source.encode())
        else:
            self._produce(topic, line, key)
        self.report.by_topic[topic] += 1
        return topic

    def flush(self, timeout: float = 120.0) -> PublishReport:
        left = self._producer.flush(timeout)
        if self._errors:
            self._raise()
        if left:
            raise TimeoutError(f"{left} record(s) not delivered within {timeout:g} s "
                               f"(is the broker up?)")
        return self.report

    def _raise(self) -> None:
        err = self._errors[0]
        raise KafkaException(KafkaError(err.code(), f"{len(self._errors)} record(s) not "
                                        f"delivered: {err.str()}"))


def paced(lines: Iterable, speed: float = 0.0, rate: float = 0.0,
          clock: Callable[[], float] = time.monotonic,
          sleep: Callable[[float], None] = time.sleep,
          line_of: Callable[[Any], bytes] = lambda line: line) -> Iterable:
    """Yield ``lines`` as fast as possible, at ``speed`` x real time (by stream time),
    or at ``rate`` lines per second (``line_of``: the line of an item)."""
    if speed <= 0 and rate <= 0:
        yield from lines
        return
    began = clock()
    first: float | None = None
    for i, line in enumerate(lines):
        if rate > 0:
            due = began + i / rate
        else:
            t = stream_time(line_of(line))
            if t is None or t == NEG_INF:
                due = None
            else:
                if first is None:
                    first = t
                due = began + (t - first) / speed
        if due is not None:
            wait = due - clock()
            if wait > 0:
                sleep(wait)
        yield line


def publish_lines(config: Mapping[str, str], lines: Iterable[bytes], *,
                  topics: Topics = CONTRACT_TOPICS, source: str = "replay", speed: float = 0.0,
                  rate: float = 0.0, sent_at: list[float] | None = None) -> PublishReport:
    """Publish lines in order (see :func:`paced`); ``sent_at`` collects each line's
    wall time (``time.time()``) when handed to the producer. Raises on any failed
    delivery."""
    pub = Publisher(config, topics)
    began = time.monotonic()
    for number, line in enumerate(paced(lines, speed, rate), start=1):
        pub.publish(line, source, number)
        if sent_at is not None:
            sent_at.append(time.time())
    report = pub.flush()
    report.seconds = time.monotonic() - began
    return report
