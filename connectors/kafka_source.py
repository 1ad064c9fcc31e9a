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

* a message is released only when every topic partition that is not known to be
  at its end (``enable.partition.eof``) has shown a message that sorts after it,
  so a topic that has not been fetched yet holds the others back instead of being
  overtaken; with all input already on the broker the order - and so the
  outputs - is the same however fetches interleave, after any number of restarts.
  Each fetch releases, in one sort, everything that became safe (no per-message
  heap); a partition's merge times are its running maximum, so a record behind
  its own partition keeps its place there (the sequencer's reorder window and
  late count take it from there);
* stream time is read from the record (``event_time``, a call's ``end_time``, a
  KPI's period end, a subscriber's ``updated_at``). Timeless reference data
  (``cell``, ``maintenance``) applies at once; unreadable records, records of a
  type that does not belong on their topic (dead letters, code ``wrong_topic``),
  and times more than 7 days ahead of the merge keep their place in their
  partition (the flow dead-letters them). A record more than
  :data:`LEAP_S` past its partition's running maximum that a later
  record of its partition contradicts (it falls back that far, before
  :data:`LEAP_CONFIRM` records in line with the leap came) keeps its
  place too, so a few bad clocks do not hold the rest of their partition back
  behind them; until then the partition holds the merge at the time before the
  leap. The sequencer decides what such records mean for event time;
* in live operation every partition is normally at its end, and messages go on
  as they arrive; skew between producers is the sequencer's ``lateness_s``.

The single reader costs input parallelism, which the flow does not have anyway:
its sequencer is one key (global event-time order). Each message is decoded here,
once (its record gives the merge time), and counted: each batch is one
:class:`~forewarn.dataflows.messages.Decoded`, its items ``(source, value, record, at)``,
``source`` being ``(topic, partition, offset)``, ``at`` the record's stream time
(``None`` if timeless) and ``record`` a domain record or
a :class:`~forewarn.model.DeadLetter` whose source is an
:class:`~forewarn.codec.Origin`, so dead letters say where they came from. A raw
message's stream time, as the publisher and the file merge read it, is
:func:`forewarn.codec.stream_time` (re-exported here): a KPI period merges at its end.

>>> stream_time(b'{"type":"kpi","period_start":"2026-11-23T10:00:00Z","period_s":900}')
1795428900.0
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter

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
from forewarn.adapters import Adapters
from forewarn.codec import (
    Expanded,
    Origin,
    read_input,
    stream_time,
)
from forewarn.connectors.files import LEAP_CONFIRM, LEAP_S
from forewarn.connectors.topics import SUBSCRIBER_KEYED, TOPIC_FOR_TYPE, partition_for
from forewarn.dataflows.messages import Decoded
from forewarn.dataflows.shards import SHARD_KEYED, ShardSource
from forewarn.model import (
    Alarm,
    Call,
    Cell,
    Complaint,
    DeadLetter,
    Kpi,
    Location,
    Maintenance,
    Subscriber,
)

__all__ = ["KafkaMergeSource", "Origin", "TopicMissingError", "input_parts", "stream_time"]

log = logging.getLogger("forewarn.kafka.source")

NEG_INF = float("-inf")
MAX_AHEAD_S = 7 * 24 * 3600  # contract: further than this from the stream's progress is bad
#: Each input record type's decoded class (a position the decoder made counts as the
#: location or call it came from).
RECORD_CLASS = {c.kind: c for c in (Cell, Alarm, Location, Call, Kpi, Subscriber,
                                    Maintenance, Complaint)}
#: One consumed message in this many is checked for co-partitioning (a hash of its key).
COPARTITION_SAMPLE = 64


class _Many(list):
    """The items a message that stood for several records decoded to (a VES batch): one
    entry in the merge, its items handed on in order (:meth:`_MergePartition._emit`)."""


class TopicMissingError(RuntimeError):
    """An input topic does not exist; the message says how to create it."""


