"""Publishing JSONL records to the contract's input topics (``replay``, ``simulate``).

Each line goes to the topic of its ``type`` with the contract's key
(:func:`forewarn.connectors.topics.key_for`). A line that cannot be published as it is
goes to the dead-letter topic ``forewarn.deadletter`` instead - the contract's
``dead_letter`` record (``source`` the file name, ``reason``, ``raw`` first 4 KiB,
``code``) plus its ``line`` number - and publishing goes on:

* no input topic: not JSON, a JSON array, an unknown or output ``type``
  (codes ``not_json``, ``not_object``, ``unknown_type``);
* no message key: the key field is missing or empty (``missing_field``; a
  compacted topic refuses a null key, and no topic keeps the order of an unkeyed
  record's subscriber, cell or site);
* too large: key and value above the topic's ``max.message.bytes`` (read once
  with the AdminClient) or the producer's ``message.max.bytes``, less
  :data:`FRAMING` bytes of record-batch framing (``too_large``);
* refused by the broker for a reason of its own (``INVALID_RECORD``,
  ``MSG_SIZE_TOO_LARGE``, ...; code ``refused`` or ``too_large``). The broker
  refuses a whole record batch, so each refused record is sent again alone, after
  everything in flight: a good record that shared a batch with a bad one is
  delivered (a little later than its neighbours), a bad one is dead-lettered.

The first three are judged before sending (:func:`place`), so the common cases
never reach the broker. Only failures that would lose good records stop
publishing (:class:`PublishError`: broker unreachable or timing out, not
authorized, topic missing), with one line saying what, where and how to fix it.
Blank lines are skipped, as by the file reader. A line of an input type with
bad fields (a bad time, an unknown enum) goes to its topic: judging it is the
flow's job.

Pacing: ``speed=0`` as fast as possible; ``speed=N`` N x real time by stream
time (1 = real time); ``rate=R`` a fixed R records/s.

>>> route(b'{"type":"call","subscriber_id":"S1","call_id":"c"}', Topics())
('oss.calls', b'S1')
>>> route(b'{"type":"action","action_id":"x"}', Topics())[0] is None
True
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from forewarn.codec import RAW_LIMIT, dead_letter, dead_letter_dict, decode
from forewarn.connectors.kafka_sink import SAFE_PRODUCER
from forewarn.connectors.kafka_source import NEG_INF, stream_time
from forewarn.connectors.topics import (
    ALL_TOPICS,
    INPUT_TOPICS,
    KEY_FIELDS_FOR_TYPE,
    TOPIC_FOR_TYPE,
    key_for,
)
from forewarn.model import TYPE_RANK, DeadCode, DeadLetter

__all__ = [
    "CONTRACT_TOPICS", "FRAMING", "PublishError", "PublishReport", "Publisher", "Topics",
    "paced", "place", "publish_lines", "read_limits", "route"]

log = logging.getLogger("forewarn.kafka.publish")
# librdkafka's own log lines (connection retries, PID acquisition) stay off the
# terminal: the errors among them also reach ``error_cb``, and the last one goes
# into the stop message.
_client_log = logging.getLogger("forewarn.kafka.publish.client")
_client_log.propagate = False
_client_log.addHandler(logging.NullHandler())

INPUT_TYPES = frozenset(s.record_type for s in INPUT_TOPICS)

#: librdkafka's default ``message.max.bytes`` (the producer's own limit per message).
PRODUCER_MAX_BYTES = 1_000_000
#: Bytes a single record's batch adds to its key and value: the record-batch header
#: (61) and the record's own varints (at most 32), rounded up.
FRAMING = 100
#: How long a record may wait for its delivery report before publishing stops
#: (librdkafka's ``message.timeout.ms``; ``-X message.timeout.ms=...`` overrides it).
MESSAGE_TIMEOUT_MS = "30000"

#: Broker answers about the records of one batch, not about the cluster: the batch's
#: records are sent again one by one, and those still refused are dead-lettered.
PER_RECORD_ERRORS = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_RECORD,
    KafkaError.INVALID_TIMESTAMP,
    KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.INVALID_MSG,  # CRC mismatch
})


class PublishError(RuntimeError):
    """Publishing stopped because good records could not be delivered.

    The message is one line: what failed, at which address/topic, how to fix it.
    ``report`` is what had been done by then (see :class:`PublishReport`).
    """

    def __init__(self, message: str, report: PublishReport | None = None):
        super().__init__(message)
        self.report = report


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
    def care_context(self) -> str:
        return self.of("care_context")

    @property
    def care_status(self) -> str:
        return self.of("care_status")

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


class Refusal(str):
    """Why a line cannot be published: a dead-letter reason, and its ``code``."""

    code: DeadCode

    def __new__(cls, reason: str, code: DeadCode) -> Refusal:
        self = super().__new__(cls, reason)
        self.code = code
        return self


def _no_topic_reason(line: bytes, source: str) -> Refusal:
    rec = decode(line, source)
    if type(rec) is DeadLetter and rec.code != DeadCode.UNKNOWN_TYPE:
        return Refusal(rec.reason, DeadCode(rec.code))
    try:
        typ = orjson.loads(line).get("type")
    except (orjson.JSONDecodeError, AttributeError):
        return Refusal("not a JSON object", DeadCode.NOT_OBJECT)
    return Refusal(f"type: expected one of {','.join(sorted(INPUT_TYPES))} (an input record), "
                   f"got {typ!r}", DeadCode.UNKNOWN_TYPE)


def place(line: bytes, topics: Topics, limits: Mapping[str, int],
          source: str = "replay") -> tuple[str, bytes] | Refusal:
    """``(topic, key)`` for a line that can be published as it is, else the reason
    it cannot (a dead-letter reason; see the module docs).

    ``limits``: the most bytes of key and value each topic takes (topics not in it:
    the producer's default limit, :data:`PRODUCER_MAX_BYTES` less :data:`FRAMING`).

    >>> place(b'{"type":"cell","cell_id":"C1","site_id":"S1"}', Topics(), {})
    ('oss.topology', b'C1')
    >>> place(b'{"type":"subscriber","op":"delete","updated_at":"x"}', Topics(), {})
    'subscriber.subscriber_id: required field missing (the message key of bss.subscribers)'
    >>> place(b'{"type":"alarm","alarm_id":"A","site_id":""}', Topics("t."), {})
    'alarm.site_id/cell_id: required field missing (the message key of t.oss.alarms)'
    >>> place(b'{"type":"kpi","cell_id":"C1","pad":"xxxxxxxxxx"}', Topics(), {"oss.kpis": 40})
    'record too large for oss.kpis: 50 bytes of key and value, the topic takes at most 40'
    >>> place(b'[1]', Topics(), {}, "f.jsonl")
    'expected a JSON object, got list'
    """
    topic, key = route(line, topics)
    if topic is None:
        return _no_topic_reason(line, source)
    if key is None:
        typ = orjson.loads(line)["type"]
        return Refusal(f"{typ}.{'/'.join(KEY_FIELDS_FOR_TYPE[typ])}: required field missing "
                       f"(the message key of {topic})", DeadCode.MISSING_FIELD)
    size = len(key) + len(line)
    limit = limits.get(topic, PRODUCER_MAX_BYTES - FRAMING)
    if size > limit:
        return Refusal(f"record too large for {topic}: {size} bytes of key and value, "
                       f"the topic takes at most {limit}", DeadCode.TOO_LARGE)
    return topic, key


def read_limits(config: Mapping[str, str], topics: Topics, timeout: float = 10.0
                ) -> dict[str, int]:
    """The most bytes of key and value each input and dead-letter topic takes: its
    ``max.message.bytes`` and the producer's ``message.max.bytes``, whichever is
    smaller, less :data:`FRAMING`.

    Raises :class:`PublishError` when topics do not exist or the cluster does not
    answer within ``timeout`` seconds. A topic whose configs this client may not
    read keeps the producer's limit (the broker still refuses what is too large).
    """
    bootstrap = config.get("bootstrap.servers")
    producer_max = int(config.get("message.max.bytes", PRODUCER_MAX_BYTES))
    names = [*topics.inputs, topics.dead_letters]
    admin = AdminClient({**config, "logger": _client_log})
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in names],
                                     request_timeout=timeout)
    limits: dict[str, int] = {}
    missing: list[str] = []
    for resource, future in futures.items():
        name = resource.name
        try:
            entries = future.result()
        except KafkaException as exc:
            err = exc.args[0]
            if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                missing.append(name)
                continue
            if err.code() in _AUTHORIZATION:
                log.warning("cannot read the topic's max.message.bytes; the producer's "
                            "limit applies", extra={"topic": name, "error": err.str()})
                limits[name] = producer_max - FRAMING
                continue
            raise PublishError(f"reading the configs of {name} at {bootstrap} failed: "
                               f"{err.str()} ({err.name()}); is the broker up and the "
                               f"address right?") from None
        entry = entries.get("max.message.bytes")
        topic_max = int(entry.value) if entry is not None and entry.value else producer_max
        limits[name] = min(topic_max, producer_max) - FRAMING
    if missing:
        prefix = f" --topic-prefix {topics.prefix}" if topics.prefix else ""
        raise PublishError(f"topic(s) {', '.join(sorted(missing))} do not exist at "
                           f"{bootstrap}: create them with `forewarn topics create "
                           f"--bootstrap {bootstrap}{prefix}`")
    return limits


_AUTHORIZATION = frozenset({
    KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._AUTHENTICATION})
_UNKNOWN = frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC,
                      KafkaError._UNKNOWN_PARTITION})
_PURGED = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})


@dataclass
class PublishReport:
    """What a publish did.

    ``by_topic``: records delivered, by topic (the dead-letter topic included);
    ``dead_letters``: the dead-letter records published, each with its ``line``;
    ``failed``: records not delivered, by topic; ``retried_alone``: records of a
    batch the broker refused that were delivered when sent again alone;
    ``stopped``: why publishing stopped early (``None``: it did not).
    """

    by_topic: Counter = field(default_factory=Counter)
    dead_letters: list[dict] = field(default_factory=list)
    failed: Counter = field(default_factory=Counter)
    retried_alone: int = 0
    blank: int = 0
    seconds: float = 0.0
    stopped: str | None = None

    @property
    def published(self) -> int:
        return sum(self.by_topic.values())

    @property
    def ok(self) -> bool:
        """Every good record was delivered (dead letters included)."""
        return self.stopped is None and not self.failed

    def dead_letters_by_code(self) -> Counter:
        return Counter(d["code"] for d in self.dead_letters)

    def summary(self) -> str:
        """Several lines: delivered per topic, dead letters by code, failures.

        >>> r = PublishReport(Counter({"oss.calls": 3, "forewarn.deadletter": 1}),
        ...                   [{"code": "not_json", "source": "a.jsonl", "line": 2,
        ...                     "reason": "not JSON"}], seconds=1.0)
        >>> print(r.summary())
        4 records delivered in 1.0 s (4/s)
          forewarn.deadletter  1
          oss.calls            3
        dead letters: 1 line(s) not publishable as they are (first: a.jsonl line 2: not JSON)
          not_json  1
        failed: none, every good record was delivered
        """
        rate = self.published / self.seconds if self.seconds > 0 else 0.0
        lines = [f"{self.published} records delivered in {self.seconds:.1f} s ({rate:,.0f}/s)"]
        lines += _table(sorted(self.by_topic.items()))
        if self.dead_letters:
            first = self.dead_letters[0]
            lines.append(f"dead letters: {len(self.dead_letters)} line(s) not publishable as "
                         f"they are (first: {first['source']} line {first['line']}: "
                         f"{first['reason']})")
            lines += _table(sorted(self.dead_letters_by_code().items()))
        else:
            lines.append("dead letters: none")
        if self.retried_alone:
            lines.append(f"{self.retried_alone} record(s) of batches the broker refused were "
                         f"delivered when sent again alone")
        if self.blank:
            lines.append(f"{self.blank} blank line(s) skipped")
        if self.ok:
            lines.append("failed: none, every good record was delivered")
        else:
            lost = ", ".join(f"{t} {n}" for t, n in sorted(self.failed.items()))
            lines.append(f"failed: {sum(self.failed.values())} record(s) not delivered"
                         + (f" ({lost})" if lost else "")
                         + ("; publishing stopped early" if self.stopped else ""))
        return "\n".join(lines)


def _table(rows: list[tuple[str, int]]) -> list[str]:
    width = max((len(name) for name, _ in rows), default=0)
    return [f"  {name.ljust(width)}  {n}" for name, n in rows]


class Publisher:
    """An idempotent producer that dead-letters what cannot be published and stops,
    with :class:`PublishError`, only when good records cannot be delivered.

    ``limits`` (topic -> most bytes of key and value) is read from the cluster when
    not given (:func:`read_limits`); ``settings`` are producer defaults that
    ``config`` overrides.
    """

    def __init__(self, config: Mapping[str, str], topics: Topics = CONTRACT_TOPICS,
                 settings: Mapping[str, str] | None = None,
                 limits: Mapping[str, int] | None = None):
        self.topics = topics
        self.report = PublishReport()
        self.bootstrap = config.get("bootstrap.servers")
        producer_config = {
            "linger.ms": "10",
            "compression.type": "lz4",
            "message.timeout.ms": MESSAGE_TIMEOUT_MS,
            "logger": _client_log,
            "error_cb": self._on_error,
            **dict(settings or {}),
            **config,
            **SAFE_PRODUCER,
        }
        self.limits = dict(limits) if limits is not None else read_limits(config, topics)
        # The broker's limit is per record batch: batches no larger than the smallest
        # limit keep a good record from being refused with a large neighbour.
        smallest = min(self.limits.values(), default=PRODUCER_MAX_BYTES) + FRAMING
        if smallest < PRODUCER_MAX_BYTES and "batch.size" not in producer_config:
            producer_config["batch.size"] = str(max(smallest, 1))
        self._timeout_s = int(producer_config["message.timeout.ms"]) / 1000
        self._producer = Producer(producer_config)
        # (source, line, topic, key, value, error) of records a refused batch held
        self._refused: list[tuple[str, int, str, bytes | None, bytes, KafkaError]] = []
        self._at: tuple[str, int] | None = None  # (source, line) being published
        self._last_error = ""  # the producer's latest connection error

    # ---- delivery reports (served by poll/flush, on this thread) ----------------------

    def _on_delivery(self, source: str, number: int, err: KafkaError | None, msg) -> None:
        if err is None:
            self.report.by_topic[msg.topic()] += 1
        elif err.code() in PER_RECORD_ERRORS:
            self._refused.append((source, number, msg.topic(), msg.key(), msg.value(), err))
        else:
            self._fail(err, msg.topic())

    def _on_dead_letter(self, err: KafkaError | None, msg) -> None:
        if err is None:
            self.report.by_topic[msg.topic()] += 1
        else:  # a dead letter has nowhere else to go
            self._fail(err, msg.topic())

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal() or err.code() in _AUTHORIZATION:
            self._stop(self._explain(err, None))
        else:  # connection trouble: records wait for message.timeout.ms, then fail
            self._last_error = err.str()
            log.debug("kafka producer error", extra={"error": err.str(), "code": err.name()})

    def _fail(self, err: KafkaError, topic: str) -> None:
        self.report.failed[topic] += 1
        if err.code() not in _PURGED:
            self._stop(self._explain(err, topic))

    def _stop(self, why: str) -> None:
        if self.report.stopped is None:
            self.report.stopped = why

    def _explain(self, err: KafkaError, topic: str | None) -> str:
        """One line: what failed, where, how to fix it."""
        at = f"{topic} at {self.bootstrap}" if topic else self.bootstrap
        what = f"{err.str()} ({err.name()})"
        code = err.code()
        if code in _AUTHORIZATION:
            return (f"not allowed to write to {at}: {what}; grant this client WRITE on the "
                    f"topics, or check the credentials in --config / -X sasl.*")
        if code in _UNKNOWN:
            prefix = f" --topic-prefix {self.topics.prefix}" if self.topics.prefix else ""
            return (f"{at}: {what}; create the topics with `forewarn topics create "
                    f"--bootstrap {self.bootstrap}{prefix}`")
        if code in (KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT, KafkaError._TRANSPORT,
                    KafkaError.REQUEST_TIMED_OUT, KafkaError._ALL_BROKERS_DOWN):
            last = f" (last: {self._last_error})" if self._last_error else ""
            return (f"records to {at} not delivered within {self._timeout_s:g} s: {what}"
                    f"{last}; is the broker up and reachable? (-X message.timeout.ms=... "
                    f"waits longer)")
        return f"delivery to {at} failed: {what}"

    # ---- publishing ------------------------------------------------------------------

    def _send(self, topic: str, value: bytes, key: bytes | None, on_delivery) -> KafkaError | None:
        """Hand one record to the producer; the producer's own refusal, if any."""
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                return None
            except BufferError:  # local queue full: serve delivery reports
                self._producer.poll(0.05)
            except KafkaException as exc:
                err = exc.args[0]
                if err.code() in PER_RECORD_ERRORS:
                    return err
                self._stop(self._explain(err, topic))
                return None

    def _dead_letter(self, line: bytes, source: str, number: int, reason: Refusal) -> None:
        topic, key = self.topics.dead_letters, source.encode()
        limit = self.limits.get(topic, PRODUCER_MAX_BYTES - FRAMING) - len(key)
        keep = RAW_LIMIT
        while True:  # ``raw`` shortened only when the dead-letter topic takes less
            record = {**dead_letter_dict(dead_letter(line[:keep], source, reason, reason.code)),
                      "line": number}
            value = orjson.dumps(record)
            if len(value) <= limit or keep == 0:
                break
            keep = max(0, keep - (len(value) - limit) - 8)
        self.report.dead_letters.append(record)
        self._send(topic, value, key, self._on_dead_letter)

    def publish(self, line: bytes, source: str = "replay", number: int = 0) -> str | None:
        """Publish one line (``number``: its line in ``source``); returns the topic it
        went to (``None``: blank line skipped). Raises :class:`PublishError` when
        publishing must stop."""
        if not line.strip():
            self.report.blank += 1
            return None
        self._at = (source, number)
        placed = place(line, self.topics, self.limits, source)
        if isinstance(placed, Refusal):
            self._dead_letter(line, source, number, placed)
            topic = self.topics.dead_letters
        else:
            topic, key = placed
            refused = self._send(topic, line, key,
                                 functools.partial(self._on_delivery, source, number))
            if refused is not None:
                self._dead_letter(line, source, number, _refusal(refused, topic))
                topic = self.topics.dead_letters
        self._producer.poll(0)
        if self._refused:
            self._isolate()
        self._check()
        return topic

    def _check(self) -> None:
        if self.report.stopped is not None:
            where = (f"; publishing stopped at {self._at[0]} line {self._at[1]} (later "
                     f"lines were not sent)" if self._at else "")
            raise PublishError(self.report.stopped + where, self.report)

    def _wait(self) -> None:
        """Until every record handed over has its delivery report (librdkafka gives one
        within ``message.timeout.ms``)."""
        deadline = time.monotonic() + self._timeout_s + 30
        while self._producer.flush(1.0) > 0:
            if time.monotonic() > deadline:
                self._stop(f"no delivery report from {self.bootstrap} within "
                           f"{self._timeout_s + 30:g} s; is the broker up?")
                return

    def _isolate(self) -> None:
        """Send the records of refused batches again, one at a time: deliver the good,
        dead-letter those refused alone. When publishing must stop meanwhile, the
        records not settled yet count as not delivered."""
        while self._refused and self.report.stopped is None:
            self._wait()
            refused, self._refused = self._refused, []
            for i, (source, number, topic, key, value, _) in enumerate(refused):
                if self.report.stopped is not None:
                    self.report.failed.update(r[2] for r in refused[i:])
                    return
                answer: list[KafkaError | None] = []
                err = self._send(topic, value, key,
                                 lambda e, _m, answer=answer: answer.append(e))
                if err is None:
                    self._wait()
                    if not answer or answer[0] is not None and (
                            answer[0].code() not in PER_RECORD_ERRORS):
                        self._fail(answer[0] if answer else KafkaError(
                            KafkaError._TIMED_OUT, "no delivery report"), topic)
                        continue
                    err = answer[0]
                    if err is None:
                        self.report.by_topic[topic] += 1
                        self.report.retried_alone += 1
                        continue
                self._dead_letter(value, source, number, _refusal(err, topic))
        self._wait()

    def flush(self) -> PublishReport:
        """Wait for every delivery report; returns the report, or raises
        :class:`PublishError` when good records were not delivered."""
        self._wait()
        while self._refused and self.report.stopped is None:
            self._isolate()
        if not self.report.ok and self.report.stopped is None:
            self.report.stopped = "records were not delivered"
        self._check()
        return self.report

    def abort(self) -> PublishReport:
        """After a :class:`PublishError`: drop what is still queued (counted as failed)
        and return the report."""
        self._producer.purge()
        self._producer.flush(1.0)  # serves the purged records' reports
        return self.report


def _refusal(err: KafkaError, topic: str) -> Refusal:
    """The dead-letter reason of a record the producer or broker refused."""
    if err.code() in (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE):
        return Refusal(f"record too large for {topic}: {err.str()} ({err.name()})",
                       DeadCode.TOO_LARGE)
    return Refusal(f"refused by the broker for {topic}: {err.str()} ({err.name()})",
                   DeadCode.REFUSED)


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
                  rate: float = 0.0, sent_at: list[float] | None = None,
                  publisher: Publisher | None = None) -> PublishReport:
    """Publish lines in order (see :func:`paced`; line numbers count from 1, blank
    lines included); ``sent_at`` collects each line's wall time (``time.time()``)
    when handed to the producer. Returns the report; raises :class:`PublishError`
    (with the report) when good records could not be delivered."""
    pub = publisher or Publisher(config, topics)
    began = time.monotonic()
    try:
        for number, line in enumerate(paced(lines, speed, rate), start=1):
            pub.publish(line, source, number)
            if sent_at is not None:
                sent_at.append(time.time())
        report = pub.flush()
    except PublishError as exc:
        exc.report = pub.abort()
        exc.report.seconds = time.monotonic() - began
        raise
    report.seconds = time.monotonic() - began
    return report
