"""Kafka input for the flow: every contract input topic, merged by event time.

Why not Bytewax's ``KafkaSource``: it spreads topic partitions over workers and
hands each partition's messages on as they come, so a topic that is read faster
than another runs ahead in event time. After a restart, or when the flow starts
on topics full of history, ``oss.locations`` could be read hours of event time
ahead of ``oss.alarms``; the sequencer's reorder window (``--lateness``) cannot
repair that, and outage impact would depend on fetch timing.

:class:`KafkaMergeSource` is one Bytewax partition that reads every partition of
every input topic with one consumer (``assign()``, no consumer group: positions
live in the Bytewax recovery snapshot, as with ``KafkaSource``) and releases
messages in a deterministic merge order ``(stream time, topic rank, partition,
offset)``:

* a message is released only when every topic partition either has a message
  buffered or is known to be at its end (``enable.partition.eof``), so a topic
  that has not been fetched yet holds the others back instead of being overtaken;
  with all input already on the broker the order - and so the outputs - is the
  same however fetches interleave, after any number of restarts;
* stream time is read from the record (``event_time``, a call's ``end_time``, a
  KPI's period end, a subscriber's ``updated_at``). Timeless reference data
  (``cell``, ``maintenance``) applies at once; unreadable records and times more
  than 7 days ahead of the merge keep their place in their partition (the flow
  dead-letters them);
* in live operation every partition is normally at its end, and messages go on
  as they arrive; skew between producers is the sequencer's ``lateness_s``.

The single reader costs input parallelism, which the flow does not have anyway:
its sequencer is one key (global event-time order). Decoding happens after this
source, on the same worker.

Items are ``(Origin, value)``: :class:`Origin` is the topic name (a ``str``) that
also carries partition and offset, so dead letters can say where they came from.

>>> stream_time(b'{"type":"call","end_time":"2026-11-23T10:00:00Z"}')
1795428000.0
>>> stream_time(b'{"type":"kpi","period_start":"2026-11-23T10:00:00Z","period_s":900}')
1795428900.0
>>> stream_time(b'{"type":"cell","cell_id":"C1","site_id":"S1"}')
-inf
>>> stream_time(b'not json') is None
True
>>> o = Origin("oss.calls", 2, 41)
>>> o == "oss.calls", o.origin()
(True, {'topic': 'oss.calls', 'partition': 2, 'offset': 41})
"""

from __future__ import annotations

import heapq
import logging
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from forewarn import metrics
from forewarn.codec import STREAM_TIME_FIELD, parse_time

__all__ = ["KafkaMergeSource", "Origin", "TopicMissingError", "stream_time"]

log = logging.getLogger("forewarn.kafka.source")

NEG_INF = float("-inf")
MAX_AHEAD_S = 7 * 24 * 3600  # contract: further than this from the stream's progress is bad
MAX_PARSE_BYTES = 256 * 1024  # larger values are dead letters; not parsed for their time
#: Rank of each record type at equal stream time (reference data first), as the simulator.
TYPE_RANK = {"cell": 0, "subscriber": 1, "maintenance": 2, "alarm": 3, "kpi": 4, "call": 5,
             "location": 6, "complaint": 7}
TIMELESS = frozenset({"cell", "maintenance"})


class Origin(str):
    """A record's source name (its topic) that also knows partition and offset."""

    def __new__(cls, topic: str, partition: int, offset: int) -> Origin:
        self = super().__new__(cls, topic)
        self.partition = partition
        self.offset = offset
        return self

    def origin(self) -> dict:
        """Fields added to a dead letter: ``topic``, ``partition``, ``offset``."""
        return {"topic": str(self), "partition": self.partition, "offset": self.offset}

    def __reduce__(self):  # pickled inside the sequencer's reorder buffer
        return (Origin, (str(self), self.partition, self.offset))


class TopicMissingError(RuntimeError):
    """An input topic does not exist; the message says how to create it."""


def stream_time(value: bytes | None) -> float | None:
    """Merge time of one message: its stream time, ``-inf`` for timeless reference
    data, ``None`` when unreadable (it keeps its place in its partition)."""
    if not value or len(value) > MAX_PARSE_BYTES:
        return None
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    typ = obj.get("type")
    try:
        if typ == "kpi":
            period = obj.get("period_s")
            if isinstance(period, bool) or not isinstance(period, int | float):
                return None
            return parse_time(obj["period_start"]) + period
        name = STREAM_TIME_FIELD.get(typ) if isinstance(typ, str) else None
        if name is None:
            return NEG_INF if typ in TIMELESS else None
        return parse_time(obj[name])
    except (KeyError, TypeError, ValueError):
        return None


