"""Silent failure detectors (dataflows/degradation.py) on small simulated networks."""

from __future__ import annotations

import copy
import math
import pickle
from dataclasses import replace

import pytest

from bench.models import _Replay, _valid, silent_quality, ts
from forewarn.dataflows.degradation import DEFAULT, CellHealth, SiteHealth, _ew
from forewarn.model import Kpi
from forewarn.simulator import ScenarioConfig, simulate
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
    assert max(sizes) < 1280, max(sizes)  # ~300 B of it the hour-of-week profile


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


# ---- nights: what a quiet cell looks like ----------------------------------------------

P = 3240.0  # periodic update interval (T3412, 54 min)
DAY0 = 1795392000.0  # 2026-11-23T00:00:00Z


def _cell_life(rng, t0: float, t1: float, phones: int, call_rate_per_h, *, asleep_at=None,
               outage=None) -> list[tuple[float, str, object]]:
    """Events of one cell ``C1``: ``("pos", t)``, ``("kpi", Kpi)``, ``("down"/"up", t)``.

    ``phones`` idle phones send a periodic update every ``P`` with random phases (those
    whose update fell due during ``outage`` report when it ends, bunching them); calls
    end at a Poisson rate ``call_rate_per_h(t)``; from ``asleep_at`` nothing is seen and
    the KPIs say nobody is served.
    """
    ev: list[tuple[float, str, object]] = []
    for _ in range(phones):
        t = t0 + rng.uniform(0, P)
        while t < t1:
            if outage and (outage[0] <= t < outage[1] or t >= outage[1] > t - P
                           and rng.random() < 0.3):
                t = outage[1] + rng.uniform(5, 60)  # reports on its return (due, or 30 %)
            ev.append((t, "pos", t))
            t += P
    t = t0
    while True:
        t += rng.expovariate(max(call_rate_per_h(t), 1e-6) / 3600)
        if t >= t1:
            break
        if not (outage and outage[0] <= t < outage[1]):
            ev.append((t, "pos", t))
    if outage:
        ev += [(outage[0], "down", outage[0]), (outage[1], "up", outage[1])]
    k = t0 - t0 % 900 + 900
    while k + 900 <= t1:
        sleeping = asleep_at is not None and k + 900 > asleep_at
        if not (outage and outage[0] < k + 900 and k < outage[1] + 900):
            ev.append((k + 900, "kpi", Kpi("C1", k, 900.0, 0 if sleeping else 6, 0,
                                          rng.uniform(0.55, 0.85) if sleeping
                                          else rng.uniform(0.985, 0.999), None,
                                          0 if sleeping else phones)))
        k += 900
    if asleep_at is not None:
        ev = [e for e in ev if e[1] != "pos" or e[0] < asleep_at]
    return sorted(ev, key=lambda e: (e[0], e[1]))


def _verdicts(events, params=None) -> list:
    p = params or DEFAULT
    site, out = SiteHealth(), []
    for _, kind, x in events:
        if kind == "pos":
            out += site.position("C1", x, p)
        elif kind == "kpi":
            out += site.kpi(x, p)
        elif kind == "down":
            out += site.cell_down("C1", x)
        else:
            site.cell_up("C1", x, p)
    return [v for v in out if v.status == "open"]


def _diurnal(t: float) -> float:
    """Calls ending per hour on the cell: busy by day, almost none at night."""
    hour = (t - DAY0) / 3600 % 24
    return 60.0 if 8 <= hour < 20 else 20.0 if 6 <= hour < 8 or 20 <= hour < 23 else 0.5


def test_a_quiet_night_after_an_outage_is_not_a_sleeping_cell() -> None:
    """After a 25-minute outage at 23:00 the phones' updates are bunched: each 54 minutes
    the night repeats a 25-minute gap. Not a silent failure; without the bunching rule
    the same night is flagged (so the test can fail)."""
    import random

    rng = random.Random(5)
    outage = (DAY0 + 23 * 3600, DAY0 + 23 * 3600 + 1500)
    events = _cell_life(rng, DAY0 + 12 * 3600, DAY0 + 31 * 3600, 40, _diurnal, outage=outage)
    assert _verdicts(events) == []
    # ... though a Poisson test on the night's mean rate would call its gaps a collapse
    night = [t for t, kind, _ in events if kind == "pos" and t >= outage[1] + 1800]
    per_s = len(night) / (night[-1] - night[0])
    longest = max(b - a for a, b in zip(night, night[1:], strict=False))
    assert per_s * longest > DEFAULT.silence_k, (per_s * 300, longest)


