"""Input shards: which part of the input each sequencer reads.

With ``P`` shards the flow runs ``P`` sequencers side by side, each on its own source
partition, so decoding and event-time ordering scale with worker processes. A
subscriber's records (``location``, ``call``, ``subscriber``, ``complaint``: the
contract keys them by ``subscriber_id``) belong to one shard, :func:`shard_of`, so one
sequencer sees all of one subscriber's positions and can tell when they move. Every
KPI record goes to the shard of its cell (only its site needs it). Every other record
(topology, alarms, maintenance windows) is read by every shard: each needs the topology
to route positions and the open outages to follow who is around them; shard 0 alone
forwards those records to sites and reports their dead letters, the others read them as
*context*.

>>> shard_of("SUB0000001", 4)
1
>>> owner(b'{"type":"location","subscriber_id":"SUB0000001","cell_id":"C1"}', 4)
1
>>> owner(b'{"type":"cell","cell_id":"C1","site_id":"S1"}', 4) is None
True
"""

from __future__ import annotations

from zlib import crc32

import orjson


def murmur2(key: bytes) -> int:
    """Kafka's murmur2 hash of a key (``org.apache.kafka.common.utils.Utils.murmur2``),
    as a signed 32-bit int.

    >>> [murmur2(k) for k in (b"21", b"foobar", b"abc")]
    [-973932308, -790332482, 479470107]
    """
    m, r = 0x5BD1E995, 24
    length = len(key)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    n4 = length & ~3
    for i in range(0, n4, 4):
        k = int.from_bytes(key[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    rest = length & 3
    if rest == 3:
        h ^= key[n4 + 2] << 16
    if rest >= 2:
        h ^= key[n4 + 1] << 8
    if rest >= 1:
        h ^= key[n4]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Java's default partitioner (librdkafka ``murmur2_random``) gives a
    keyed message: ``toPositive(murmur2(key)) % partitions``.

    >>> partition_for(b"SUB000002", 1), partition_for(b"SUB000002", 3)
    (0, 2)
    """
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def _crc32(key: bytes, shards: int) -> int:
    return crc32(key) % shards


#: How a record's key picks its shard: ``crc32`` (fast; file mode's default) or
#: ``kafka`` (the contract's producer partitioner: a file run whose shards are the
#: partitions a Kafka run with the same count reads).
PARTITIONERS = {"crc32": _crc32, "kafka": partition_for}


def shard_of(subscriber_id: str | bytes, shards: int, partitioner: str = "crc32") -> int:
    """The shard of a subscriber: crc32 of the id (the same in every process and run),
    or the Kafka partition of the id as key (``partitioner="kafka"``)."""
    raw = subscriber_id.encode() if isinstance(subscriber_id, str) else subscriber_id
    return PARTITIONERS[partitioner](raw, shards)


_KPI = b'{"type":"kpi",'


#: The record types the contract keys by ``subscriber_id``: one shard's each.
SUBSCRIBER_TYPES = frozenset({"location", "call", "subscriber", "complaint"})
#: The record types a shard reads its own part of (a KPI by its cell); every shard
#: reads every other type.
SHARD_KEYED = SUBSCRIBER_TYPES | {"kpi"}
_COMPACT_TYPES = {b'{"type":"%s",' % t.encode(): None for t in SUBSCRIBER_TYPES}


def _compact(line: bytes, key: bytes) -> bytes | None:
    """The string after ``key`` written as the contract's producers write it (``key:"``),
    when the key is there once and the string has no escape; else None (parse the line).

    >>> _compact(b'{"type":"call","subscriber_id":"U1"}', b'"subscriber_id"')
    b'U1'
    >>> _compact(b'{"subscriber_id":"A","subscriber_id":"B"}', b'"subscriber_id"') is None
    True
    """
    i = line.find(key + b':"')
    if i < 0 or line.find(key, i + len(key)) >= 0:
        return None
    j = i + len(key) + 2
    k = line.find(b'"', j)
    if k < 0 or line.find(b"\\", j, k) >= 0:
        return None
    return line[j:k]


def owner(line: bytes, shards: int, partitioner: str = "crc32") -> int | None:
    """The shard a raw line belongs to, or None: a record every shard reads.

    A subscriber's record (:data:`SUBSCRIBER_TYPES`) goes to the shard of its
    ``subscriber_id``; a KPI record to the shard of its ``cell_id`` (only its cell's
    site needs it); anything else, or anything that is not a JSON object with a string
    id, to every shard (shard 0 reports it). Lines written as the contract's producers
    write them (compact, ``type`` first, the key once) are read from the bytes without
    decoding (decoding is the shard's own work); any other line is parsed.

    >>> owner(b'{"type":"kpi","cell_id":"C1","period_s":900}', 4) == shard_of("C1", 4)
    True
    >>> owner(b'{"subscriber_id" : "U1", "type": "complaint"}', 2) == shard_of("U1", 2)
    True
    >>> owner(rb'{"type":"call","subscriber_id":"U\\u0031"}', 2) == shard_of("U1", 2)
    True
    >>> owner(b'{"type":"cell","cell_id":"C1","subscriber_id":"U1"}', 2) is None  # topology
    True
    >>> owner(b'{"type":"location","subscriber_id":17}', 2) is None
    True
    >>> owner(b'{"type":"call","subscriber_id":"SUB000002"}', 3, "kafka")  # its partition
    2
    """
    part = PARTITIONERS[partitioner]
    head = line[:line.find(b",") + 1]
    if head in _COMPACT_TYPES or head == _KPI:
        value = _compact(line, b'"cell_id"' if head == _KPI else b'"subscriber_id"')
        if value is not None:
            return part(value, shards)
    elif head.startswith(b'{"type":"'):  # a compact record of another type: every shard's
        return None
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(rec, dict):
        return None
    kind = rec.get("type")
    if not isinstance(kind, str):  # a list or object is unhashable: the codec refuses it
        return None
    key = rec.get("subscriber_id") if kind in SUBSCRIBER_TYPES else (
        rec.get("cell_id") if kind == "kpi" else None)
    return part(key.encode(), shards) if isinstance(key, str) else None


class ShardSource(str):
    """An input's name (a file) as one shard's source knows it: the shard that read the
    line, and whether the line is *context* (another shard forwards and reports it).

    >>> s = ShardSource("events.jsonl", 1, True)
    >>> s == "events.jsonl", s.shard, s.context
    (True, 1, True)
    """

    shard: int
    context: bool

    def __new__(cls, name: str, shard: int, context: bool) -> ShardSource:
        self = super().__new__(cls, name)
        self.shard = shard
        self.context = context
        return self

    def __reduce__(self):  # pickled inside the sequencer's reorder buffer
        return (ShardSource, (str(self), self.shard, self.context))


def is_context(source: object) -> bool:
    """Is this record read for context only (forwarded and reported by shard 0)?"""
    return type(source) is ShardSource and source.context
