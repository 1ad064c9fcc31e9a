"""The event-time merge of topic partitions: what the Kafka source does with the messages
it consumes, without a consumer (:mod:`forewarn.connectors.kafka_source` is its transport).

:class:`PartitionMerge` is told facts and answers with merged batches:

* :meth:`~PartitionMerge.take`: a run of one partition's messages, ``(offset, value)``
  in offset order. Each is decoded here, once (:func:`forewarn.codec.read_input`: its
  record gives the merge time), and buffered under its merge key
  ``(merge time, topic rank, partition, offset)``;
* :meth:`~PartitionMerge.ended` (the partition's end-of-partition event) and
  :meth:`~PartitionMerge.high_water` (its high watermark: a partition with nothing
  buffered and nothing left below it is at its end too);
* :meth:`~PartitionMerge.next_batch`: every buffered message that sorts before what any
  partition not at its end may still give, in merge order, as
  :class:`~forewarn.dataflows.messages.Decoded` batches; :meth:`~PartitionMerge.hand_on`
  adds what the wall clock says (caught up; with shards, idle);
* :meth:`~PartitionMerge.snapshot`: each partition's first message not yet handed on,
  ``{"topic/partition": offset}``, the resume state the source's recovery keeps.

A partition's merge times are the running maximum of its records' stream times, so a
record behind its own partition keeps its place there, as do dead letters, timeless
reference data (``cell``, ``maintenance``: at once, at the start of a stream) and times
more than :data:`MAX_AHEAD_S` ahead of the merge's progress. A record more than
:data:`~forewarn.connectors.files.LEAP_S` past its partition's running maximum that a
later record of its partition contradicts (it falls back that far, before
:data:`~forewarn.connectors.files.LEAP_CONFIRM` records in line with the leap came) keeps
its place too; until then the partition holds the merge at the time before the leap.
With all input given, the order is the same however the runs interleave, and the same as
the file merge's (:func:`forewarn.connectors.files.merge_by_time`) of one file per topic.

>>> merge = PartitionMerge(batch=10)
>>> for rank, topic in enumerate(["oss.topology", "oss.locations"]):
...     _ = merge.add(topic, 0, rank)
>>> def loc(minute):
...     return (b'{"type":"location","subscriber_id":"U1","cell_id":"C1",'
...             b'"event_time":"2026-11-23T10:%02d:00Z"}' % minute)
>>> merge.take("oss.locations", 0, [(0, loc(5)), (1, loc(1)), (2, loc(9))])
>>> merge.next_batch()  # the topology may still give something that goes first
[]
>>> merge.take("oss.topology", 0, [(0, b'{"type":"cell","cell_id":"C1","site_id":"S1"}')])
>>> [item[0] for batch in merge.next_batch() for item in batch.items]  # and more cells?
[('oss.topology', 0, 0)]
>>> merge.ended("oss.topology", 0)
>>> [item[0][2] for batch in merge.next_batch() for item in batch.items]  # 10:01 kept its place
[0, 1, 2]
>>> merge.snapshot()
{'oss.topology/0': 1, 'oss.locations/0': 3}
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter

from forewarn.adapters import Adapters
from forewarn.codec import Expanded, read_input
from forewarn.connectors.files import LEAP_CONFIRM, LEAP_S
from forewarn.dataflows.messages import Decoded
from forewarn.dataflows.shards import ShardSource
from forewarn.model import Complaint, DeadLetter

__all__ = ["BATCH", "IDLE_S", "MAX_AHEAD_S", "Entry", "MergeKey", "Part", "PartitionMerge"]

log = logging.getLogger("forewarn.kafka.source")

NEG_INF = float("-inf")
MAX_AHEAD_S = 7 * 24 * 3600  # contract: further than this from the stream's progress is bad
#: With input shards, live: a shard whose every partition has been at its end this long
#: (wall clock) says so, and the event-time frontier stops waiting for it until it has
#: news (Flink's idle sources): a partition that gets nothing must not hold the others.
IDLE_S = 2.0
#: Messages per batch, at most (a backlog; live, a batch is what has arrived). Downstream
#: work per site and per care key is per batch: larger batches spread it thinner (on a
#: 24 h backlog, 20 k against 5 k: 19 % less CPU in four paired rounds; 1 k: 25 % more).
BATCH = 20_000
_merge_key = itemgetter(0, 1, 2, 3)  # of an Entry: its MergeKey

#: A message's place in the merge: (merge time, topic rank, partition, offset).
MergeKey = tuple[float, int, int, int]
#: A buffered message: its MergeKey's four fields, then its item. Keys are unique, so
#: entries sort as tuples without their items ever being compared.
Entry = tuple[float, int, int, int, object]


class _Many(list):
    """The items a message that stood for several records decoded to (a VES batch): one
    entry in the merge, its items handed on in order (:meth:`PartitionMerge._emit`)."""


@dataclass(slots=True)
class Part:
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
    paused: bool = False  # its fetching is paused: its buffer is full
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


class PartitionMerge:
    """The event-time merge of the partitions :meth:`add` names (module docstring).

    ``batch``: messages per :class:`~forewarn.dataflows.messages.Decoded` batch, at
    most; ``buffer_limit``: messages buffered per partition before it asks to be paused
    (:meth:`flow`); ``resume``: a :meth:`snapshot`, where each partition resumes
    (``starting_offset`` for a partition it does not name); ``adapters``: operators'
    alarm feeds (a VES batch is one entry at its latest event's time); ``shard``: the
    input shard this merge reads (its batches say so; context partitions' records are
    handed on as context); ``exit_at_end``: :meth:`hand_on` ends the input once every
    partition is at its end and everything is handed on.
    """

    def __init__(self, *, batch: int = BATCH, buffer_limit: int = 50_000,
                 resume: Mapping[str, int] | None = None, starting_offset: int = 0,
                 adapters: Adapters | None = None, shard: int | None = None,
                 exit_at_end: bool = False):
        self.parts: dict[tuple[str, int], Part] = {}
        self._by_rank: dict[tuple[int, int], Part] = {}
        self._resume = dict(resume or {})
        self._start = starting_offset
        self._batch = batch
        self._limit = buffer_limit
        self._adapters = adapters
        self._shard = shard
        self._exit_at_end = exit_at_end
        self._flow: list[tuple[str, int, bool]] = []  # pause (True) / resume requests
        self._many = 0  # _Many entries taken and not yet emitted
        self.buffered = 0  # messages taken, not yet merged
        self._tally = Decoded()  # what was decoded since the last batch went out
        self._ready: list = []  # merged, in order; released up to _ready_at
        self._ready_at = 0
        self._progress: float | None = None  # highest merge time released
        self._first: float | None = None  # first merge time taken (until there is progress)
        self._caught_up = False  # said so, and nothing came since
        self._idle_since = 0.0  # (wall clock) when every partition was last found at its end
        self._idle_told = False  # the shard said it is idle, and has had no news since

    # -- partitions ------------------------------------------------------------------

    def add(self, topic: str, partition: int, rank: int, expects: type | None = None,
            context: ShardSource | None = None) -> Part:
        """Merge a partition of ``topic`` (``rank``: the topic's place among equal times;
        one rank per topic), from where the resume state says. ``expects``: the record
        class the topic carries (any other is a dead letter ``wrong_topic``);
        ``context``: read for context only (another shard reports it)."""
        part = Part(topic, partition, rank, self._resume.get(f"{topic}/{partition}",
                                                              self._start),
                    expects=expects, context=context)
        self.parts[(topic, partition)] = part
        self._by_rank[(rank, partition)] = part
        return part

    @property
    def progress(self) -> float | None:
        """The highest merge time handed on (None: none yet)."""
        return self._progress

    @property
    def pending(self) -> bool:
        """Messages are buffered, or merged and not yet handed on."""
        return bool(self.buffered) or self._ready_at < len(self._ready)

    def flow(self) -> list[tuple[str, int, bool]]:
        """``(topic, partition, pause)`` for each partition whose fetching should pause
        (its buffer reached ``buffer_limit``) or resume (under half of it), since the
        last call."""
        out, self._flow = self._flow, []
        return out

    def waiting(self) -> list[Part]:
        """The partitions that hold the merge without a message buffered: not known to
        be at their end, and empty (a high watermark may show them drained)."""
        return [p for p in self.parts.values() if not p.at_end and not p.entries]

    # -- facts -----------------------------------------------------------------------

    def ended(self, topic: str, partition: int) -> None:
        """The partition is at its end (its end-of-partition event)."""
        part = self.parts.get((topic, partition))
        if part is not None:
            part.at_end = True

    def high_water(self, topic: str, partition: int, high: int) -> bool:
        """The partition's high watermark (negative: unknown). True if it shows the
        partition at its end: nothing buffered, nothing left below it."""
        part = self.parts[(topic, partition)]
        if part.drained(high):
            part.at_end = True
            return True
        return False

    def take(self, topic: str, partition: int,
             messages: Sequence[tuple[int, bytes | None]]) -> None:
        """One partition's next messages, ``(offset, value)`` in offset order: decode
        each (once: its record gives the merge time) into the partition's buffer, and
        tally it for the decode step (:class:`~forewarn.dataflows.messages.Decoded`)."""
        part = self.parts.get((topic, partition))
        if part is None or not messages:
            return
        part.at_end = False
        entries, rank, last, expect = part.entries, part.rank, part.last_key, part.expects
        context = part.context
        tally = self._tally
        accepted = tally.accepted
        latest = tally.latest
        ref = self._progress if self._progress is not None else self._first
        ahead = math.inf if ref is None else ref + MAX_AHEAD_S  # absurdly far beyond
        adapters = self._adapters
        for offset, value in messages:
            value = value or b""
            source = (topic, partition, offset)
            rec, kind, at = read_input(value, source, adapters, expect)
            if kind is Expanded:  # an operator's batch (VES eventList): one entry
                last, latest = self._take_many(part, rec, source, last, latest, ahead)
                continue
            key: float
            if kind is DeadLetter:
                key = last  # unreadable: keeps its place in the partition
                if context is not None:  # shard 0 reports it; here an empty entry holds
                    entries.append((key, rank, partition, offset, _Many()))  # its offset
                    self._many += 1
                    continue
                tally.dead.append(rec)
                entries.append((key, rank, partition, offset, rec))  # bare, as the decode step's
                continue
            if context is None:  # (context: shard 0 counts it)
                accepted[kind] = accepted.get(kind, 0) + 1
            if at is None:
                key = NEG_INF
            else:
                key = at
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
        part.last_key = last
        tally.latest = latest
        self.buffered += len(messages)
        if len(entries) >= self._limit and not part.paused:
            part.paused = True
            self._flow.append((topic, partition, True))

    def _take_many(self, part: Part, many: Expanded, source: tuple, last: float,
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

    # -- merged output ---------------------------------------------------------------

    def next_batch(self) -> list[Decoded]:
        """The next merged batch (``[]``: nothing can be handed on yet). Everything that
        became safe is merged in one sort when the last merge is all handed on."""
        if self._ready_at >= len(self._ready) and self.buffered:
            self._ready, self._ready_at = self._merge(), 0
        return self._emit()

    def hand_on(self, out: list[Decoded], now: float) -> list[Decoded] | None:
        """What a poll hands on, given its merged batch ``out`` and the wall clock ``now``
        (seconds): ``out``; None when the input is over (``exit_at_end``, every partition
        at its end, nothing left); with shards, an idle marker (a ``Decoded`` with
        ``idle``) once every partition has been at its end :data:`IDLE_S` with nothing
        to hand on, until there is news."""
        if not out and not self.buffered and all(p.at_end for p in self.parts.values()):
            if not self._caught_up:
                log.info("kafka input caught up", extra={"progress": self._progress})
                self._caught_up = True
                self._idle_since = now
            if self._exit_at_end:
                return None
            if self._shard is not None and not self._idle_told \
                    and now - self._idle_since >= IDLE_S:
                self._idle_told = True  # (live, with shards: the frontier leaves it out)
                return [Decoded(shard=self._shard, idle=True)]
        elif out:
            self._caught_up = self._idle_told = False
        return out

    def snapshot(self) -> dict[str, int]:
        """Input positions, ``{"topic/partition": offset}``: each partition resumes at
        its first message not yet handed on (merged messages still waiting included)."""
        positions = {(p.rank, p.partition): p.next_offset for p in self.parts.values()}
        for key in self._ready[self._ready_at:]:  # merged, waiting: read again after a restart
            tp = (key[1], key[2])
            if key[3] < positions[tp]:
                positions[tp] = key[3]
        return {self._by_rank[tp].tp_id: offset for tp, offset in positions.items()}

    def _merge(self) -> list[Entry]:
        """Every buffered message that sorts before what any partition not at its end
        may still give, in merge order: always a prefix of the total order, however
        runs interleave."""
        bounds = [p.bound() for p in self.parts.values() if not p.at_end]
        bound = min(bounds) if bounds else None
        ready: list = []
        for part in self.parts.values():
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
                part.paused = False
                self._flow.append((part.topic, part.partition, False))
        self.buffered -= len(ready)
        ready.sort()  # keys are unique: items are never compared
        return ready

    def _emit(self) -> list[Decoded]:
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


def _undo_jump(part: Part) -> float:
    """The partition's unconfirmed leap forward was records ahead of its stream: the
    entries still buffered since it go back to the merge time before it (they stay
    sorted). Returns that time, the partition's running maximum again."""
    base = part.jump_from
    assert base is not None
    part.jump_from = None
    entries = part.entries
    i = len(entries)
    while i and entries[i - 1][0] > base:
        i -= 1
    for j in range(i, len(entries)):
        entries[j] = (base, *entries[j][1:])
    return base
