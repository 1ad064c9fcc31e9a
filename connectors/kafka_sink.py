"""Kafka output for the flow: an idempotent producer that never loses a delivery quietly.

Bytewax's ``KafkaSink`` has no delivery callback: a message the broker refuses,
or that times out, just disappears. :class:`KafkaOutSink` instead

* produces with ``enable.idempotence=true`` / ``acks=all`` (no duplicates or
  reordering from the producer's own retries);
* with recovery (``flush_every_batch``), waits at the end of every batch for the
  delivery report of every message - Bytewax only completes an epoch (and its
  recovery snapshot) after the sink's ``write_batch`` returned, so a snapshot never
  gets ahead of what the broker has. Without recovery there is no snapshot to get
  ahead of: batches go out without waiting (the producer's ``linger.ms``), reports
  are served as they come, and a failure surfaces at the next batch or at close;
* counts each failed delivery in ``forewarn_kafka_delivery_failures{topic}``,
  logs it with its topic, partition and reason (never its key: a subscriber id),
  produces retriable failures again, and raises
  :class:`DeliveryError` - stopping the flow - when a message still cannot be
  delivered. Restarted on the same ``--recovery`` directory, the flow resumes
  from its last snapshot and produces those outputs again: late, never lost;
* skips outputs it already delivered. Output after a restart is at-least-once by
  nature (everything after the last snapshot is produced again); outputs are
  deterministic, so at start-up each sink reads the last ``tail`` messages of
  every partition of its topic into a set of identities (``action_id`` for
  actions) and drops re-emissions of those. The gateway deduplicates by
  ``action_id`` as well.

Items are ``(key, value)`` as the flow's encode steps make them.

>>> action_identity(b'{"type":"action","action_id":"A-1","subscriber_id":"S"}')
'A-1'
>>> dead_letter_identity(b'{"source":"oss.calls","topic":"oss.calls","partition":0,"offset":7}')
'oss.calls/0@7'
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from forewarn import metrics, tmf681
from forewarn.connectors.topics import PARTITIONER

__all__ = [
    "DeliveryError",
    "KafkaOutSink",
    "action_identity",
    "dead_letter_identity",
    "read_delivered",
    "value_identity",
]

log = logging.getLogger("forewarn.kafka.sink")

Identity = Callable[[bytes], str | None]

#: Producer settings that make delivery safe; user settings cannot weaken them.
#: Settings every Forewarn producer forces: no loss or duplication on retries, and the
#: contract's partitioner (Java's murmur2), so keys land where other producers put them.
SAFE_PRODUCER = {"enable.idempotence": "true", "acks": "all", "partitioner": PARTITIONER}
RETRY_ROUNDS = 3


class DeliveryError(RuntimeError):
    """Outputs could not be delivered; the flow stops rather than lose them."""


def action_identity(value: bytes) -> str | None:
    """An action's identity: its ``action_id`` (deterministic, see the contract), which is
    also the ``id`` of a TMF681 message (``--action-format tmf681``)."""
    try:
        obj = orjson.loads(value)
        return obj["id"] if tmf681.is_message(obj) else obj.get("action_id")
    except (orjson.JSONDecodeError, AttributeError, KeyError):
        return None


def value_identity(value: bytes) -> str:
    """Identity of an output without an id of its own: a digest of its bytes."""
    return hashlib.blake2b(value, digest_size=16).hexdigest()


def dead_letter_identity(value: bytes) -> str:
    """A Kafka input's dead letter is identified by where the input was."""
    try:
        rec = orjson.loads(value)
        if rec.get("topic") is not None and rec.get("offset") is not None:
            return f"{rec['topic']}/{rec['partition']}@{rec['offset']}"
    except (orjson.JSONDecodeError, AttributeError, KeyError):
        pass
    return value_identity(value)


def read_delivered(config: Mapping[str, str], topic: str, identity: Identity, tail: int,
                   timeout: float = 60.0) -> set[str]:
    """Identities of the last ``tail`` messages of every partition of ``topic``."""
    consumer = Consumer({
        **config,
        "group.id": f"forewarn-dedupe-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": "false",
        "enable.partition.eof": "true",
        "logger": logging.getLogger("forewarn.kafka.consumer"),
    })
    seen: set[str] = set()
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is None or meta.error is not None:
            raise KafkaException(meta.error if meta is not None else KafkaError(
                KafkaError.UNKNOWN_TOPIC_OR_PART, f"output topic {topic} not found"))
        ends: dict[int, int] = {}
        assign = []
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                ends[p] = high
                assign.append(TopicPartition(topic, p, max(low, high - tail)))
        if not assign:
            return seen
        consumer.assign(assign)
        deadline = time.monotonic() + timeout
        while ends:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading the tail of {topic} took over {timeout:g} s "
                                   f"(partitions left: {sorted(ends)})")
            for msg in consumer.consume(1000, 0.05):
                err = msg.error()
                if err is not None and err.code() != KafkaError._PARTITION_EOF:
                    if err.fatal() or not err.retriable():
                        log.warning("reading output tail", extra={"error": err.str()})
                    continue
                if err is None:
                    ident = identity(msg.value() or b"")
                    if ident is not None:
                        seen.add(ident)
                    if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                        ends.pop(msg.partition(), None)
                else:
                    ends.pop(msg.partition(), None)
        return seen
    finally:
        consumer.close()


