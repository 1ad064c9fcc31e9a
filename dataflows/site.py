"""Stage 2 — per-site correlation (keyed by site).

A site turns its cells' alarms into NOC incidents and fans incidents out to
the subscribers they impact:

* **group wait** — cells of the site going down within ``group_wait_s`` of an
  incident's start join it; the NOC sees it opened when the wait ends;
* **hold-down** — at ``start + hold_down_s``, if cells are still down, every
  subscriber whose latest position here (at or before the cell went down, no
  older than ``position_max_age_s``) is on a down cell gets an :class:`Impact`;
* **resolution** — when the last cell is up, :class:`Restored` to them;
* **escalation** — when an incident reaches a rule's duration, :class:`Escalation`;
* **flapping** — the ``flapping_outages``-th outage of a cell within
  ``flapping_window_s`` opens one ``flapping`` incident that absorbs its next
  outages until it has been up ``flapping_stable_s``;
* **walk-ins** — someone last heard on a nearby site (:mod:`forewarn.dataflows.nearby`) who
  stays silent past ``nearby.silence_s`` while an outage lasts is most likely inside
  it: an :class:`Impact` with trigger ``walk_in`` (not the contract's impacted: no
  restored notice or escalation follows, and the NOC's count leaves them out);
* **reappearances** — someone unheard during an outage who is back on one of its
  cells within ``nearby.reappear_s`` of its restoration: an :class:`Impact` with
  trigger ``reappeared`` (no restored notice follows: service is back);
* **maintenance** — cells inside an active window impact nobody;
* **dropped calls** — each drop is held for the hold-down, then sent on as a
  :class:`DropNote` naming the outage (if any) that explains it;
* **silent failures** — per-cell detectors (:mod:`forewarn.dataflows.degradation`) over
  KPIs and traffic open ``degradation`` incidents for cells that fail without
  an alarm; a *sleeping* cell's users get an :class:`Impact` when it is found.

Deadlines are event times kept in a heap. A deadline fires when the site sees
anything later than it (a record or a :class:`Tick`), so an outage cleared at
exactly ``start + hold_down_s`` is "cleared within the hold-down".
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from forewarn.dataflows.anchors import expected_bucket
from forewarn.dataflows.degradation import SLEEPING, SiteHealth, Verdict
from forewarn.dataflows.members import Entry, Members
from forewarn.dataflows.messages import (
    EXPECTED,
    REAPPEARED,
    WALK_IN,
    Drop,
    DropNote,
    Escalation,
    Impact,
    IncidentFacts,
    Left,
    Near,
    Restored,
    Tick,
    Watch,
)
from forewarn.dataflows.nearby import Surroundings
from forewarn.dataflows.state import restore_fields
from forewarn.model import Alarm, Cell, Incident, Kpi, Maintenance
from forewarn.rules.rulebook import Rulebook

Out = tuple[str, Any]  # ("care", message) | ("incident", Incident)
KEEP, FIRST = "keep", "first"  # SiteCorrelator._after_start's answers
PRUNE_EVERY_S = 600.0
#: How much longer than ``position_max_age_s`` the members of a cell silent since are
#: kept for a sleeping verdict: it comes 12-16 min after the silence began by day, up to
#: 30 min on a quiet night. A verdict later than this (a cell with under ~2 positions per
#: 5 min: its silence test falls due later) does not reach back to positions more than
#: 105 min old: on so quiet a cell, who was heard that long ago may have left unheard.
SLEEP_LAG_S = 2700.0


def incident_id(site_id: str, start: float) -> str:
    """Deterministic incident id from the site and start time.

    >>> incident_id("SITE0001", 1795428900.0)
    'INC-SITE0001-20261123T101500'
    """
    return f"INC-{site_id}-{_stamp(start)}"


def _stamp(ts: float) -> str:
    return f"{datetime.fromtimestamp(ts, UTC):%Y%m%dT%H%M%S}"


@dataclass(slots=True)
class OpenIncident:
    id: str
    kind: str  # outage | flapping
    start: float
    down: dict[str, float] = field(default_factory=dict)  # cell -> down since
    ever: dict[str, None] = field(default_factory=dict)  # every cell that was part of it
    alarms: list[str] = field(default_factory=list)
    causes: list[str] = field(default_factory=list)
    planned: str | None = None  # maintenance window id when all its cells were planned
    silent_kind: str | None = None  # degradation incidents: sleeping | degradation
    detector: str | None = None
    opened: bool = False
    impacted: dict[str, None] = field(default_factory=dict)  # subscribers sent an Impact
    walked_in: dict[str, None] = field(default_factory=dict)  # found inside it later
    facts: IncidentFacts | None = None
    # the site's region when it opened: its records and verdicts keep it (a topology
    # update moving the site mid-incident would leave its regional event open for ever)
    region: str | None = None

    def __setstate__(self, state: Any) -> None:
        restore_fields(self, state)  # snapshots from before a field was added load too


@dataclass(slots=True)
class SiteCorrelator:
    """All correlation state of one site."""

    site_id: str
    book: Rulebook
    cells: dict[str, None] = field(default_factory=dict)
    region: str | None = None
    members: Members = field(default_factory=Members)  # sub -> their latest position here
    # members seen on another site since: sub -> (their position here, first time seen
    # elsewhere after it); stale, and ignored, once another position here replaces that
    # one (Members.shows)
    away: dict[str, tuple[Entry, float]] = field(default_factory=dict)
    alarm_cells: dict[str, tuple[str, ...]] = field(default_factory=dict)  # open outage alarms
    alarm_causes: dict[str, str] = field(default_factory=dict)
    down: dict[str, set[str]] = field(default_factory=dict)  # cell -> its open outage alarms
    incidents: dict[str, OpenIncident] = field(default_factory=dict)
    cell_incident: dict[str, str] = field(default_factory=dict)
    history: dict[str, list[tuple[float, float | None, str]]] = field(default_factory=dict)
    flap_starts: dict[str, list[float]] = field(default_factory=dict)
    windows: dict[str, tuple[float, float, frozenset[str] | None]] = field(default_factory=dict)
    deadlines: list = field(default_factory=list)
    detect: bool = True  # run the silent-failure detectors
    health: SiteHealth = field(default_factory=SiteHealth)  # silent-failure detectors
    silent: dict[str, str] = field(default_factory=dict)  # cell -> open degradation incident
    clock: float = 0.0
    _seq: int = 0
    _pruned_at: float = 0.0
    # members whose position here is a first observation on a down cell within the
    # group wait after it went down (the contract counts them as impacted): sub -> that
    # position, while it is theirs here
    first_after: dict[str, Entry] = field(default_factory=dict)
    around: Surroundings = field(default_factory=Surroundings)  # heard nearby, during a watch
    _walk_at: float | None = None  # the pending walk-in check's deadline
    # resolved incidents still taking reappearances: id -> (until, facts, start, end,
    # cells, who was impacted or has reappeared)
    recent: dict[str, tuple] = field(default_factory=dict)

    def __setstate__(self, state: Any) -> None:
        restore_fields(self, state)  # snapshots from before a field was added load too

    # -- entry point -------------------------------------------------------------

    def handle(self, msg: Any) -> list[Out]:
        """Apply one message from the sequencer; return what became due."""
        kind = type(msg)
        if kind is tuple:  # a Position: most messages (every location and call)
            return self.handle_batch((msg,))
        if kind is Tick:  # next most: every active site, every tick_s of event time
            out: list[Out] = self.advance(msg.at)
            if self.around.anchored:
                out += self._expected(msg.at)
            if self.detect:
                out += self._silent(self.health.advance(msg.at))
            return out
        if kind is Near:  # heard around this site: fire what is due before it, no clock move
            out = self._fire_due(msg.at)
            self._near(msg)
            return out
        if kind is Watch:  # a watch begins or ends: who was heard around before is stale
            out = self._fire_due(msg.at)
            self.around.clear()
            return out
        if kind is Left:  # about another site: fire what is due before it, no clock move
            out = self._fire_due(msg.at)
            sid = msg.subscriber_id
            entry = self.members.get(sid)
            if entry is not None and entry[1] <= msg.at:  # not newer here (a late Left)
                known = self.away.get(sid)
                if known is None or known[0] != entry or msg.at < known[1]:
                    self.away[sid] = (entry, msg.at)  # first seen elsewhere since entry
            return out
        at = getattr(msg, "at", None)
        if at is None and isinstance(msg, Alarm):
            at = msg.event_time
        out = []
        if at is not None:
            out += self.advance(at)
        if isinstance(msg, Alarm):
            out += self._alarm(msg)
        elif isinstance(msg, Drop):
            self._schedule(msg.at + self.book.correlation.hold_down_s, "drop", msg)
        elif isinstance(msg, Cell):
            self.cells[msg.cell_id] = None
            self.region = msg.region or self.region
        elif isinstance(msg, Maintenance):
            self._maintenance(msg)
        elif isinstance(msg, Kpi) and self.detect:
            out += self._silent(self.health.kpi(msg))
        return out

    def handle_batch(self, msgs: list | tuple) -> list[Out]:
        """:meth:`handle` for each message in turn, with positions on a short path."""
        out: list[Out] = []
        deadlines, down = self.deadlines, self.down
        members = self.members  # (its columns are changed in place, never replaced)
        find, number, numbers = members.index.get, members.number, members.numbers
        m_cell, m_at, m_ref = members.cell, members.at, members.ref
        position = self.health.position if self.detect else None
        heard = self.around.heard
        for msg in msgs:
            if type(msg) is not tuple:
                if type(msg) is Near and not (deadlines and deadlines[0][0] < msg.at):
                    # heard around this site (during an outage, the next most frequent
                    # message): nothing due before it, so just note it
                    self._near(msg)
                    continue
                out += self.handle(msg)
                continue
            sid, cell, at, ref = msg
            if deadlines and deadlines[0][0] < at:
                out += self.advance(at)
            elif at > self.clock:  # advance() with nothing due, inline
                self.clock = at
                if at - self._pruned_at >= PRUNE_EVERY_S:
                    self._prune(at)
            row = find(sid)
            # (heard here: no longer someone only heard around, whether or not it is used)
            near = self.around.here(sid, at) if heard and sid in heard else None
            after = None
            if self.recent or (down and cell in down):
                seen = None if row is None else members.entry(row)
                if self.recent:
                    out += self._reappeared(sid, cell, at, ref, seen, near)
                if down and cell in down:
                    after = self._after_start(sid, seen, cell, at)
            if after is KEEP:
                pass  # their position at the start stands: the outage ended this call
            elif row is None:
                members.add(sid, number(cell), at, ref)
            elif m_at[row] <= at:
                n = numbers.get(cell)
                m_cell[row], m_at[row], m_ref[row] = number(cell) if n is None else n, at, ref
            if after is FIRST:
                self.first_after[sid] = members.get(sid)  # type: ignore[assignment]
            if position is not None:
                verdicts = position(cell, at)
                if verdicts:
                    out += self._silent(verdicts)
        return out

    def _after_start(self, sid: str, seen: tuple[str, float, str | None] | None, cell: str,
                     at: float) -> str | None:
        """``sid`` observed on down ``cell`` at ``at``, ``seen`` being their entry here:
        :data:`KEEP` if ``seen`` stays in place (the observation is not recorded),
        :data:`FIRST` if the observation counts as one at the start, else None.

        The contract's *impacted*: observations after the start on an affected cell
        (calls cut by the outage itself) keep a subscriber impacted, and so does a first
        observation on an affected cell within the group wait after the start. The first
        kind keeps ``seen`` when it places them on a down cell at or before it went
        down, fresh enough to count, and they have not been seen elsewhere since
        (recording the later observation would make them look like someone who arrived
        after the start); the second is noted in :attr:`first_after` for the hold-down.
        """
        since = self._down_since(cell)
        if since is None or at <= since:
            return None
        corr = self.book.correlation
        if seen is not None:
            before = self._down_since(seen[0])
            if before is not None and before - corr.position_max_age_s <= seen[1] <= before:
                known = self.away.get(sid)
                # seen elsewhere since, and back on a down cell: not a first observation
                return KEEP if known is None or known[0] != seen else None
        return FIRST if at <= since + corr.group_wait_s else None

    def _down_since(self, cell: str) -> float | None:
        """When ``cell`` went down in its open incident (None: it is up)."""
        inc = self.incidents.get(self.cell_incident.get(cell, ""))
        return inc.down.get(cell) if inc is not None else None

    def settle(self, frontier: float) -> list[Out]:
        """Every message before ``frontier`` has been delivered: fire the deadlines before
        it, as the next message would (the clock does not move: no message came).

        >>> from forewarn.rules.rulebook import load_rulebook
        >>> site = SiteCorrelator("S1", load_rulebook())
        >>> site._schedule(100.0, "open", "INC-X")
        >>> site.settle(100.0), len(site.deadlines)  # not before 100: still due
        ([], 1)
        >>> site.settle(100.5), len(site.deadlines), site.clock  # (no such incident)
        ([], 0, 100.0)
        """
        return self._fire_due(frontier)

    def advance(self, now: float) -> list[Out]:
        """Fire every deadline strictly before ``now``, in time order; the clock is ``now``."""
        out = self._fire_due(now)
        if now > self.clock:
            self.clock = now
            if now - self._pruned_at >= PRUNE_EVERY_S:
                self._prune(now)
        return out

    def _fire_due(self, now: float) -> list[Out]:
        out: list[Out] = []
        while self.deadlines and self.deadlines[0][0] < now:
            at, _, kind, ref = heapq.heappop(self.deadlines)
            self.clock = max(self.clock, at)
            out += self._fire(at, kind, ref)
        return out

    # -- records -------------------------------------------------------------------

    def _maintenance(self, m: Maintenance) -> None:
        if m.op == "cancel":
            self.windows.pop(m.window_id, None)
            return
        cells = None if self.site_id in m.site_ids else frozenset(m.cell_ids)
        self.windows[m.window_id] = (m.start_time, m.end_time, cells)

    def _window_for(self, cell: str, at: float) -> str | None:
        for wid, (start, end, cells) in sorted(self.windows.items()):
            if start <= at <= end and (cells is None or cell in cells):
                return wid
        return None

    def _alarm(self, a: Alarm) -> list[Out]:
        corr = self.book.correlation
        if a.cleared:
            cells = self.alarm_cells.pop(a.alarm_id, ())
            self.alarm_causes.pop(a.alarm_id, None)
            out: list[Out] = []
            touched: dict[str, None] = {}
            for cell in cells:
                alarms = self.down.get(cell)
                if alarms is None:
                    continue
                alarms.discard(a.alarm_id)
                if not alarms:
                    del self.down[cell]
                    touched[self.cell_incident.get(cell, "")] = None
                    out += self._cell_up(cell, a.event_time)
            for inc_id in touched:  # one update per incident that is still down
                inc = self.incidents.get(inc_id)
                if inc is not None and inc.down and inc.opened:
                    out.append(("incident", self._record(inc, "updated", a.event_time)))
            return out
        if not corr.is_outage(a.severity, a.probable_cause):
            return []  # not a loss of service
        if a.alarm_id in self.alarm_cells:
            return []  # repeated raise of an open alarm
        cells = (a.cell_id,) if a.cell_id else tuple(self.cells)
        self.alarm_cells[a.alarm_id] = cells
        self.alarm_causes[a.alarm_id] = a.probable_cause
        out = []
        for cell in cells:
            alarms = self.down.get(cell)
            if alarms is not None:
                alarms.add(a.alarm_id)
                inc = self.incidents.get(self.cell_incident.get(cell, ""))
                if inc is not None and a.alarm_id not in inc.alarms:
                    inc.alarms.append(a.alarm_id)
                continue
            self.down[cell] = {a.alarm_id}
            out += self._cell_down(cell, a.event_time, a.alarm_id)
        return out

    # -- incidents -------------------------------------------------------------------

    def _cell_down(self, cell: str, at: float, alarm_id: str) -> list[Out]:
        silent = self._silent(self.health.cell_down(cell, at))  # the alarm explains it now
        return silent + self._outage_down(cell, at, alarm_id)

    def _outage_down(self, cell: str, at: float, alarm_id: str) -> list[Out]:
        corr = self.book.correlation
        starts = [t for t in self.flap_starts.get(cell, ()) if t >= at - corr.flapping_window_s]
        starts.append(at)
        self.flap_starts[cell] = starts
        inc = None
        # A cell already in an open flapping incident goes down inside it.
        current = self.incidents.get(self.cell_incident.get(cell, ""))
        if current is not None and current.kind == "flapping":
            inc = current
        elif len(starts) >= corr.flapping_outages:
            inc = self._new_incident("flapping", at)
        else:
            for cand in self.incidents.values():
                if cand.kind == "outage" and at <= cand.start + corr.group_wait_s:
                    inc = cand
                    break
            if inc is None:
                inc = self._new_incident("outage", at)
        inc.down[cell] = at
        inc.ever[cell] = None
        if alarm_id not in inc.alarms:
            inc.alarms.append(alarm_id)
        cause = self.alarm_causes.get(alarm_id)
        if cause and cause not in inc.causes:
            inc.causes.append(cause)
        window = self._window_for(cell, at)
        inc.planned = window if (inc.planned or len(inc.ever) == 1) and window else None
        self.cell_incident[cell] = inc.id
        self.history.setdefault(cell, []).append((at, None, inc.id))
        if inc.kind == "flapping":
            self._schedule(at + corr.hold_down_s, "hold", inc.id)
            if inc.opened:
                return [("incident", self._record(inc, "updated", at))]
        return []

    def _new_incident(self, kind: str, at: float) -> OpenIncident:
        corr = self.book.correlation
        inc = OpenIncident(id=incident_id(self.site_id, at), kind=kind, start=at,
                           region=self.region)
        self.incidents[inc.id] = inc
        self._schedule(at + corr.group_wait_s, "open", inc.id)
        if kind == "outage":
            self._schedule(at + corr.hold_down_s, "hold", inc.id)
        for d in self.book.durations(kind):
            self._schedule(at + d, "escalate", (inc.id, d))
        return inc

    def _cell_up(self, cell: str, at: float) -> list[Out]:
        self.health.cell_up(cell, at)
        hist = self.history.get(cell)
        if hist and hist[-1][1] is None:
            hist[-1] = (hist[-1][0], at, hist[-1][2])
        inc = self.incidents.get(self.cell_incident.pop(cell, ""))
        if inc is None:
            return []
        inc.down.pop(cell, None)
        if inc.down:
            return []
        if inc.kind == "flapping":
            self.cell_incident[cell] = inc.id  # still its incident until stable
            self._schedule(at + self.book.correlation.flapping_stable_s, "stable", inc.id)
            return []
        return self._resolve(inc, at)

    def _resolve(self, inc: OpenIncident, at: float) -> list[Out]:
        out: list[Out] = []
        if not inc.opened:
            inc.opened = True
            out.append(("incident", self._record(inc, "open", at)))
        out.append(("incident", self._record(inc, "resolved", at, end=at)))
        facts = inc.facts or self._facts(inc)
        out += [("care", Restored(sub, facts, at)) for sub in inc.impacted]
        if inc.facts is not None and not inc.planned and inc.kind != "degradation" \
                and self.book.acts_at(REAPPEARED):
            self.recent[inc.id] = (at + self.book.correlation.reappear_s, inc.facts, inc.start,
                                   at, frozenset(inc.ever), {**inc.impacted, **inc.walked_in})
        del self.incidents[inc.id]
        for cell in inc.ever:
            if self.cell_incident.get(cell) == inc.id:
                del self.cell_incident[cell]
        return out

    def _fire(self, at: float, kind: str, ref: Any) -> list[Out]:
        if kind == "drop":
            return self._drop_note(at, ref)
        if kind == "walk":
            return self._walk_ins(at)
        if kind == "escalate":
            inc = self.incidents.get(ref[0])
            if inc is None or inc.planned or inc.facts is None:
                return []
            return [("care", Escalation(sub, inc.facts, ref[1], at)) for sub in inc.impacted]
        inc = self.incidents.get(ref)
        if inc is None:
            return []
        if kind == "open" and not inc.opened:
            inc.opened = True
            return [("incident", self._record(inc, "open", at))]
        if kind == "hold":
            return self._hold_down(inc, at)
        if kind == "stable" and not inc.down:
            last_up = max((h[1] or 0.0) for c in inc.ever for h in self.history.get(c, ())
                          if h[2] == inc.id)
            if at >= last_up + self.book.correlation.flapping_stable_s:
                return self._resolve(inc, at)
        return []

    def _hold_down(self, inc: OpenIncident, at: float) -> list[Out]:
        """The hold-down has passed with cells still down: who is impacted?"""
        if not inc.down:
            return []
        max_age = self.book.correlation.position_max_age_s
        affected = {c: since for c, since in inc.down.items()
                    if self._window_for(c, since) is None}
        inc.facts = facts = self._facts(inc)
        out: list[Out] = []
        if affected:
            away, first_after = self.away, self.first_after
            found = []
            for sub, cell, seen_at, ref in self.members.items():
                since = affected.get(cell)
                if since is None or since - seen_at > max_age:
                    continue
                if seen_at > since and first_after.get(sub) != (cell, seen_at, ref):
                    continue  # arrived after the start (see _after_start)
                found.append((sub, cell, seen_at, ref))
            found.sort()  # by id: an order of the event data, not of the table's rows
            for sub, cell, seen_at, ref in found:
                if sub not in inc.impacted:
                    inc.impacted[sub] = None
                    left = away.get(sub)
                    moved = (left is not None and left[0] == (cell, seen_at, ref)
                             and left[1] <= at)
                    out.append(("care", Impact(sub, facts, at, (seen_at, cell, ref), moved)))
        status = "open" if not inc.opened else "updated"
        inc.opened = True
        if self._walk_at is None and self.around.heard:
            self._schedule_walk(at)
        return [("incident", self._record(inc, status, at))] + out

    def _drop_note(self, at: float, d: Drop) -> list[Out]:
        """A drop whose hold-down passed: name the outage that explains it, if any."""
        gw = self.book.correlation.group_wait_s
        explained: str | None = None
        for start, end, inc_id in self.history.get(d.cell_id, ()):
            if start - gw <= d.at and (end is None or d.at <= end):
                explained = inc_id
                hold = start + self.book.correlation.hold_down_s
                if hold > at and inc_id in self.incidents:
                    # Its hold-down decision comes first, so care knows who was told.
                    self._schedule(hold, "drop", d)
                    return []
        area = self._area()
        note = DropNote(d.subscriber_id, d.call_id, d.cell_id, d.at, explained,
                        self._window_for(d.cell_id, d.at) is not None, area, at, self.region)
        return [("care", note)]

    # -- around an outage: walk-ins and reappearances (forewarn.dataflows.nearby) ----------------

    def _walk_target(self) -> OpenIncident | None:
        """The outage a silent neighbour is counted in: the earliest open one past its
        hold-down (facts known), not planned work, with cells still down."""
        best = None
        for inc in self.incidents.values():
            if inc.facts is not None and inc.down and not inc.planned \
                    and inc.kind != "degradation" and (best is None or inc.start < best.start):
                best = inc
        return best

    def _near(self, msg: Near) -> None:
        """Note who was heard around; check for walk-ins when one is due (no later than
        the pending check: one heard long ago, handed over by a watch that ended, may be
        due before it)."""
        self.around.near(msg)
        if not msg.near:
            return
        due = max(msg.at + self.book.correlation.silence_s, self.clock)
        if (self._walk_at is None or due < self._walk_at) and self._walk_target() is not None:
            # (with no check pending, nobody older is waiting: this one is the first due)
            self._walk_at = due
            self._schedule(due, "walk", None)

    def _schedule_walk(self, now: float) -> None:
        """Check for walk-ins when the one heard least recently becomes overdue."""
        front = self.around.front()
        if front is None or self._walk_target() is None:
            return
        self._walk_at = at = max(front + self.book.correlation.silence_s, now)
        self._schedule(at, "walk", None)

    def _walk_ins(self, at: float) -> list[Out]:
        """Everyone heard around the outage and silent since ``silence_s`` is in it (if
        their silence began at most ``silence_s`` before it: a phone silent since long
        before says nothing about this outage)."""
        self._walk_at = None
        inc = self._walk_target()
        if inc is None or inc.facts is None:
            return []
        silence = self.book.correlation.silence_s
        out: list[Out] = []
        for sid, site, heard_at in self.around.silent_since(at - silence, inc.start - silence):
            if sid in inc.impacted or sid in inc.walked_in:
                continue
            inc.walked_in[sid] = None  # not the contract's impacted: no restored notice
            seen = (heard_at, site, f"last_heard:{site}@{int(heard_at)}")
            out.append(("care", Impact(sid, inc.facts, at, seen, False, WALK_IN)))
        self._schedule_walk(at)
        return out

    def _expected(self, at: float) -> list[Out]:
        """Those heard around the outage whose anchor place (:mod:`forewarn.dataflows.anchors`) is
        this site now (or within the rule's ``within_s``), silent for its ``silence_s``,
        once the outage is ``min_outage_s`` old: most likely in it (``at: expected``)."""
        terms = self.book.expected_terms
        inc = self._walk_target()
        if terms is None or inc is None or inc.facts is None or inc.facts.scope != "site" \
                or at - inc.start < terms.min_outage_s:
            return []  # (a cell down: the site's other cells serve who is at home there)
        out: list[Out] = []
        since = inc.start - self.book.correlation.silence_s  # as for walk-ins
        for sid, site, heard_at in self.around.expected(at, terms.within_s, terms.silence_s,
                                                        since, expected_bucket):
            if sid in inc.impacted or sid in inc.walked_in:
                continue
            inc.walked_in[sid] = None  # as a walk-in: told once, nothing follows
            seen = (heard_at, site, f"last_heard:{site}@{int(heard_at)}")
            out.append(("care", Impact(sid, inc.facts, at, seen, False, EXPECTED)))
        return out

    def _reappeared(self, sid: str, cell: str, at: float, ref: str | None,
                    seen: tuple[str, float, str | None] | None,
                    near: tuple[str, float] | None) -> list[Out]:
        """``sid`` heard on ``cell`` at ``at``, last heard here (``seen``) or around
        (``near``) before: back from a recent outage they were unheard during?"""
        out: list[Out] = []
        silence = self.book.correlation.silence_s
        for inc_id, (until, facts, start, end, cells, told) in list(self.recent.items()):
            if at > until:
                if at - until > silence:  # a late record may still come within a window
                    del self.recent[inc_id]
                continue
            if at < end or cell not in cells or sid in told:
                continue
            before = max((seen[1] if seen is not None else -1.0),
                         (near[1] if near is not None else -1.0))
            if not start - silence <= before < start:
                continue  # heard during the outage, or silent since long before it
            told[sid] = None
            out.append(("care", Impact(sid, facts, at, (at, cell, ref), False, REAPPEARED)))
        return out

    # -- silent failures (no alarm) ------------------------------------------------------

    def _silent(self, verdicts: list[Verdict]) -> list[Out]:
        """Detector verdicts -> `degradation` incidents; a sleeping cell impacts its users."""
        out: list[Out] = []
        if not self.detect:
            return out
        for v in verdicts:
            inc_id = self.silent.get(v.cell_id)
            inc = self.incidents.get(inc_id or "")
            if v.status == "open":
                if inc is not None:  # e.g. a degradation superseded by sleeping
                    inc.silent_kind, inc.detector = v.kind, v.reason
                    inc.alarms[:] = list(v.evidence)
                    out.append(("incident", self._record(inc, "updated", v.at)))
                else:
                    inc = OpenIncident(id=f"DEG-{v.cell_id}-{_stamp(v.start_time)}",
                                       kind="degradation", start=v.start_time,
                                       region=self.region)
                    inc.down[v.cell_id] = v.start_time
                    inc.ever[v.cell_id] = None
                    inc.alarms.extend(v.evidence)
                    inc.silent_kind, inc.detector = v.kind, v.reason
                    inc.opened = True
                    self.incidents[inc.id] = inc
                    self.silent[v.cell_id] = inc.id
                    out.append(("incident", self._record(inc, "open", v.at)))
                if v.kind == "sleeping":
                    out += self._hold_down(inc, v.at)
            elif inc is not None:
                inc.down.clear()
                del self.silent[v.cell_id]
                inc.detector = v.reason
                out += self._resolve(inc, v.at)
        return out

    # -- helpers -----------------------------------------------------------------------

    def _schedule(self, at: float, kind: str, ref: Any) -> None:
        self._seq += 1
        heapq.heappush(self.deadlines, (at, self._seq, kind, ref))

    def _area(self) -> str:
        return self.region.title() if self.region else self.site_id

    def _facts(self, inc: OpenIncident) -> IncidentFacts:
        return IncidentFacts(
            incident_id=inc.id,
            incident_kind=inc.kind,
            site_id=self.site_id,
            area=self._area(),
            start_time=inc.start,
            down_cells=tuple(sorted(inc.down.items())),
            evidence=self._evidence(inc),
            region=inc.region or self.region,
            scope=self._scope(inc),
            causes=tuple(inc.causes),
            confirmed=not (inc.kind == "degradation" and inc.detector == "silence"),
        )

    def _scope(self, inc: OpenIncident) -> str:
        return "site" if self.cells and set(self.cells) <= set(inc.ever) else "cell"

    def _record(self, inc: OpenIncident, status: str, at: float,
                end: float | None = None) -> Incident:
        cells = tuple(sorted(inc.ever))
        scope = self._scope(inc)
        return Incident(
            incident_id=inc.id,
            status=status,
            incident_kind=inc.kind,
            scope=scope,
            site_id=self.site_id,
            cell_ids=cells,
            start_time=inc.start,
            end_time=end,
            impacted_subscribers=len(inc.impacted),
            event_time=at,
            region=inc.region or self.region,
            maintenance_window=inc.planned,
            evidence=self._evidence(inc),
            silent_kind=inc.silent_kind,
            detector=inc.detector,
        )

    def _evidence(self, inc: OpenIncident) -> tuple[str, ...]:
        if inc.kind == "degradation":
            return tuple(inc.alarms)  # detector evidence: kpi:<cell>@<t>, traffic:...
        return tuple(f"alarm:{a}" for a in inc.alarms)

    def _prune(self, now: float) -> None:
        """Forget positions too old to matter and finished outage history."""
        self._pruned_at = now
        max_age = self.book.correlation.position_max_age_s
        horizon = now - max_age
        # A sleeping verdict comes after the silence it reports: its onset is the cell's
        # last traffic, and who was heard there up to max_age before it is impacted. So
        # a cell silent since keeps its members up to SLEEP_LAG_S longer.
        cells = self.health.cells if self.detect else None
        keep_from = horizon - SLEEP_LAG_S
        # Who was here up to max_age before a cell went down is impacted at the outage's
        # hold-down, which may come after this prune: keep them until it has passed.
        corr = self.book.correlation
        pending = now - corr.hold_down_s - corr.group_wait_s
        downs = [since for inc in self.incidents.values() for since in inc.down.values()
                 if since >= pending]
        if downs:
            horizon = min(horizon, min(downs) - max_age)

        def keep(cell: str, at: float) -> bool:
            if cells is None or at < keep_from:
                return False
            health = cells.get(cell)
            # (a cell down, or found asleep, is judged already)
            return health is not None and at >= health.last_seen - max_age \
                and not health.down and SLEEPING not in health.open

        members = self.members
        members.drop_before(horizon, keep)
        self.away = {sid: a for sid, a in self.away.items() if members.shows(sid, a[0])}
        if self.first_after:  # needed until the hold-down of the outage they were seen in
            self.first_after = {sid: e for sid, e in self.first_after.items()
                                if e[1] >= pending and members.shows(sid, e)}
        keep_from = now - max(self.book.correlation.flapping_window_s, 6 * 3600)
        for cell, hist in list(self.history.items()):
            hist[:] = [h for h in hist if h[1] is None or h[1] >= keep_from]
            if not hist:
                del self.history[cell]
        for wid, (_, end, _) in list(self.windows.items()):
            if end < now - 24 * 3600:
                del self.windows[wid]
        if self.recent:  # resolved incidents past their reappearance window
            silence = self.book.correlation.silence_s
            self.recent = {i: r for i, r in self.recent.items() if r[0] >= now - silence}
        if self.around.heard:  # heard longer ago than any outage here could still use
            starts = [inc.start for inc in self.incidents.values()]
            starts += [r[2] for r in self.recent.values()]
            silence = self.book.correlation.silence_s
            self.around.forget_before(min([now, *starts]) - silence)
