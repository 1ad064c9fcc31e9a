"""Offline evaluation of the silent-failure detectors and the complaint-propensity model
on the simulator, without Bytewax.

    .venv/bin/python -m bench.models [--seed 7 --sites 300 --hours 6 --subscribers-per-cell 40]
                                     [--write]   # also update bench/RESULTS.md

Feeds the default scenario, in stream order, to

* :class:`forewarn.dataflows.degradation.SiteHealth` per site (KPIs, positions from locations and
  call ends, alarm-based cell down/up as the site stage tracks it), and scores its
  verdicts against ``truth_silent_failure`` (and the older ``truth_degraded_cell``);
* :class:`forewarn.dataflows.propensity.PropensityModel` (one shared model), with exposures
  emulating what the subscriber stage sees: outage notice (alarm + 120 s hold-down, last
  position on the cell <= 60 min old), escalations at 30 and 60 min, a silent-failure
  notice when a sleeping verdict opens, and a second dropped call within 30 min; labels
  from the ``complaint`` stream through :class:`forewarn.dataflows.propensity.ExposureBook`.

:func:`silent_quality` is reusable (e.g. by ``forewarn/summary.py`` on ``degradation``
incidents): detections ``(cell_id, kind, at)`` against the truth.
"""

from __future__ import annotations

import argparse
import copy
import heapq
import json
import math
import os
import pickle
import platform
import statistics
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson

from forewarn.dataflows.degradation import DEFAULT, SLEEPING, HealthParams, SiteHealth, Verdict
from forewarn.dataflows.propensity import CareFeatures, ExposureBook, PropensityModel
from forewarn.model import Kpi
from forewarn.simulator import ScenarioConfig, simulate
from forewarn.summary import MATCH_AFTER_S, MATCH_BEFORE_S, silent_quality  # noqa: F401

LOSS_CAUSES = {"lossOfSignal", "powerProblem", "transmitterFailure", "equipmentMalfunction",
               "cellUnavailable"}
HOLD_DOWN_S = 120.0
POSITION_MAX_AGE_S = 3600.0
CHECKPOINTS_S = (1800.0, 3600.0)


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _auc(pairs: list[tuple[float, bool]]) -> float | None:
    """Exact ROC AUC (Mann-Whitney, ties counted half)."""
    pos = sum(1 for _, y in pairs if y)
    neg = len(pairs) - pos
    if not pos or not neg:
        return None
    ranked = sorted(pairs, key=lambda p: p[0])
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        avg = (i + j + 1) / 2
        rank_sum += avg * sum(1 for k in range(i, j) if ranked[k][1])
        i = j
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


# ---- silent failure quality ------------------------------------------------------------


# ---- the replay ------------------------------------------------------------------------


