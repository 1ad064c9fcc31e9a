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
offset)``. The merge itself, decoding included, is
:class:`~forewarn.connectors.partition_merge.PartitionMerge` (no consumer: it is told
each partition's messages, its end and its high watermark, and tested so); this module
is its transport:

* one ``Consumer`` (``enable.partition.eof``), assigned every input partition from
  where the resume state says, its consumed messages handed to the merge a
  partition's run at a time, its end-of-partition events in their place among them;
* a message is released only when every topic partition that is not known to be
  at its end has shown a message that sorts after it, so a topic that has not been
  fetched yet holds the others back instead of being overtaken; with all input
  already on the broker the order - and so the outputs - is the same however
  fetches interleave, after any number of restarts. A partition that gave all it
  had learns it from its EOF event, which can come a second after its data: when the
  merge is held back, the cached high watermarks of its empty partitions are looked
  at (and every :data:`WATERMARK_CHECK_S` for all of them: consumer lag, lost EOF
  events);
* fetching of a partition whose buffer is full pauses until it is half empty;
  sampled subscriber-keyed messages are checked for co-partitioning;
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
import time
import uuid
from collections.abc import Mapping, Sequence

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
from forewarn.codec import Origin, stream_time
from forewarn.connectors.partition_merge import BATCH, NEG_INF, Part, PartitionMerge
from forewarn.connectors.topics import SUBSCRIBER_KEYED, TOPIC_FOR_TYPE, partition_for
from forewarn.dataflows.shards import SHARD_KEYED, ShardSource
from forewarn.model import (
    Alarm,
    Call,
    Cell,
    Complaint,
    Kpi,
    Location,
    Maintenance,
    Subscriber,
)

__all__ = ["NEG_INF", "KafkaMergeSource", "Origin", "TopicMissingError", "input_parts",
           "stream_time"]

log = logging.getLogger("forewarn.kafka.source")

#: Each input record type's decoded class (a position the decoder made counts as the
#: location or call it came from).
RECORD_CLASS = {c.kind: c for c in (Cell, Alarm, Location, Call, Kpi, Subscriber,
                                    Maintenance, Complaint)}
#: One consumed message in this many is checked for co-partitioning (a hash of its key).
COPARTITION_SAMPLE = 64


class TopicMissingError(RuntimeError):
    """An input topic does not exist; the message says how to create it."""


WATERMARK_CHECK_S = 2.0  # how often to read partition high watermarks (wall clock)
#: How long an idle poll waits in ``consume`` for a message (wall clock): one reader;
#: one shard of several (Bytewax polls a worker's source partitions in turn).
POLL_WAIT_S, SHARD_POLL_WAIT_S = 0.05, 0.005
#: Messages per ``consume()`` call (a batch takes several): a larger call costs more per
#: message (0.80-0.84 us at 20 k against 0.46-0.70 us at 1-5 k, 1 M messages read).
FETCH = 5000


class _MergePartition(StatefulSourcePartition[tuple, dict]):
    """The transport: one consumer assigned every input partition, feeding what it
    consumes, its end-of-partition events and high watermarks to a
    :class:`~forewarn.connectors.partition_merge.PartitionMerge`, and pausing or resuming
    partitions as the merge asks."""

    def __init__(self, config: Mapping[str, str], topics: Sequence[str], ranks: Sequence[int],
                 resume: dict | None, exit_at_end: bool, batch: int, durable: bool,
                 buffer_limit: int, starting_offset: int,
                 types: Sequence[str] | None = None, adapters: Adapters | None = None,
                 shard: int | None = None):
        self._shard = shard
        self._batch = batch
        self._durable = durable
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
        self._merge = merge = PartitionMerge(
            batch=batch, buffer_limit=buffer_limit, resume=resume,
            starting_offset=starting_offset, adapters=adapters, shard=shard,
            exit_at_end=exit_at_end)
        self._parts = merge.parts
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
                merge.add(topic, p, rank, expect, context)
        self._consumer.assign([TopicPartition(x.topic, x.partition, x.next_offset)
                               for x in self._parts.values()])
        # subscriber-keyed topics: their partition count, for the co-partitioning check
        self._keyed = {p.topic: (counts[p.topic], p.expects) for p in self._parts.values()
                       if p.expects is not None and p.expects.kind in SUBSCRIBER_KEYED}
        self._checked = time.monotonic()  # last watermark check (lag, lost EOF events)
        log.info("kafka input assigned", extra={
            "partitions": len(self._parts), "shard": shard,
            "resumed": bool(resume), "topics": ",".join(topics),
            "resumed_messages": sum(v for v in resume.values() if v > 0)})

    # -- Bytewax -------------------------------------------------------------------

    def next_batch(self) -> list[tuple]:
        merge = self._merge
        # Nothing to emit: wait for a fetch, briefly. Several shards of one worker are
        # polled in turn, each blocking in its own consume, so a shard waits less.
        wait = 0 if merge.pending else (
            POLL_WAIT_S if self._shard is None else SHARD_POLL_WAIT_S)
        fetch = min(self._batch, FETCH)
        for _ in range(max(1, self._batch // fetch)):  # up to a batch, while there is more
            msgs = self._consumer.consume(fetch, wait)
            if msgs:
                self._feed(msgs)
                if self._keyed:
                    _check_copartitioning(msgs[::COPARTITION_SAMPLE], self._keyed)
            if len(msgs) < fetch:
                break
            wait = 0
        out: list = merge.next_batch()
        if not out and merge.buffered and self._settle_ends():
            out = merge.next_batch()
        self._apply_flow()
        now = time.monotonic()
        if now - self._checked >= WATERMARK_CHECK_S:
            self._check_watermarks()
        handed = merge.hand_on(out, now)
        if handed is None:
            raise StopIteration
        return handed

    def snapshot(self) -> dict:
        """Input positions: each partition resumes at its first message not yet released.

        Bytewax asks at every epoch, with or without recovery; only with it is the
        answer kept, so only then are merged messages still waiting looked at."""
        if not self._durable:
            return {}
        metrics.SNAPSHOT_TIMESTAMP.set(time.time())
        return self._merge.snapshot()

    def close(self) -> None:
        self._consumer.close()

    def _feed(self, msgs: list) -> None:
        """Hand consumed messages to the merge, each partition's run at once, and its
        end-of-partition events in their place among them."""
        merge = self._merge
        run: list[tuple[int, bytes | None]] = []
        topic, partition = "", -1
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if run:
                    merge.take(topic, partition, run)
                    run = []
                self._error(msg, err)
                continue
            if msg.partition() != partition or msg.topic() != topic:
                if run:
                    merge.take(topic, partition, run)
                    run = []
                topic, partition = msg.topic(), msg.partition()
            run.append((msg.offset(), msg.value()))
        if run:
            merge.take(topic, partition, run)
        self._apply_flow()

    def _apply_flow(self) -> None:
        """Pause the partitions whose buffer is full, resume those it has room for
        again."""
        for topic, partition, pause in self._merge.flow():
            tps = [TopicPartition(topic, partition)]
            if pause:
                self._consumer.pause(tps)
            else:
                self._consumer.resume(tps)

    def _settle_ends(self) -> bool:
        """Mark drained partitions at their end from their cached high watermark.

        The merge waits on every partition not known to be at its end; a partition that
        gave all it had (the topology, typically) learns it only from its EOF event,
        which can come a second after its data. When the merge is held back, each empty
        partition is looked at now (a local read, no broker round trip). True if one
        was found at its end."""
        settled = False
        for part in self._merge.waiting():
            try:
                high = self._cached_high(part)
            except KafkaException:
                return settled
            if self._merge.high_water(part.topic, part.partition, high):
                settled = True
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
            self._merge.high_water(part.topic, part.partition, high)

    def _cached_high(self, part: Part) -> int:
        """The high watermark of the partition's last fetch response (no broker round
        trip, which would wait behind in-flight fetches); negative when unknown."""
        _, high = self._consumer.get_watermark_offsets(
            TopicPartition(part.topic, part.partition), cached=True)
        return high

    def _error(self, msg, err: KafkaError) -> None:
        if err.code() == KafkaError._PARTITION_EOF:
            self._merge.ended(msg.topic(), msg.partition())
            return
        if err.fatal():
            raise RuntimeError(f"Kafka consumer failed: {err.str()}")
        log.warning("kafka consumer error", extra={
            "topic": msg.topic(), "partition": msg.partition(), "error": err.str()})


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