@pytest.mark.parametrize("hour", [3.0, 14.0])
def test_a_sleeping_cell_is_found_by_night_and_by_day(hour: float) -> None:
    import random

    rng = random.Random(int(hour))
    asleep = DAY0 + 24 * 3600 + hour * 3600 + 420
    events = _cell_life(rng, DAY0 + 12 * 3600, asleep + 3 * 3600, 40, _diurnal,
                        asleep_at=asleep)
    verdicts = _verdicts(events)
    assert [v for v in verdicts if v.at < asleep] == []  # a whole day and night before: quiet
    # (an RRC degradation may open first at the KPI period; sleeping supersedes it)
    sleeping = [v for v in verdicts if v.kind == "sleeping"]
    assert sleeping, verdicts
    delay = sleeping[0].at - asleep
    assert delay <= (16 * 60 if hour == 14.0 else 30 * 60), (sleeping[0], delay)


# ---- silent-failure notices: once per cell problem and night, quiet hours ----------------


def _care():
    from forewarn.dataflows.care import SubscriberCare
    from forewarn.model import Channel, Subscriber
    from forewarn.rules.rulebook import load_rulebook

    care, book = SubscriberCare(), load_rulebook()
    care.handle("U", Subscriber("U", "upsert", DAY0, language="en", timezone="Europe/London",
                                segment="consumer", channels=(Channel("sms", "+44", True),)),
                book)
    return care, book


def _sleeping(n: int, cell: str, at: float, confirmed: bool = True):
    from forewarn.dataflows.messages import IncidentFacts

    return IncidentFacts(f"DEG-{cell}-{n}", "degradation", "S1", "North", at - 900,
                         ((cell, at - 900),), (f"traffic:{cell}@{int(at)}",),
                         confirmed=confirmed)


def test_one_silent_failure_notice_per_cell_problem_however_often_it_reopens() -> None:
    from forewarn.dataflows.care import Suppressed
    from forewarn.dataflows.messages import Impact, Restored

    care, book = _care()
    kinds = []
    t = DAY0 + 10 * 3600
    for n in range(4):  # a flapping verdict: open 10 min, closed 44 min, four times
        facts = _sleeping(n, "C1", t + n * P)
        for msg in (Impact("U", facts, facts.start_time + 900, (facts.start_time - 60, "C1",
                                                                None)),
                    Restored("U", facts, facts.start_time + 1500)):
            kinds += [(a.reason if isinstance(a, Suppressed) else a.action_kind)
                      for a in care.handle("U", msg, book)]
    assert kinds == ["outage_notice", "restored_notice"] + ["cell_cooldown"] * 3
    other = _sleeping(9, "C2", t + 4 * P)  # another cell: another problem
    out = care.handle("U", Impact("U", other, other.start_time + 900,
                                  (other.start_time - 60, "C2", None)), book)
    assert [a.action_kind for a in out] == ["outage_notice"]
    later = _sleeping(10, "C1", t + 13 * 3600)  # the same cell the next day
    out = care.handle("U", Impact("U", later, later.start_time + 900,
                                  (later.start_time - 60, "C1", None)), book)
    assert [a.action_kind for a in out] == ["outage_notice"]


def test_an_unconfirmed_silent_failure_waits_for_the_subscribers_morning() -> None:
    from forewarn.codec import parse_time
    from forewarn.dataflows.messages import Impact, Restored

    care, book = _care()
    night = parse_time("2026-11-23T23:30:00Z")  # 23:30 in London
    facts = _sleeping(1, "C1", night, confirmed=False)
    notice = care.handle("U", Impact("U", facts, night, (night - 1000, "C1", None)), book)
    restored = care.handle("U", Restored("U", facts, night + 3600), book)
    morning = parse_time("2026-11-24T08:00:00Z")
    assert [(a.action_kind, a.send_after) for a in notice + restored] == [
        ("outage_notice", morning), ("restored_notice", morning)]
    confirmed = _sleeping(2, "C2", night)  # the KPIs said so too: at once
    out = care.handle("U", Impact("U", confirmed, night, (night - 1000, "C2", None)), book)
    assert [(a.action_kind, a.send_after) for a in out] == [("outage_notice", None)]
    day = parse_time("2026-11-24T14:00:00Z")  # unconfirmed by day: at once
    out = care.handle("U", Impact("U", _sleeping(3, "C3", day, confirmed=False), day,
                                  (day - 1000, "C3", None)), book)
    assert [(a.action_kind, a.send_after) for a in out] == [("outage_notice", None)]


