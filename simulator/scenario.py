"""Putting a scenario together: input lines in stream order, ground truth and counts.

>>> sc = simulate(ScenarioConfig(seed=3, sites=4, hours=1.5, subscribers_per_cell=3))
>>> sc.lines[0][:20]
b'{"type":"cell","cell'
>>> sorted({r["type"] for r in sc.truth})[:3]
['truth_bad_line', 'truth_complaint', 'truth_degraded_cell']
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import orjson

from forewarn.simulator.badlines import KINDS as BAD_KINDS
from forewarn.simulator.badlines import inject_bad_lines
from forewarn.simulator.config import ScenarioConfig, fmt_time
from forewarn.simulator.customers import (
    Complaint,
    background_complaints,
    burst_truth,
    number_complaints,
    outage_truth,
)
from forewarn.simulator.kpis import KpiCounters, kpi_records
from forewarn.simulator.network import NetworkPlan, plan_network
from forewarn.simulator.population import SubscriberInfo, build_population
from forewarn.simulator.records import REFERENCE_TIME, Collector
from forewarn.simulator.topology import Topology, build_topology
from forewarn.simulator.traffic import TrafficContext, simulate_subscriber

FOUR_HOURS = 4 * 3600


def _dumps(record: dict) -> bytes:
    """orjson serialisation, copied to an exact-size object.

    Keeping hundreds of thousands of orjson results alive is slow and memory
    hungry (each keeps its oversized allocation); the copy is much cheaper.
    """
    return bytes(memoryview(orjson.dumps(record)))


@dataclass(slots=True)
class Scenario:
    """A simulated scenario: what the OSS/BSS/care feeds say, and what really happened."""

    config: ScenarioConfig
    lines: list[bytes]
    truth: list[dict]
    stats: dict


@dataclass(slots=True)
class _Truth:
    """Truth records by type, before ordering."""

    impacts: list[dict]
    bursts: list[dict]
    complaints: list[Complaint]
    calls: int = 0
    dropped_calls: int = 0


def _reference_records(out: Collector, topo: Topology, pop: list[SubscriberInfo],
                       plan: NetworkPlan) -> None:
    """Cells, subscriber profile history and maintenance plans."""
    for cell in topo.cells:
        out.add(REFERENCE_TIME, cell.record())
    for sub in pop:
        for t, record in sub.versions:
            out.add(t, record)
    for t, record in plan.maintenance:
        out.add(t, record)
    for t, record in plan.alarms:
        out.add(t, record)


def _run_traffic(cfg: ScenarioConfig, ctx: TrafficContext, pop: list[SubscriberInfo]) -> _Truth:
    """Simulate every subscriber and derive their truth and complaints."""
    truth = _Truth([], [], [])
    for sub in pop:
        trace = simulate_subscriber(ctx, sub)
        impacts, outage_complaints = outage_truth(trace, cfg.t1)
        bursts, burst_complaints = burst_truth(trace, cfg.t1)
        truth.impacts.extend(impacts)
        truth.bursts.extend(bursts)
        truth.complaints.extend(outage_complaints + burst_complaints)
        truth.complaints.extend(background_complaints(trace, cfg))
        truth.calls += trace.calls
        truth.dropped_calls += len(trace.drops)
    number_complaints(truth.complaints)
    for complaint in truth.complaints:
        ctx.out.add(complaint.t, complaint.record())
    return truth


def _subscriber_truth(topo: Topology, pop: list[SubscriberInfo]) -> list[dict]:
    """Where each subscriber lives and works (``truth_subscriber``): what a flow that
    learns anchor places (home at night, work in working hours) is scored against."""
    site_of = {c.cell_id: c.site_id for c in topo.cells}
    return [{"type": "truth_subscriber", "subscriber_id": s.subscriber_id,
             "home_cell": s.home_cell, "home_site": site_of[s.home_cell],
             "work_cell": s.work_cell,
             "work_site": site_of[s.work_cell] if s.work_cell is not None else None}
            for s in pop]


def _ordered_truth(plan: NetworkPlan, truth: _Truth, bad: list[tuple[int, str]]) -> list[dict]:
    """All truth records in a deterministic order."""
    records: list[dict] = [p.truth() for p in plan.periods]
    if plan.storm is not None:
        records.append(plan.storm)
    records += [d.truth() for d in plan.degradations]
    records += plan.silent_truth()
    records += sorted(truth.impacts, key=lambda r: (
        r["start_time"], r["outage_id"], r["cycle"] or 0, r["subscriber_id"], r["lost_from"]))
    records += sorted(truth.bursts, key=lambda r: (r["first_drop"], r["subscriber_id"]))
    records += [c.truth_record() for c in truth.complaints]
    records += [{"type": "truth_bad_line", "line": index, "kind": kind} for index, kind in bad]
    return records


def _stats(cfg: ScenarioConfig, topo: Topology, pop: list[SubscriberInfo], plan: NetworkPlan,
           truth: _Truth, ordered: list[tuple[int, dict]], lines: list[bytes],
           bad: list[tuple[int, str]]) -> dict:
    """Counts describing the scenario (deterministic: no timings)."""
    outage_kinds = Counter(plan.outage_kinds.values())
    spans: dict[str, list[int]] = {}
    for p in plan.periods:
        spans.setdefault(p.outage_id, []).extend((p.start, p.end))
    at_start = [i for i in truth.impacts if i["at_start"]]
    complaints = Counter(c.cause for c in truth.complaints)
    bad_kinds = Counter(kind for _, kind in bad)
    windows = {r["window_id"] for _, r in plan.maintenance}
    cancelled = {r["window_id"] for _, r in plan.maintenance if r["op"] == "cancel"}
    return {
        "seed": cfg.seed,
        "start": fmt_time(cfg.t0),
        "end": fmt_time(cfg.t1),
        "sites": len(topo.sites),
        "cells": len(topo.cells),
        "subscribers": len(pop),
        "profiles": sum(1 for s in pop if not s.roamer),
        "roamers": sum(1 for s in pop if s.roamer),
        "deleted": sum(1 for s in pop if s.deleted_at is not None),
        "profile_updates": sum(1 for s in pop for _, r in s.versions[1:] if r["op"] == "upsert"),
        "lines": len(lines),
        "events": dict(sorted(Counter(r["type"] for _, r in ordered).items())),
        "calls": truth.calls,
        "dropped_calls": truth.dropped_calls,
        "outages": {k: outage_kinds.get(k, 0) for k in ("cell", "site", "blip", "flap",
                                                        "maintenance", "storm")},
        "down_periods": len(plan.periods),
        "outages_over_4h": sum(1 for s in spans.values() if max(s) - min(s) > FOUR_HOURS),
        "maintenance_windows": len(windows - cancelled),
        "maintenance_cancelled": len(cancelled),
        "degraded_cells": len(plan.degradations),
        "silent_failures": {"sleeping": len(plan.sleeping),
                            "degradation": len(plan.slow_degradations)},
        "impacts_sleeping": sum(1 for i in truth.impacts if i["kind"] == "sleeping"),
        "impacts": len(truth.impacts),
        "impacts_at_start": len(at_start),
        "impacted_subscribers": len({i["subscriber_id"] for i in at_start}),
        "drop_bursts": len(truth.bursts),
        "complaints": {k: complaints.get(k, 0) for k in ("outage", "drop_burst", "background")},
        "would_be_complainers": len({c.subscriber_id for c in truth.complaints
                                     if c.cause != "background"}),
        "bad_lines": {k: bad_kinds.get(k, 0) for k in BAD_KINDS},
        "bad_lines_total": len(bad),
    }


def simulate(cfg: ScenarioConfig | None = None) -> Scenario:
    """Simulate a scenario; the same config always gives byte-identical output."""
    cfg = cfg or ScenarioConfig()
    topo = build_topology(cfg)
    plan = plan_network(cfg, topo)
    pop = build_population(cfg, topo)
    out = Collector()
    _reference_records(out, topo, pop, plan)
    cell_ids = [c.cell_id for c in topo.cells]
    kpi = KpiCounters(cell_ids, cfg.t0, cfg.t1)
    truth = _run_traffic(cfg, TrafficContext(cfg, topo, plan, kpi, out), pop)
    for t, record in kpi_records(kpi, topo, plan, cfg.rng("kpi")):
        out.add(t, record)
    ordered = out.ordered()
    good = [_dumps(record) for _, record in ordered]
    first_event = len(topo.cells) + sum(1 for s in pop if s.versions)
    lines, bad = inject_bad_lines(
        cfg.rng("bad"), good, ordered, first_event, cfg.bad_line_rate,
        [s.subscriber_id for s in pop], cell_ids, f"CELL{len(topo.sites) + 9000:04d}-7")
    records = _ordered_truth(plan, truth, bad) + _subscriber_truth(topo, pop)
    stats = _stats(cfg, topo, pop, plan, truth, ordered, lines, bad)
    records.append({"type": "truth_stats", **stats})
    return Scenario(config=cfg, lines=lines, truth=records, stats=stats)


def write_scenario(sc: Scenario, events_path: str | Path, truth_path: str | Path) -> None:
    """Write the input lines and the truth as JSONL files (parent folders created)."""
    for path in (Path(events_path), Path(truth_path)):
        path.parent.mkdir(parents=True, exist_ok=True)
    with open(events_path, "wb") as f:
        for line in sc.lines:
            f.write(line)
            f.write(b"\n")
    with open(truth_path, "wb") as f:
        for record in sc.truth:
            f.write(orjson.dumps(record))
            f.write(b"\n")
