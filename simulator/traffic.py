"""One subscriber's life in the network: mobility, service, observations and calls.

A small discrete-event simulation per subscriber. The truth is the *position*
(best-server cell, from :mod:`forewarn.simulator.mobility`) and the *serving* cell (or
none). What the OSS sees:

- ``location``: a periodic update every ``periodic_update_s`` after the last
  observation (a call end also restarts the timer, as leaving connected mode
  does); a move reported at once with probability 0.5 (tracking-area change);
  a reselection after an outage (always); a return to the restored cell (0.5);
  regaining service (always if a periodic update fell due meanwhile, else 0.3).
- ``call``: Poisson attempts (diurnal profile; business x1.6, vip x2); duration
  exponential; reported at its end with the cell it started on. Drops: 1 % on
  healthy cells, the degraded rate on degraded cells (30 % of subscribers are
  "cell-edge" users with 2.5x the drop rate, the rest lower, mean unchanged), and
  at the start of an outage (or sleep) of the call's cell (cause 38, Q.850 "network out of
  order"; other drops 41/47/102, normal end 16). Half of the dropped callers redial
  within 15-120 s.

When the serving cell goes down the subscriber loses service; with probability
0.35 (one cell down) or 0.1 (whole site) they reselect to an up cell of the same
or a nearby site after 1-3 min, and return when their cell is restored. Moving
into a cell that is down also loses service. Nobody calls or reports from a
down cell, and nobody calls without service.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from forewarn.simulator.config import ScenarioConfig, fmt_time
from forewarn.simulator.kpis import KpiCounters
from forewarn.simulator.mobility import plan_moves
from forewarn.simulator.network import DownPeriod, NetworkPlan
from forewarn.simulator.population import SubscriberInfo
from forewarn.simulator.records import Collector
from forewarn.simulator.topology import Topology

# Event kinds; the number is also the tie-break at equal times (cells go down first).
EV_DOWN, EV_UP, EV_RETURN, EV_RESELECT, EV_MOVE, EV_CALL_END, EV_CALL, EV_PERIODIC = range(8)
_WATCHERS = (EV_DOWN, EV_UP, EV_RETURN, EV_RESELECT)  # valid only for the state they saw

#: Calls per hour relative to the mean, by UTC hour of day (UK winter local time).
DIURNAL = (0.1, 0.05, 0.05, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0, 1.2, 1.2, 1.2,
           1.1, 1.1, 1.2, 1.2, 1.2, 1.2, 1.1, 1.0, 0.9, 0.7, 0.4, 0.2)
_PEAK = max(DIURNAL)
SEGMENT_CALL_FACTOR = {"consumer": 1.0, "business": 1.6, "vip": 2.0}
HEALTHY_DROP_RATE = 0.01
DROP_CAUSES = (41, 41, 41, 47, 102)  # temporary failure, resource unavailable, timer expiry
CAUSE_NORMAL = 16
CAUSE_OUTAGE = 38  # network out of order
RESELECT_P = {"cell": 0.35, "site": 0.1}
MOVE_REPORT_P = 0.5
EDGE_SHARE = 0.3
EDGE_DROP_FACTOR = 2.5
CORE_DROP_FACTOR = (1 - EDGE_SHARE * EDGE_DROP_FACTOR) / (1 - EDGE_SHARE)
REDIAL_P = 0.5


@dataclass(slots=True)
class LossSpell:
    """A time without service caused by one down period."""

    period: DownPeriod
    cell_id: str
    lost_from: int
    at_start: bool
    lost_to: int = -1
    recovered_by: str = ""


@dataclass(frozen=True, slots=True)
class DroppedCall:
    """A reported dropped call."""

    call_id: str
    cell_id: str
    start: int
    end: int
    cause: int
    period: DownPeriod | None
    degraded: bool


@dataclass(slots=True)
class Trace:
    """What happened to one subscriber, for the truth."""

    sub: SubscriberInfo
    rng: random.Random
    obs_times: list[int] = field(default_factory=list)
    obs_cells: list[str] = field(default_factory=list)
    spells: list[LossSpell] = field(default_factory=list)
    drops: list[DroppedCall] = field(default_factory=list)
    calls: int = 0


@dataclass(slots=True)
class TrafficContext:
    """What every subscriber simulation shares."""

    cfg: ScenarioConfig
    topo: Topology
    plan: NetworkPlan
    kpi: KpiCounters
    out: Collector


def call_times(rng: random.Random, rate_per_hour: float, t0: int, t1: int) -> list[int]:
    """Poisson call attempts with the diurnal profile (thinning)."""
    lam = rate_per_hour * _PEAK / 3600.0
    out: list[int] = []
    if lam <= 0:
        return out
    t = float(t0)
    while True:
        t += rng.expovariate(lam)
        if t >= t1:
            return out
        if rng.random() * _PEAK < DIURNAL[int(t // 3600) % 24]:
            out.append(int(t))


class _SubscriberSim:
    """The event loop for one subscriber (see the module docstring)."""

    def __init__(self, ctx: TrafficContext, sub: SubscriberInfo, rng: random.Random) -> None:
        self.ctx, self.sub, self.rng = ctx, sub, rng
        self.status = ctx.plan.status
        self.t0, self.t1 = ctx.cfg.t0, ctx.cfg.t1
        self.trace = Trace(sub, rng)
        self.heap: list[tuple[int, int, int, int, object]] = []
        self.seq = 0
        self.gen = 0
        self.periodic_token = 0
        self.pos = sub.home_cell
        self.serving: str | None = None
        self.serving_since = 0
        self.spell: LossSpell | None = None
        self.missed_update = False
        self.in_call = False
        self.n_calls = 0
        # Cell-edge users drop far more often than the rest (mean factor 1).
        self.drop_factor = EDGE_DROP_FACTOR if rng.random() < EDGE_SHARE else CORE_DROP_FACTOR

    # -- plumbing --

    def push(self, t: int, kind: int, gen: int = 0, data: object = None) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, kind, self.seq, gen, data))

    def run(self) -> Trace:
        """Simulate from t0 to t1 and return the trace."""
        cfg, rng = self.ctx.cfg, self.rng
        first, moves = plan_moves(rng, self.sub, self.ctx.topo, self.t0, self.t1)
        for t, cell in moves:
            self.push(t, EV_MOVE, data=cell)
        rate = cfg.call_rate_per_hour * SEGMENT_CALL_FACTOR[self.sub.segment]
        for t in call_times(rng, rate, self.t0, self.t1):
            self.push(t, EV_CALL)
        self.pos = first
        self.arm_periodic(self.t0 + rng.randrange(cfg.periodic_update_s))
        self.serve(self.t0, first, report=False)
        handlers = (self.on_down, self.on_up, self.on_return, self.on_reselect, self.on_move,
                    self.on_call_end, self.on_call, self.on_periodic)
        while self.heap:
            t, kind, _, gen, data = heapq.heappop(self.heap)
            if t >= self.t1:
                break
            if kind in _WATCHERS and gen != self.gen:
                continue
            if kind == EV_PERIODIC and gen != self.periodic_token:
                continue
            handlers[kind](t, data)
        self.finish()
        return self.trace

    def finish(self) -> None:
        """Close what is still open at the end of the scenario."""
        self.close_serving(self.t1)
        if self.spell is not None:
            self.spell.lost_to = self.t1
            self.spell.recovered_by = "end_of_scenario"
            self.spell = None

    # -- observations --

    def arm_periodic(self, at: int) -> None:
        """(Re)start the periodic-update timer."""
        self.periodic_token += 1
        self.push(at, EV_PERIODIC, self.periodic_token)

    def observe_location(self, t: int, cell: str) -> None:
        """Emit a ``location`` record."""
        self.ctx.out.add(t, {"type": "location", "subscriber_id": self.sub.subscriber_id,
                             "cell_id": cell, "event_time": fmt_time(t)})
        self.trace.obs_times.append(t)
        self.trace.obs_cells.append(cell)
        self.missed_update = False
        self.arm_periodic(t + self.ctx.cfg.periodic_update_s)

    # -- service state --

    def close_serving(self, t: int) -> None:
        if self.serving is not None and t > self.serving_since:
            self.ctx.kpi.camped(self.serving, self.serving_since, t)

    def serve(self, t: int, cell: str, report: bool) -> None:
        """Camp on ``cell`` (which is up) and watch for it going down."""
        self.close_serving(t)
        self.serving, self.serving_since = cell, t
        self.gen += 1
        nxt = self.status.next_down_after(cell, t)
        if nxt is not None and nxt.start < self.t1:
            self.push(nxt.start, EV_DOWN, self.gen)
        if report or self.missed_update:
            self.observe_location(t, cell)

    def lose(self, t: int, period: DownPeriod, cell: str, at_start: bool) -> None:
        """Service lost because ``cell`` is down in ``period``; maybe reselect later."""
        self.close_serving(t)
        self.serving = None
        self.gen += 1
        self.spell = LossSpell(period, cell, t, at_start)
        self.trace.spells.append(self.spell)
        pos_down = self.status.down_period(self.pos, t)
        up_at = pos_down.end if pos_down is not None else t + self.rng.randint(5, 30)
        self.push(up_at, EV_UP, self.gen)
        if self.rng.random() < RESELECT_P[period.scope]:
            at = t + self.rng.randint(60, 180)
            if at < up_at:
                self.push(at, EV_RESELECT, self.gen)

    def regain(self, t: int, how: str) -> None:
        """Close the current loss spell."""
        assert self.spell is not None
        self.spell.lost_to, self.spell.recovered_by = t, how
        self.spell = None

    def fallback_cell(self, t: int) -> str | None:
        """An up cell of the same site (preferred) or of one of the 3 nearest sites."""
        topo, rng, up = self.ctx.topo, self.rng, self.status.is_up
        site = topo.site_of(self.pos)
        same = [c for c in site.cell_ids if c != self.pos and up(c, t)]
        if same and rng.random() < 0.6:
            return rng.choice(same)
        near = [c for s in topo.neighbours[site.site_id][:3]
                for c in topo.site_by_id[s].cell_ids if up(c, t)]
        pool = near or same
        return rng.choice(pool) if pool else None

    # -- handlers --

    def on_down(self, t: int, _: object) -> None:
        assert self.serving is not None
        period = self.status.down_period(self.serving, t)
        assert period is not None
        self.lose(t, period, self.serving, at_start=t == period.start)

    def on_up(self, t: int, _: object) -> None:
        pos_down = self.status.down_period(self.pos, t)
        if pos_down is not None:  # still (or again) down: wait for it
            self.push(pos_down.end, EV_UP, self.gen)
            return
        assert self.spell is not None
        # Back on their own cell: because the outage is over, or (rarely: they
        # were on a fallback cell that failed) because their own cell is up.
        self.regain(t, "restored" if t >= self.spell.period.end else "reselected")
        self.serve(t, self.pos, report=self.rng.random() < 0.3)

    def on_reselect(self, t: int, _: object) -> None:
        cell = self.fallback_cell(t)
        if cell is None:
            return
        self.regain(t, "reselected")
        self.serve(t, cell, report=True)
        pos_down = self.status.down_period(self.pos, t)
        back = (pos_down.end if pos_down is not None else t) + self.rng.randint(5, 60)
        self.push(back, EV_RETURN, self.gen)

    def on_return(self, t: int, _: object) -> None:
        if self.serving != self.pos and self.status.is_up(self.pos, t):
            self.serve(t, self.pos, report=self.rng.random() < MOVE_REPORT_P)

    def on_move(self, t: int, cell: object) -> None:
        assert isinstance(cell, str)
        self.pos = cell
        period = self.status.down_period(cell, t)
        reported = self.rng.random() < MOVE_REPORT_P
        if self.serving is None:
            assert self.spell is not None
            if period is None:
                self.regain(t, "moved")
                self.serve(t, cell, report=reported)
            elif period is not self.spell.period:
                self.regain(t, "moved")
                self.lose(t, period, cell, at_start=False)
        elif period is not None:
            self.lose(t, period, cell, at_start=False)
        elif cell != self.serving:
            self.serve(t, cell, report=reported)

    def on_call(self, t: int, _: object) -> None:
        if self.in_call or self.serving is None:
            return
        rng, cell = self.rng, self.serving
        duration = max(5, int(rng.expovariate(1.0 / self.ctx.cfg.mean_call_s)))
        self.ctx.kpi.call_started(cell, t)
        self.n_calls += 1
        call_id = f"CL{self.sub.index:06d}-{self.n_calls:03d}"
        nxt = self.status.next_down_after(cell, t)
        degradation = self.ctx.plan.degradation_at(cell, t)
        degraded = degradation is not None
        rate = degradation.rate_at(t) if degradation is not None else HEALTHY_DROP_RATE
        if nxt is not None and nxt.start < t + duration:
            end, cause, period = nxt.start, CAUSE_OUTAGE, nxt
        elif rng.random() < rate * self.drop_factor:
            end, cause, period = t + rng.randint(1, duration), rng.choice(DROP_CAUSES), None
        else:
            end, cause, period = t + duration, CAUSE_NORMAL, None
        self.in_call = True
        self.push(end, EV_CALL_END, data=(call_id, cell, t, cause, period, degraded))

    def on_call_end(self, t: int, data: object) -> None:
        call_id, cell, start, cause, period, degraded = data  # type: ignore[misc]
        self.in_call = False
        dropped = cause != CAUSE_NORMAL
        self.ctx.out.add(t, {
            "type": "call", "call_id": call_id, "subscriber_id": self.sub.subscriber_id,
            "cell_id": cell, "start_time": fmt_time(start), "end_time": fmt_time(t),
            "dropped": dropped, "cause_code": cause,
        })
        self.trace.calls += 1
        self.trace.obs_times.append(t)
        self.trace.obs_cells.append(cell)
        self.arm_periodic(t + self.ctx.cfg.periodic_update_s)
        if dropped:
            self.ctx.kpi.call_dropped(cell, t)
            self.trace.drops.append(DroppedCall(call_id, cell, start, t, cause, period, degraded))
            if self.rng.random() < REDIAL_P:
                self.push(t + self.rng.randint(15, 120), EV_CALL)

    def on_periodic(self, t: int, _: object) -> None:
        if self.in_call:
            return  # connected: the call's end restarts the timer
        if self.serving is None:
            self.missed_update = True  # reported as soon as service is back
            return
        self.observe_location(t, self.serving)


def simulate_subscriber(ctx: TrafficContext, sub: SubscriberInfo) -> Trace:
    """Run one subscriber's simulation with their own random stream."""
    return _SubscriberSim(ctx, sub, ctx.cfg.rng("subscriber", sub.index)).run()