WATERMARK_CHECK_S = 2.0  # how often to read partition high watermarks (wall clock)
#: How long an idle poll waits in ``consume`` for a message (wall clock): one reader;
#: one shard of several (Bytewax polls a worker's source partitions in turn).
POLL_WAIT_S, SHARD_POLL_WAIT_S = 0.05, 0.005
#: With input shards, live: a shard whose every partition has been at its end this long
#: (wall clock) says so, and the event-time frontier stops waiting for it until it has
#: news (Flink's idle sources): a partition that gets nothing must not hold the others.
IDLE_S = 2.0
#: Messages per batch, at most (a backlog; live, a batch is what has arrived). Downstream
#: work per site and per care key is per batch: larger batches spread it thinner (on a
#: 24 h backlog, 20 k against 5 k: 19 % less CPU in four paired rounds; 1 k: 25 % more).
BATCH = 20_000
#: Messages per ``consume()`` call (a batch takes several): a larger call costs more per
#: message (0.80-0.84 us at 20 k against 0.46-0.70 us at 1-5 k, 1 M messages read).
FETCH = 5000
_merge_key = itemgetter(0, 1, 2, 3)  # of an Entry: its MergeKey

#: A message's place in the merge: (merge time, topic rank, partition, offset).
MergeKey = tuple[float, int, int, int]
#: A buffered message: its MergeKey's four fields, then its item. Keys are unique, so
#: entries sort as tuples without their items ever being compared.
Entry = tuple[float, int, int, int, object]


@dataclass(slots=True)
class _Part:
    """One topic partition being merged.

    Its merge times are made non-decreasing (each is the running maximum of the
    partition's stream times), so the buffer is sorted by :data:`MergeKey` and
    the partition's future messages all come after ``bound()``.
    """

    topic: str
    partition: int
    rank: int
    next_offset: int  # position to resume from (after the last released message)
    entries: list[Entry] = field(default_factory=list)  # buffered, in offset order
    at_end: bool = False
    last_key: float = NEG_INF  # running maximum of merge times taken
    paused: bool = False
    expects: type | None = None  # the record class its topic carries (None: any)
    jump_from: float | None = None  # last_key before an unconfirmed leap forward
    jump_offset: int = 0  # the offset of the record that leapt
    jump_seen: int = 0  # records since, in line with it
    # read for context only (another shard forwards and reports it): a ShardSource
    context: ShardSource | None = None

    def leap(self, before: float, offset: int) -> None:
        """A record far past the partition's running maximum: unconfirmed until
        :data:`LEAP_CONFIRM` records follow in line with it (a later leap
        keeps the first one's base)."""
        if self.jump_from is None:
            self.jump_from, self.jump_offset = before, offset
        self.jump_seen = 0

    def confirm(self) -> None:
        self.jump_seen += 1
        if self.jump_seen >= LEAP_CONFIRM:
            self.jump_from = None

    @property
    def tp_id(self) -> str:
        return f"{self.topic}/{self.partition}"

    def drained(self, high: int) -> bool:
        """Nothing buffered and nothing left below the high watermark ``high``
        (negative: unknown): at its end, as an EOF event would say."""
        return not self.entries and 0 <= high <= self.next_offset

    def bound(self) -> MergeKey:
        """Every message this partition has yet to give sorts after this. While its
        latest leap forward is unconfirmed, that message may yet go back to the time
        before the leap (:func:`_undo_jump`), and so may the ones after it."""
        if self.jump_from is not None:
            return (self.jump_from, self.rank, self.partition, self.jump_offset - 1)
        if self.entries:
            return _merge_key(self.entries[-1])
        return (self.last_key, self.rank, self.partition, self.next_offset - 1)


