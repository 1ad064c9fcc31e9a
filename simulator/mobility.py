"""Where each subscriber physically is: their best-server cell over time.

A day plan (UTC clock, which is UK local time in winter) per calendar day:
commuters (those with a work cell) leave home around 08:00, often through a
transit cell near home, sometimes go out at lunch, return around 17:30, and
sometimes go out in the evening; everyone else makes ~1.2 short trips a day to
a nearby site between 08:00 and 21:00. Only the part inside the scenario
window is kept, so a window scales the number of moves naturally.
"""

from __future__ import annotations

import math
import random

from forewarn.simulator.population import SubscriberInfo
from forewarn.simulator.topology import Topology

DAY = 86400
HOUR = 3600
MINUTE = 60


def _clamp(x: float, lo: float, hi: float) -> int:
    return int(min(max(x, lo), hi))


def _poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (Knuth; fine for small means)."""
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


class _DayPlan:
    """Moves of one day, kept strictly increasing in time."""

    def __init__(self, day0: int) -> None:
        self.day0 = day0
        self.moves: list[tuple[int, str]] = []

    def go(self, t: int, cell: str) -> int:
        """Move to ``cell`` at ``t`` (pushed after the previous move); the time used."""
        if self.moves and t <= self.moves[-1][0]:
            t = self.moves[-1][0] + MINUTE
        self.moves.append((t, cell))
        return t

    def trip(self, rng: random.Random, t: int, dest: str, back: str, dwell: tuple[int, int]) -> int:
        """Go to ``dest`` at ``t``, stay ``dwell`` minutes, return to ``back``; the return time."""
        t = self.go(t, dest)
        return self.go(t + rng.randint(*dwell) * MINUTE, back)


def _commuter_day(rng: random.Random, sub: SubscriberInfo, topo: Topology, day0: int) -> _DayPlan:
    """Home -> (transit) -> work (-> lunch -> work) -> (transit) -> home (-> evening trip)."""
    assert sub.work_cell is not None
    plan = _DayPlan(day0)
    home_site = topo.cell_by_id[sub.home_cell].site_id
    work_site = topo.cell_by_id[sub.work_cell].site_id
    t = day0 + _clamp(rng.gauss(8 * HOUR, 35 * MINUTE), 6.5 * HOUR, 10 * HOUR)
    if rng.random() < 0.7:
        t = plan.go(t, topo.nearby_cell(rng, home_site, 3)) + rng.randint(8, 25) * MINUTE
    t = plan.go(t, sub.work_cell)
    if rng.random() < 0.25:
        lunch = max(t + HOUR, day0 + 12 * HOUR + rng.randint(0, 90) * MINUTE)
        t = plan.trip(rng, lunch, topo.nearby_cell(rng, work_site, 4), sub.work_cell, (30, 60))
    leave = max(t + HOUR, day0 + _clamp(rng.gauss(17.5 * HOUR, 40 * MINUTE), 15.5 * HOUR,
                                        20 * HOUR))
    if rng.random() < 0.7:
        leave = plan.go(leave, topo.nearby_cell(rng, work_site, 3)) + rng.randint(8, 25) * MINUTE
    t = plan.go(leave, sub.home_cell)
    if rng.random() < 0.2:
        evening = max(t + 30 * MINUTE, day0 + 19 * HOUR + rng.randint(0, 90) * MINUTE)
        plan.trip(rng, evening, topo.nearby_cell(rng, home_site, 8), sub.home_cell, (60, 120))
    return plan


def _homebody_day(rng: random.Random, sub: SubscriberInfo, topo: Topology, day0: int) -> _DayPlan:
    """~1.2 short trips to a nearby site between 08:00 and 21:00."""
    plan = _DayPlan(day0)
    home_site = topo.cell_by_id[sub.home_cell].site_id
    starts = sorted(rng.randint(8 * HOUR, 21 * HOUR) for _ in range(_poisson(rng, 1.2)))
    busy_until = 0
    for offset in starts:
        t = day0 + offset
        if t <= busy_until:
            continue
        busy_until = plan.trip(rng, t, topo.nearby_cell(rng, home_site, 8), sub.home_cell,
                               (20, 150))
    return plan


def plan_moves(rng: random.Random, sub: SubscriberInfo, topo: Topology, t0: int,
               t1: int) -> tuple[str, list[tuple[int, str]]]:
    """The cell a subscriber is in at ``t0`` and their moves ``(time, cell)`` in (t0, t1)."""
    moves: list[tuple[int, str]] = []
    for day0 in range(t0 - t0 % DAY, t1, DAY):
        day = (_commuter_day if sub.work_cell else _homebody_day)(rng, sub, topo, day0)
        moves.extend(day.moves)
    first = sub.home_cell
    inside: list[tuple[int, str]] = []
    for t, cell in moves:
        if t <= t0:
            first = cell
        elif t < t1:
            inside.append((t, cell))
    return first, inside
