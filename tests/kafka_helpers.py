"""Fixtures and helpers for tests against a REAL local Kafka broker (no mocks).

Use from a test module::

    from tests.kafka_helpers import kafka_broker, kafka_config  # noqa: F401  (fixtures)
    from tests.kafka_helpers import consume_all, produce_lines, unique_topic

    def test_something(kafka_config):
        topic = unique_topic("mytest")
        create_topic(kafka_config, topic)
        produce_lines(kafka_config, topic, ['{"type": "cell"}'])
        assert [r.value for r in consume_all(kafka_config, topic)] == [b'{"type": "cell"}']

One broker serves the whole pytest session, however many modules import the
fixtures (it is shared at module level and stopped after the last user). The
first run assembles Kafka with Maven (see :mod:`forewarn.connectors.broker`), needing Java
17+, ``mvn`` and Maven Central (``make test`` installs Java and Maven when run as
root); without them these tests fail and say how to install them.
``FOREWARN_SKIP_KAFKA_TESTS=1`` skips them instead, on purpose (``.ci/run`` fails
on any skipped test).

Topics on the shared broker outlive a test: prefer :func:`unique_topic` names,
or read only what your test wrote. The ``contract_topics`` fixture creates the
contract's topics (1 partition each) once per session.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from forewarn.connectors import broker
from forewarn.connectors.topics import create_topics

__all__ = [
    "Record",
    "consume_all",
    "contract_topics",
    "create_topic",
    "free_port",
    "kafka_broker",
    "kafka_config",
    "produce_lines",
    "unique_topic",
]

Config = Mapping[str, str] | str  # librdkafka settings, or just "host:port"


def _settings(config: Config) -> dict[str, str]:
    return {"bootstrap.servers": config} if isinstance(config, str) else dict(config)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique_topic(prefix: str = "test") -> str:
    """A topic name no other test uses: ``<prefix>.<random hex>``."""
    return f"{prefix}.{uuid.uuid4().hex[:12]}"


def create_topic(
    config: Config,
    name: str,
    partitions: int = 1,
    topic_config: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> None:
    """Create one topic (replication 1) and wait until every partition has a leader."""
    admin = AdminClient(_settings(config))
    new = NewTopic(
        name, num_partitions=partitions, replication_factor=1, config=dict(topic_config or {})
    )
    admin.create_topics([new], operation_timeout=timeout)[name].result()
    deadline = time.monotonic() + timeout
    while True:
        topic = admin.list_topics(name, timeout=timeout).topics.get(name)
        if (
            topic is not None
            and topic.error is None
            and len(topic.partitions) == partitions
            and all(p.leader >= 0 for p in topic.partitions.values())
        ):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"topic {name} has no leader {timeout:g} s after creation")
        time.sleep(0.1)


def produce_lines(
    config: Config,
    topic: str,
    lines: Iterable[str | bytes],
    key: str | bytes | Callable[[bytes], bytes | str | None] | None = None,
    timeout: float = 30.0,
) -> int:
    """Produce each line as one message; return how many were delivered.

    ``key`` is a fixed key, or a function of the line's bytes (for example
    ``lambda v: forewarn.connectors.topics.key_for(orjson.loads(v))``). Waits for every
    delivery report and raises ``KafkaException`` on the first failed delivery
    or ``TimeoutError`` if reports are missing after ``timeout`` seconds.
    """
    producer = Producer({**_settings(config), "acks": "all", "linger.ms": 5})
    errors: list[KafkaError] = []
    delivered = 0

    def on_delivery(err: KafkaError | None, _msg: object) -> None:
        nonlocal delivered
        if err is not None:
            errors.append(err)
        else:
            delivered += 1

    count = 0
    for line in lines:
        value = line.encode("utf-8") if isinstance(line, str) else line
        msg_key = key(value) if callable(key) else key
        while True:
            try:
                producer.produce(topic, value=value, key=msg_key, on_delivery=on_delivery)
                break
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.1)
        producer.poll(0)
        count += 1
    remaining = producer.flush(timeout)
    if errors:
        raise KafkaException(errors[0])
    if remaining:
        raise TimeoutError(
            f"{remaining} of {count} messages to {topic} undelivered after {timeout:g} s"
        )
    return delivered


@dataclass(frozen=True)
class Record:
    """One consumed message."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def consume_all(
    config: Config,
    topic: str,
    *,
    quiet: float = 1.0,
    deadline: float = 30.0,
    poll_interval: float = 0.1,
) -> list[Record]:
    """Read ``topic`` from the beginning until it has been quiet for ``quiet`` seconds.

    Quiet time only counts once every partition is read up to the end offset it
    had when the call began (so a slow first fetch cannot end the read early),
    and it is the time spent inside the consumer's own empty ``poll()`` calls -
    not wall time - so a busy test machine does not cut it short either. No
    consumer group is joined (partitions are assigned directly). Returns the
    records in arrival order (ordered within each partition). Raises
    ``TimeoutError`` if not quiet within ``deadline`` seconds.
    """
    settings = _settings(config)
    consumer = Consumer(
        {
            **settings,
            "group.id": settings.get("group.id", f"forewarn-test-{uuid.uuid4().hex}"),
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise ValueError(f"cannot read topic {topic}: {getattr(metadata, 'error', None)}")
        partitions = sorted(metadata.partitions)
        give_up = time.monotonic() + deadline
        end = {p: _end_offset(consumer, topic, p, give_up) for p in partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        position = dict.fromkeys(partitions, 0)
        records: list[Record] = []
        quiet_so_far = 0.0
        while time.monotonic() < give_up:
            began = time.monotonic()
            msg = consumer.poll(poll_interval)
            if msg is None:
                if all(position[p] >= end[p] for p in partitions):
                    quiet_so_far += time.monotonic() - began
                    if quiet_so_far >= quiet:
                        return records
                continue
            if msg.error() is not None:
                if _transient(msg.error()):
                    continue
                raise KafkaException(msg.error())
            quiet_so_far = 0.0
            position[msg.partition()] = msg.offset() + 1
            records.append(
                Record(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value())
            )
        raise TimeoutError(
            f"{topic} not quiet for {quiet:g} s within {deadline:g} s "
            f"({len(records)} records read; end offsets at start {end}, reached {position})"
        )
    finally:
        consumer.close()


# Errors that clear up by themselves while a (re)started broker elects leaders.
_TRANSIENT = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
    }
)


def _transient(err: KafkaError) -> bool:
    return err.retriable() or err.code() in _TRANSIENT


def _end_offset(consumer: Consumer, topic: str, partition: int, give_up: float) -> int:
    """High watermark of one partition, retrying retriable errors (leader moving)."""
    while True:
        try:
            return int(
                consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)[1]
            )
        except KafkaException as exc:
            if not _transient(exc.args[0]) or time.monotonic() >= give_up:
                raise
            time.sleep(0.1)


