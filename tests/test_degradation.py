"""Silent failure detectors (dataflows/degradation.py) on small simulated networks."""

from __future__ import annotations

import copy
import pickle
from dataclasses import replace

import pytest

from bench.models import _Replay, _valid, silent_quality, ts
from dataflows.degradation import CellHealth, SiteHealth, _ew
from forewarn.model import Kpi
from simulator import ScenarioConfig, simulate
from tests.builders import Scenario
from tests.builders import ts as wire_ts

#: Stated limits (bench/RESULTS.md has the full-size figures).
SLEEPING_MAX_DELAY_S = 20 * 60
DEGRADATION_MAX_DELAY_OVER_RAMP_S = 30 * 60  # detected before the ramp ends + 30 min
MAX_FALSE_ALARMS_PER_CELL_DAY = 0.05

FAILING = ScenarioConfig(seed=21, sites=80, hours=6.0, subscribers_per_cell=30,
                         sleeping_cells=12, slow_degradations=12)  # 3 + 3 at this size
HEALTHY = replace(FAILING, seed=22, sleeping_cells=0, slow_degradations=0,
                  degraded_cell_share=0.0)


def _replay(cfg: ScenarioConfig, stop_at: int | None = None):
    sc = simulate(cfg)
    records = [r for line in sc.lines if (r := _valid(line)) is not None]
    cells = {r["cell_id"]: r["site_id"] for r in records if r["type"] == "cell"}
    replay = _Replay(cells)
    for r in records[:stop_at]:
        if r["type"] != "cell":
            replay.record(r)
    return sc, records, cells, replay


@pytest.fixture(scope="module")
def failing():
    return _replay(FAILING)


def test_injected_silent_failures_are_detected_in_time(failing) -> None:
    sc, _, cells, replay = failing
    opened = [v for v in replay.verdicts if v.status == "open"]
    silent = [t for t in sc.truth if t["type"] == "truth_silent_failure"]
    assert {t["kind"] for t in silent} == {"sleeping", "degradation"} and len(silent) >= 6
    for t in silent:
        a = ts(t["start_time"])
        hits = [v for v in opened if v.cell_id == t["cell_id"] and a - 900 <= v.at <= ts(
            t["end_time"]) + 1800]
        assert any(v.kind == t["kind"] for v in hits), t
        delay = hits[0].at - a
        if t["kind"] == "sleeping":
            assert delay <= SLEEPING_MAX_DELAY_S, (t, delay)
        else:
            assert delay <= t["ramp_s"] + DEGRADATION_MAX_DELAY_OVER_RAMP_S, (t, delay)
    q = silent_quality([(v.cell_id, v.kind, v.at) for v in opened], sc.truth, len(cells), 6.0)
    assert q["sleeping"]["recall"] == q["degradation"]["recall"] == 1.0
    assert q["false_alarms_per_healthy_cell_day"] <= MAX_FALSE_ALARMS_PER_CELL_DAY


def test_no_detection_on_a_healthy_network() -> None:
    sc, _, cells, replay = _replay(HEALTHY)
    opened = [(v.cell_id, v.kind, v.at) for v in replay.verdicts if v.status == "open"]
    q = silent_quality(opened, sc.truth, len(cells), HEALTHY.hours)
    assert q["healthy_cells"] == len(cells)
    assert q["false_alarms_per_healthy_cell_day"] <= MAX_FALSE_ALARMS_PER_CELL_DAY, opened


def test_detector_state_survives_a_restart(failing) -> None:
    """Pickle every site's state half way, carry on with both: the same verdicts."""
    _, records, cells, _ = failing
    half = len(records) // 2
    _, _, _, a = _replay(FAILING, stop_at=half)
    b = _Replay(cells)
    b.sites.update(pickle.loads(pickle.dumps(dict(a.sites))))
    b.alarm_cells, b.down, b.down_since = copy.deepcopy((a.alarm_cells, a.down, a.down_since))
    before = len(a.verdicts)
    for r in records[half:]:
        if r["type"] != "cell":
            a.record(r)
            b.record(r)
    assert a.verdicts[before:] == b.verdicts and b.verdicts
    sizes = [len(pickle.dumps(h)) for s in a.sites.values() for h in s.cells.values()]
    assert max(sizes) < 1024, max(sizes)