class _Replay:
    """Stream order replay of a scenario into the detectors and the propensity model."""

    def __init__(self, cells: dict[str, str], params: HealthParams = DEFAULT,
                 model: PropensityModel | None = None) -> None:
        self.p = params
        self.site_of = cells
        self.sites: dict[str, SiteHealth] = defaultdict(SiteHealth)
        self.verdicts: list[Verdict] = []
        self.detector_s = 0.0
        self.detector_calls = 0
        # outage state, as the site stage tracks it from alarms
        self.alarm_cells: dict[str, tuple[str, ...]] = {}
        self.down: dict[str, set[str]] = defaultdict(set)
        self.down_since: dict[str, float] = {}
        # subscribers
        self.profiles: dict[str, dict] = {}
        self.pos: dict[str, tuple[str, float]] = {}
        self.on_cell: dict[str, dict[str, float]] = defaultdict(dict)
        self.drops: dict[str, list[float]] = defaultdict(list)
        self.contacts: dict[str, list[float]] = defaultdict(list)
        self.lost: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self.books: dict[str, ExposureBook] = defaultdict(ExposureBook)
        self.model = model or PropensityModel()
        self.scored: list[tuple[float, bool, float]] = []  # prior score, label, exposed at
        self.exposures: defaultdict[str, int] = defaultdict(int)
        self.timers: list[tuple[float, int, str, tuple]] = []
        self.seq = 0
        self.now = 0.0

    # -- detectors --

    def _health(self, fn, *args) -> list[Verdict]:
        t = time.perf_counter()
        out = fn(*args)
        self.detector_s += time.perf_counter() - t
        self.detector_calls += 1
        for v in out:
            self.verdicts.append(v)
            if v.status == "open" and v.kind == SLEEPING:
                self._timer(v.at, "sleeping", (v.cell_id, v.start_time))
        return out

    # -- time --

    def _timer(self, at: float, kind: str, data: tuple) -> None:
        self.seq += 1
        heapq.heappush(self.timers, (at, self.seq, kind, data))

    def advance(self, now: float) -> None:
        while self.timers and self.timers[0][0] <= now:
            at, _, kind, data = heapq.heappop(self.timers)
            if kind == "hold":
                cell, since, trigger = data
                if self.down_since.get(cell) == since:
                    self._expose_cell(cell, since, at, trigger)
            elif kind == "sleeping":
                cell, start = data
                self._expose_cell(cell, start, at, "sleeping")
        self.now = max(self.now, now)

    # -- exposures and labels --

    def _features(self, sub: str, at: float, trigger: str, outage_s: float,
                  site: bool, age: float = 0.0) -> CareFeatures | None:
        prof = self.profiles.get(sub)
        if prof is None:
            return None
        day = at - 86400
        hour = datetime.fromtimestamp(at, ZoneInfo(prof["timezone"])).hour
        return CareFeatures(
            segment=prof["segment"], plan=prof.get("plan") or "", trigger=trigger,
            tenure_months=float(prof.get("tenure_months") or 0),
            lost_s_24h=sum(b - a for a, b in self.lost[sub] if b > day),
            outage_s=outage_s, site_outage=site,
            drops_24h=sum(1 for t in self.drops[sub] if t > day),
            contacts_24h=sum(1 for t in self.contacts[sub] if t > day), hour=hour,
            position_age_s=age)

    def _expose(self, sub: str, at: float, features: CareFeatures | None) -> None:
        if features is None:
            return
        self._settle(sub, at)
        score = self.model.score(features)
        self.books[sub].expose(at, features, score, self.model.version)
        self.contacts[sub].append(at)
        self.exposures[features.trigger] += 1

    def _expose_cell(self, cell: str, since: float, at: float, trigger: str) -> None:
        site = self.site_of[cell]
        site_down = all(c in self.down for c in self._cells_of(site)) and trigger != "sleeping"
        for sub, seen in list(self.on_cell[cell].items()):
            if since - POSITION_MAX_AGE_S <= seen <= since:
                self._expose(sub, at, self._features(sub, at, trigger, at - since, site_down,
                                                     since - seen))

    def _cells_of(self, site: str) -> list[str]:
        return [c for c, s in self.site_of.items() if s == site]

    def _settle(self, sub: str, now: float) -> None:
        for x in self.books[sub].expire(now):
            self.scored.append((self.model.learn(x.features, x.label, x.score), x.label, x.at))

    def complaint(self, sub: str, at: float) -> None:
        for x in self.books[sub].complaint(at):
            self.scored.append((self.model.learn(x.features, x.label, x.score), x.label, x.at))

    def finish(self, end: float) -> None:
        """End of input: exposures whose horizon has passed are negatives, others unknown."""
        self.advance(end)
        for sub in list(self.books):
            self._settle(sub, end)

    # -- records --

    def record(self, r: dict) -> None:
        kind = r["type"]
        if "cell_id" in r and r["cell_id"] not in self.site_of:
            return  # unknown cell: a dead letter in the flow
        if kind == "subscriber":
            if r["op"] == "upsert":
                self.profiles[r["subscriber_id"]] = r
            else:
                self.profiles.pop(r["subscriber_id"], None)
            return
        if kind == "alarm":
            self.advance(ts(r["event_time"]))
            self.alarm(r)
        elif kind == "kpi":
            end = ts(r["period_start"]) + r["period_s"]
            self.advance(end)
            kpi = Kpi(r["cell_id"], ts(r["period_start"]), float(r["period_s"]),
                      r["call_attempts"], r["dropped_calls"], r.get("rrc_success_rate"),
                      r.get("dl_throughput_mbps"), r.get("active_users"))
            self._health(self.sites[self.site_of[r["cell_id"]]].kpi, kpi, self.p)
        elif kind in ("location", "call"):
            at = ts(r["event_time"] if kind == "location" else r["end_time"])
            self.advance(at)
            sub, cell = r["subscriber_id"], r["cell_id"]
            self._health(self.sites[self.site_of[cell]].position, cell, at, self.p)
            old = self.pos.get(sub)
            if old is not None:
                self.on_cell[old[0]].pop(sub, None)
            self.pos[sub] = (cell, at)
            self.on_cell[cell][sub] = at
            if kind == "call" and r["dropped"] and r.get("cause_code") != 38:
                recent = [t for t in self.drops[sub] if at - t <= 1800]
                self.drops[sub].append(at)
                if len(recent) == 1:
                    self._expose(sub, at, self._features(sub, at, "drops", 0.0, False))
            self._settle(sub, at)
        elif kind == "complaint":
            at = ts(r["event_time"])
            self.advance(at)
            self.complaint(r["subscriber_id"], at)

    def alarm(self, r: dict) -> None:
        at = ts(r["event_time"])
        aid = r["alarm_id"]
        if r["perceived_severity"] == "cleared":
            for cell in self.alarm_cells.pop(aid, ()):
                self.down[cell].discard(aid)
                if not self.down[cell]:
                    del self.down[cell]
                    since = self.down_since.pop(cell)
                    for sub in self.on_cell[cell]:
                        self.lost[sub].append((since, at))
                    self._health(lambda c=cell: self.sites[self.site_of[c]].cell_up(c, at) or [])
            return
        if r["perceived_severity"] not in ("critical", "major") or \
                r["probable_cause"] not in LOSS_CAUSES:
            return
        cells = ((r["cell_id"],) if "cell_id" in r else
                 tuple(self._cells_of(r["site_id"])))
        self.alarm_cells[aid] = cells
        for cell in cells:
            if cell not in self.down:
                self.down_since[cell] = at
                self._health(self.sites[self.site_of[cell]].cell_down, cell, at)
                self._timer(at + HOLD_DOWN_S, "hold", (cell, at, "outage"))
                for extra in CHECKPOINTS_S:
                    self._timer(at + extra, "hold", (cell, at, "escalation"))
            self.down[cell].add(aid)


