"""Stage 1 — the sequencer: event-time order, topology routing and ticks.

Bytewax timers run on the wall clock, so Forewarn keeps its own event-time
progress. All decoded records pass one sequencer (a single key), which

* puts them in event-time order (a reorder buffer of ``lateness_s``) and
  derives the *watermark*: every input before it has been released;
* dead-letters records more than 7 days from the watermark, and records on
  cells or sites the topology does not know;
* routes each record to the stage keys that need it — a site (by the cell's
  topology) and/or a subscriber — as ``(stage, key, message)``;
* sends :class:`Tick` to sites with pending deadlines whenever the watermark
  moves ``tick_s`` on, so group waits, hold-downs and 4 h escalations fire
  on event time at any replay speed.

>>> from forewarn.model import Cell, Location
>>> seq = Sequencer(warmup=1)
>>> seq.feed(Cell(cell_id="C1", site_id="S1"), b"", "f")
[('site', 'S1', Cell(cell_id='C1', site_id='S1', region=None, lat=None, lon=None, technology=None))]
>>> [(stage, key) for stage, key, _ in seq.feed(Location("U1", "C1", 100.0), b"", "f")]
[('site', 'S1'), ('care', 'U1')]
>>> seq.feed(Location("U1", "C1", 160.0), b"", "f")[1]
('care', 'U1', ('U1', 'C1', 160.0, None))
"""

from __future__ import annotations

from bisect import insort
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from dataflows.messages import Drop, Tick
from forewarn.codec import Source, dead_letter, fmt_time
from forewarn.model import (
    Alarm,
    Call,
    Cell,
    Complaint,
    Kpi,
    Location,
    Maintenance,
    Record,
    Subscriber,
    stream_at,
)

MAX_SKEW_S = 7 * 24 * 3600  # contract: further than this from the stream's progress is invalid
ALARM_HORIZON_S = 5 * 3600  # a site with alarm activity needs ticks this long (4 h escalations)
DROP_HORIZON_S = 600  # ... and this long after a dropped call (hold-down of drop notes)

Routed = tuple[str, Any, Any]  # (stage, key, message): stage in site | care | dead


