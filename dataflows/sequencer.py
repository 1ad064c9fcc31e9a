"""Stage 1 — the sequencer: event-time order, topology routing and ticks.

Bytewax timers run on the wall clock, so Forewarn keeps its own event-time
progress. All decoded records pass one sequencer (a single key), which

* puts them in event-time order (a reorder buffer of ``lateness_s``) and
  derives the *watermark*: every input before it has been released;
* dead-letters records more than 7 days from the watermark, and records on
  cells or sites the topology does not know;
* holds records *ahead* of the stream: more than its reach past its progress,
  the time in which the stream's own rate puts ``AHEAD_RECORDS`` (100) records,
  never less than ``AHEAD_TICKS`` (1) tick, never more than ``ahead_s`` (15 min)
  (so a record a minute ahead of a busy network is held; a sparse stream's quiet
  spells are not). One such record must not move event time for everybody else
  (see :meth:`Sequencer.take`): it is applied when the stream reaches its time,
  right before the first record at or past it, or when the stream as a whole has
  jumped, and is dead-lettered (``future``) if it never does;
* routes each record to the stage key that needs it — a site (by the cell's
  topology) or a subscriber — into :class:`Routes`, one list of messages per
  destination key per batch. Positions go to their cell's site only; when a
  subscriber turns up on another site, the site they left gets a
  :class:`~forewarn.dataflows.messages.Left` (so a site knows whether its view of them is
  still their latest anywhere, and subscriber state needs no position history);
* sends :class:`Tick` to sites with pending deadlines whenever the watermark
  moves ``tick_s`` on, so group waits, hold-downs and 4 h escalations fire
  on event time at any replay speed.

A batch as the flow hands it over (items ``(source, raw, record, at)``; a cell has no
time of its own):

>>> from forewarn.model import Cell, Location
>>> seq = Sequencer(warmup=1)
>>> out = Routes()
>>> seq.take_batch([[("f", b"", Cell(cell_id="C1", site_id="S1"), None),
...                  ("f", b"", Cell(cell_id="C2", site_id="S2"), None)]], out)
>>> out.sites["S1"]
[Cell(cell_id='C1', site_id='S1', region=None, lat=None, lon=None, technology=None)]
>>> out = Routes()
>>> seq.take_batch([[("f", b"", Location("U1", "C1", 100.0), 100.0),
...                  ("f", b"", Location("U1", "C2", 160.0), 160.0)]], out)
>>> out.sites["S1"]  # U1 heard here, then elsewhere: this site is told they left
[('U1', 'C1', 100.0, None), Left(subscriber_id='U1', at=160.0)]
>>> out.sites["S2"]
[('U1', 'C2', 160.0, None)]
"""

from __future__ import annotations

import sys
from bisect import insort
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from forewarn.codec import Source, dead_letter, fmt_time
from forewarn.dataflows.anchors import Anchors
from forewarn.dataflows.heard import Heard
from forewarn.dataflows.messages import Drop, Left, Profiled, Stamped, Tick, profiled
from forewarn.dataflows.nearby import NearbyWatch
from forewarn.dataflows.shards import is_context
from forewarn.dataflows.state import restore_fields

if TYPE_CHECKING:
    from forewarn.rules.rulebook import Rulebook
from forewarn.model import (
    Alarm,
    Call,
    Cell,
    Channel,
    Complaint,
    DeadCode,
    DeadLetter,
    Kpi,
    Location,
    Maintenance,
    Record,
    Subscriber,
    kind_of,
)

INF = float("inf")
MAX_SKEW_S = 7 * 24 * 3600  # contract: further than this from the stream's progress is invalid
#: A record more than this past the stream's progress is always *ahead*: held, not applied
#: (at most; a busier stream holds records much closer, :data:`AHEAD_RECORDS`).
AHEAD_S = 900.0
#: A record is also ahead when the stream's own rate would put more than this many
#: records in the gap before it (a clean stream's records are at most ~20 of its records'
#: worth past its progress); never closer than :data:`AHEAD_TICKS` ticks (a busy clean
#: stream's records are at most 5 s past it).
AHEAD_RECORDS = 100.0
AHEAD_TICKS = 1.0
#: This many ahead records in a row, with no record in between inside the stream's
#: progress, mean the stream itself jumped (a feed back after a gap), not a few bad clocks.
AHEAD_QUORUM = 32
#: At the end of input, a held record is applied when the gap before it is one the
#: stream's own rate explains: fewer than this many records would have been expected
#: in it (a sparse stream has long quiet spells; a busy one does not).
AHEAD_EXPECTED = 1000.0
AHEAD_HELD_MAX = 10_000  # held records at most; past it the farthest goes to dead letters
ALARM_HORIZON_S = 5 * 3600  # a site with alarm activity needs ticks this long (4 h escalations)
DROP_HORIZON_S = 600  # ... and this long after a dropped call (hold-down of drop notes)