# ------------------------------------------------------------------------ fixtures

# One broker per pytest process, shared by every module importing the fixture
# (each import registers its own fixture definition, hence the reference count).
_shared: broker.BrokerInfo | None = None
_users = 0


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[broker.BrokerInfo]:
    """A real single-node Kafka on a free port, in a temporary dir, for the session."""
    global _shared, _users
    if os.environ.get("FOREWARN_SKIP_KAFKA_TESTS") == "1":
        pytest.skip("FOREWARN_SKIP_KAFKA_TESTS=1")
    if _shared is None:
        try:
            _shared = broker.start(
                free_port(), tmp_path_factory.mktemp("kafka-broker"), die_with_parent=True
            )
        except broker.BrokerError as exc:  # says what is missing and how to install it
            pytest.fail(f"no Kafka broker for the Kafka tests: {exc}", pytrace=False)
    _users += 1
    try:
        yield _shared
    finally:
        _users -= 1
        if _users == 0:
            broker.stop(_shared.dir)
            _shared = None


@pytest.fixture
def kafka_config(kafka_broker: broker.BrokerInfo) -> dict[str, str]:
    """librdkafka settings for the session broker (a fresh dict for each test)."""
    return {"bootstrap.servers": kafka_broker.bootstrap}


@pytest.fixture(scope="session")
def contract_topics(kafka_broker: broker.BrokerInfo) -> dict[str, str]:
    """The session broker with the contract's topics (1 partition each); its settings."""
    config = {"bootstrap.servers": kafka_broker.bootstrap}
    create_topics(config)
    return config