def _valid(line: bytes) -> dict | None:
    try:
        r = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(r, dict):
        return None
    need = {"kpi": ("cell_id", "period_start", "call_attempts", "dropped_calls", "period_s"),
            "location": ("subscriber_id", "cell_id", "event_time"),
            "call": ("subscriber_id", "cell_id", "end_time", "dropped"),
            "alarm": ("alarm_id", "event_time", "perceived_severity", "probable_cause"),
            "complaint": ("subscriber_id", "event_time"),
            "subscriber": ("subscriber_id", "op"),
            "cell": ("cell_id", "site_id")}.get(r.get("type"))
    if need is None or any(k not in r for k in need):
        return None
    try:
        for k in ("event_time", "end_time", "period_start"):
            if k in r:
                ts(r[k])
    except (TypeError, ValueError):
        return None
    return r


def _snapshot_costs(replay: _Replay) -> dict:
    cells = [h for s in replay.sites.values() for h in s.cells.values()]
    sizes = [len(pickle.dumps(h, protocol=pickle.HIGHEST_PROTOCOL)) for h in cells]
    sites = list(replay.sites.values())
    t = time.perf_counter()
    for s in sites:
        copy.deepcopy(s)
    deep = (time.perf_counter() - t) / len(sites)
    t = time.perf_counter()
    for s in sites:
        pickle.dumps(s, protocol=pickle.HIGHEST_PROTOCOL)
    pick = (time.perf_counter() - t) / len(sites)
    model = replay.model
    t = time.perf_counter()
    for _ in range(20):
        blob = model.to_bytes()
    m_dump = (time.perf_counter() - t) / 20
    t = time.perf_counter()
    for _ in range(20):
        PropensityModel.from_bytes(blob)
    m_load = (time.perf_counter() - t) / 20
    t = time.perf_counter()
    for _ in range(20):
        copy.deepcopy(model)
    m_copy = (time.perf_counter() - t) / 20
    try:
        from river import stats
        river_cell = len(pickle.dumps([stats.EWMean(0.1), stats.EWMean(0.08),
                                       stats.EWMean(0.08), stats.EWVar(0.08)]))
    except ImportError:  # pragma: no cover
        river_cell = None
    return {
        "cell_state_bytes_mean": round(statistics.mean(sizes)),
        "cell_state_bytes_max": max(sizes),
        "cells": len(cells),
        "site_deepcopy_us": round(deep * 1e6, 1),
        "site_pickle_us": round(pick * 1e6, 1),
        "river_stats_equivalent_bytes": river_cell,
        "propensity_snapshot_bytes": len(blob),
        "propensity_dump_ms": round(m_dump * 1e3, 3),
        "propensity_load_ms": round(m_load * 1e3, 3),
        "propensity_deepcopy_ms": round(m_copy * 1e3, 3),
    }