class _Partition(StatelessSinkPartition[tuple[str, bytes]]):
    def __init__(self, producer: Producer, topic: str, identity: Identity,
                 delivered: set[str], flush_every_batch: bool = True,
                 tombstone: Callable[[bytes], bool] | None = None):
        self._flush_every_batch = flush_every_batch
        self._tombstone = tombstone
        self._producer = producer
        self._topic = topic
        self._identity = identity
        self._delivered = delivered
        # (error, key, value, partition) of each failed delivery
        self._failed: list[tuple[KafkaError, bytes | None, bytes | None, int]] = []
        self.skipped = 0

    def _report(self, err: KafkaError | None, msg) -> None:
        if err is not None:
            self._failed.append((err, msg.key(), msg.value(), msg.partition()))

    def _produce(self, key: bytes | None, value: bytes | None) -> None:
        while True:
            try:
                self._producer.produce(self._topic, value=value, key=key,
                                       on_delivery=self._report)
                return
            except BufferError:  # local queue full: wait for deliveries
                self._producer.poll(0.05)

    def write_batch(self, items: list[tuple[str, bytes]]) -> None:
        delivered = self._delivered
        skipped = self.skipped
        for key, value in items:
            if delivered:
                ident = self._identity(value)
                if ident in delivered:
                    self.skipped += 1
                    continue
            if self._tombstone is not None and self._tombstone(value):
                value = None  # (a compacted topic forgets the key)
            self._produce(key.encode() if isinstance(key, str) else key, value)
        if self.skipped != skipped:  # what a restart re-emitted, seen and dropped (counts)
            log.info("re-emitted outputs dropped", extra={
                "topic": self._topic, "dropped": self.skipped - skipped,
                "dropped_total": self.skipped})
        self._producer.poll(0)  # serves the delivery reports that have come
        if self._flush_every_batch or self._failed:
            self._wait()

    def _wait(self) -> None:
        """Flush; retry what failed retriably; raise if anything stays undelivered."""
        for round_ in range(RETRY_ROUNDS + 1):
            while (waiting := self._producer.flush(10)) > 0:
                log.warning("waiting for kafka deliveries", extra={
                    "topic": self._topic, "in_flight": waiting})
            if not self._failed:
                return
            failed, self._failed = self._failed, []
            metrics.DELIVERY_FAILURES.labels(topic=self._topic).inc(len(failed))
            err, partition = failed[0][0], failed[0][3]
            retriable = all(_retriable(f[0]) for f in failed)
            log.error("kafka delivery failed", extra={
                "topic": self._topic, "partition": partition, "failed": len(failed),
                "error": err.str(), "code": err.name(),
                "retry": round_ < RETRY_ROUNDS and retriable})
            if round_ == RETRY_ROUNDS or not retriable:
                raise DeliveryError(
                    f"{len(failed)} message(s) to {self._topic} not delivered: {err.str()} "
                    f"({err.name()}); the flow stops so that they are not lost - fix the "
                    f"cause and restart it on the same --recovery directory")
            for _, key, value, _ in failed:
                self._produce(key, value)

    def close(self) -> None:
        self._wait()  # everything delivered, or DeliveryError


def _retriable(err: KafkaError) -> bool:
    return err.retriable() or err.code() in (KafkaError._MSG_TIMED_OUT,
                                             KafkaError._TIMED_OUT, KafkaError._TRANSPORT)


class KafkaOutSink(DynamicSink[tuple[str, bytes]]):
    """One output topic; ``identity`` names an output for deduplication
    (``None``: no deduplication); ``tail`` messages per partition are read at start;
    ``flush_every_batch`` waits for every delivery report before a batch returns (on
    with recovery, see the module docs)."""

    def __init__(self, config: Mapping[str, str], topic: str,
                 identity: Identity | None = value_identity, tail: int = 20_000,
                 flush_every_batch: bool = True,
                 tombstone: Callable[[bytes], bool] | None = None):
        self.tombstone = tombstone  # an output that is sent as a tombstone (no value)
        self.config = dict(config)
        self.flush_every_batch = flush_every_batch
        self.topic = topic
        self.identity = identity
        self.tail = tail
        self._lock = threading.Lock()  # the worker threads of a process share one read
        self._known: set[str] | None = None

    def _delivered(self) -> set[str]:
        if self.identity is None or self.tail <= 0:
            return set()
        with self._lock:
            if self._known is None:
                began = time.monotonic()
                self._known = read_delivered(self.config, self.topic, self.identity, self.tail)
                log.info("read delivered outputs", extra={
                    "topic": self.topic, "known": len(self._known),
                    "seconds": round(time.monotonic() - began, 3)})
            return self._known

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        producer = Producer({
            "linger.ms": "5",
            # a delivery still failing after 30 s is reported and retried by _wait()
            # (at-least-once; duplicates are dropped by action_id) rather than
            # blocking the flow for librdkafka's default 300 s
            "message.timeout.ms": "30000",
            "logger": logging.getLogger("forewarn.kafka.producer"),
            "error_cb": _producer_error,
            **self.config,
            **SAFE_PRODUCER,
        })
        return _Partition(producer, self.topic, self.identity or value_identity,
                          self._delivered(), self.flush_every_batch, self.tombstone)


def cleared_status(value: bytes) -> bool:
    """A ``care_status`` record with no impact left: sent as a tombstone on the compacted
    ``care.status`` topic.

    >>> cleared_status(b'{"type":"care_status","impacted":false,"incidents":[]}')
    True
    """
    return b'"impacted":false' in value


def _producer_error(err: KafkaError) -> None:
    if err.fatal():
        log.error("kafka producer fatal error", extra={"error": err.str()})
    else:
        log.warning("kafka producer error", extra={"error": err.str(), "code": err.name()})