#: A record as the decode step hands it over: ``(source, raw, record, at)``, ``at``
#: its :func:`~forewarn.model.stream_at`. Held records keep this shape.
Item = tuple[Source, bytes, Any, float | None]  # the record: Record, or a position tuple
Timed = tuple[Source, bytes, Any, float]  # an Item with a stream time (all held ones)
_at_of = itemgetter(3)  # an Item's stream time


#: Channel tuples without addresses, by their names and consents (:func:`bare`).
_BARE: dict[tuple[tuple[str, bool], ...], tuple[Channel, ...]] = {}


def bare(channels: tuple[Channel, ...]) -> tuple[Channel, ...]:
    """A profile's channels as care reads them, their names and consents, without their
    addresses (the gateway owns those): one shared tuple per combination, where each
    profile's own costs ~350 bytes while care holds it.

    >>> sms = bare((Channel("sms", "+4477", True), Channel("email", "a@b", False)))
    >>> sms, sms is bare((Channel("sms", "+4478", True), Channel("email", "c@d", False)))
    ((Channel(name='sms', address='', consent=True), Channel(name='email', address='', \
consent=False)), True)
    """
    key = tuple((c.name, c.consent) for c in channels)
    shared = _BARE.get(key)
    if shared is None:
        if len(_BARE) >= 10_000:  # a bound: combinations are normally a few dozen
            _BARE.clear()
        shared = _BARE[key] = tuple(Channel(sys.intern(name), "", consent)
                                    for name, consent in key)
    return shared


def slim(sub: Subscriber, sid: str) -> Profiled:
    """``sub`` (an upsert) as care holds it until it applies it, named by ``sid`` (an
    equal string): :class:`~forewarn.dataflows.messages.Profiled`, its id, time and name,
    and its shape, shared by every profile of that shape (channels :func:`bare`). Care
    reads nothing else of it (:func:`~forewarn.dataflows.care.profile_of`)."""
    # Built through their slots, field by field as their __init__ would: a frozen
    # dataclass's __init__ costs ~2.4 us for a Subscriber's 12 fields (object.__setattr__
    # each), a third of that this way, for every profile of a bulk load.
    shape = _new(Subscriber)
    _sub_id(shape, "")
    _sub_op(shape, sub.op)
    _sub_updated_at(shape, 0.0)
    _sub_language(shape, sub.language)
    _sub_timezone(shape, sub.timezone)
    _sub_segment(shape, sub.segment)
    _sub_channels(shape, bare(sub.channels) if sub.channels else sub.channels)
    _sub_name(shape, None)
    _sub_plan(shape, sub.plan)
    _sub_tenure_months(shape, sub.tenure_months)
    _sub_tags(shape, sub.tags)
    _sub_preferred_channels(shape, sub.preferred_channels)
    shared = _SHAPES.get(shape)  # (a shape is its own key: no key tuple kept beside it)
    if shared is None:
        if len(_SHAPES) >= 100_000:  # a bound; shapes are normally a few thousand
            _SHAPES.clear()
        shared = _SHAPES[shape] = shape
    return profiled(sid, sub.updated_at, sub.name, shared)


_new = object.__new__
# the slots' setters, by name (a field added to either class and not set by slim leaves
# its slot empty: hashing the shape, or reading it, then raises at once)
_SUB = {f.name: getattr(Subscriber, f.name).__set__ for f in fields(Subscriber)}
_sub_id, _sub_op, _sub_updated_at, _sub_language, _sub_timezone = (
    _SUB["subscriber_id"], _SUB["op"], _SUB["updated_at"], _SUB["language"], _SUB["timezone"])
_sub_segment, _sub_channels, _sub_name, _sub_plan, _sub_tenure_months = (
    _SUB["segment"], _SUB["channels"], _SUB["name"], _SUB["plan"], _SUB["tenure_months"])
_sub_tags, _sub_preferred_channels = _SUB["tags"], _SUB["preferred_channels"]


_SHAPES: dict[Subscriber, Subscriber] = {}  # profiles' shapes (slim), shared


def own_key(subscriber_id: str) -> str:
    """A subscriber's care key when each is a key of their own: their id."""
    return subscriber_id


