"""Per-cell 15-minute KPI counters, consistent with the simulated calls.

Periods are aligned to quarter hours; only whole periods inside the scenario
are reported.

- ``call_attempts``: calls *started* on the cell in ``[period_start, period_start + 900)``
  (including calls still running at the scenario end).
- ``dropped_calls``: reported dropped calls on the cell whose ``end_time`` falls in the period.
- ``active_users``: subscribers camped on the cell at mid-period.
- A cell that is down at the last second of a period reports nothing for that period,
  unless it is *sleeping* (a silent failure): then it reports, with no attempts and no
  active users (nobody is served), an RRC success rate of 0.55-0.85 and no throughput.
- On a slowly degrading cell the RRC success rate sags with the ramp (up to -4 points).
"""

from __future__ import annotations

import random

from forewarn.simulator.config import fmt_time
from forewarn.simulator.network import NetworkPlan
from forewarn.simulator.topology import Topology

PERIOD_S = 900
_HALF = PERIOD_S // 2


def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


class KpiCounters:
    """Counters the traffic simulation fills in as it goes."""

    def __init__(self, cell_ids: list[str], t0: int, t1: int) -> None:
        self.t0 = _ceil_div(t0, PERIOD_S) * PERIOD_S  # periods align to quarter hours
        self.n = max(0, (t1 - self.t0) // PERIOD_S)
        self.attempts = {c: [0] * self.n for c in cell_ids}
        self.drops = {c: [0] * self.n for c in cell_ids}
        self._camped = {c: [0] * (self.n + 1) for c in cell_ids}

    def _period(self, t: int) -> int:
        return (t - self.t0) // PERIOD_S

    def call_started(self, cell_id: str, t: int) -> None:
        """A call attempt on ``cell_id`` at ``t``."""
        k = self._period(t)
        if 0 <= k < self.n:
            self.attempts[cell_id][k] += 1

    def call_dropped(self, cell_id: str, t: int) -> None:
        """A call on ``cell_id`` dropped at ``t``."""
        k = self._period(t)
        if 0 <= k < self.n:
            self.drops[cell_id][k] += 1

    def camped(self, cell_id: str, a: int, b: int) -> None:
        """A subscriber was served by ``cell_id`` during ``[a, b)``."""
        first = max(0, _ceil_div(a - self.t0 - _HALF, PERIOD_S))
        last = min(self.n - 1, _ceil_div(b - self.t0 - _HALF, PERIOD_S) - 1)
        if first <= last:
            diff = self._camped[cell_id]
            diff[first] += 1
            diff[last + 1] -= 1

    def active_users(self, cell_id: str) -> list[int]:
        """Camped subscribers at mid-period, per period."""
        out, running = [], 0
        for step in self._camped[cell_id][: self.n]:
            running += step
            out.append(running)
        return out


def _rrc_success(plan: NetworkPlan, cell_id: str, start: int, end: int,
                 rng: random.Random) -> float:
    """RRC setup success: lower on degraded cells and in periods with an outage.

    One random draw whatever the case, so that silent failures leave the KPI values
    of every other cell unchanged.
    """
    deg = plan.degradation_at(cell_id, end - 1)
    if deg is not None and deg.ramp_s > 0:
        sag = 0.04 * deg.progress(end - 1)
        return rng.uniform(0.985 - sag, 0.999 - sag)
    if deg is not None:
        return rng.uniform(0.90, 0.97)
    nxt = plan.status.next_down_after(cell_id, start - 1)
    if nxt is not None and nxt.start < end:
        return rng.uniform(0.93, 0.98)
    recovering = plan.status.down_period(cell_id, start - 1)
    if recovering is not None:
        return rng.uniform(0.93, 0.98)
    return rng.uniform(0.985, 0.999)


def kpi_records(counters: KpiCounters, topo: Topology, plan: NetworkPlan,
                rng: random.Random) -> list[tuple[int, dict]]:
    """``kpi`` records of every cell that is up at the end of the period."""
    out: list[tuple[int, dict]] = []
    for cell in topo.cells:
        cid = cell.cell_id
        active = counters.active_users(cid)
        base = 180.0 if cell.technology == "nr" else 35.0
        for k in range(counters.n):
            start = counters.t0 + k * PERIOD_S
            end = start + PERIOD_S
            down = plan.status.down_period(cid, end - 1)
            sleeping = down is not None and down.kind == "sleeping"
            if down is not None and not sleeping:
                continue
            rrc = rng.uniform(0.55, 0.85) if sleeping else _rrc_success(plan, cid, start, end, rng)
            load = min(0.6, active[k] / 400)
            throughput = base * (1 - load) * rng.uniform(0.7, 1.2)
            out.append((end, {
                "type": "kpi",
                "cell_id": cid,
                "period_start": fmt_time(start),
                "period_s": PERIOD_S,
                "call_attempts": counters.attempts[cid][k],
                "dropped_calls": counters.drops[cid][k],
                "rrc_success_rate": round(rrc, 4),
                "dl_throughput_mbps": 0.0 if sleeping else round(throughput, 1),
                "active_users": active[k],
            }))
    return out