WATERMARK_CHECK_S = 2.0  # how often to read partition high watermarks (wall clock)


@dataclass(slots=True)
class _Part:
    """One topic partition being merged."""

    topic: str
    partition: int
    rank: int
    next_offset: int  # position to resume from (after the last released message)
    buffer: deque = field(default_factory=deque)  # (merge key, offset, value)
    at_end: bool = False
    last_key: float = NEG_INF
    paused: bool = False

    @property
    def tp_id(self) -> str:
        return f"{self.topic}/{self.partition}"


class _MergePartition(StatefulSourcePartition[tuple[Origin, bytes], dict]):
    def __init__(self, config: Mapping[str, str], topics: Sequence[str], ranks: Sequence[int],
                 resume: dict | None, exit_at_end: bool, batch: int, durable: bool,
                 buffer_limit: int, starting_offset: int):
        self._exit_at_end = exit_at_end
        self._batch = batch
        self._durable = durable
        self._limit = buffer_limit
        settings = {
            "group.id": f"forewarn-unused-{uuid.uuid4().hex[:8]}",  # assign(): no group
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": "100",
            "logger": logging.getLogger("forewarn.kafka.consumer"),
            "error_cb": _log_client_error,
            **config,
            "enable.auto.commit": "false",
            "enable.partition.eof": "true",
        }
        self._consumer = Consumer(settings)
        resume = resume or {}
        self._parts: dict[tuple[str, int], _Part] = {}
        for topic, rank in zip(topics, ranks, strict=True):
            meta = self._consumer.list_topics(topic, timeout=30).topics.get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                raise TopicMissingError(
                    f"input topic {topic!r} not found on {config.get('bootstrap.servers')} "
                    f"({getattr(meta, 'error', None) or 'no partitions'}); create the topics "
                    f"with `forewarn topics create --bootstrap HOST:PORT`")
            for p in sorted(meta.partitions):
                start = resume.get(f"{topic}/{p}", starting_offset)
                self._parts[(topic, p)] = _Part(topic, p, rank, start)
        self._consumer.assign([TopicPartition(x.topic, x.partition, x.next_offset)
                               for x in self._parts.values()])
        self._heap: list = []  # (key, rank, partition, offset, topic) of each non-empty head
        self._blocked = set(self._parts)  # empty and not known to be at the end
        self._progress: float | None = None  # highest merge key released
        self._caught_up_logged = False
        self._checked = time.monotonic()  # last watermark check (lag, lost EOF events)
        log.info("kafka input assigned", extra={
            "partitions": len(self._parts),
            "resumed": bool(resume), "topics": ",".join(topics),
            "resumed_messages": sum(v for v in resume.values() if v > 0)})

    # -- Bytewax -------------------------------------------------------------------

    def next_batch(self) -> list[tuple[Origin, bytes]]:
        ready = self._heap and not self._blocked
        msgs = self._consumer.consume(self._batch, 0 if ready else 0.05)
        for msg in msgs:
            self._take(msg)
        out = self._release(self._batch)
        if time.monotonic() - self._checked >= WATERMARK_CHECK_S:
            self._check_watermarks()
        if not out and not self._heap and not self._blocked:
            if not self._caught_up_logged:
                log.info("kafka input caught up", extra={"progress": self._progress})
                self._caught_up_logged = True
            if self._exit_at_end:
                raise StopIteration
        elif out:
            self._caught_up_logged = False
        return out

    def snapshot(self) -> dict:
        if self._durable:
            metrics.SNAPSHOT_TIMESTAMP.set(time.time())
        return {p.tp_id: p.next_offset for p in self._parts.values()}

    def close(self) -> None:
        self._consumer.close()

    def _check_watermarks(self) -> None:
        """Consumer lag per partition, and unblock a drained partition whose EOF event
        was lost (e.g. across a broker restart): at the high watermark is at the end."""
        self._checked = time.monotonic()
        for part in self._parts.values():
            tp = TopicPartition(part.topic, part.partition)
            try:
                # cached: the high watermark of the last fetch response (no broker round
                # trip, which would wait behind in-flight fetches)
                _, high = self._consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                return  # broker unreachable: try again later
            if high < 0:
                continue  # no fetch response yet: unknown
            behind = high - part.next_offset - len(part.buffer)
            metrics.CONSUMER_LAG.labels(topic=part.topic, partition=str(part.partition)).set(
                max(high - part.next_offset, 0))
            key = (part.topic, part.partition)
            if key in self._blocked and not part.buffer and behind <= 0:
                part.at_end = True
                self._blocked.discard(key)

    # -- merging ---------------------------------------------------------------------

    def _take(self, msg) -> None:
        err = msg.error()
        part = self._parts.get((msg.topic(), msg.partition()))
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF and part is not None:
                part.at_end = True
                if not part.buffer:
                    self._blocked.discard((part.topic, part.partition))
                return
            if err.fatal():
                raise RuntimeError(f"Kafka consumer failed: {err.str()}")
            log.warning("kafka consumer error", extra={
                "topic": msg.topic(), "partition": msg.partition(), "error": err.str()})
            return
        if part is None:  # pragma: no cover - only assigned partitions are fetched
            return
        value = msg.value() or b""
        key = stream_time(value)
        if key is None:
            key = part.last_key  # unreadable: keep its place
        part.last_key = key
        part.at_end = False
        part.buffer.append((key, msg.offset(), value))
        if len(part.buffer) == 1:
            self._push_head(part)
            self._blocked.discard((part.topic, part.partition))
        if len(part.buffer) >= self._limit and not part.paused:
            self._consumer.pause([TopicPartition(part.topic, part.partition)])
            part.paused = True

    def _push_head(self, part: _Part) -> None:
        key, offset, _ = part.buffer[0]
        if self._progress is not None and key > self._progress + MAX_AHEAD_S:
            key = self._progress  # absurdly far ahead: must not hold its partition back
        heapq.heappush(self._heap, (key, part.rank, part.partition, offset, part.topic))

    def _release(self, limit: int) -> list[tuple[Origin, bytes]]:
        out: list[tuple[Origin, bytes]] = []
        heap, parts, blocked = self._heap, self._parts, self._blocked
        while heap and not blocked and len(out) < limit:
            key, _, partition, offset, topic = heapq.heappop(heap)
            part = parts[(topic, partition)]
            _, _, value = part.buffer.popleft()
            out.append((Origin(topic, partition, offset), value))
            part.next_offset = offset + 1
            if part.buffer:
                self._push_head(part)
            elif not part.at_end:
                blocked.add((topic, partition))
            if key != NEG_INF:
                if self._progress is None:
                    self._progress = key
                    self._rekey()
                    heap = self._heap
                elif key > self._progress:
                    self._progress = key
            if part.paused and len(part.buffer) < self._limit // 2:
                self._consumer.resume([TopicPartition(topic, partition)])
                part.paused = False
        return out

    def _rekey(self) -> None:
        """Once there is progress, heads pushed before it are checked for absurd times."""
        heads = self._heap
        self._heap = []
        for _, _, partition, _, topic in heads:
            self._push_head(self._parts[(topic, partition)])