@dataclass(slots=True)
class Routes:
    """What the sequencer released in one batch, grouped by destination key.

    ``sites`` and ``cares`` hold one list of messages per site / care key, in
    release order; ``care_key`` maps a subscriber to their care key (their id by
    default); ``dead`` holds every dead letter in
    order, ``refused`` those the sequencer itself refused (the decode step's were
    counted when they failed). The lists are what the next stages take, so a
    batch costs a few Bytewax items, not one per message.
    """

    care_key: Callable[[str], str] = own_key
    sites: dict[str, list] = field(default_factory=dict)
    cares: dict[str, list] = field(default_factory=dict)
    dead: list = field(default_factory=list)
    refused: list = field(default_factory=list)

    def site(self, site_id: str, msg: Any) -> None:
        box = self.sites.get(site_id)
        if box is None:
            box = self.sites[site_id] = []
        box.append(msg)

    def care(self, subscriber_id: str, msg: Any) -> None:
        key = self.care_key(subscriber_id)
        box = self.cares.get(key)
        if box is None:
            box = self.cares[key] = []
        box.append(msg)

    def refuse(self, dead: DeadLetter) -> None:
        if is_context(dead.source):  # another shard's record: that shard reports it
            return
        self.dead.append(dead)
        self.refused.append(dead)