def warm_model(cfg: ScenarioConfig) -> PropensityModel:
    """A propensity model trained on another day (``seed + 1000``): the cold start of a
    6 h run would otherwise score most exposures before any label has settled."""
    day = ScenarioConfig(seed=cfg.seed + 1000, sites=cfg.sites, hours=cfg.hours,
                         subscribers_per_cell=cfg.subscribers_per_cell)
    sc = simulate(day)
    records = [r for line in sc.lines if (r := _valid(line)) is not None]
    replay = _Replay({r["cell_id"]: r["site_id"] for r in records if r["type"] == "cell"})
    for r in records:
        if r["type"] != "cell":
            replay.record(r)
    replay.finish(float(day.t1))
    model = replay.model
    model.auc, model.log_loss = type(model.auc)(n_thresholds=50), type(model.log_loss)()
    return model


def evaluate(cfg: ScenarioConfig, warm: bool = True) -> dict:
    """Simulate ``cfg`` and evaluate both models on it."""
    model = warm_model(cfg) if warm else None
    warm_updates = model.updates if model else 0
    t0 = time.perf_counter()
    sc = simulate(cfg)
    sim_s = time.perf_counter() - t0
    records = [r for line in sc.lines if (r := _valid(line)) is not None]
    cells = {r["cell_id"]: r["site_id"] for r in records if r["type"] == "cell"}
    replay = _Replay(cells, model=model)
    t0 = time.perf_counter()
    for r in records:
        if r["type"] != "cell":
            replay.record(r)
    replay.finish(float(cfg.t1))
    replay_s = time.perf_counter() - t0
    detections = [(v.cell_id, v.kind, v.at) for v in replay.verdicts if v.status == "open"]
    quality = silent_quality(detections, sc.truth, len(cells), cfg.hours)
    prop = replay.model.report()
    # Fair evaluation: only exposures whose horizon ended inside the scenario (later
    # ones could only have been settled as positives: survivorship).
    horizon = ExposureBook().horizon_s
    fair = [(p, y) for p, y, at in replay.scored if at + horizon <= cfg.t1]
    prop["evaluated"] = len(fair)
    prop["evaluated_positive_rate"] = round(sum(y for _, y in fair) / len(fair), 4) if fair \
        else None
    prop["roc_auc_exact"] = round(a, 4) if (a := _auc(fair)) is not None else None
    prop["log_loss_exact"] = round(statistics.mean(
        -math.log(max(1e-15, p if y else 1 - p)) for p, y in fair), 4) if fair else None
    base = sum(y for _, y in fair) / len(fair) if fair else 0.5
    prop["log_loss_constant_rate"] = round(statistics.mean(
        -math.log(max(1e-15, base if y else 1 - base)) for _, y in fair), 4) if fair else None
    prop["exposures"] = dict(sorted(replay.exposures.items()))
    prop["warm_start_examples"] = warm_updates
    prop["pending_at_end"] = sum(len(b.pending) for b in replay.books.values())
    events = len(records)
    return {
        "scenario": {"seed": cfg.seed, "sites": cfg.sites, "hours": cfg.hours,
                     "subscribers_per_cell": cfg.subscribers_per_cell, "cells": len(cells),
                     "events": events, "simulate_s": round(sim_s, 1)},
        "silent_failures": quality,
        "propensity": prop,
        "cost": {**_snapshot_costs(replay),
                 "detector_us_per_call": round(replay.detector_s / max(1, replay.detector_calls)
                                               * 1e6, 2),
                 "replay_s": round(replay_s, 1)},
        "params": {"silence_k": DEFAULT.silence_k, "drop_h": DEFAULT.drop_h,
                   "rrc_h": DEFAULT.rrc_h, "rrc_z": DEFAULT.rrc_z},
        "verdicts": [[v.cell_id, v.kind, v.status, v.reason, int(v.start_time), int(v.at)]
                     for v in replay.verdicts],
    }