def _log_client_error(err: KafkaError) -> None:
    level = logging.ERROR if err.fatal() else logging.WARNING
    log.log(level, "kafka client error", extra={"error": err.str(), "code": err.name()})


class KafkaMergeSource(FixedPartitionedSource[tuple[Origin, bytes], dict]):
    """The contract's input topics as one event-time-merged, resumable partition.

    ``topics`` are the topic names in type order (``oss.topology`` first; see
    :data:`TYPE_RANK`); ``exit_at_end`` ends the input once every partition is
    read to its end (backfills, tests); ``durable`` sets the snapshot gauge.
    """

    def __init__(self, config: Mapping[str, str], topics: Sequence[str],
                 ranks: Sequence[int] | None = None, *, exit_at_end: bool = False,
                 batch: int = 1000, durable: bool = False, buffer_limit: int = 50_000,
                 from_end: bool = False):
        self.config = dict(config)
        self.topics = list(topics)
        self.ranks = list(ranks) if ranks is not None else list(range(len(self.topics)))
        self.exit_at_end = exit_at_end
        self.batch = batch
        self.durable = durable
        self.buffer_limit = buffer_limit
        self.starting_offset = OFFSET_END if from_end else OFFSET_BEGINNING

    def list_parts(self) -> list[str]:
        return ["kafka"]

    def build_part(self, step_id: str, for_part: str, resume_state: dict | None):
        return _MergePartition(self.config, self.topics, self.ranks, resume_state,
                               self.exit_at_end, self.batch, self.durable, self.buffer_limit,
                               self.starting_offset)
