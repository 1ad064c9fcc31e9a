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