class _MergePartition(StatefulSourcePartition[tuple, dict]):
    def __init__(self, config: Mapping[str, str], topics: Sequence[str], ranks: Sequence[int],
                 resume: dict | None, exit_at_end: bool, batch: int, durable: bool,
                 buffer_limit: int, starting_offset: int,
                 types: Sequence[str] | None = None, adapters: Adapters | None = None,
                 shard: int | None = None):
        self._exit_at_end = exit_at_end
        self._shard = shard
        self._adapters = adapters
        self._many = 0  # _Many entries taken and not yet emitted
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
        expects = ([RECORD_CLASS[t] for t in types] if types is not None
                   else [None] * len(topics))
        counts: dict[str, int] = {}  # each topic's partition count
        for topic, rank, expect in zip(topics, ranks, expects, strict=True):
            meta = self._consumer.list_topics(topic, timeout=30).topics.get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                raise TopicMissingError(
                    f"input topic {topic!r} not found on {config.get('bootstrap.servers')} "
                    f"({getattr(meta, 'error', None) or 'no partitions'}); create the topics "
                    f"with `forewarn topics create --bootstrap HOST:PORT`")
            counts[topic] = len(meta.partitions)
            # With shards, a keyed topic's partition `shard` is this shard's own; any
            # other topic (topology, alarms, maintenance) is read whole by every shard,
            # as context on all but shard 0 (forewarn.dataflows.shards)
            keyed = expect is not None and expect.kind in SHARD_KEYED
            context = (ShardSource(topic, shard, True)
                       if shard is not None and shard != 0 and not keyed else None)
            for p in sorted(meta.partitions):
                if shard is not None and keyed and p != shard:
                    continue
                start = resume.get(f"{topic}/{p}", starting_offset)
                self._parts[(topic, p)] = _Part(topic, p, rank, start, expects=expect,
                                                context=context)
        self._consumer.assign([TopicPartition(x.topic, x.partition, x.next_offset)
                               for x in self._parts.values()])
        # subscriber-keyed topics: their partition count, for the co-partitioning check
        self._keyed = {p.topic: (counts[p.topic], p.expects) for p in self._parts.values()
                       if p.expects is not None and p.expects.kind in SUBSCRIBER_KEYED}
        self._by_rank = {(p.rank, p.partition): p for p in self._parts.values()}
        self._buffered = 0  # messages taken, not yet merged
        self._tally = Decoded()  # what was decoded since the last batch went out
        self._ready: list = []  # merged, in order; released up to _ready_at
        self._ready_at = 0
        self._progress: float | None = None  # highest merge time released
        self._first: float | None = None  # first merge time taken (until there is progress)
        self._caught_up_logged = False
        self._idle_since = 0.0  # (monotonic) when every partition was last found at its end
        self._idle_told = False  # the shard said it is idle, and has had no news since
        self._checked = time.monotonic()  # last watermark check (lag, lost EOF events)
        log.info("kafka input assigned", extra={
            "partitions": len(self._parts), "shard": shard,
            "resumed": bool(resume), "topics": ",".join(topics),
            "resumed_messages": sum(v for v in resume.values() if v > 0)})

    # -- Bytewax -------------------------------------------------------------------

    def next_batch(self) -> list[tuple]:
        # Nothing to emit: wait for a fetch, briefly. Several shards of one worker are
        # polled in turn, each blocking in its own consume, so a shard waits less.
        wait = 0 if self._buffered or self._ready_at < len(self._ready) else (
            POLL_WAIT_S if self._shard is None else SHARD_POLL_WAIT_S)
        fetch = min(self._batch, FETCH)
        for _ in range(max(1, self._batch // fetch)):  # up to a batch, while there is more
            msgs = self._consumer.consume(fetch, wait)
            if msgs:
                self._take(msgs)
                if self._keyed:
                    _check_copartitioning(msgs[::COPARTITION_SAMPLE], self._keyed)
            if len(msgs) < fetch:
                break
            wait = 0
        if self._ready_at >= len(self._ready) and self._buffered:
            self._ready, self._ready_at = self._merge(), 0
        out = self._emit()
        if not out and self._buffered and self._settle_ends():
            self._ready, self._ready_at = self._merge(), 0
            out = self._emit()
        if time.monotonic() - self._checked >= WATERMARK_CHECK_S:
            self._check_watermarks()
        if not out and not self._buffered and all(p.at_end for p in self._parts.values()):
            if not self._caught_up_logged:
                log.info("kafka input caught up", extra={"progress": self._progress})
                self._caught_up_logged = True
                self._idle_since = time.monotonic()
            if self._exit_at_end:
                raise StopIteration
            if self._shard is not None and not self._idle_told \
                    and time.monotonic() - self._idle_since >= IDLE_S:
                self._idle_told = True  # (live, with shards: the frontier leaves it out)
                return [Decoded(shard=self._shard, idle=True)]
        elif out:
            self._caught_up_logged = self._idle_told = False
        return out

    def snapshot(self) -> dict:
        """Input positions: each partition resumes at its first message not yet released.

        Bytewax asks at every epoch, with or without recovery; only with it is the
        answer kept, so only then are merged messages still waiting looked at."""
        if not self._durable:
            return {}
        metrics.SNAPSHOT_TIMESTAMP.set(time.time())
        positions = {(p.rank, p.partition): p.next_offset for p in self._parts.values()}
        for key in self._ready[self._ready_at:]:  # merged, waiting: read again after a restart
            tp = (key[1], key[2])
            if key[3] < positions[tp]:
                positions[tp] = key[3]
        return {self._by_rank[tp].tp_id: offset for tp, offset in positions.items()}

    def close(self) -> None:
        self._consumer.close()

    def _settle_ends(self) -> bool:
        """Mark drained partitions at their end from their cached high watermark.

        The merge waits on every partition not known to be at its end; a partition that
        gave all it had (the topology, typically) learns it only from its EOF event,
        which can come a second after its data. When the merge is held back, each empty
        partition is looked at now (a local read, no broker round trip). True if one
        was found at its end."""
        settled = False
        for part in self._parts.values():
            if part.at_end or part.entries:
                continue
            try:
                high = self._cached_high(part)
            except KafkaException:
                return settled
            if part.drained(high):
                part.at_end = settled = True
        return settled

    def _check_watermarks(self) -> None:
        """Consumer lag per partition, and unblock a drained partition whose EOF event
        was lost (e.g. across a broker restart)."""
        self._checked = time.monotonic()
        for part in self._parts.values():
            try:
                high = self._cached_high(part)
            except KafkaException:
                return  # broker unreachable: try again later
            if high < 0:
                continue  # no fetch response yet: unknown
            if part.context is None:  # (a context partition's lag is shard 0's to report)
                metrics.CONSUMER_LAG.labels(topic=part.topic,
                                            partition=str(part.partition)).set(
                    max(high - part.next_offset, 0))
            if part.drained(high):
                part.at_end = True

    def _cached_high(self, part: _Part) -> int:
        """The high watermark of the partition's last fetch response (no broker round
        trip, which would wait behind in-flight fetches); negative when unknown."""
        _, high = self._consumer.get_watermark_offsets(
            TopicPartition(part.topic, part.partition), cached=True)
        return high

    # -- merging ---------------------------------------------------------------------

    def _take(self, msgs: list) -> None:
        """Decode each message (once: its record gives the merge time) into its buffer,
        and tally it for the decode step (:class:`~forewarn.dataflows.messages.Decoded`)."""
        parts = self._parts
        part: _Part | None = None
        entries = None
        rank = 0
        last = NEG_INF
        expect = None
        context = None
        touched: dict[int, _Part] = {}
        tally = self._tally
        accepted = tally.accepted
        latest = tally.latest
        ref = self._progress if self._progress is not None else self._first
        ahead = math.inf if ref is None else ref + MAX_AHEAD_S  # absurdly far beyond
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if part is not None:  # an EOF changes its partition: look it up again
                    part.last_key, part = last, None
                self._error(msg, err)
                continue
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            if part is None or part.partition != partition or part.topic != topic:
                if part is not None:
                    part.last_key = last
                part = parts.get((topic, partition))
                if part is None:  # pragma: no cover - only assigned partitions are fetched
                    continue
                entries, rank, last, expect = part.entries, part.rank, part.last_key, part.expects
                context = part.context
                part.at_end = False
                touched[id(part)] = part
            value = msg.value() or b""
            source = (topic, partition, offset)
            rec, kind, at = read_input(value, source, self._adapters, expect)
            if kind is Expanded:  # an operator's batch (VES eventList): one entry
                last, latest = self._take_many(part, rec, source, last, latest, ahead)
                continue
            if kind is DeadLetter:
                key = last  # unreadable: keeps its place in the partition
                if context is not None:  # shard 0 reports it; here an empty entry holds
                    entries.append((key, rank, partition, offset, _Many()))  # its offset
                    self._many += 1
                    continue
                tally.dead.append(rec)
                entries.append((key, rank, partition, offset, rec))  # bare, as the decode step's
                continue
            key = at
            if context is None:  # (context: shard 0 counts it)
                accepted[kind] = accepted.get(kind, 0) + 1
            if key is None:
                key = NEG_INF
            else:
                if ref is None:
                    self._first = ref = key
                    ahead = ref + MAX_AHEAD_S
                if context is None:
                    if latest is None or key > latest:
                        latest = key
                    if kind is Complaint:
                        tally.complaints.append(rec)
            if part.jump_from is not None and NEG_INF < key < last - LEAP_S:
                last = _undo_jump(part)  # it falls back: the leap before it was bad clocks
                if key < last:
                    key = last
            elif key < last or key > ahead:
                if part.jump_from is not None and NEG_INF < key < last:
                    part.confirm()  # timed and not far behind: in line with the leap
                key = last  # behind its partition, or absurdly far ahead: keeps its place
            elif key - last > LEAP_S and last != NEG_INF:
                part.leap(last, offset)  # undone if the partition's next records fall back
            elif part.jump_from is not None:
                part.confirm()
            last = key
            entries.append((key, rank, partition, offset,
                            (source if context is None else context, value, rec, at)))
        if part is not None:
            part.last_key = last
        tally.latest = latest
        self._buffered = sum(len(p.entries) for p in parts.values())
        for part in touched.values():
            if len(part.entries) >= self._limit and not part.paused:
                self._consumer.pause([TopicPartition(part.topic, part.partition)])
                part.paused = True

    def _take_many(self, part: _Part, many: Expanded, source: tuple, last: float,
                   latest: float | None, ahead: float) -> tuple[float, float | None]:
        """A message that stands for several records: one merge entry, at its latest
        record's time (or its place in the partition, as any message behind it or far
        ahead); each record checked for the topic and counted. Returns the partition's
        running maximum and the tally's latest time."""
        tally, context = self._tally, part.context
        items = _Many()
        top = None
        for raw, rec, kind, at in many:
            if kind is DeadLetter:
                if context is None:  # (context: shard 0 reports it)
                    tally.dead.append(rec)
                    items.append(rec)
                continue
            if at is not None:
                top = at if top is None or at > top else top
            if context is not None:
                items.append((context, raw, rec, at))
                continue
            tally.accepted[kind] = tally.accepted.get(kind, 0) + 1
            if at is not None:
                latest = at if latest is None or at > latest else latest
            items.append((source, raw, rec, at))
        key = last if top is None or top < last or top > ahead else top
        part.entries.append((key, part.rank, part.partition, source[2], items))
        self._many += 1
        return key, latest

    def _error(self, msg, err: KafkaError) -> None:
        part = self._parts.get((msg.topic(), msg.partition()))
        if err.code() == KafkaError._PARTITION_EOF:
            if part is not None:
                part.at_end = True
            return
        if err.fatal():
            raise RuntimeError(f"Kafka consumer failed: {err.str()}")
        log.warning("kafka consumer error", extra={
            "topic": msg.topic(), "partition": msg.partition(), "error": err.str()})

    def _merge(self) -> list[Entry]:
        """Every buffered message that sorts before what any partition not at its end
        may still give, in merge order: always a prefix of the total order, however
        fetches interleave."""
        bounds = [p.bound() for p in self._parts.values() if not p.at_end]
        bound = min(bounds) if bounds else None
        ready: list = []
        for part in self._parts.values():
            entries = part.entries
            if not entries:
                continue
            n = len(entries) if bound is None else bisect_right(entries, bound, key=_merge_key)
            if n == 0:
                continue
            ready.extend(entries[:n])
            part.next_offset = entries[n - 1][3] + 1
            del entries[:n]
            if part.paused and len(entries) < self._limit // 2:
                self._consumer.resume([TopicPartition(part.topic, part.partition)])
                part.paused = False
        self._buffered -= len(ready)
        ready.sort()  # keys are unique: items are never compared
        return ready

    def _emit(self) -> list[tuple]:
        """The next batch of merged messages (the rest wait in ``_ready``, which
        :meth:`snapshot` takes into account)."""
        start = self._ready_at
        if start >= len(self._ready):
            return []
        batch = self._ready[start:start + self._batch]
        self._ready_at = start + len(batch)
        top = batch[-1][0]
        if top != NEG_INF and (self._progress is None or top > self._progress):
            self._progress = top
        out, self._tally = self._tally, Decoded()
        out.shard = self._shard
        out.items = [entry[4] for entry in batch]
        if self._many:  # a message that stood for several records: its items, in order
            flat: list = []
            for item in out.items:
                if type(item) is _Many:
                    flat += item
                    self._many -= 1
                else:
                    flat.append(item)
            out.items = flat
        return [out]


def _check_copartitioning(msgs: list, keyed: Mapping[str, tuple[int, type]]) -> None:
    """Count sampled subscriber-keyed messages that break co-partitioning: keyed by
    something other than their subscriber id, or on another partition than the
    contract's partitioner puts their key on (a producer using another partitioner,
    or topics repartitioned since)."""
    for msg in msgs:
        spec = keyed.get(msg.topic())
        if spec is None or msg.error() is not None:
            continue
        key, value = msg.key(), msg.value()
        try:
            sid = orjson.loads(value).get("subscriber_id") if value else None
        except (orjson.JSONDecodeError, AttributeError):
            continue  # not a record: the flow dead-letters it
        if not isinstance(sid, str) or not sid:
            continue
        if key != sid.encode() or partition_for(key, spec[0]) != msg.partition():
            metrics.COPARTITION_VIOLATIONS.labels(source=TOPIC_FOR_TYPE[spec[1].kind]).inc()


def _undo_jump(part: _Part) -> float:
    """The partition's unconfirmed leap forward was records ahead of its stream: the
    entries still buffered since it go back to the merge time before it (they stay
    sorted). Returns that time, the partition's running maximum again."""
    base = part.jump_from
    part.jump_from = None
    entries = part.entries
    i = len(entries)
    while i and entries[i - 1][0] > base:
        i -= 1
    for j in range(i, len(entries)):
        entries[j] = (base, *entries[j][1:])
    return base


def _log_client_error(err: KafkaError) -> None:
    level = logging.ERROR if err.fatal() else logging.WARNING
    log.log(level, "kafka client error", extra={"error": err.str(), "code": err.name()})


def input_parts(shards: int) -> list[str]:
    """The source's partitions: one per input shard (``kafka``: one for every topic
    partition, with one partition per topic).

    >>> input_parts(1), input_parts(3)
    (['kafka'], ['kafka-0', 'kafka-1', 'kafka-2'])
    """
    return [f"kafka-{i}" for i in range(shards)] if shards > 1 else ["kafka"]


class KafkaMergeSource(FixedPartitionedSource[tuple, dict]):
    """The contract's input topics as one event-time-merged, resumable partition.

    ``topics`` are the topic names in type order (``oss.topology`` first; see
    :data:`forewarn.model.TYPE_RANK`); ``exit_at_end`` ends the input once every partition is
    read to its end (backfills, tests); ``durable`` sets the snapshot gauge;
    ``types``, one record type per topic, makes any other type read from a topic a
    dead letter (code ``wrong_topic``); ``adapters`` maps operators' alarm feed events
    (VES, TMF642; a VES batch is one merge entry at its latest event's time).
    """

    def __init__(self, config: Mapping[str, str], topics: Sequence[str],
                 ranks: Sequence[int] | None = None, *, exit_at_end: bool = False,
                 batch: int = BATCH, durable: bool = False, buffer_limit: int = 50_000,
                 from_end: bool = False, types: Sequence[str] | None = None,
                 adapters: Adapters | None = None, shards: int = 1):
        self.config = dict(config)
        self.shards = shards
        self.adapters = adapters  # operators' alarm feeds (VES, TMF642): the rulebook's
        self.topics = list(topics)
        self.ranks = list(ranks) if ranks is not None else list(range(len(self.topics)))
        if len(set(self.ranks)) != len(self.topics):
            raise ValueError(f"one distinct rank per topic expected, got {self.ranks}")
        self.exit_at_end = exit_at_end
        self.batch = batch
        self.durable = durable
        self.buffer_limit = buffer_limit
        self.starting_offset = OFFSET_END if from_end else OFFSET_BEGINNING
        self.types = list(types) if types is not None else None
        if self.types is not None and len(self.types) != len(self.topics):
            raise ValueError(f"one record type per topic expected, got {self.types}")

    def list_parts(self) -> list[str]:
        return input_parts(self.shards)

    def build_part(self, step_id: str, for_part: str, resume_state: dict | None):
        shard = int(for_part.split("-")[1]) if self.shards > 1 else None
        return _MergePartition(self.config, self.topics, self.ranks, resume_state,
                               self.exit_at_end, self.batch, self.durable, self.buffer_limit,
                               self.starting_offset, self.types, self.adapters, shard)
