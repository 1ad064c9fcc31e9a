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


def shard_of(subscriber_id: str | bytes, shards: int) -> int:
    """The shard of a subscriber: crc32 of the id (the same in every process and run)."""
    raw = subscriber_id.encode() if isinstance(subscriber_id, str) else subscriber_id
    return crc32(raw) % shards


_KPI = b'{"type":"kpi",'


#: The record types the contract keys by ``subscriber_id``: one shard's each.
SUBSCRIBER_TYPES = frozenset({"location", "call", "subscriber", "complaint"})
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


def owner(line: bytes, shards: int) -> int | None:
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
    """
    head = line[:line.find(b",") + 1]
    if head in _COMPACT_TYPES or head == _KPI:
        value = _compact(line, b'"cell_id"' if head == _KPI else b'"subscriber_id"')
        if value is not None:
            return crc32(value) % shards
    elif head.startswith(b'{"type":"'):  # a compact record of another type: every shard's
        return None
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(rec, dict):
        return None
    kind = rec.get("type")
    key = rec.get("subscriber_id") if kind in SUBSCRIBER_TYPES else (
        rec.get("cell_id") if kind == "kpi" else None)
    return shard_of(key, shards) if isinstance(key, str) else None


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