@dataclass(slots=True)
class Sequencer:
    """Pure sequencer logic; the Bytewax operator in :mod:`dataflows.flow` wraps it."""

    lateness_s: float = 0.0
    tick_s: float = 15.0
    warmup: int = 8
    watermark: float | None = None
    cell_site: dict[str, str] = field(default_factory=dict)
    cell_names: dict[str, str] = field(default_factory=dict)  # canonical cell id strings
    site_cells: dict[str, set[str]] = field(default_factory=dict)
    open_alarms: dict[str, set[str]] = field(default_factory=dict)  # site -> alarm ids
    active_until: dict[str, float] = field(default_factory=dict)  # site -> event time
    # warm-up records, then the reorder buffer: (at, seq, record, raw, source), sorted
    _pending: deque = field(default_factory=deque)
    _seq: int = 0
    _next_tick: float = 0.0
    late: int = 0
    late_by_kind: dict[str, int] = field(default_factory=dict)  # late records per type

    # -- input -----------------------------------------------------------------

    def feed(self, rec: Record, raw: bytes, source: Source) -> list[Routed]:
        """Take one decoded record; return what is released by it."""
        out: list[Routed] = []
        self.take(rec, raw, source, stream_at(rec), out)
        return out

    def take(self, rec: Record, raw: bytes, source: Source, at: float | None,
             out: list[Routed]) -> None:
        """:meth:`feed`, given the record's :func:`~forewarn.model.stream_at`, appending
        what is released to ``out`` (one list per batch)."""
        if at is None:
            self._route(rec, raw, source, out)
            return
        self._seq += 1
        watermark = self.watermark
        if watermark is None:
            self._pending.append((at, self._seq, rec, raw, source))
            if len(self._pending) >= self.warmup:
                self._end_warmup(out)
            return
        if abs(at - watermark) > MAX_SKEW_S:
            out.append(("dead", None, dead_letter(raw, source, _skew_reason(rec, at, watermark))))
            return
        pending = self._pending
        if self.lateness_s <= 0 and not pending:
            self._release(at, rec, raw, source, out)
            return
        horizon = at - self.lateness_s
        if horizon < watermark:
            horizon = watermark
        if at <= horizon and not pending:
            self._release(at, rec, raw, source, out)  # nothing held: no heap round trip
            return
        held = (at, self._seq, rec, raw, source)
        if not pending or pending[-1][0] <= at:
            pending.append(held)  # in order (the common case): no search
        else:
            insort(pending, held)  # late within the window: its place (the buffer is short)
        while pending and pending[0][0] <= horizon:
            t, _, r, rw, src = pending.popleft()
            self._release(t, r, rw, src, out)

    def finish(self) -> list[Routed]:
        """End of input: release everything held, then a last tick to every active site."""
        out: list[Routed] = []
        if self.watermark is None and self._pending:
            self._end_warmup(out)
        while self._pending:
            t, _, r, rw, src = self._pending.popleft()
            self._release(t, r, rw, src, out)
        if self.watermark is not None:
            tick = Tick(self.watermark)
            out += [("site", site, tick) for site in sorted(self.active_until)]
        return out

    # -- internals -----------------------------------------------------------------

    def _end_warmup(self, out: list[Routed]) -> None:
        """Anchor the watermark at the median of the first records, robust to a bad one."""
        held = sorted(self._pending)
        self._pending = deque()
        self.watermark = held[len(held) // 2][0]
        self._next_tick = self.watermark + self.tick_s
        for at, _, rec, raw, source in held:
            if abs(at - self.watermark) > MAX_SKEW_S:
                out.append(("dead", None, dead_letter(raw, source,
                                                      _skew_reason(rec, at, self.watermark))))
            else:
                self._release(at, rec, raw, source, out)

    def _release(self, at: float, rec: Record, raw: bytes, source: Source,
                 out: list[Routed]) -> None:
        watermark = self.watermark
        if at < watermark:  # behind records already released: applied late
            self.late += 1
            self.late_by_kind[rec.kind] = self.late_by_kind.get(rec.kind, 0) + 1
        elif at > watermark:
            self.watermark = at
            if at >= self._next_tick:
                self._ticks(at, out)
        kind = type(rec)
        if kind is not Location and kind is not Call:
            self._route(rec, raw, source, out)
            return
        # A position: most records, routed here rather than through _route.
        site = self.cell_site.get(rec.cell_id)
        if site is None:
            out.append(self._unknown_cell(rec, raw, source, rec.cell_id))
            return
        cell = self.cell_names[rec.cell_id]  # one shared string per cell in all state
        sid = rec.subscriber_id
        if kind is Location:
            pos = (sid, cell, at, None)
            out.append(("site", site, pos))
            out.append(("care", sid, pos))
            return
        # Known when the call ends: using end_time (its `at`) keeps "as of T" views exact.
        pos = (sid, cell, at, f"call:{rec.call_id}")
        out.append(("site", site, pos))
        out.append(("care", sid, pos))
        if rec.dropped:
            out.append(("site", site, Drop(sid, rec.cell_id, rec.call_id, at)))
            self._activate(site, at + DROP_HORIZON_S)

    def _ticks(self, now: float, out: list[Routed]) -> None:
        self._next_tick = now + self.tick_s
        tick = Tick(now)
        for site, until in list(self.active_until.items()):
            if until < now and not self.open_alarms.get(site):
                del self.active_until[site]
            out.append(("site", site, tick))

    def _activate(self, site: str, until: float) -> None:
        if self.active_until.get(site, 0.0) < until:
            self.active_until[site] = until

    def _unknown_cell(self, rec: Record, raw: bytes, source: Source, cell_id: str) -> Routed:
        reason = f"{rec.kind}.cell_id: unknown cell {cell_id!r} (no `cell` topology record)"
        return ("dead", None, dead_letter(raw, source, reason))

    def _route(self, rec: Record, raw: bytes, source: Source, out: list[Routed]) -> None:
        """Records other than positions (those are routed in :meth:`_release`)."""
        kind = type(rec)
        if kind is Subscriber or kind is Complaint:
            out.append(("care", rec.subscriber_id, rec))
        elif kind is Alarm:
            out.append(self._route_alarm(rec, raw, source))
        elif kind is Kpi:
            site = self.cell_site.get(rec.cell_id)
            if site is None:
                out.append(self._unknown_cell(rec, raw, source, rec.cell_id))
            else:
                out.append(("site", site, rec))
        elif kind is Cell:
            old = self.cell_site.get(rec.cell_id)
            if old is not None and old != rec.site_id:
                self.site_cells[old].discard(rec.cell_id)
            self.cell_site[rec.cell_id] = rec.site_id
            self.cell_names.setdefault(rec.cell_id, rec.cell_id)
            self.site_cells.setdefault(rec.site_id, set()).add(rec.cell_id)
            out.append(("site", rec.site_id, rec))
        elif kind is Maintenance:
            sites = set(rec.site_ids)
            sites.update(self.cell_site[c] for c in rec.cell_ids if c in self.cell_site)
            out += [("site", s, rec) for s in sorted(sites)]
        else:  # pragma: no cover
            raise TypeError(f"sequencer cannot route {type(rec).__name__}")

    def _route_alarm(self, rec: Alarm, raw: bytes, source: Source) -> Routed:
        if rec.cell_id is not None:
            site = self.cell_site.get(rec.cell_id)
            if site is None:
                return self._unknown_cell(rec, raw, source, rec.cell_id)
            if rec.site_id is not None and rec.site_id != site:
                reason = (f"alarm.site_id: {rec.site_id!r} disagrees with topology "
                          f"(cell {rec.cell_id!r} is on site {site!r})")
                return ("dead", None, dead_letter(raw, source, reason))
        else:
            site = rec.site_id
            if site not in self.site_cells:
                reason = f"alarm.site_id: unknown site {site!r} (no `cell` topology record on it)"
                return ("dead", None, dead_letter(raw, source, reason))
        alarms = self.open_alarms.setdefault(site, set())
        if rec.cleared:
            alarms.discard(rec.alarm_id)
        else:
            alarms.add(rec.alarm_id)
        self._activate(site, rec.event_time + ALARM_HORIZON_S)
        return ("site", site, rec)


def _skew_reason(rec: Record, at: float, watermark: float) -> str:
    return (f"{rec.kind}: event time {fmt_time(at)} is more than 7 days from the stream's "
            f"progress ({fmt_time(watermark)})")