def _machine() -> str:
    """CPU model and core count, as ``/proc/cpuinfo`` names them."""
    try:
        model = next(line.split(":", 1)[1].strip() for line in
                     Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line)
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def _markdown(res: dict) -> str:
    sq, pr, co, scn = (res["silent_failures"], res["propensity"], res["cost"],
                       res["scenario"])
    s, d = sq["sleeping"], sq["degradation"]
    fa = sq["false_alarms_per_healthy_cell_day"]

    def mins(x: float | None) -> str:
        return "–" if x is None else f"{x / 60:.1f} min"

    return "\n".join([
        "## Models: silent-failure detectors and complaint propensity (`bench.models`)",
        "",
        "What: the per-cell silent-failure detectors (`forewarn.dataflows.degradation.SiteHealth`) "
        "and the complaint-propensity model (`forewarn.dataflows.propensity`) fed the simulator's "
        "events in stream order, without Bytewax, and scored against its truth. Why: how "
        "soon a cell that fails without an alarm is found, how often a healthy one is "
        "accused, how well the score ranks who will complain, and what their state costs "
        "in a snapshot.",
        "",
        f"Command: `python -m bench.models --write` (writes this section). Scenario seed "
        f"{scn['seed']}, {scn['sites']} sites ({scn['cells']} cells), {scn['hours']} h, "
        f"{scn['events']:,} events. Machine: {_machine()}. Date: "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}.",
        "",
        "| silent failures | injected | detected | delay median | delay max |",
        "|---|---|---|---|---|",
        f"| sleeping cells | {s['injected']} | {s['detected']} | {mins(s['delay_median_s'])} | "
        f"{mins(s['delay_max_s'])} |",
        f"| slow degradations | {d['injected']} | {d['detected']} | "
        f"{mins(d['delay_median_s'])} | {mins(d['delay_max_s'])} |",
        f"| step degradations (older kind, half alarmed) | {sq['step_degradations']['cells']} | "
        f"{sq['step_degradations']['detected']} | | |",
        "",
        f"Detections {sq['detections']}, precision {sq['precision']}, false alarms "
        f"{sq['false_alarms']} ({fa} per healthy cell-day over {sq['healthy_cells']} healthy "
        "cells).",
        "",
        f"Propensity (progressive validation: each exposure scored before it is learnt; "
        f"{pr['evaluated']:,} exposures whose {ExposureBook().horizon_s / 3600:.0f} h horizon "
        f"ended in the run, positive rate {pr['evaluated_positive_rate']}): ROC AUC "
        f"{pr['roc_auc_exact']}, log loss {pr['log_loss_exact']} (constant-rate baseline "
        f"{pr['log_loss_constant_rate']}); warm-started on another simulated day "
        f"({pr['warm_start_examples']:,} examples), model {pr['version']}; river's progressive "
        f"metrics over all {pr['examples']:,} settled: AUC {pr['roc_auc']}, log loss "
        f"{pr['log_loss']}.",
        "",
        f"State: {co['cell_state_bytes_mean']} B pickled per cell (max "
        f"{co['cell_state_bytes_max']}; four river EW stats alone would be "
        f"{co['river_stats_equivalent_bytes']} B), site deepcopy {co['site_deepcopy_us']} µs, "
        f"pickle {co['site_pickle_us']} µs; detector {co['detector_us_per_call']} µs per call. "
        f"Propensity snapshot {co['propensity_snapshot_bytes']:,} B, dump "
        f"{co['propensity_dump_ms']} ms, load {co['propensity_load_ms']} ms (through the "
        f"checked unpickler), deepcopy {co['propensity_deepcopy_ms']} ms.",
        "",
        "Reading: sleeping cells are found by their traffic's silence within minutes, slow "
        "degradations by CUSUMs on drop rate and RRC success once the ramp is well under way. "
        "The detectors' defaults (`dataflows/degradation.py`) aim at fewer than 0.01 false "
        f"alarms per healthy cell-day: {'met' if fa < 0.01 else 'not met'} here ({fa}); "
        "nights and longer runs are in `bench.quality_matrix`. The propensity score is "
        "modest: the simulator's complaint probability depends mostly on how long each "
        "person will be without service, which is unknown at notice time (scoring at "
        "settlement time instead would report a leaky, near-perfect AUC). A label settles "
        "when its horizon has passed, so positives and negatives of one outage are learnt "
        "together. What the models cost in the flow: `bench.models_cost`.",
        "",
    ])


def write_results(res: dict, path: Path | None = None) -> None:
    """Replace (or append) the ``## Models:`` section, leaving the rest alone."""
    path = path or Path(__file__).with_name("RESULTS.md")
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    section = _markdown(res)
    head = "## Models:"
    if head in text:
        a = text.index(head)
        b = text.find("\n## ", a + len(head))
        text = text[:a] + section + (text[b + 1:] if b >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.models", description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--sites", type=int, default=300)
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--subscribers-per-cell", type=float, default=40.0)
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    ap.add_argument("--cold", action="store_true", help="no warm start of the propensity model")
    ap.add_argument("--json", help="also write the full result (with verdicts) here")
    args = ap.parse_args(argv)
    res = evaluate(ScenarioConfig(seed=args.seed, sites=args.sites, hours=args.hours,
                                  subscribers_per_cell=args.subscribers_per_cell),
                   warm=not args.cold)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    brief = {k: v for k, v in res.items() if k != "verdicts"}
    print(json.dumps(brief, indent=1))
    print(_markdown(res), file=sys.stderr)
    if args.write:
        write_results(res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
