"""What happens to the radio network: outages, maintenance, degradation and alarms.

The plan is made before any subscriber moves: a list of *down periods* (a
cell set of one site out of service from ``start`` to ``end``), degraded
cells (higher call-drop rate) and the X.733 alarms the OSS would report.

Outage kinds (``DownPeriod.kind``):

- ``cell``: one cell fails (transmitterFailure / equipmentMalfunction / cellUnavailable).
- ``site``: a whole site fails, by ``power`` (one powerProblem alarm on the site) or
  ``backhaul`` (a lossOfSignal alarm per cell, staggered 0-40 s).
- ``blip``: either shape, restored within 20-110 s.
- ``flap``: one cell going down and up 4-8 times within 30 min; one period per cycle,
  all sharing the ``outage_id`` and numbered by ``cycle``.
- ``maintenance``: planned work; the cells are down inside a published window.
- ``storm``: a regional power cut (only when the scenario asks for one, see
  :func:`_place_storm`): a share of one region's sites lose mains power within 15 min
  (one powerProblem alarm each) and are restored one by one over hours.

Silent failures raise **no alarm at all** (the OSS says the cell is fine):

- ``sleeping``: a cell that stops serving (a down period of kind ``sleeping``, ids
  ``SIL0001``...): its subscribers lose service exactly as in an outage (and complain
  alike), its calls and location updates stop, and its KPIs keep coming with
  ``call_attempts`` and ``active_users`` ~0 and a low ``rrc_success_rate``.
- ``degradation`` (slow): the cell's drop rate climbs linearly from the healthy 1 % to
  8-20 % over 1-2 h, stays there for 20-60 min, then is fixed; RRC success sags with it.

They are planned with their own random stream after everything else, on sites free of
outages and of the (older, step-shaped) degraded cells, so adding them leaves the rest
of a seeded plan unchanged.

The truth start/end is when service was really lost/restored; alarms are raised
0-10 s later (site backhaul: 0-40 s) and cleared 0-20 s after restoration.
No outage starts in the first hour (``warm-up``: the stream starts cold and
idle phones report only every 54 min), and every outage ends before the end.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass

from forewarn.simulator.config import ScenarioConfig, fmt_time, parse_time
from forewarn.simulator.topology import Topology

HOUR = 3600
CELL_CAUSES = ("transmitterFailure", "equipmentMalfunction", "cellUnavailable")
ALARM_TYPE = {
    "transmitterFailure": "equipmentAlarm",
    "equipmentMalfunction": "equipmentAlarm",
    "cellUnavailable": "communicationsAlarm",
    "powerProblem": "equipmentAlarm",
    "lossOfSignal": "communicationsAlarm",
}
_PROBLEM = {
    "transmitterFailure": "RF transmitter failure",
    "equipmentMalfunction": "Baseband unit fault",
    "cellUnavailable": "Cell service unavailable",
    "powerProblem": "Mains power failure",
    "lossOfSignal": "Transport link loss of signal",
}
#: Alarms that never take a cell down: (probable cause, X.733 type, specific problem).
NOISE = (
    ("temperatureUnacceptable", "environmentalAlarm", "Cabinet temperature high"),
    ("highTemperature", "environmentalAlarm", "Radio unit temperature high"),
    ("enclosureDoorOpen", "environmentalAlarm", "Cabinet door open"),
    ("thresholdCrossed", "qualityOfServiceAlarm", "PRB utilisation above threshold"),
    ("performanceDegraded", "qualityOfServiceAlarm", "Throughput below threshold"),
    ("congestion", "qualityOfServiceAlarm", "RRC connection congestion"),
    ("degradedSignal", "communicationsAlarm", "VSWR above threshold"),
    ("timingProblem", "communicationsAlarm", "GPS synchronisation degraded"),
    ("softwareError", "processingErrorAlarm", "Software process restarted"),
    ("configurationOrCustomizationError", "processingErrorAlarm", "Parameter inconsistency"),
)
#: Low-severity alarms with loss-of-service causes that do not take cells down either.
NOISE_REDUNDANT = (
    ("equipmentMalfunction", "equipmentAlarm", "Redundant fan unit failure"),
    ("powerProblem", "equipmentAlarm", "Battery backup degraded"),
    ("transmitterFailure", "equipmentAlarm", "Diversity branch failure"),
    ("lossOfSignal", "communicationsAlarm", "Redundant transport link down"),
)
DEGRADATION_CAUSES = (
    ("thresholdCrossed", "qualityOfServiceAlarm", "Call drop rate above threshold"),
    ("performanceDegraded", "qualityOfServiceAlarm", "Radio link failures increased"),
    ("degradedSignal", "communicationsAlarm", "Uplink interference detected"),
)


@dataclass(frozen=True, slots=True)
class DownPeriod:
    """Cells of one site truly out of service from ``start`` to ``end`` (seconds)."""

    outage_id: str
    kind: str
    scope: str
    cycle: int | None
    site_id: str
    cell_ids: tuple[str, ...]
    start: int
    end: int
    cause: str
    probable_cause: str
    window_id: str | None
    alarm_ids: tuple[str, ...]

    @property
    def planned(self) -> bool:
        return self.kind == "maintenance"

    @property
    def flapping(self) -> bool:
        return self.kind == "flap"

    def truth(self) -> dict:
        """The ``truth_outage`` record of this period."""
        return {
            "type": "truth_outage",
            "outage_id": self.outage_id,
            "kind": self.kind,
            "scope": self.scope,
            "cycle": self.cycle,
            "cause": self.cause,
            "probable_cause": self.probable_cause,
            "site_id": self.site_id,
            "cell_ids": list(self.cell_ids),
            "start_time": fmt_time(self.start),
            "end_time": fmt_time(self.end),
            "duration_s": self.end - self.start,
            "planned": self.planned,
            "window_id": self.window_id,
            "alarm_ids": list(self.alarm_ids),
        }


HEALTHY_DROP_RATE = 0.01


@dataclass(frozen=True, slots=True)
class Degradation:
    """A cell dropping calls at ``drop_rate`` between ``start`` and ``end``.

    With ``ramp_s`` > 0 (a slow, silent degradation) the rate climbs linearly from
    the healthy rate to ``drop_rate`` over the first ``ramp_s`` seconds.

    >>> d = Degradation("C", 0, 7200, 0.11, ramp_s=3600)
    >>> d.rate_at(0), d.rate_at(1800), d.rate_at(5000), d.progress(1800)
    (0.01, 0.06, 0.11, 0.5)
    """

    cell_id: str
    start: int
    end: int
    drop_rate: float
    ramp_s: int = 0
    failure_id: str | None = None

    def progress(self, t: int) -> float:
        """How far the ramp is at ``t`` (1.0 for a step degradation)."""
        if self.ramp_s <= 0:
            return 1.0
        return min(1.0, max(0.0, (t - self.start) / self.ramp_s))

    def rate_at(self, t: int) -> float:
        """The drop rate in force at ``t``."""
        if self.ramp_s <= 0:
            return self.drop_rate
        return round(HEALTHY_DROP_RATE + (self.drop_rate - HEALTHY_DROP_RATE) * self.progress(t),
                     6)

    def truth(self) -> dict:
        """The ``truth_degraded_cell`` record."""
        return {
            "type": "truth_degraded_cell",
            "cell_id": self.cell_id,
            "start_time": fmt_time(self.start),
            "end_time": fmt_time(self.end),
            "drop_rate": self.drop_rate,
        }


def silent_truth(failure_id: str, kind: str, site_id: str, cell_id: str, start: int, end: int,
                 peak_drop_rate: float | None = None, ramp_s: int | None = None) -> dict:
    """The ``truth_silent_failure`` record of a sleeping cell or a slow degradation."""
    return {
        "type": "truth_silent_failure",
        "failure_id": failure_id,
        "kind": kind,
        "site_id": site_id,
        "cell_id": cell_id,
        "start_time": fmt_time(start),
        "end_time": fmt_time(end),
        "duration_s": end - start,
        "peak_drop_rate": peak_drop_rate,
        "ramp_s": ramp_s,
        "alarm_ids": [],
    }


class CellStatus:
    """Per-cell sorted down periods with point and next-change look-ups.

    >>> p = DownPeriod("O1", "cell", "cell", None, "S", ("C",), 100, 200, "x", "x", None, ())
    >>> st = CellStatus([p])
    >>> st.down_period("C", 99), st.down_period("C", 100).outage_id, st.down_period("C", 200)
    (None, 'O1', None)
    >>> st.next_down_after("C", 50).start, st.next_down_after("C", 100)
    (100, None)
    """

    def __init__(self, periods: list[DownPeriod]) -> None:
        self._periods: dict[str, list[DownPeriod]] = {}
        for period in sorted(periods, key=lambda p: (p.start, p.outage_id)):
            for cell_id in period.cell_ids:
                self._periods.setdefault(cell_id, []).append(period)
        self._starts = {c: [p.start for p in ps] for c, ps in self._periods.items()}

    def down_period(self, cell_id: str, t: int) -> DownPeriod | None:
        """The period during which ``cell_id`` is down at ``t`` (start <= t < end)."""
        starts = self._starts.get(cell_id)
        if not starts:
            return None
        i = bisect.bisect_right(starts, t) - 1
        if i >= 0:
            period = self._periods[cell_id][i]
            if t < period.end:
                return period
        return None

    def is_up(self, cell_id: str, t: int) -> bool:
        """Whether ``cell_id`` gives service at ``t``."""
        return self.down_period(cell_id, t) is None

    def next_down_after(self, cell_id: str, t: int) -> DownPeriod | None:
        """The first period of ``cell_id`` starting strictly after ``t``."""
        starts = self._starts.get(cell_id)
        if not starts:
            return None
        i = bisect.bisect_right(starts, t)
        return self._periods[cell_id][i] if i < len(starts) else None


@dataclass(slots=True)
class NetworkPlan:
    """Everything that happens to the network, in truth and as the OSS reports it."""

    periods: list[DownPeriod]
    degradations: list[Degradation]
    alarms: list[tuple[int, dict]]
    maintenance: list[tuple[int, dict]]
    status: CellStatus
    outage_kinds: dict[str, str]

    degraded_by_cell: dict[str, list[Degradation]]
    #: Silent failures: sleeping periods (also in ``status``) and slow degradations.
    sleeping: list[DownPeriod]
    slow_degradations: list[Degradation]
    site_of_cell: dict[str, str]
    storm: dict | None = None  # the truth_storm record, if the scenario has a storm

    def silent_truth(self) -> list[dict]:
        """``truth_silent_failure`` records, by start time then id."""
        records = [silent_truth(p.outage_id, "sleeping", p.site_id, p.cell_ids[0], p.start, p.end)
                   for p in self.sleeping]
        for d in self.slow_degradations:
            assert d.failure_id is not None
            records.append(silent_truth(d.failure_id, "degradation", self.site_of_cell[d.cell_id],
                                        d.cell_id, d.start, d.end, d.drop_rate, d.ramp_s))
        return sorted(records, key=lambda r: (r["start_time"], r["failure_id"]))

    def degradation_at(self, cell_id: str, t: int) -> Degradation | None:
        """The degradation of ``cell_id`` in force at ``t``, if any."""
        for deg in self.degraded_by_cell.get(cell_id, ()):
            if deg.start <= t < deg.end:
                return deg
        return None

    def degraded(self, cell_id: str, t: int) -> bool:
        """Whether ``cell_id`` is degraded at ``t``."""
        return self.degradation_at(cell_id, t) is not None


# ---- building the plan ----------------------------------------------------------


@dataclass(slots=True)
class _Period:
    """A down period before ids are assigned."""

    kind: str
    scope: str
    site_id: str
    cell_ids: tuple[str, ...]
    start: int
    end: int
    cause: str
    probable_cause: str
    cycle: int | None = None
    window_id: str | None = None
    group: int = 0
    alarm_ids: tuple[str, ...] = ()


@dataclass(slots=True)
class _Alarm:
    """An alarm before its id is assigned; ``clear`` is None if never cleared."""

    raise_t: int
    clear: int | None
    severity: str
    probable_cause: str
    alarm_type: str
    specific_problem: str
    target: tuple[str, str]
    managed_object: str
    additional_text: str | None = None
    period: _Period | None = None
    alarm_id: str = ""

    def records(self) -> list[tuple[int, dict]]:
        """The raise (and clear) records with their stream times."""
        base = {
            "type": "alarm",
            "alarm_id": self.alarm_id,
            self.target[0]: self.target[1],
            "probable_cause": self.probable_cause,
            "alarm_type": self.alarm_type,
            "specific_problem": self.specific_problem,
            "managed_object": self.managed_object,
        }
        raised = {**base, "event_time": fmt_time(self.raise_t), "perceived_severity": self.severity}
        if self.additional_text:
            raised["additional_text"] = self.additional_text
        out = [(self.raise_t, raised)]
        if self.clear is not None:
            out.append((self.clear, {**base, "event_time": fmt_time(self.clear),
                                     "perceived_severity": "cleared"}))
        return out


class _Planner:
    """Places outages on sites so that no two overlap on one site."""

    GAP = 1200

    def __init__(self, cfg: ScenarioConfig, topo: Topology, rng: random.Random) -> None:
        self.cfg, self.topo, self.rng = cfg, topo, rng
        self.t0, self.t1 = cfg.t0, cfg.t1
        window = self.t1 - self.t0
        self.lo = self.t0 + min(HOUR, window // 4)
        self.hi = self.t1 - min(900, window // 20)
        self.busy: dict[str, list[tuple[int, int]]] = {}
        self.periods: list[_Period] = []
        self.alarms: list[_Alarm] = []
        self.maintenance: list[tuple[int, dict]] = []
        self.groups = 0

    @property
    def span(self) -> int:
        return self.hi - self.lo

    # -- placement --

    def place(self, duration: int) -> tuple[str, int] | None:
        """A random site free for ``duration`` seconds and a start time, or None."""
        latest = self.hi - duration
        if latest < self.lo:
            return None
        for _ in range(200):
            site = self.rng.choice(self.topo.sites).site_id
            start = self.rng.randint(self.lo, latest)
            if all(start + duration + self.GAP <= a or b + self.GAP <= start
                   for a, b in self.busy.get(site, ())):
                self.busy.setdefault(site, []).append((start, start + duration))
                return site, start
        return None

    def duration(self) -> int:
        """Log-normal outage length, median 40 min, within 5 min .. 5 h and the window."""
        d = int(self.rng.lognormvariate(math.log(2400), 0.9))
        return max(min(300, self.span), min(d, 5 * HOUR, self.span))

    def new_group(self) -> int:
        self.groups += 1
        return self.groups

    # -- alarms --

    def managed_object(self, site_id: str, cell_id: str | None, unit: str = "") -> str:
        """A 3GPP-style distinguished name for the alarmed object."""
        base = f"SubNetwork=Forewarn,MeContext={site_id},ManagedElement=1"
        if cell_id is None:
            return f"{base},{unit}"
        if self.topo.cell_by_id[cell_id].technology == "nr":
            return f"{base},GNBDUFunction=1,NRCellDU={cell_id}"
        return f"{base},ENodeBFunction=1,EUtranCellFDD={cell_id}"

    def outage_alarm(self, period: _Period, cell_id: str | None, cause: str, severity: str,
                     delays: tuple[int, int], text: str | None = None) -> None:
        """An alarm raised ``delays[0]`` after the start, cleared ``delays[1]`` after the end."""
        unit = "Equipment=1,PowerSupply=1" if cause == "powerProblem" else ""
        target = ("cell_id", cell_id) if cell_id else ("site_id", period.site_id)
        self.alarms.append(_Alarm(
            raise_t=period.start + delays[0],
            clear=period.end + delays[1],
            severity=severity,
            probable_cause=cause,
            alarm_type=ALARM_TYPE[cause],
            specific_problem=_PROBLEM[cause],
            target=target,
            managed_object=self.managed_object(period.site_id, cell_id, unit),
            additional_text=text,
            period=period,
        ))

    # -- outage shapes --

    def cell_down(self, kind: str, site_id: str, start: int, duration: int, blip: bool) -> None:
        """One cell of ``site_id`` fails."""
        rng = self.rng
        cell_id = rng.choice(self.topo.site_by_id[site_id].cell_ids)
        cause = rng.choice(CELL_CAUSES)
        period = _Period(kind, "cell", site_id, (cell_id,), start, start + duration,
                         cause, cause, group=self.new_group())
        self.periods.append(period)
        severity = "critical" if rng.random() < 0.6 else "major"
        clear = rng.randint(0, 5) if blip else rng.randint(0, 10)
        self.outage_alarm(period, cell_id, cause, severity, (rng.randint(0, 10), clear))

    def site_down(self, kind: str, site_id: str, start: int, duration: int, blip: bool,
                  reason: str | None = None) -> None:
        """A whole site fails: ``power`` (one site alarm) or ``backhaul`` (alarm per cell)."""
        rng = self.rng
        reason = reason or rng.choice(("power", "backhaul"))
        cells = self.topo.site_by_id[site_id].cell_ids
        probable = "powerProblem" if reason == "power" else "lossOfSignal"
        period = _Period(kind, "site", site_id, cells, start, start + duration, reason,
                         probable, group=self.new_group())
        self.periods.append(period)
        if reason == "power":
            clear = rng.randint(0, 5) if blip else rng.randint(0, 10)
            self.outage_alarm(period, None, probable, "critical", (rng.randint(0, 5), clear))
            return
        stagger = min(40, duration // 2)
        severity = "critical" if rng.random() < 0.5 else "major"
        for cell_id in cells:
            clear = rng.randint(0, 5) if blip else rng.randint(0, 20)
            self.outage_alarm(period, cell_id, probable, severity,
                              (rng.randint(0, stagger), clear), "Transport link to core lost")

    def flap(self, site_id: str, start: int, cycles: list[tuple[int, int]]) -> None:
        """One cell going down and up: ``cycles`` are (offset, duration) pairs."""
        rng = self.rng
        cell_id = rng.choice(self.topo.site_by_id[site_id].cell_ids)
        cause = rng.choice(("cellUnavailable", "transmitterFailure"))
        severity = "critical" if rng.random() < 0.5 else "major"
        group = self.new_group()
        for n, (offset, down) in enumerate(cycles, start=1):
            period = _Period("flap", "cell", site_id, (cell_id,), start + offset,
                             start + offset + down, cause, cause, cycle=n, group=group)
            self.periods.append(period)
            self.outage_alarm(period, cell_id, cause, severity,
                              (rng.randint(0, 5), rng.randint(0, 5)))

    def flap_cycles(self) -> list[tuple[int, int]]:
        """4-8 cycles within 30 min, each down 20-200 s."""
        rng = self.rng
        limit = min(1800, self.span)
        downs = [rng.randint(20, 200) for _ in range(rng.randint(4, 8))]
        gaps = [rng.randint(30, 240) for _ in downs[1:]]
        total = sum(downs) + sum(gaps)
        if total > limit:
            room = max(len(gaps) * 5, limit - sum(downs))
            gaps = [max(5, g * room // max(1, sum(gaps))) for g in gaps]
        cycles, offset = [], 0
        for i, down in enumerate(downs):
            cycles.append((offset, down))
            offset += down + (gaps[i] if i < len(gaps) else 0)
        return cycles

    def maintenance_window(self, number: int) -> None:
        """A published window; the cells really go down inside it."""
        rng = self.rng
        length = min(rng.randint(60, 150) * 60, int(self.span * 0.6))
        placed = self.place(length)
        if placed is None:
            return
        site_id, ws = placed
        we = ws + length
        cells = self.topo.site_by_id[site_id].cell_ids
        window_id = f"MW{number:04d}"
        record = {"type": "maintenance", "window_id": window_id, "op": "upsert",
                  "start_time": fmt_time(ws), "end_time": fmt_time(we)}
        if rng.random() < 0.5:
            scope, down_cells = "site", cells
            record["site_ids"] = [site_id]
            record["description"] = f"Planned power works at {site_id}"
        else:
            scope = "cell"
            down_cells = tuple(sorted(rng.sample(cells, rng.randint(1, 2))))
            record["cell_ids"] = list(down_cells)
            record["description"] = "Planned antenna replacement"
        self.maintenance.append((max(self.t0, ws - rng.randint(2700, 5400)), record))
        start = ws + rng.randint(0, min(900, length // 4))
        end = we - rng.randint(0, min(1200, length // 4))
        period = _Period("maintenance", scope, site_id, down_cells, start, max(end, start + 300),
                         "planned_work", "cellUnavailable", window_id=window_id,
                         group=self.new_group())
        self.periods.append(period)
        for cell_id in down_cells:
            self.outage_alarm(period, cell_id, "cellUnavailable", "major",
                              (rng.randint(0, 20), rng.randint(0, 20)))

    def cancelled_window(self, number: int) -> None:
        """A window announced and then cancelled: nothing happens."""
        rng = self.rng
        site = rng.choice(self.topo.sites)
        ws = rng.randint(self.lo, max(self.lo, self.hi - HOUR))
        record = {"type": "maintenance", "window_id": f"MW{number:04d}", "op": "upsert",
                  "start_time": fmt_time(ws), "end_time": fmt_time(ws + HOUR),
                  "site_ids": [site.site_id], "description": "Planned software upgrade"}
        announced = max(self.t0, ws - rng.randint(2700, 5400))
        self.maintenance.append((announced, record))
        cancel = {**record, "op": "cancel"}
        self.maintenance.append((rng.randint(announced, max(announced, ws - 60)), cancel))

    # -- noise --

    def noise_alarm(self) -> None:
        """A minor/warning/indeterminate alarm that takes nothing down; 30 % never clear."""
        rng = self.rng
        site = rng.choice(self.topo.sites)
        if rng.random() < 0.15:
            cause, atype, problem = rng.choice(NOISE_REDUNDANT)
            severity = rng.choice(("minor", "warning"))
        else:
            cause, atype, problem = rng.choice(NOISE)
            severity = rng.choices(("minor", "warning", "indeterminate"), (45, 40, 15))[0]
        cell_id = rng.choice(site.cell_ids) if rng.random() < 0.6 else None
        raise_t = rng.randint(self.t0, self.t1 - 60)
        clear = raise_t + rng.randint(120, 2 * HOUR) if rng.random() < 0.7 else None
        target = ("cell_id", cell_id) if cell_id else ("site_id", site.site_id)
        unit = "Equipment=1" if cell_id is None else ""
        self.alarms.append(_Alarm(
            raise_t, clear if clear is not None and clear < self.t1 else None, severity, cause,
            atype, problem, target, self.managed_object(site.site_id, cell_id, unit)))

    def degradations(self) -> list[Degradation]:
        """~2 % of cells degraded for some hours (drop rate 5-15 %)."""
        rng = self.rng
        cells = self.topo.cells
        share = self.cfg.degraded_cell_share
        n = min(len(cells), max(1, round(share * len(cells)))) if share > 0 else 0
        window = self.t1 - self.t0
        out = []
        for cell in rng.sample(cells, n):
            start = rng.randint(self.t0, self.t1 - int(window * 0.3))
            length = rng.randint(HOUR, 4 * HOUR) if window >= 5 * HOUR else int(
                window * rng.uniform(0.3, 0.7))
            deg = Degradation(cell.cell_id, start, min(start + length, self.t1),
                              round(rng.uniform(0.05, 0.15), 3))
            out.append(deg)
            if rng.random() < 0.5:
                self.degradation_alarm(deg)
        return sorted(out, key=lambda d: (d.start, d.cell_id))

    def degradation_alarm(self, deg: Degradation) -> None:
        """Half the degraded cells raise a minor QoS alarm some minutes in."""
        rng = self.rng
        raise_t = deg.start + rng.randint(300, 1200)
        if raise_t >= min(deg.end, self.t1):
            return
        cause, atype, problem = rng.choice(DEGRADATION_CAUSES)
        site_id = self.topo.cell_by_id[deg.cell_id].site_id
        self.alarms.append(_Alarm(
            raise_t, deg.end if deg.end < self.t1 else None, rng.choice(("minor", "warning")),
            cause, atype, problem, ("cell_id", deg.cell_id),
            self.managed_object(site_id, deg.cell_id)))


def _plan_silent(pl: _Planner, degraded: list[Degradation]) -> tuple[list[DownPeriod],
                                                                      list[Degradation]]:
    """Sleeping cells and slow degradations: no alarm, own random stream, free sites only."""
    cfg = pl.cfg
    pl.rng = rng = cfg.rng("silent")
    taken = {pl.topo.cell_by_id[d.cell_id].site_id for d in degraded}
    picks: list[tuple[str, str, int, int, int]] = []  # kind, site, start, duration, ramp

    def place(kind: str, duration: int, ramp: int = 0) -> None:
        for _ in range(20):
            placed = pl.place(duration)
            if placed is None:
                return
            if placed[0] not in taken:
                taken.add(placed[0])
                picks.append((kind, placed[0], placed[1], duration, ramp))
                return

    for _ in range(cfg.scaled(cfg.sleeping_cells)):
        place("sleeping", min(rng.randint(45, 150) * 60, int(pl.span * 0.6)))
    for _ in range(cfg.scaled(cfg.slow_degradations)):
        ramp, plateau = rng.randint(60, 120) * 60, rng.randint(20, 60) * 60
        total = min(ramp + plateau, int(pl.span * 0.8))
        place("degradation", total, min(ramp, int(total * 0.7)))
    sleeping: list[DownPeriod] = []
    slow: list[Degradation] = []
    for n, (kind, site_id, start, duration, ramp) in enumerate(
            sorted(picks, key=lambda p: (p[2], p[1])), start=1):
        cell_id = rng.choice(pl.topo.site_by_id[site_id].cell_ids)
        if kind == "sleeping":
            sleeping.append(DownPeriod(f"SIL{n:04d}", "sleeping", "cell", None, site_id,
                                       (cell_id,), start, start + duration, "sleeping_cell",
                                       "none", None, ()))
        else:
            slow.append(Degradation(cell_id, start, start + duration,
                                    round(rng.uniform(0.08, 0.2), 3), ramp,
                                    f"SIL{n:04d}"))
    return sleeping, slow


def _place_outages(pl: _Planner) -> None:
    """Schedule cell, site, blip, flap and maintenance outages (scaled counts)."""
    cfg, rng = pl.cfg, pl.rng
    n_site = cfg.scaled(cfg.site_outages)
    long_first = pl.span >= 4 * HOUR + 600
    for i in range(n_site):
        if i == 0 and long_first:  # the scenario needs a > 4 h outage, starting early enough
            d = rng.randint(4 * HOUR + 300, min(5 * HOUR, pl.span))
        else:
            d = pl.duration()
        if (placed := pl.place(d)) is not None:
            pl.site_down("site", placed[0], placed[1], d, blip=False)
    for _ in range(cfg.scaled(cfg.cell_outages)):
        d = pl.duration()
        if (placed := pl.place(d)) is not None:
            pl.cell_down("cell", placed[0], placed[1], d, blip=False)
    for _ in range(cfg.scaled(cfg.blips)):
        d = rng.randint(20, 110)
        if (placed := pl.place(d)) is not None:
            if rng.random() < 0.6:
                pl.cell_down("blip", placed[0], placed[1], d, blip=True)
            else:
                pl.site_down("blip", placed[0], placed[1], d, blip=True)
    for _ in range(cfg.scaled(cfg.flapping_cells)):
        cycles = pl.flap_cycles()
        total = cycles[-1][0] + cycles[-1][1]
        if (placed := pl.place(total)) is not None:
            pl.flap(placed[0], placed[1], cycles)
    n_maint = cfg.scaled(cfg.maintenance_windows)
    for number in range(1, n_maint + 1):
        pl.maintenance_window(number)
    if n_maint:
        pl.cancelled_window(n_maint + 1)


def _finalise(pl: _Planner) -> tuple[list[DownPeriod], dict[str, str], dict[int, str]]:
    """Number outages (by first start) and alarms (by raise time); freeze the periods."""
    first_start: dict[int, int] = {}
    for p in pl.periods:
        first_start[p.group] = min(first_start.get(p.group, p.start), p.start)
    order = sorted(first_start, key=lambda g: (first_start[g], g))
    outage_ids = {g: f"OUT{n:04d}" for n, g in enumerate(order, start=1)}
    for n, alarm in enumerate(sorted(pl.alarms, key=lambda a: a.raise_t), start=1):
        alarm.alarm_id = f"ALM{n:07d}"
        if alarm.period is not None:
            alarm.period.alarm_ids += (alarm.alarm_id,)
    periods = [
        DownPeriod(outage_ids[p.group], p.kind, p.scope, p.cycle, p.site_id, p.cell_ids, p.start,
                   p.end, p.cause, p.probable_cause, p.window_id, p.alarm_ids)
        for p in pl.periods
    ]
    periods.sort(key=lambda p: (p.start, p.outage_id, p.cycle or 0))
    kinds = {p.outage_id: p.kind for p in periods}
    return periods, kinds, outage_ids


STORM_ONSET_S = 900  # every hit site loses power within this of the storm's start
STORM_RESTORE_S = (5400, 18000)  # each is restored 1.5 to 5 h after the start


def _place_storm(pl: _Planner) -> list[int]:
    """A regional power cut, after everything else and with its own random stream (so a
    scenario without a storm is unchanged, and one with it has the same other outages,
    numbered among the storm's by start time): a share of the
    region's sites lose mains power within :data:`STORM_ONSET_S` of the start (earlier
    for sites nearer the region's first hit, as a front moves) and are restored one by
    one between 1.5 and 5 h after it (crews, then generators). A site already down then
    for another reason keeps that outage. Returns the outage groups of the hit sites."""
    cfg = pl.cfg
    if cfg.storm_region is None:
        return []
    rng = cfg.rng("storm")
    region = [s for s in pl.topo.sites if s.region == cfg.storm_region]
    if not region:
        known = sorted({s.region for s in pl.topo.sites})
        raise ValueError(f"storm region {cfg.storm_region!r} has no sites "
                         f"(regions: {', '.join(known)})")
    t_start = (parse_time(cfg.storm_start) if cfg.storm_start is not None
               else cfg.t0 + int((cfg.t1 - cfg.t0) * 0.4))
    hit = sorted(rng.sample(region, max(1, round(len(region) * cfg.storm_share))),
                 key=lambda s: s.site_id)
    first = min(hit, key=lambda s: (s.lat, s.site_id))  # the front comes from the south
    reach = max(s.lat - first.lat for s in hit) or 1.0
    groups = []
    network_rng, pl.rng = pl.rng, rng  # alarm delays from the storm's stream too
    for site in hit:
        start = t_start + int(STORM_ONSET_S * (site.lat - first.lat) / reach) \
            + rng.randint(0, 60)
        end = min(start + rng.randint(*STORM_RESTORE_S), pl.t1 - 600)
        if end <= start + 120 or start < pl.t0:
            continue  # outside the scenario
        if any(not (end + pl.GAP <= a or b + pl.GAP <= start)
               for a, b in pl.busy.get(site.site_id, ())):
            continue  # down already then
        pl.busy.setdefault(site.site_id, []).append((start, end))
        pl.site_down("storm", site.site_id, start, end - start, blip=False, reason="power")
        groups.append(pl.groups)
    pl.rng = network_rng
    return groups


def plan_network(cfg: ScenarioConfig, topo: Topology) -> NetworkPlan:
    """Decide every outage, degradation and alarm of the scenario."""
    pl = _Planner(cfg, topo, cfg.rng("network"))
    _place_outages(pl)
    degradations = pl.degradations()
    for _ in range(cfg.scaled(cfg.noise_alarms)):
        pl.noise_alarm()
    storm_groups = _place_storm(pl)
    periods, kinds, outage_ids = _finalise(pl)
    storm = None
    if storm_groups:
        ids = {outage_ids[g] for g in storm_groups}
        hit = [p for p in periods if p.outage_id in ids]
        storm = {"type": "truth_storm", "storm_id": "STORM01", "cause": "powerProblem",
                 "region": cfg.storm_region,
                 "start_time": fmt_time(min(p.start for p in hit)),
                 "end_time": fmt_time(max(p.end for p in hit)),
                 "site_ids": sorted(p.site_id for p in hit),
                 "outage_ids": sorted(ids)}
    alarms = [rec for alarm in pl.alarms for rec in alarm.records()]
    sleeping, slow = _plan_silent(pl, degradations)
    return NetworkPlan(
        periods=periods,
        degradations=degradations,
        alarms=alarms,
        maintenance=pl.maintenance,
        status=CellStatus(periods + sleeping),
        outage_kinds=kinds,
        degraded_by_cell=_by_cell(degradations + slow),
        sleeping=sleeping,
        slow_degradations=slow,
        site_of_cell={c.cell_id: c.site_id for c in topo.cells},
        storm=storm,
    )


def _by_cell(degradations: list[Degradation]) -> dict[str, list[Degradation]]:
    """Degradations grouped by cell."""
    index: dict[str, list[Degradation]] = {}
    for deg in degradations:
        index.setdefault(deg.cell_id, []).append(deg)
    return index
