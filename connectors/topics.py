"""The Kafka topics of the wire contract (docs: /work/shared/CONTRACT.md, "Records").

Which topic each record ``type`` goes to, which field its message key comes from,
and :func:`create_topics` to make them all on a cluster.

>>> TOPIC_FOR_TYPE["cell"], KEY_FIELD_FOR_TYPE["cell"]
('oss.topology', 'cell_id')
>>> key_for({"type": "alarm", "alarm_id": "a1", "site_id": "S7", "cell_id": "C1"})
b'S7'
>>> key_for({"type": "alarm", "alarm_id": "a2", "cell_id": "C1"})  # no site_id: cell_id
b'C1'
>>> key_for({"type": "dead_letter", "source": "oss.calls", "reason": "bad json", "raw": "{"})
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from forewarn.connectors.kafka_config import check_reachable
from forewarn.dataflows.shards import murmur2, partition_for

__all__ = [
    "ALL_TOPICS",
    "INPUT_TOPICS",
    "KEY_FIELD_FOR_TYPE",
    "KEY_FIELDS_FOR_TYPE",
    "OUTPUT_TOPICS",
    "TOPIC_FOR_TYPE",
    "TopicSpec",
    "create_topics",
    "key_for",
    "murmur2",
    "partition_for",
]


@dataclass(frozen=True)
class TopicSpec:
    """One contract topic: its name, whether it is compacted, and its direction."""

    name: str
    record_type: str
    compacted: bool = False
    output: bool = False

    @property
    def config(self) -> dict[str, str]:
        """Topic-level configs set at creation."""
        return {"cleanup.policy": "compact" if self.compacted else "delete"}


INPUT_TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("oss.topology", "cell", compacted=True),
    TopicSpec("oss.alarms", "alarm"),
    TopicSpec("oss.locations", "location"),
    TopicSpec("oss.calls", "call"),
    TopicSpec("oss.kpis", "kpi"),
    TopicSpec("bss.subscribers", "subscriber", compacted=True),
    TopicSpec("bss.maintenance", "maintenance"),
    TopicSpec("care.complaints", "complaint"),
)
OUTPUT_TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("care.actions", "action", output=True),
    TopicSpec("noc.incidents", "incident", output=True),
    TopicSpec("forewarn.deadletter", "dead_letter", output=True),
    TopicSpec("care.context", "care_context", output=True),  # for agents and the IVR
    TopicSpec("care.status", "care_status", compacted=True, output=True),  # current impact
)
ALL_TOPICS: tuple[TopicSpec, ...] = INPUT_TOPICS + OUTPUT_TOPICS

#: record ``type`` -> Kafka topic.
TOPIC_FOR_TYPE: dict[str, str] = {spec.record_type: spec.name for spec in ALL_TOPICS}

#: record ``type`` -> the fields tried, in order, for the message key.
#: An ``alarm`` is keyed by ``site_id`` (contract); an alarm that names only a
#: ``cell_id`` is keyed by that ``cell_id`` instead - the publisher cannot know the
#: site without the topology. Such alarms keep their order per cell (raise before
#: clear), not per site. Dead letters have no key.
KEY_FIELDS_FOR_TYPE: dict[str, tuple[str, ...]] = {
    "cell": ("cell_id",),
    "alarm": ("site_id", "cell_id"),
    "location": ("subscriber_id",),
    "call": ("subscriber_id",),
    "kpi": ("cell_id",),
    "subscriber": ("subscriber_id",),
    "maintenance": ("window_id",),
    "complaint": ("subscriber_id",),
    "action": ("subscriber_id",),
    "incident": ("incident_id",),
    "dead_letter": (),
    "care_context": ("subscriber_id",),
    "care_status": ("subscriber_id",),
}

#: record ``type`` -> the contract's key field (``None``: unkeyed). See
#: :data:`KEY_FIELDS_FOR_TYPE` for the alarm fallback.
KEY_FIELD_FOR_TYPE: dict[str, str | None] = {
    record_type: (fields[0] if fields else None)
    for record_type, fields in KEY_FIELDS_FOR_TYPE.items()
}


def key_for(record: Mapping[str, object]) -> bytes | None:
    """The Kafka message key (UTF-8) of a record, or ``None`` when it has none.

    The first present, non-empty field of :data:`KEY_FIELDS_FOR_TYPE` wins; an
    unknown ``type`` or no usable field gives ``None``.
    """
    for field in KEY_FIELDS_FOR_TYPE.get(str(record.get("type")), ()):
        value = record.get(field)
        if value is not None and value != "":
            return str(value).encode("utf-8")
    return None


#: The producer partitioner of the contract: Java's default (murmur2 of the key), which
#: librdkafka calls ``murmur2_random`` (its own default, ``consistent_random``, differs).
PARTITIONER = "murmur2_random"
#: Input record types keyed by subscriber: one subscriber's records must share a
#: partition index across these topics (co-partitioning).
SUBSCRIBER_KEYED = frozenset({"location", "call", "subscriber", "complaint"})


def partition_counts(config: Mapping[str, str], names: list[str],
                     timeout: float = 10.0) -> dict[str, int]:
    """Partition count of each existing topic in ``names`` (missing ones are left out)."""
    metadata = AdminClient(dict(config)).list_topics(timeout=timeout)
    return {name: len(metadata.topics[name].partitions) for name in names
            if name in metadata.topics and metadata.topics[name].error is None}


def copartition_problem(counts: Mapping[str, int]) -> str | None:
    """What is wrong when input topics do not all have one partition count, else None.

    >>> copartition_problem({"oss.locations": 3, "oss.calls": 3}) is None
    True
    >>> problem = copartition_problem({"oss.locations": 3, "oss.calls": 1, "oss.alarms": 3})
    >>> problem.split("; ")[1]
    'recreate oss.calls with 3 partitions'
    """
    if len(set(counts.values())) <= 1:
        return None
    values = sorted(counts.values())
    usual = max(set(values), key=values.count)
    odd = sorted(name for name, n in counts.items() if n != usual)
    by_count = sorted(counts.items(), key=lambda item: (item[1], item[0]))
    shown = ", ".join(f"{name} {n}" for name, n in by_count)
    return (f"input topics must all have the same number of partitions (one subscriber's "
            f"records share a partition index), got {shown}; recreate {', '.join(odd)} with "
            f"{usual} partitions")


def create_topics(
    config: Mapping[str, str],
    partitions: int = 1,
    *,
    replication_factor: int = -1,
    timeout: float = 30.0,
    prefix: str = "",
    topic_config: Mapping[str, str] | None = None,
) -> list[str]:
    """Create every contract topic that does not exist yet; return the ones created.

    ``prefix`` goes in front of every name (``forewarn run --topic-prefix``): several
    flows, tests or benchmarks can share one cluster. ``topic_config`` adds topic-level
    configs to every topic (for example ``{"max.message.bytes": "200000"}``).

    Idempotent: topics that already exist are left as they are (their partition
    count and configs are not changed). ``config`` holds librdkafka client settings
    (at least ``bootstrap.servers``, see :mod:`forewarn.connectors.kafka_config`).
    ``replication_factor=-1`` takes the cluster's ``default.replication.factor``.
    Returns once the cluster's metadata shows every topic with a leader for each
    partition, so producing right afterwards does not race topic creation.
    Raises :class:`~forewarn.connectors.kafka_config.KafkaUnreachableError` within 10 s
    when no broker answers, ``KafkaException`` when the cluster refuses.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    check_reachable(config, timeout=min(timeout, 10.0))
    admin = AdminClient(dict(config))
    new = [
        NewTopic(
            prefix + spec.name,
            num_partitions=partitions,
            replication_factor=replication_factor,
            config={**spec.config, **dict(topic_config or {})},
        )
        for spec in ALL_TOPICS
    ]
    futures = admin.create_topics(new, request_timeout=timeout, operation_timeout=timeout)
    created: list[str] = []
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise KafkaException(exc.args[0]) from exc
        created.append(name)
    _wait_for_leaders(admin, [prefix + spec.name for spec in ALL_TOPICS],
                      time.monotonic() + timeout)
    return created


def _wait_for_leaders(admin: AdminClient, names: list[str], deadline: float) -> None:
    """Poll metadata until every topic in ``names`` has a leader on every partition."""
    pending = set(names)
    while True:
        metadata = admin.list_topics(timeout=max(0.5, min(5.0, deadline - time.monotonic())))
        for name in list(pending):
            topic = metadata.topics.get(name)
            if (
                topic is not None
                and topic.error is None
                and topic.partitions
                and all(p.leader >= 0 for p in topic.partitions.values())
            ):
                pending.discard(name)
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"topics without a leader after creation: {sorted(pending)}")
        time.sleep(0.2)