def test_ew_statistics_match_river() -> None:
    from river import stats

    mean, var = stats.EWMean(0.08), stats.EWVar(0.08)
    m = v = 0.0
    for i, x in enumerate([0.99, 0.985, 0.997, 0.991, 0.93, 0.99, 0.996]):
        mean.update(x)
        var.update(x)
        m, v = (x, 0.0) if i == 0 else _ew(m, v, x, 0.08)
    assert m == pytest.approx(mean.get()) and v == pytest.approx(var.get(), abs=1e-12)


def test_sleeping_cell_from_kpis_alone() -> None:
    site, t = SiteHealth(), 0.0
    for k in range(8):
        assert site.kpi(Kpi("C1", t + 900 * k, 900.0, 8, 0, 0.99 + 0.001 * (k % 3), 5.0, 40)) == []
    v = site.kpi(Kpi("C1", t + 900 * 8, 900.0, 0, 0, 0.7, 0.0, 0))
    assert [(x.kind, x.status, x.reason) for x in v] == [("sleeping", "open", "kpi_collapse")]
    assert v[0].evidence == ("kpi:C1@7200",)
    # an alarmed outage supersedes it
    down = site.cell_down("C1", 9000.0)
    assert [(x.kind, x.status, x.reason) for x in down] == [("sleeping", "resolved", "outage")]
    assert isinstance(site.cells["C1"], CellHealth)


def test_the_flow_opens_a_degradation_incident_and_notifies_a_sleeping_cells_users() -> None:
    """Through the real dataflow: a cell whose KPIs collapse without any alarm opens a
    `degradation` incident and its users get the silent-failure notice; traffic coming
    back resolves it and they are told."""
    s = Scenario().site("S1").site("S2")
    s.subscriber("U0").subscriber("U1")
    s.seen("U0", "S1-C1", 100).seen("U1", "S1-C2", 100)  # U1 is on a healthy cell
    for k in range(8):  # two hours of healthy periods: the detectors' baseline
        for cell in ("S1-C1", "S1-C2"):
            s.kpi(cell, 15 * k, attempts=8, users=40, rrc=0.99 + 0.001 * (k % 3))
    s.kpi("S1-C1", 120, attempts=0, users=0, rrc=0.7)  # asleep: nobody, RRC collapsed
    s.kpi("S1-C2", 120, attempts=8, users=40, rrc=0.99)
    s.tick(140)
    s.seen("U0", "S1-C1", 150).tick(160)  # traffic back on the cell
    r = s.run()
    inc_id = "DEG-S1-C1-20261123T114500"  # onset: one period before the empty one
    opened = [i for i in r.incidents if i["status"] == "open"]
    assert [(i["incident_id"], i["kind"], i["silent_kind"], i["detector"], i["cell_ids"])
            for i in opened] == [(inc_id, "degradation", "sleeping", "kpi_collapse",
                                  ["S1-C1"])]
    assert opened[0]["event_time"] == wire_ts(135)  # the end of the empty period
    assert opened[0]["evidence"] == ["kpi:S1-C1@1795435200"]
    resolved = [i for i in r.incidents if i["status"] == "resolved"]
    assert [(i["incident_id"], i["detector"], i["end_time"]) for i in resolved] == [
        (inc_id, "traffic_back", wire_ts(150))]
    assert r.kinds("U1") == []
    assert r.kinds("U0") == ["outage_notice", "restored_notice"]
    notice, restored = r.actions
    assert (notice["rule_id"], notice["incident_id"], notice["event_time"]) == (
        "silent-failure-notice", inc_id, wire_ts(135))
    assert notice["evidence"][:2] == ["kpi:S1-C1@1795435200", "location:S1-C1@1795434000"]
    assert "found a network problem" in notice["message"]
    assert (restored["incident_id"], restored["event_time"]) == (inc_id, wire_ts(150))