def test_each_cell_learns_what_its_hours_look_like() -> None:
    """A busy Monday and quiet night, then Tuesday: at 22:00 the EW rate still says busy,
    the profile says the coming hours are a tenth of it (capped with the 2x slack); by
    day it says nothing; a Saturday, never seen, falls back to the weekday's hour."""
    h, t = CellHealth("C1"), DAY0  # Monday 00:00 UTC
    while t < DAY0 + 86400 + 22 * 3600:
        busy = 6 <= (t - DAY0) / 3600 % 24 < 22
        for k in range(10 if busy else 1):
            h.observe_traffic(t + 1 + k)
        t += 300
    assert h.profile is not None and len(pickle.dumps(h)) < 1280
    assert h.rate > 9  # Tuesday 22:00: the EW rate has not seen the night yet
    assert h.expect == pytest.approx(2 * 1 / h.rate, rel=0.05)  # ~0.2
    assert h._expected(DAY0 + 86400 + 12 * 3600, DEFAULT) == 1.0  # midday
    saturday_evening = DAY0 + 5 * 86400 + 22 * 3600
    assert h._expected(saturday_evening, DEFAULT) == pytest.approx(h.expect, rel=0.01)
    assert CellHealth("C2")._expected(DAY0, DEFAULT) == 1.0  # nothing learnt: no cap


def test_hours_learnt_as_empty_make_silence_no_evidence() -> None:
    """A cell nobody uses at night (an office, a stadium) is flagged on its first night,
    with nothing learnt yet; from then on its empty hours are expected (and nothing
    divides by zero)."""
    h, t, opened = CellHealth("C1"), DAY0 + 8 * 3600, []
    while t < DAY0 + 3 * 86400:
        if 8 <= (t - DAY0) / 3600 % 24 < 20:
            for k in range(5):
                opened += [v for v in h.observe_traffic(t + 1 + k) if v.status == "open"]
        t += 300
        opened += [v for v in h.advance(t) if v.status == "open"]
    nights = sorted({int((v.at - DAY0) // 86400) for v in opened})
    assert nights == [0], opened  # the first night only
    h.observe_traffic(DAY0 + 3 * 86400 + 19.9 * 3600)
    assert h.expect == 0.0 and h.silence_at == math.inf


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


def test_a_sleeping_cell_impacts_who_was_heard_there_an_hour_before_its_silence() -> None:
    """A sleeping verdict comes after the silence it reports (here ~15 min by day): who
    was last heard on the cell up to ``position_max_age_s`` (60 min) before the silence
    began is impacted, though more than 60 min old by the verdict. (Pruning positions by
    the verdict's time alone lost them.)"""
    import random

    from forewarn.dataflows.messages import Impact
    from forewarn.dataflows.site import SiteCorrelator
    from forewarn.model import Cell
    from forewarn.rules.rulebook import load_rulebook

    rng = random.Random(3)
    asleep = DAY0 + 24 * 3600 + 14 * 3600 + 420
    events = _cell_life(rng, DAY0 + 12 * 3600, asleep + 2 * 3600, 40, _diurnal,
                        asleep_at=asleep)
    site = SiteCorrelator("S1", load_rulebook())
    site.handle(Cell("C1", "S1", region="north"))
    last_traffic = max(t for t, kind, _ in events if kind == "pos")
    heard = {"EARLY": last_traffic - 50 * 60, "STALE": last_traffic - 70 * 60}
    events += [(at, "who", sid) for sid, at in heard.items()]
    out, n = [], 0
    for t, kind, x in sorted(events, key=lambda e: (e[0], e[1])):
        if kind == "pos":
            n += 1
            out += site.handle(((f"P{n}"), "C1", t, None))
        elif kind == "who":
            out += site.handle((x, "C1", t, None))
        elif kind == "kpi":
            out += site.handle(x)
    impacts = [m for k, m in out if k == "care" and isinstance(m, Impact)]
    assert impacts, "no sleeping verdict impacted anyone"
    verdict_at = impacts[0].at
    assert verdict_at - heard["EARLY"] > 3600  # older than 60 min when the verdict came
    told = {m.subscriber_id for m in impacts}
    assert "EARLY" in told and "STALE" not in told