@dataclass(slots=True)
class Sequencer:
    """Pure sequencer logic; the Bytewax operator in :mod:`forewarn.dataflows.flow` wraps it."""

    lateness_s: float = 0.0
    tick_s: float = 15.0
    warmup: int = 8
    watermark: float | None = None
    cell_site: dict[str, str] = field(default_factory=dict)
    cell_names: dict[str, str] = field(default_factory=dict)  # canonical cell id strings
    site_cells: dict[str, set[str]] = field(default_factory=dict)
    open_alarms: dict[str, set[str]] = field(default_factory=dict)  # site -> alarm ids
    active_until: dict[str, float] = field(default_factory=dict)  # site -> event time
    # each subscriber's latest position: its site, and its time (and, when learnt,
    # their anchor places: one row each, forewarn.dataflows.heard)
    heard: Heard = field(default_factory=Heard)
    # warm-up records, then the reorder buffer: Items, sorted by stream time (stable)
    _pending: deque = field(default_factory=deque)
    _next_tick: float = 0.0
    late: int = 0
    late_by_kind: dict[str, int] = field(default_factory=dict)  # late records per type
    ahead_s: float = AHEAD_S
    # records held ahead of the stream: Items sorted by stream time
    ahead: list = field(default_factory=list)
    _ahead_run: list = field(default_factory=list)  # stream times of ahead records in a row
    _timed: int = 0  # timed records taken within the stream's progress (its rate)
    _anchor: float | None = None  # the first watermark
    # around outages (walk_in / reappeared rules): off (None) or (nearest sites to watch,
    # how long after the last clear, outage severities, outage causes), from the rulebook
    near_cfg: tuple | None = None
    nearby: NearbyWatch = field(default_factory=NearbyWatch)
    outage_open: dict[str, set[str]] = field(default_factory=dict)  # site -> outage alarms
    # maintenance windows: id -> (start, end, their sites, their cells); an outage inside
    # one is planned work, with no customer action: nobody is followed around it
    windows: dict[str, tuple[float, float, frozenset[str], frozenset[str]]] = field(
        default_factory=dict)
    # which input shard this is, of how many (forewarn.dataflows.shards): with several, records
    # every shard reads (topology, alarms, maintenance, KPIs) are forwarded by shard 0
    # alone, and shard 0 alone sends ticks and watch starts and ends
    shard: int = 0
    shards: int = 1
    # each subscriber's anchor sites, learnt from the time between their positions
    # (forewarn.dataflows.anchors, in ``heard``'s rows); None: not learnt
    anchors: Anchors | None = field(default_factory=Anchors)

    def __post_init__(self) -> None:
        self._share()

    def __setstate__(self, state: tuple) -> None:
        restore_fields(self, state)  # an older format's missing fields get their defaults
        saved = state[1] if isinstance(state, tuple) else state
        if "heard" not in saved:  # format 1: latest sites and times in two dicts
            self.heard = _upgrade_heard(saved, self.anchors)
        self._share()

    def _share(self) -> None:
        """One table of rows: the anchors learn in it, the watch reads what is learnt."""
        if self.anchors is not None:
            self.anchors.heard = self.heard
        self.heard.learning(self.anchors is not None)
        self.nearby.anchors = self.anchors

    def learn_anchors(self, on: bool) -> None:
        """Learn each subscriber's anchor places (:mod:`forewarn.dataflows.anchors`), or not."""
        if not on:
            self.anchors = None
        elif self.anchors is None:
            self.anchors = Anchors(self.heard)
        self._share()

    def configure(self, book: Rulebook) -> None:
        """What of the rulebook the sequencer needs: whether and how to watch around
        outages (:mod:`forewarn.dataflows.nearby`)."""
        corr = book.correlation
        self.near_cfg = (corr.nearby_sites, corr.reappear_s, corr.outage_severities,
                         corr.outage_causes, corr.silence_s) if book.watches_nearby else None

    # -- input -----------------------------------------------------------------

    def take_batch(self, batches: Iterable[list], out: Routes) -> None:
        """Take lists of :data:`Item` and dead letters (decoding's), in arrival order.

        The same releases as :meth:`take` for each in turn, but a run of records in
        order (the common case: not behind the watermark or the buffer, within 7
        days) is held as it comes and released once, at its end: taking record
        ``i`` would release everything up to ``max(watermark, at_i - lateness)``,
        and for records in order the last of those bounds covers the others. A run
        takes only records no more than :meth:`_floor` past the watermark it began
        with (never ahead, whatever the stream's rate: :meth:`_reach` is at least
        that), and none that reaches a held record: those are taken alone, by
        :meth:`take`, which applies the held record right before it (not where a run,
        or a batch, happens to end).
        """
        pending = self._pending
        top = None  # stream time of the last record of the current run in order
        reach = self.lateness_s + self._floor()  # past watermark + this: maybe ahead
        run_from = 0  # len(pending) when the run began
        ahead = self.ahead  # held records: one that the stream reaches ends the run
        for batch in batches:
            for item in batch:
                if type(item) is DeadLetter:
                    out.dead.append(item)
                    continue
                at = item[3]
                watermark = self.watermark
                if (at is not None and watermark is not None and at >= watermark
                        and at - watermark <= reach and (not pending or pending[-1][3] <= at)
                        and (not ahead or ahead[0][3] > at)):
                    if top is None:
                        run_from = len(pending)
                    pending.append(item)
                    top = at
                    continue
                if top is not None:  # the run ends: release what it made due
                    self._end_run(len(pending) - run_from, top, out)
                    top = None
                self.take(item[2], item[1], item[0], at, out)
        if top is not None:
            self._end_run(len(pending) - run_from, top, out)

    def take(self, rec: Record, raw: bytes, source: Source, at: float | None,
             out: Routes) -> None:
        """Take one decoded record, its :func:`~forewarn.model.stream_at` ``at``; route
        what it releases into ``out`` (per key in order: sites, subscribers, dead letters).

        A record more than :meth:`_reach` past the stream's progress (:meth:`_front`) is
        held; one that is not applies first the held records at or before its time (the
        stream has reached them), in time order, then itself."""
        if at is None:
            self._route(rec, raw, source, out)
            return
        watermark = self.watermark
        pending = self._pending
        if watermark is None:
            pending.append((source, raw, rec, at))
            if len(pending) >= self.warmup:
                self._end_warmup(out)
            return
        if abs(at - watermark) > MAX_SKEW_S:
            out.refuse(dead_letter(raw, source, _skew_reason(rec, at, watermark),
                                   DeadCode.TIME_OUT_OF_RANGE))
            return
        item = (source, raw, rec, at)
        if at - self._front() > self._reach():
            self._hold_ahead(item, out)
            return
        self._ahead_run.clear()
        ahead = self.ahead
        if ahead and ahead[0][3] <= at:  # the stream reaches held records: they go first
            self._release_ahead(at, out)
        self._timed += 1
        self._admit(item, out)
        if ahead:
            self._catch_up(out)

    def _admit(self, item: Timed, out: Routes) -> None:
        """Put a timed record in the reorder buffer and release what it makes due."""
        pending = self._pending
        at = item[3]
        if not pending or pending[-1][3] <= at:
            pending.append(item)  # in order (the common case): no search
        else:
            insort(pending, item, key=_at_of)  # late within the window: its place
        self._release_to(self._horizon(at), out)  # without a window: this one, late or not

    def _end_run(self, n: int, top: float, out: Routes) -> None:
        """A run of ``n`` records in order, the last at ``top``, ends: release what it
        made due (records inside the stream's progress end a run of ahead ones)."""
        self._timed += n
        self._ahead_run.clear()
        self._release_to(self._horizon(top), out)
        if self.ahead:
            self._catch_up(out)

    # -- records ahead of the stream -----------------------------------------------------
    #
    # The watermark follows the records, so one record stamped days ahead (a bad clock, a
    # hostile producer) would fire every pending timer: hold-downs, 4 h escalations,
    # silence verdicts. A record more than ``_reach()`` past the stream's progress is held
    # instead: more than AHEAD_RECORDS of the stream's records' worth of time (at its rate
    # so far), never less than AHEAD_TICKS ticks, never more than ``ahead_s``. It is
    # applied when the stream reaches it (a record taken at or past its time, just before
    # that record), so it never moves event time for the others; or when AHEAD_QUORUM
    # records in a row are all ahead (the stream as a whole moved on: a feed back after a
    # gap); or, at the end of input, when the stream's own rate explains the gap before it
    # (a sparse stream). Anything else is a dead letter, code ``future``. All of it depends
    # only on the order of the records, so every replay speed and batch size gives the same.

    def _hold_ahead(self, item: Timed, out: Routes) -> None:
        insort(self.ahead, item, key=_at_of)
        if len(self.ahead) > AHEAD_HELD_MAX:
            far = self.ahead.pop()
            out.refuse(self._future(far, "more records were held ahead than the limit"))
        run = self._ahead_run
        run.append(item[3])
        if len(run) >= AHEAD_QUORUM:  # the stream jumped: follow it to its middle
            middle = sorted(run)[len(run) // 2]
            run.clear()
            self._release_ahead(middle, out)
            self._catch_up(out)

    def _floor(self) -> float:
        """The least :meth:`_reach` ever is: ``AHEAD_TICKS`` ticks (at most ``ahead_s``)."""
        floor = AHEAD_TICKS * self.tick_s
        return floor if floor < self.ahead_s else self.ahead_s

    def _rate(self) -> float:
        """The stream's rate so far: timed records taken per second of stream time since
        the first watermark, over an hour at least."""
        assert self.watermark is not None  # called only after the warm-up
        anchor = self._anchor if self._anchor is not None else self.watermark
        return self._timed / max(self.watermark - anchor, 3600.0)

    def _reach(self) -> float:
        """How far past the stream's progress a record may be and still be applied at
        once: the time in which the stream's rate puts ``AHEAD_RECORDS`` records, at least
        :meth:`_floor`, at most ``ahead_s`` (an infinite ``ahead_s``: no record is ahead)."""
        floor, rate = self._floor(), self._rate()
        ahead_s = self.ahead_s
        if rate <= 0.0 or rate * ahead_s <= AHEAD_RECORDS or ahead_s == INF:  # (sparse)
            return ahead_s
        reach = AHEAD_RECORDS / rate
        return reach if reach > floor else floor

    def _front(self) -> float:
        """The stream's progress: the latest record taken (the reorder buffer's last),
        at least the watermark plus the reorder window."""
        assert self.watermark is not None  # called only after the warm-up
        front = self.watermark + self.lateness_s
        pending = self._pending
        return pending[-1][3] if pending and pending[-1][3] > front else front

    def _catch_up(self, out: Routes) -> None:
        """Apply held records the stream has reached (not those it has merely come within
        reach of: applying one early would move event time past the stream, for
        everybody's timers)."""
        ahead = self.ahead
        while ahead and ahead[0][3] <= self._front():
            self._timed += 1
            self._admit(ahead.pop(0), out)

    def _release_ahead(self, bound: float, out: Routes) -> None:
        """Apply held records up to ``bound``, in time order."""
        ahead = self.ahead
        while ahead and ahead[0][3] <= bound:
            self._timed += 1
            self._admit(ahead.pop(0), out)

    def _settle_ahead(self, out: Routes) -> None:
        """End of input: apply each held record (in time order) whose gap the stream's rate
        explains, dead-letter the rest."""
        watermark = self.watermark
        if watermark is None:  # nothing taken past the warm-up: nothing held either
            return
        rate = self._rate()  # records per second of stream time
        while self.ahead:
            item = self.ahead.pop(0)
            gap = item[3] - watermark
            if gap <= self.ahead_s or rate * gap <= AHEAD_EXPECTED:
                self._admit(item, out)
                self._release_to(float("inf"), out)
            else:
                out.refuse(self._future(item, "the stream never reached it"))

    def _future(self, item: Timed, why: str) -> DeadLetter:
        source, raw, rec, at = item
        assert self.watermark is not None  # records are held only after the warm-up
        reason = (f"{kind_of(rec).kind}: event time {fmt_time(at)} is "
                  f"{_span(at - self.watermark)} ahead of the stream's progress "
                  f"({fmt_time(self.watermark)}); held, and {why}")
        return dead_letter(raw, source, reason, DeadCode.FUTURE)

    def finish(self, out: Routes) -> None:
        """End of input: release everything held, then a last tick to every active site."""
        if self.watermark is None and self._pending:
            self._end_warmup(out)
        self._release_to(float("inf"), out)
        if self.ahead:
            self._settle_ahead(out)
        if self.watermark is not None and self.shard == 0:
            tick = Tick(self.watermark)
            for site in sorted(self.active_until):
                out.site(site, tick)

    # -- internals -----------------------------------------------------------------

    def _horizon(self, at: float) -> float:
        """What taking a record at ``at`` makes due: everything up to here."""
        horizon = at - self.lateness_s
        watermark = self.watermark
        return horizon if watermark is None or horizon > watermark else watermark

    def _end_warmup(self, out: Routes) -> None:
        """Anchor the watermark at the median of the first records, robust to a bad one."""
        held = sorted(self._pending, key=_at_of)
        self.watermark = self._anchor = held[len(held) // 2][3]
        self._next_tick = self.watermark + self.tick_s
        self._pending.clear()  # the same deque: take_batch holds it
        reach = self.watermark + self.lateness_s + self.ahead_s
        for item in held:
            at = item[3]
            if abs(at - self.watermark) > MAX_SKEW_S:
                out.refuse(dead_letter(item[1], item[0], _skew_reason(item[2], at,
                                                                        self.watermark),
                                       DeadCode.TIME_OUT_OF_RANGE))
            elif at > reach:
                insort(self.ahead, item, key=_at_of)
            else:
                self._timed += 1
                self._pending.append(item)
        self._release_to(float("inf"), out)

    def _release_to(self, horizon: float, out: Routes) -> None:
        """Release every held record at or before ``horizon``, in order.

        Positions (most records) are routed here, inline; the rest by :meth:`_route`."""
        pending = self._pending
        if not pending or pending[0][3] > horizon:
            return
        cell_site, cell_names = self.cell_site, self.cell_names
        sites, heard = out.sites, self.heard
        row_of, h_sid, h_site, h_at = heard.index.find, heard.sids, heard.site, heard.at
        numbers, names = heard.numbers, heard.names
        anchors = self.anchors
        learn = anchors.learn_row if anchors is not None else None
        watermark = self.watermark
        while pending and pending[0][3] <= horizon:
            source, raw, rec, at = pending.popleft()
            late = at < watermark
            if late and not is_context(source):  # behind records released: applied late
                self.late += 1
                name = kind_of(rec).kind
                self.late_by_kind[name] = self.late_by_kind.get(name, 0) + 1
            elif at > watermark:
                self.watermark = watermark = at
                if at >= self._next_tick:
                    self._ticks(at, out)
            kind = type(rec)
            if kind is tuple:  # a position the decoder made: most records
                site = cell_site.get(rec[1])
                if site is None:
                    out.refuse(self._unknown_cell(rec, raw, source, rec[1]))
                    continue
                sid, cell, ref = rec[0], rec[1], rec[3]
            elif kind is Location or kind is Call:
                site = cell_site.get(rec.cell_id)
                if site is None:
                    out.refuse(self._unknown_cell(rec, raw, source, rec.cell_id))
                    continue
                sid, cell = rec.subscriber_id, rec.cell_id
                # a call is known when it ends: its end_time (`at`) keeps "as of T" exact
                ref = None if kind is Location else f"call:{rec.call_id}"
            else:
                self._route(rec, raw, source, out)
                continue
            # One string per subscriber and per cell in all state: the sites keep each
            # member's latest position, and a decoded record's own copies of the two
            # strings would cost ~100 B per subscriber there.
            row = row_of(sid)
            if row is not None:
                sid = h_sid[row]
            pos = (sid, cell_names[cell], at, ref)
            box = sites.get(site)
            if box is None:
                box = sites[site] = []
            box.append(pos)
            n = numbers.get(site)
            if n is None:
                n = heard.number(site)
            if row is None:  # heard for the first time
                heard.add(sid, n, at)
            elif late and at < h_at[row]:  # not their latest
                if h_site[row] != n:  # this site's view of them is out of date already
                    sites[site].append(Left(sid, h_at[row]))
                row = -1
            else:
                before = h_site[row]  # (0: a row an older snapshot had no site for)
                if learn is not None and before:  # time on their last site
                    learn(row, before, h_at[row], at, before != n)
                h_at[row] = at
                if before != n:  # on another site than last time: tell the one left
                    h_site[row] = n  # (a move: ~8 % of positions, off the hot path)
                    if before:
                        out.site(names[before], Left(sid, at))
            if row != -1:
                nearby = self.nearby
                if nearby.near_of or nearby.followed:  # some site is down: who is around
                    nearby.heard(sid, site, at, sites)  # (their latest position only)
            if kind is Call and rec.dropped:
                sites[site].append(Drop(sid, rec.cell_id, rec.call_id, at))
                self._activate(site, at + DROP_HORIZON_S)

    def _ticks(self, now: float, out: Routes) -> None:
        self._next_tick = now + self.tick_s
        if self.nearby.watches:
            silence = self.near_cfg[4] if self.near_cfg is not None else 0.0
            self.nearby.expire(now, self.heard, out.sites, silence)
        tick = Tick(now)
        for site, until in list(self.active_until.items()):
            if until < now and not self.open_alarms.get(site):
                del self.active_until[site]  # (this last tick still goes: its deadlines)
            if self.shard == 0:
                out.site(site, tick)

    def _activate(self, site: str, until: float) -> None:
        if self.active_until.get(site, 0.0) < until:
            self.active_until[site] = until

    def _unknown_cell(self, rec: Record | tuple, raw: bytes, source: Source, cell_id: str
                      ) -> DeadLetter:
        reason = (f"{kind_of(rec).kind}.cell_id: unknown cell {cell_id!r} "
                  f"(no `cell` topology record)")
        return dead_letter(raw, source, reason, DeadCode.UNKNOWN_CELL)

    def _route(self, rec: Record, raw: bytes, source: Source, out: Routes) -> None:
        """Records other than positions (those are routed in :meth:`_release_to`). A
        record read for context (another shard forwards it) only updates this one's
        state."""
        routes, out = out, (_NOWHERE if is_context(source) else out)
        if isinstance(rec, Subscriber | Complaint):
            out.care(rec.subscriber_id, rec if out is _NOWHERE else self._for_care(rec))
        elif isinstance(rec, Alarm):  # (this shard's own subscribers around it: routes)
            self._route_alarm(rec, raw, source, out, routes)
        elif isinstance(rec, Kpi):
            site = self.cell_site.get(rec.cell_id)
            if site is None:
                out.refuse(self._unknown_cell(rec, raw, source, rec.cell_id))
            else:
                out.site(site, rec)
        elif isinstance(rec, Cell):
            old = self.cell_site.get(rec.cell_id)
            if old is not None and old != rec.site_id:
                self.site_cells[old].discard(rec.cell_id)
            self.cell_site[rec.cell_id] = rec.site_id
            self.cell_names.setdefault(rec.cell_id, sys.intern(rec.cell_id))  # as decoded
            self.site_cells.setdefault(rec.site_id, set()).add(rec.cell_id)
            self.nearby.place(rec.site_id, rec.lat, rec.lon)
            out.site(rec.site_id, self._stamp(rec))
        elif isinstance(rec, Maintenance):
            if rec.op == "cancel":
                self.windows.pop(rec.window_id, None)
            else:
                self.windows[rec.window_id] = (rec.start_time, rec.end_time,
                                               frozenset(rec.site_ids), frozenset(rec.cell_ids))
            sites = set(rec.site_ids)
            sites.update(self.cell_site[c] for c in rec.cell_ids if c in self.cell_site)
            stamped = self._stamp(rec)
            for s in sorted(sites):
                out.site(s, stamped)
        else:  # pragma: no cover
            raise TypeError(f"sequencer cannot route {type(rec).__name__}")

    def _for_care(self, rec: Subscriber | Complaint) -> Subscriber | Profiled | Complaint:
        """``rec`` as care takes it: naming its subscriber by the id string of their row,
        so that care keys them by the same string object as the rows and the sites do (a
        copy per stage would cost ~60 bytes a subscriber in care). A profile gives a
        subscriber not yet heard a row (no site yet): their positions then carry that
        string on. A profile goes as :func:`slim` makes it: care holds profiles until the
        frontier passes them (a bulk load: all of them at once)."""
        heard, sid = self.heard, rec.subscriber_id
        row = heard.row(sid)
        if row is None:
            if type(rec) is not Subscriber or rec.op == "delete":
                return rec
            row = heard.add(sid, 0, 0.0)
        own = heard.sids[row]
        if type(rec) is Subscriber and rec.op != "delete":
            return slim(rec, own)
        return rec if own is sid else replace(rec, subscriber_id=own)

    def _stamp(self, rec: Cell | Maintenance) -> Any:
        """A record with no time, as a site of several shards takes it (:class:`Stamped`)."""
        if self.shards == 1:
            return rec
        return Stamped(self.watermark if self.watermark is not None else -INF, rec)

    def _route_alarm(self, rec: Alarm, raw: bytes, source: Source, out: Routes,
                     around: Routes) -> None:
        if rec.cell_id is not None:
            site = self.cell_site.get(rec.cell_id)
            if site is None:
                out.refuse(self._unknown_cell(rec, raw, source, rec.cell_id))
                return
            if rec.site_id is not None and rec.site_id != site:
                reason = (f"alarm.site_id: {rec.site_id!r} disagrees with topology "
                          f"(cell {rec.cell_id!r} is on site {site!r})")
                out.refuse(dead_letter(raw, source, reason, DeadCode.BAD_VALUE))
                return
        else:
            site = rec.site_id
            if site not in self.site_cells:
                reason = f"alarm.site_id: unknown site {site!r} (no `cell` topology record on it)"
                out.refuse(dead_letter(raw, source, reason, DeadCode.UNKNOWN_SITE))
                return
        alarms = self.open_alarms.setdefault(site, set())
        if rec.cleared and rec.alarm_id not in alarms and getattr(rec, "adapter", None):
            # an operator's feed (VES, TMF642): a clear must follow its raise; a contract
            # record's clear of an unknown alarm is a no-op, as it always was
            reason = (f"alarm {rec.alarm_id!r}: a clear of an alarm that is not open on "
                      f"site {site!r} (clear without raise)")
            out.refuse(dead_letter(raw, source, reason, DeadCode.CLEAR_WITHOUT_RAISE))
            return
        if rec.cleared:
            alarms.discard(rec.alarm_id)
        else:
            alarms.add(rec.alarm_id)
        self._activate(site, rec.event_time + ALARM_HORIZON_S)
        out.site(site, rec)
        if rec.cleared:  # (clears whether or not a rule watches now: a reload may change it)
            self._unwatch(site, rec)
        elif self.near_cfg is not None:
            self._watch(site, rec, around)

    def _unwatch(self, site: str, rec: Alarm) -> None:
        """An alarm cleared: when it was the site's last open outage alarm, its watch ends
        ``reappear_s`` later."""
        outage = self.outage_open.get(site)
        if outage and rec.alarm_id in outage:
            outage.discard(rec.alarm_id)
            if not outage:
                del self.outage_open[site]
                linger_s = self.near_cfg[1] if self.near_cfg is not None else 0.0
                self.nearby.stop(site, rec.event_time, linger_s)

    def _watch(self, site: str, rec: Alarm, out: Routes) -> None:
        """Start (or keep) the watch around ``site`` when an outage alarm opens on it."""
        k, _, severities, causes, _ = self.near_cfg  # type: ignore[misc]
        outage = self.outage_open.get(site)
        if rec.severity in severities and rec.probable_cause in causes:
            if self._planned(site, rec):
                return  # maintenance: no customer action, nobody to follow
            if outage is None:
                outage = self.outage_open[site] = set()
            self.nearby.start(site, rec.event_time, k, self.heard, out.sites)
            outage.add(rec.alarm_id)

    def _planned(self, site: str, rec: Alarm) -> bool:
        """Is this outage alarm inside a maintenance window covering its cell or site?"""
        at, cells = rec.event_time, self.site_cells.get(site, set())
        for start, end, w_sites, w_cells in self.windows.values():
            if start <= at <= end and (site in w_sites or (
                    rec.cell_id in w_cells if rec.cell_id is not None
                    else bool(cells) and cells <= w_cells)):
                return True
        return False


class _Nowhere(Routes):
    """Routes that keep nothing: what a context record would send (:meth:`Sequencer._route`)."""

    def site(self, site_id: str, msg: Any) -> None:
        pass

    def care(self, subscriber_id: str, msg: Any) -> None:
        pass

    def refuse(self, dead: DeadLetter) -> None:
        pass


_NOWHERE = _Nowhere()


def _span(seconds: float) -> str:
    """A duration for a reason text: ``'3 days 2 h'``, ``'42 min'``."""
    minutes = int(seconds // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} days {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def _skew_reason(rec: Record | tuple, at: float, watermark: float) -> str:
    return (f"{kind_of(rec).kind}: event time {fmt_time(at)} is more than 7 days from the stream's "
            f"progress ({fmt_time(watermark)})")


def _upgrade_heard(saved: dict, anchors: Anchors | None) -> Heard:
    """Format 1 of the sequencer's state kept each subscriber's latest site and time in
    two dicts (``last_site``, ``last_at``; anchors keyed by subscriber, already turned
    into rows by :class:`Anchors`' own upgrade): the rows they make."""
    if anchors is None:
        return Heard.of(saved.get("last_site", {}), saved.get("last_at", {}))
    heard = anchors.heard
    last_at = saved.get("last_at", {})
    for sid, site in saved.get("last_site", {}).items():
        heard.note(sid, heard.number(site), last_at[sid])
    return heard
