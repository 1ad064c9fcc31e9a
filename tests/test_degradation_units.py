"""The silent-failure detectors (dataflows/degradation.py) on hand-made sequences: when
each verdict opens and resolves, with which start, time, score, reason and evidence."""

from __future__ import annotations

import math
from array import array
from dataclasses import replace

import pytest

from forewarn.dataflows.degradation import (
    DEFAULT,
    CellHealth,
    HealthParams,
    SiteHealth,
    Verdict,
    _ew,
    _slot,
    kpi_ref,
)
from forewarn.model import Kpi

P = 900.0  # KPI period
MONDAY = 1795392000.0  # 2026-11-23T00:00:00Z


def kpi(i: int, attempts: int = 100, drops: int = 1, rrc: float | None = 0.99,
        users: int | None = None, cell: str = "C1") -> Kpi:
    """The KPIs of period ``i`` (``[900 i, 900 (i + 1))``)."""
    return Kpi(cell, P * i, P, attempts, drops, rrc, None, users)


def warm(cell: str = "C1", periods: int = DEFAULT.warmup, **kw) -> CellHealth:
    h = CellHealth(cell)
    for i in range(periods):
        assert h.observe_kpi(kpi(i, cell=cell, **kw)) == []
    return h


def test_helpers_slot_reference_and_ew_step():
    assert kpi_ref("C1", 1795420800.9) == "kpi:C1@1795420800"
    assert _slot(MONDAY) == 0 and _slot(MONDAY + 23 * 3600 + 3599) == 23
    assert _slot(MONDAY + 4 * 86400 + 23 * 3600) == 23  # Friday 23:00
    assert _slot(MONDAY + 5 * 86400) == 24  # Saturday 00:00
    assert _slot(MONDAY + 6 * 86400 + 23 * 3600) == 47  # Sunday 23:00
    assert _slot(MONDAY + 7 * 86400) == 0
    mean, var = _ew(1.0, 0.0, 3.0, 0.5)
    assert (mean, var) == (2.0, 1.0)
    assert _ew(2.0, 0.0, 2.0, 0.25) == (2.0, 0.0)


def test_silence_rate_scales_with_dispersion_and_the_expected_hours():
    assert CellHealth("C", rate=6.0, rate_sq=42.0).silence_rate() * 300 == pytest.approx(6.0)
    clumped = CellHealth("C", rate=6.0, rate_sq=96.0)  # D = 10
    assert clumped.silence_rate() * 300 == pytest.approx(6.0 * math.log(10) / 9)
    quieter = CellHealth("C", rate=6.0, rate_sq=42.0, expect=0.25)
    assert quieter.silence_rate() * 300 == pytest.approx(1.5)
    assert CellHealth("C").silence_rate() == 0.0


def test_kpi_periods_are_learnt_not_judged_during_warm_up():
    h = warm(periods=DEFAULT.warmup - 1)
    assert h.observe_kpi(kpi(5, drops=90, rrc=0.5)) == [] and h.periods == DEFAULT.warmup
    assert h.s_drop == h.s_rrc == 0.0


def test_a_sustained_drop_rate_opens_a_degradation_and_three_healthy_periods_resolve_it():
    h = warm()
    # each bad period adds at most drop_llr_cap (2.5) to the CUSUM: the 4th crosses 8
    for i in range(6, 9):
        assert h.observe_kpi(kpi(i, drops=20)) == []
        assert h.s_drop == 2.5 * (i - 5) and h.run_start == 6 * P
    (v,) = h.observe_kpi(kpi(9, drops=20))
    assert v == Verdict("C1", "degradation", "open", 6 * P, 10 * P, None, 1.25, "drop_rate",
                        ("kpi:C1@8100",))
    assert h.periods == DEFAULT.warmup  # no baseline learnt from the bad periods
    # still bad: the evidence grows (the last six kept)
    for i in range(10, 17):
        assert h.observe_kpi(kpi(i, drops=20)) == []
    assert h.open["degradation"] == (6 * P, tuple(kpi_ref("C1", P * i) for i in range(11, 17)))
    # healthy again: resolved at the third healthy period, ended at the first
    assert h.observe_kpi(kpi(17)) == [] and h.healthy == 1
    assert h.observe_kpi(kpi(18, drops=20)) == [] and h.healthy == 0  # one bad: start over
    assert h.observe_kpi(kpi(19)) == [] and h.observe_kpi(kpi(20)) == []
    (r,) = h.observe_kpi(kpi(21))
    assert (r.kind, r.status, r.start_time, r.at, r.end_time, r.score, r.reason) == (
        "degradation", "resolved", 6 * P, 22 * P, 19 * P, 0.0, "healthy")
    assert h.s_drop == h.s_rrc == 0.0 and not h.open
    assert h.observe_kpi(kpi(22)) == [] and h.periods == DEFAULT.warmup + 1  # learning again


def test_a_collapse_of_rrc_success_opens_a_degradation_at_once():
    h = warm()
    (v,) = h.observe_kpi(kpi(6, rrc=0.9))
    # z = (0.99 - 0.9) / 0.004 (the floor of the sd): 22.5 - 1.5 = 21 in one period
    assert (v.kind, v.start_time, v.at, v.reason, v.score) == ("degradation", 6 * P, 7 * P,
                                                               "rrc", 2.1)
    assert h.s_rrc == pytest.approx(21.0)


def test_a_small_rrc_dip_within_the_allowance_is_learnt():
    h = warm()
    assert h.observe_kpi(kpi(6, rrc=0.985)) == []  # z = 1.25 < k = 1.5
    assert h.s_rrc == 0.0 and h.periods == DEFAULT.warmup + 1


def test_a_cell_whose_traffic_collapses_is_sleeping():
    h = warm()
    (v,) = h.observe_kpi(kpi(6, attempts=10, drops=0, rrc=0.9))
    assert v == Verdict("C1", "sleeping", "open", 5 * P, 7 * P, None, 22.5, "kpi_collapse",
                        ("kpi:C1@5400",))
    assert h.observe_kpi(kpi(7, attempts=10, drops=0, rrc=0.9)) == []  # already open
    (r,) = h.observe_kpi(kpi(8))
    assert (r.kind, r.status, r.end_time, r.at, r.reason) == ("sleeping", "resolved", 8 * P,
                                                              9 * P, "traffic_back")
    # without an RRC figure the collapse alone decides (score: no z)
    h = warm(rrc=None)
    (v,) = h.observe_kpi(kpi(6, attempts=15, drops=0, rrc=None))
    assert (v.kind, v.score) == ("sleeping", 0.0)


def test_scores_are_rounded_to_three_decimals():
    h = warm()
    z = (h.rrc - 0.91233) / DEFAULT.min_rrc_sd
    assert round(z, 3) != round(z, 4)
    (v,) = h.observe_kpi(kpi(6, attempts=10, drops=0, rrc=0.91233))
    assert (v.kind, v.score) == ("sleeping", round(z, 3))


def test_no_collapse_while_traffic_is_seen_or_the_rrc_looks_normal_or_the_cell_is_tiny():
    h = warm()
    h.last_seen = 6 * P  # a position in the period: the cell serves someone
    assert h.observe_kpi(kpi(6, attempts=10, drops=0, rrc=0.9))[0].kind == "degradation"
    h = warm()
    assert h.observe_kpi(kpi(6, attempts=16, drops=0, rrc=0.99)) == []  # above 15 %
    h = warm()
    assert h.observe_kpi(kpi(6, attempts=10, drops=0, rrc=0.985)) == []  # z = 1.25 < 3
    h = warm(attempts=3, drops=0)
    assert h.observe_kpi(kpi(6, attempts=0, drops=0, rrc=0.99)) == []  # never busy
    # active users, when reported, decide instead of attempts
    h = warm(users=40)
    (v,) = h.observe_kpi(kpi(6, attempts=100, users=6, rrc=0.9))
    assert v.kind == "sleeping"
    h = warm(users=40)
    assert h.observe_kpi(kpi(6, attempts=10, drops=0, users=7, rrc=0.99)) == []


def test_a_sleeping_cell_supersedes_a_degradation_opened_on_its_way_down():
    h = warm()
    for i in range(6, 10):
        h.observe_kpi(kpi(i, drops=20))
    superseded, sleeping = h.observe_kpi(kpi(10, attempts=10, drops=0, rrc=0.9))
    assert superseded == Verdict("C1", "degradation", "resolved", 6 * P, 11 * P, 11 * P, 0.0,
                                 "superseded", ("kpi:C1@8100",))
    assert (sleeping.kind, sleeping.start_time, sleeping.at) == ("sleeping", 9 * P, 11 * P)
    assert (h.s_drop, h.s_rrc, h.run_start) == (0.0, 0.0, -1.0)
    # the degradation giving way is no outage: the very next period is judged
    (r,) = h.observe_kpi(kpi(11))
    assert (r.kind, r.status, r.reason, r.end_time) == ("sleeping", "resolved", "traffic_back",
                                                        11 * P)


def test_an_alarmed_outage_and_its_grace_period_are_neither_learnt_nor_judged():
    h = warm(periods=3)
    assert h.cell_down(2700.0) == [] and h.down_at == 2700.0
    assert h.cell_down(2800.0) == [] and h.down_at == 2700.0  # still the same outage
    assert h.observe_kpi(kpi(3, drops=90)) == [] and h.periods == 3
    h.cell_up(3600.0)
    # its phones' updates are now bunched: gaps as long as the outage, for 8 hours
    assert (h.up_at, h.sync_gap, h.sync_until) == (3600.0, 900.0 + 300.0, 3600.0 + 8 * 3600)
    assert h.observe_kpi(kpi(5)) == [] and h.periods == 3  # 4500 < 3600 + 1800
    assert h.observe_kpi(kpi(6)) == [] and h.periods == 4  # 5400: learnt again
    # an outage longer than the update period bunches a whole period
    h.cell_down(10000.0)
    h.cell_up(20000.0)
    assert h.sync_gap == DEFAULT.periodic_update_s + DEFAULT.sync_margin_s


def test_an_outage_resolves_the_open_silent_verdicts():
    h = warm()
    h.observe_kpi(kpi(6, attempts=10, drops=0, rrc=0.9))
    (r,) = h.cell_down(7000.0)
    assert (r.kind, r.status, r.at, r.end_time, r.reason) == ("sleeping", "resolved", 7000.0,
                                                              7000.0, "outage")
    assert h.silence_at == math.inf and h.down


def steady(site: SiteHealth, until: float, every: float = 50.0, cell: str = "C1") -> None:
    """A position every ``every`` seconds from 0 to ``until`` (6 per 300 s bin)."""
    t = 0.0
    while t <= until:
        assert site.position(cell, t) == []
        t += every


def test_a_cell_that_goes_silent_is_found_asleep_when_the_silence_is_evidence():
    site = SiteHealth()
    steady(site, 2350.0)
    c = site.cells["C1"]
    # 6 per bin, no dispersion: lambda = 6 / 300 per s; 16 / lambda = 800 s < 900 s minimum
    assert (c.bins, c.rate, c.rate_sq, c.lam) == (7, 6.0, 36.0, 0.02)
    assert c.silence_at == 2350.0 + 900.0
    assert site.advance(3249.0) == []
    (v,) = site.advance(3250.0)
    assert v == Verdict("C1", "sleeping", "open", 2350.0, 3250.0, None, 18.0, "silence",
                        ("traffic:C1@2350-3250",))
    assert site.next_deadline() == math.inf and site.advance(5000.0) == []
    # traffic back: resolved, and the phones that slept now report bunched
    (r,) = site.position("C1", 4000.0)
    assert (r.status, r.reason, r.start_time, r.at, r.end_time) == ("resolved", "traffic_back",
                                                                    2350.0, 4000.0, 4000.0)
    assert (c.up_at, c.sync_gap, c.sync_until) == (4000.0, 1650.0 + 300.0, 4000.0 + 8 * 3600)


def test_no_silence_verdict_before_the_traffic_model_is_warm():
    site = SiteHealth()
    steady(site, 1750.0)  # bins 0-5: five closed
    assert site.cells["C1"].bins == 5 and site.cells["C1"].silence_at == math.inf
    assert site.advance(100000.0) == []


def test_a_busier_cell_needs_only_the_minimum_silence_and_a_thin_one_longer():
    site = SiteHealth()
    steady(site, 2390.0, every=10.0)  # 30 a bin
    assert site.cells["C1"].silence_at == 2390.0 + DEFAULT.min_silence_s
    site = SiteHealth()
    steady(site, 2400.0, every=150.0)  # 2 a bin: 16 / (2 / 300) = 2400 s
    assert site.cells["C1"].silence_at == pytest.approx(2400.0 + 2400.0)


def test_silences_of_several_cells_come_out_in_time_order():
    site = SiteHealth()
    steady(site, 2350.0, cell="B")
    steady(site, 2300.0, cell="A")
    out = site.advance(10000.0)
    assert [(v.cell_id, v.at) for v in out] == [("A", 3200.0), ("B", 3250.0)]


def test_a_silence_right_after_an_outage_is_not_evidence():
    site = SiteHealth()
    steady(site, 2350.0)
    site.cell_down("C1", 2400.0)
    assert site.cells["C1"].silence_at == math.inf
    site.cell_up("C1", 2500.0)
    assert site.position("C1", 2600.0) == []
    assert site.advance(50000.0) == []  # due, but within the grace after the outage



def test_three_healthy_periods_right_after_opening_resolve_a_degradation():
    h = warm()
    for i in range(6, 10):
        h.observe_kpi(kpi(i, drops=20))
    assert h.observe_kpi(kpi(10)) == [] and h.observe_kpi(kpi(11)) == []
    (r,) = h.observe_kpi(kpi(12))
    assert (r.status, r.end_time, r.at) == ("resolved", 10 * P, 13 * P)


def test_warm_up_learns_the_plain_mean_of_its_periods():
    h = CellHealth("C1")
    for i in range(DEFAULT.warmup):
        h.observe_kpi(kpi(i, attempts=100 + 100 * (i % 2), users=10 + 10 * (i % 2),
                          rrc=0.98 + 0.01 * (i % 2)))
    assert (h.attempts, h.users) == pytest.approx((150.0, 15.0))
    assert h.rrc == pytest.approx(0.985)
    decay = 1 - DEFAULT.kpi_alpha / 4  # drop-rate counts: EW sums
    assert h.calls == pytest.approx(sum((100 + 100 * (i % 2)) * decay ** (5 - i)
                                        for i in range(6)))
    assert h.drops == pytest.approx(sum(decay ** (5 - i) for i in range(6)))


# -- KPI side: learning, the drop CUSUM's terms, thresholds at equality ---------------------

def warm_p(p: HealthParams, periods: int = 6, **kw) -> CellHealth:
    """``warm`` with other detector settings."""
    h = CellHealth("C1")
    for i in range(periods):
        assert h.observe_kpi(kpi(i, **kw), p) == []
    return h


def test_after_warm_up_each_period_is_learnt_with_the_kpi_weight():
    h = warm(users=40)
    calls, drops, var = h.calls, h.drops, h.rrc_var
    assert h.observe_kpi(kpi(6, attempts=125, drops=1, users=50, rrc=0.98)) == []
    a = DEFAULT.kpi_alpha
    assert h.periods == DEFAULT.warmup + 1
    assert (h.attempts, h.users) == pytest.approx((100 + a * 25, 40 + a * 10))
    assert (h.rrc, h.rrc_var) == pytest.approx(_ew(0.99, var, 0.98, a))
    decay = 1 - a / 4
    assert (h.calls, h.drops) == pytest.approx((calls * decay + 125, drops * decay + 1))
    # a period without users or an RRC figure leaves those baselines alone
    users, rrc = h.users, h.rrc
    assert h.observe_kpi(kpi(7, users=None, rrc=None)) == []
    assert (h.users, h.rrc, h.periods) == (users, rrc, DEFAULT.warmup + 2)


def _llr(h: CellHealth, attempts: int, drops: int) -> float:
    """The documented per-period term: ``D ln(p1/p0) + (A-D) ln((1-p1)/(1-p0))``."""
    p = DEFAULT
    p0 = (h.drops + p.prior_drop_rate * p.prior_calls) / (h.calls + p.prior_calls)
    p1 = min(0.5, max(p.drop_factor * p0, p.min_p1))
    return drops * math.log(p1 / p0) + (attempts - drops) * math.log((1 - p1) / (1 - p0))


def test_the_drop_cusum_adds_the_binomial_log_likelihood_ratio_below_its_cap():
    h = warm()
    llr = _llr(h, 100, 4)
    assert 0 < llr < DEFAULT.drop_llr_cap
    assert h.observe_kpi(kpi(6, drops=4)) == []
    assert h.s_drop == pytest.approx(llr) and h.run_start == 6 * P
    assert h.periods == DEFAULT.warmup + 1  # learnt: below learn_below
    before, llr = h.s_drop, _llr(h, 40, 2)
    assert 0 < llr < DEFAULT.drop_llr_cap
    assert h.observe_kpi(kpi(7, attempts=40, drops=2)) == []
    assert h.s_drop == pytest.approx(before + llr) and h.run_start == 6 * P
    assert h.periods == DEFAULT.warmup + 1  # not learnt: above learn_below
    assert h.observe_kpi(kpi(8, drops=0)) == [] and h.s_drop == 0.0 and h.run_start == -1.0


def test_on_a_cell_with_many_drops_the_alternative_drop_rate_is_at_most_a_half():
    h = warm(drops=20)
    p0 = (h.drops + 4.0) / (h.calls + 400.0)
    assert DEFAULT.drop_factor * p0 > 0.5
    llr = 29 * math.log(0.5 / p0) + 71 * math.log(0.5 / (1 - p0))
    assert 0 < llr < DEFAULT.drop_llr_cap
    assert h.observe_kpi(kpi(6, drops=29)) == [] and h.s_drop == pytest.approx(llr)



def test_more_drops_than_attempts_count_as_every_attempt_dropped():
    # learnt during warm-up: the baseline stays a rate (the cell is judged afterwards)
    h = CellHealth("C1")
    h.observe_kpi(kpi(0, attempts=0, drops=2000))
    h.observe_kpi(kpi(1, attempts=10, drops=200))
    for i in range(2, 7):
        h.observe_kpi(kpi(i))
    assert h.drops <= h.calls
    # judged: the same evidence as every attempt dropped
    a, b = warm(), warm()
    assert a.observe_kpi(kpi(6, attempts=60, drops=60)) == []
    assert b.observe_kpi(kpi(6, attempts=60, drops=61)) == []
    assert a.s_drop == b.s_drop == DEFAULT.drop_llr_cap


def test_a_collapse_is_judged_from_a_mean_of_exactly_min_users():
    # active users: a mean of exactly 4 is enough to judge (attempts would not collapse)
    h = warm(users=4)
    (v,) = h.observe_kpi(kpi(6, users=0, rrc=0.9))
    assert (v.kind, v.reason) == ("sleeping", "kpi_collapse")
    # attempts, without users: likewise
    h = warm(attempts=4, drops=0)
    (v,) = h.observe_kpi(kpi(6, attempts=0, drops=0, rrc=0.9))
    assert (v.kind, v.reason) == ("sleeping", "kpi_collapse")


# an RRC baseline of 1 whose sd floor is 0.25: z-scores are exact binary fractions
EXACT = HealthParams(min_rrc_sd=0.25)


def test_a_collapse_with_the_rrc_exactly_rrc_z_below_its_mean_is_sleeping():
    h = warm_p(EXACT, rrc=1.0)
    (v,) = h.observe_kpi(kpi(6, attempts=10, drops=0, rrc=0.25), EXACT)  # z = 3
    assert (v.kind, v.score) == ("sleeping", 3.0)
    h = warm_p(EXACT, rrc=1.0)
    assert h.observe_kpi(kpi(6, attempts=10, drops=0, rrc=0.3125), EXACT) == []  # z = 2.75


def test_a_collapse_after_the_last_position_starts_at_that_position():
    h = warm()
    h.last_seen = 5000.0  # inside the period before the collapsed one
    (v,) = h.observe_kpi(kpi(6, attempts=10, drops=0, rrc=0.9))
    assert (v.kind, v.start_time, v.at) == ("sleeping", 5000.0, 7 * P)


def test_a_sleeping_verdict_is_resolved_by_kpis_from_its_start_on():
    h = warm()
    h.observe_kpi(kpi(6, attempts=10, drops=0, rrc=0.9))  # sleeping since 5 P
    assert h.observe_kpi(kpi(4)) == []  # a normal period before it: still asleep
    (r,) = h.observe_kpi(kpi(5))
    assert (r.kind, r.status, r.start_time, r.end_time, r.at, r.reason) == (
        "sleeping", "resolved", 5 * P, 5 * P, 6 * P, "traffic_back")


def test_the_cusum_thresholds_open_at_equality():
    # four capped periods of 2 nats: exactly drop_h
    p = HealthParams(drop_llr_cap=2.0)
    h = warm_p(p)
    for i in range(6, 9):
        assert h.observe_kpi(kpi(i, drops=20), p) == []
    (v,) = h.observe_kpi(kpi(9, drops=20), p)
    assert (v.reason, v.start_time, v.at, v.score) == ("drop_rate", 6 * P, 10 * P, 1.0)
    # the RRC CUSUM exactly at its threshold: z = 3, k = 1.5
    p = replace(EXACT, rrc_h=1.5)
    h = warm_p(p, rrc=1.0)
    (v,) = h.observe_kpi(kpi(6, rrc=0.25), p)
    assert (v.reason, v.start_time, v.score) == ("rrc", 6 * P, 1.0)


def test_both_cusums_over_their_thresholds_name_the_drop_rate_and_add_their_shares():
    p = replace(EXACT, drop_llr_cap=2.0)
    h = warm_p(p, rrc=1.0)
    for i in range(6, 9):
        assert h.observe_kpi(kpi(i, drops=20, rrc=1.0), p) == []
    (v,) = h.observe_kpi(kpi(9, drops=20, rrc=0.25), p)  # s_drop 8, s_rrc 1.5
    assert (v.reason, v.score) == ("drop_rate", 8 / 8 + 1.5 / 10)


def test_baselines_stop_learning_when_a_cusum_reaches_learn_below():
    p = HealthParams(drop_llr_cap=2.0)
    h = warm_p(p)
    assert h.observe_kpi(kpi(6, drops=20), p) == [] and h.s_drop == 2.0
    assert h.periods == p.warmup
    p = HealthParams(min_rrc_sd=0.125)
    h = warm_p(p, rrc=1.0)
    assert h.observe_kpi(kpi(6, rrc=0.5625), p) == [] and h.s_rrc == 2.0  # z = 3.5
    assert h.periods == p.warmup


def _degraded(p: HealthParams = DEFAULT, **kw) -> CellHealth:
    h = warm_p(p, **kw)
    for i in range(6, 10):
        h.observe_kpi(kpi(i, drops=20, **kw), p)
    assert "degradation" in h.open
    return h


def test_a_period_is_healthy_with_no_drop_evidence_and_the_rrc_within_half_rrc_z():
    # z exactly rrc_z / 2 is not healthy; below it is
    h = _degraded(EXACT, rrc=1.0)
    assert h.observe_kpi(kpi(10, rrc=0.625), EXACT) == [] and h.healthy == 0
    assert h.observe_kpi(kpi(11, rrc=0.6875), EXACT) == [] and h.healthy == 1  # z = 1.25
    # a period without calls: no evidence either way (llr 0) counts as healthy
    h = _degraded()
    for i in range(10, 12):
        assert h.observe_kpi(kpi(i, attempts=0, drops=0)) == []
    (r,) = h.observe_kpi(kpi(12, attempts=0, drops=0))
    assert (r.status, r.reason, r.end_time) == ("resolved", "healthy", 10 * P)


# -- traffic: bins, the rate, the hours' profile, silence ------------------------------------

def test_positions_are_counted_in_bins_aligned_on_the_bin_size():
    h = CellHealth("C1")
    assert h.observe_traffic(130.0) == [] and h.observe_traffic(200.0) == []
    assert (h.bin_start, h.bin_count, h.bins, h.rate) == (0.0, 2, 0, 0.0)  # still open
    h.observe_traffic(310.0)  # closes [0, 300) with 2: the first bin is the rate itself
    assert (h.bin_start, h.bin_count, h.bins, h.rate, h.rate_sq) == (300.0, 1, 1, 2.0, 4.0)
    h.observe_traffic(320.0)
    h.observe_traffic(330.0)
    h.observe_traffic(340.0)
    # [300, 600) closes with 4, [600, 900) empty: EW step, then one empty bin's decay
    h.observe_traffic(1000.0)
    a = DEFAULT.rate_alpha
    assert (h.bin_start, h.bin_count, h.bins) == (900.0, 1, 3)
    assert h.rate == pytest.approx((a * 4 + (1 - a) * 2) * (1 - a))
    assert h.rate_sq == pytest.approx((a * 16 + (1 - a) * 4) * (1 - a))
    assert h.lam == pytest.approx(h.silence_rate())
    assert h.last_seen == 1000.0
    h.observe_traffic(950.0)  # late: counted, but the last position stays the latest
    assert (h.bin_count, h.last_seen) == (2, 1000.0)


def test_bins_of_an_outage_are_not_learnt_and_learning_resumes_with_the_return():
    h = CellHealth("C1")
    h.observe_traffic(10.0)
    h.observe_traffic(20.0)
    h.cell_down(100.0)
    h.observe_traffic(400.0)  # while down: [0, 300) closes, not learnt
    assert (h.bins, h.rate, h.profile) == (0, 0.0, None)
    h.cell_up(600.0)
    h.observe_traffic(650.0)  # [300, 600) ends at the return: still the outage's
    assert (h.bins, h.rate, h.profile) == (0, 0.0, None)
    h.observe_traffic(910.0)  # [600, 900): after the return
    assert (h.bins, h.rate) == (1, 1.0) and h.profile is not None
    # a bin that ends exactly at the return is not learnt, one that ends after it is
    h = CellHealth("C1")
    h.observe_traffic(10.0)
    h.observe_traffic(20.0)
    h.cell_down(100.0)
    h.cell_up(300.0)
    h.observe_traffic(310.0)
    assert h.bins == 0
    h.observe_traffic(610.0)
    assert (h.bins, h.rate) == (1, 1.0)


def _site_warm(cell: str = "C1", until: float = 2350.0, every: float = 50.0,
               p: HealthParams = DEFAULT, site: SiteHealth | None = None,
               start: float = 0.0) -> SiteHealth:
    site = site if site is not None else SiteHealth()
    t = start
    while t <= until:
        assert site.position(cell, t, p) == []
        t += every
    return site


def test_the_silence_test_is_armed_from_exactly_warmup_bins():
    site = _site_warm(until=1850.0)  # bins 0-5 closed by the position at 1800
    assert site.cells["C1"].bins == DEFAULT.warmup_bins
    assert site.cells["C1"].silence_at == 1850.0 + DEFAULT.min_silence_s


def test_under_a_sleeping_verdict_the_hours_are_learnt_but_not_the_rate():
    site = _site_warm()
    c = site.cells["C1"]
    (v,) = site.advance(3250.0)
    assert v.kind == "sleeping" and (c.bins, c.rate) == (7, 6.0)
    assert list(c.profile_bins[:2]) == [7, 0]  # 1970-01-01 was a Thursday: slot 0
    (r,) = site.position("C1", 4000.0)  # closes the six bins from 2100 to 3900
    assert r.reason == "traffic_back"
    assert (c.bins, c.rate, c.rate_sq) == (7, 6.0, 36.0)
    assert list(c.profile_bins[:2]) == [12, 1]
    assert c.profile[0] == pytest.approx(6.0 * (1 - DEFAULT.profile_alpha) ** 4, rel=1e-6)
    assert c.profile[1] == 0.0


def test_each_slot_starts_at_its_first_bin_then_learns_with_the_profile_weight():
    h = CellHealth("C1")
    for t in (10.0, 20.0, 30.0, 310.0):  # 3 in [Mon 00:00, 00:05), 1 in the next
        h.observe_traffic(MONDAY + t)
    assert h.profile[0] == 3.0 and list(h.profile_bins[:2]) == [1, 0]
    h.observe_traffic(MONDAY + 610.0)
    a = DEFAULT.profile_alpha
    assert h.profile[0] == pytest.approx(a * 1 + (1 - a) * 3, rel=1e-6)
    assert h.profile_bins[0] == 2
    # empty bins count as zeros in their slots; an hour later slot 1 starts at 0
    h.observe_traffic(MONDAY + 3600.0 + 310.0)
    assert list(h.profile_bins[:2]) == [12, 1] and h.profile[1] == 0.0
    assert h.profile[0] == pytest.approx(
        (a * 1 + (1 - a) * (a * 1 + (1 - a) * 3)) * (1 - a) ** 9, rel=1e-5)


def test_a_gap_teaches_at_most_two_days_of_empty_bins_and_a_slot_counts_to_255():
    h = CellHealth("C1")
    h.observe_traffic(MONDAY)
    h.observe_traffic(MONDAY + 300.0)  # one bin: slot 0
    h.observe_traffic(MONDAY + 300.0 + 5 * 86400.0)  # five days later: two days' bins learnt
    assert sum(h.profile_bins) == 1 + 2 * 288
    assert list(h.profile_bins[:24]) == [1 + 24] + [24] * 23 and sum(h.profile_bins[24:]) == 0
    h.profile_bins[0] = 254
    bin0 = MONDAY + 7 * 86400.0  # the next Monday 00:00
    h.observe_traffic(bin0)
    h.observe_traffic(bin0 + 300.0)
    h.observe_traffic(bin0 + 600.0)
    assert h.profile_bins[0] == 255


def _profiled(rate: float = 10.0, **slots: tuple[int, float]) -> CellHealth:
    """A cell whose slot ``s<i>`` learnt ``(bins, value)``."""
    h = CellHealth("C1", rate=rate)
    h.profile, h.profile_bins = array("f", bytes(4 * 48)), array("B", bytes(48))
    for name, (bins, value) in slots.items():
        h.profile_bins[int(name[1:])], h.profile[int(name[1:])] = bins, value
    return h


def test_the_rate_expected_is_capped_by_the_quieter_of_this_hour_and_the_next():
    now = MONDAY + 10 * 3600.0 + 3599.0  # Monday 10:59:59: slots 10 and 11
    p = DEFAULT
    assert _profiled(s10=(12, 4.0), s11=(12, 2.0))._expected(now, p) == 2 * 2.0 / 10
    assert _profiled(s10=(12, 1.0), s11=(12, 2.0))._expected(now, p) == 2 * 1.0 / 10
    # learnt busier than the rate: 1 at most
    assert _profiled(s10=(12, 8.0), s11=(12, 8.0))._expected(now, p) == 1.0
    # a slot with fewer than profile_min_bins bins: the other kind of day's, same hour
    assert _profiled(s10=(12, 4.0), s11=(11, 0.0), s35=(12, 3.0))._expected(now, p) == 0.6
    assert _profiled(s10=(12, 4.0), s11=(11, 0.0), s35=(11, 0.0))._expected(now, p) == 1.0
    assert _profiled(s10=(11, 0.0), s11=(12, 4.0))._expected(now, p) == 1.0
    assert _profiled(s10=(12, 4.0), s11=(12, 4.0), s12=(12, 0.0))._expected(now, p) == 0.8
    # on a Saturday, the weekdays' hour when the weekend's is unlearnt
    sat = MONDAY + 5 * 86400.0 + 10 * 3600.0
    assert _profiled(s10=(12, 1.0), s11=(12, 4.0), s35=(12, 4.0))._expected(sat, p) == 0.2
    # nothing learnt, or no rate: 1
    assert CellHealth("C1", rate=10.0)._expected(now, p) == 1.0
    assert _profiled(rate=0.0, s10=(12, 4.0), s11=(12, 2.0))._expected(now, p) == 1.0


def test_a_bin_closed_sets_the_expected_share_for_the_bin_that_starts():
    h = _profiled(rate=10.0, s0=(12, 1.0), s1=(12, 1.0), s2=(12, 9.0))
    h.bin_start, h.bins, h.rate_sq = MONDAY + 3300.0, 6, 110.0
    h.observe_traffic(MONDAY + 3600.0)  # the bin starting 01:00: slots 1 and 2
    a = DEFAULT.rate_alpha
    rate = (1 - a) * 10.0
    assert h.rate == pytest.approx(rate)
    assert h.expect == pytest.approx(2 * h.profile[1] / rate)
    assert h.lam == pytest.approx(h.silence_rate())


def test_slightly_over_dispersed_counts_lower_the_silence_rate():
    thin = CellHealth("C", rate=0.5, rate_sq=0.25 + 1.0)  # under one a bin, D = 2
    assert thin.silence_rate() * 300 == pytest.approx(0.5 * math.log(2))
    h = CellHealth("C", rate=6.0, rate_sq=36.0 + 9.0)  # D = 1.5
    assert h.silence_rate() * 300 == pytest.approx(6.0 * math.log(1.5) / 0.5)
    assert h.silence_rate(HealthParams(bin_s=600.0)) * 600 == pytest.approx(
        6.0 * math.log(1.5) / 0.5)


def test_arming_the_silence_test():
    # an older snapshot without the kept rate: computed
    h = CellHealth("C1", bins=6, rate=2.0, rate_sq=4.0, last_seen=1000.0)
    h.arm_silence()
    assert h.silence_at == pytest.approx(1000.0 + 16 / (2 / 300))
    # a thin cell, under one position a bin
    h = CellHealth("C1", bins=6, rate=0.5, rate_sq=0.25, last_seen=1000.0)
    h.arm_silence()
    assert h.silence_at == pytest.approx(1000.0 + 16 / (0.5 / 300))
    # hours learnt as empty: never
    h = CellHealth("C1", bins=6, rate=2.0, rate_sq=4.0, last_seen=1000.0, expect=0.0)
    h.arm_silence()
    assert h.silence_at == math.inf
    # down, or not warm: never
    h = CellHealth("C1", bins=6, rate=2.0, rate_sq=4.0, last_seen=1000.0, down=True)
    h.arm_silence()
    assert h.silence_at == math.inf
    h = CellHealth("C1", bins=5, rate=2.0, rate_sq=4.0, last_seen=1000.0, silence_at=5.0)
    h.arm_silence()
    assert h.silence_at == math.inf
    # other settings
    p = HealthParams(silence_k=8.0, min_silence_s=100.0)
    h = CellHealth("C1", bins=6, rate=2.0, rate_sq=4.0, last_seen=1000.0)
    h.arm_silence(p)
    assert h.silence_at == pytest.approx(1000.0 + 8 / (2 / 300))
    h = CellHealth("C1", bins=6, rate=60.0, rate_sq=3600.0, last_seen=1000.0)
    h.arm_silence(p)
    assert h.silence_at == 1100.0


def test_after_an_outage_a_silence_as_long_as_it_is_no_evidence_until_sync_until():
    h = CellHealth("C1", bins=6, rate=60.0, rate_sq=3600.0)
    h.cell_down(0.0)
    h.cell_up(1200.0)
    assert (h.sync_gap, h.sync_until) == (1500.0, 1200.0 + 8 * 3600)
    h.last_seen = h.sync_until - 1.0
    h.arm_silence()
    assert h.silence_at == h.last_seen + 1500.0
    h.last_seen = h.sync_until
    h.arm_silence()
    assert h.silence_at == h.last_seen + DEFAULT.min_silence_s
    # other settings: their update period, margin and hold
    p = HealthParams(periodic_update_s=600.0, sync_margin_s=60.0, sync_hold_s=3600.0)
    h.cell_down(50000.0)
    h.cell_up(51200.0, p)
    assert (h.sync_gap, h.sync_until) == (660.0, 51200.0 + 3600.0)


def test_a_return_without_an_outage_or_at_its_very_start_bunches_nothing():
    h = CellHealth("C1")
    h.cell_up(1000.0)  # never down
    assert (h.sync_gap, h.sync_until) == (0.0, -math.inf)
    h.cell_down(2000.0)
    h.cell_up(2000.0)
    assert (h.sync_gap, h.sync_until) == (0.0, -math.inf)
    assert (h.last_seen, h.silence_at, h.up_at) == (-1.0, math.inf, 2000.0)
    h.cell_down(3000.0)
    h.cell_up(3001.0)  # a second: its phones' updates are a second apart
    assert (h.sync_gap, h.sync_until) == (1.0 + 300.0, 3001.0 + 8 * 3600)


# settings under which a silence falls due inside the last position's bin (min 60 s)
SHORT = HealthParams(silence_k=1.0, min_silence_s=60.0)


def test_a_position_exactly_when_a_silence_falls_due_opens_and_resolves_it():
    site = _site_warm(until=2100.0, p=SHORT)  # 6 a bin: 1 / 0.02 = 50 s < 60 s
    c = site.cells["C1"]
    assert site.advance(2150.0, SHORT) == []  # nothing due: the next deadline is known
    assert (c.bin_start, c.silence_at, site.due_at) == (2100.0, 2160.0, 2160.0)
    v, r = site.position("C1", 2160.0, SHORT)  # in the same traffic bin
    assert (v.status, v.at, v.start_time, r.status, r.reason, r.at) == (
        "open", 2160.0, 2100.0, "resolved", "traffic_back", 2160.0)


def test_a_position_on_one_cell_reports_the_silence_due_then_on_another():
    site = _site_warm(cell="A", until=2100.0, p=SHORT)
    site = _site_warm(cell="B", start=2000.0, until=2100.0, p=SHORT, site=site)
    assert site.advance(2150.0, SHORT) == []
    assert site.due_at == site.cells["A"].silence_at == 2160.0
    (v,) = site.position("B", 2160.0, SHORT)
    assert (v.cell_id, v.status, v.at) == ("A", "open", 2160.0)


def test_a_position_at_the_end_of_a_bin_starts_the_next_bin():
    site = SiteHealth()
    for t in (10.0, 20.0, 300.0):
        assert site.position("C1", t) == []
    c = site.cells["C1"]
    assert (c.bin_start, c.bin_count, c.bins, c.rate) == (300.0, 1, 1, 2.0)
    assert site.position("C1", 599.0) == [] and (c.bin_start, c.bin_count) == (300.0, 2)


def test_a_position_under_a_kpi_verdict_wakes_the_cell_within_the_same_bin():
    site = SiteHealth()
    assert site.position("C1", 4400.0) == []
    for i in range(6):
        assert site.kpi(Kpi("C1", 60.0 * i, 60.0, 100, 1, 0.99, None, None)) == []
    (v,) = site.kpi(Kpi("C1", 4410.0, 60.0, 10, 0, 0.9, None, None))
    assert (v.kind, v.status, v.start_time) == ("sleeping", "open", 4400.0)
    (r,) = site.position("C1", 4480.0)  # the same traffic bin
    assert (r.kind, r.status, r.reason, r.at) == ("sleeping", "resolved", "traffic_back",
                                                  4480.0)


def test_a_sleeping_cell_is_not_reported_again_when_its_silence_falls_due():
    site = _site_warm()  # silent from 2350: due at 3250
    for i in range(6):
        assert site.kpi(Kpi("C1", 60.0 * i, 60.0, 100, 1, 0.99, None, None)) == []
    (v,) = site.kpi(Kpi("C1", 2400.0, 600.0, 10, 0, 0.9, None, None))
    assert (v.reason, v.at) == ("kpi_collapse", 3000.0)
    assert site.advance(5000.0) == [] and site.cells["C1"].silence_at == 3250.0


def test_a_silence_verdict_is_due_at_its_time_whenever_event_time_gets_there():
    site = _site_warm()
    (v,) = site.advance(10000.0)
    assert (v.at, v.start_time, v.score) == (3250.0, 2350.0, 18.0)


def test_silences_due_at_the_same_time_come_out_by_cell():
    site = _site_warm(cell="B")
    site = _site_warm(cell="A", site=site)
    assert [v.cell_id for v in site.advance(3250.0)] == ["A", "B"]
    assert site.due_at == math.inf


def test_a_kpi_reports_the_silence_that_fell_due_in_its_period_first():
    site = _site_warm()
    for i in range(6):
        assert site.kpi(Kpi("C1", 60.0 * i, 60.0, 100, 1, 0.99, None, None)) == []
    (v,) = site.kpi(Kpi("C1", 2400.0, 900.0, 10, 0, 0.9, None, None))  # collapsed too
    assert (v.reason, v.at) == ("silence", 3250.0)


# other settings, followed throughout: 10-minute bins, fast weights, two bins of warm-up
Q = HealthParams(bin_s=600.0, rate_alpha=0.5, warmup_bins=2, silence_k=2.0,
                 min_silence_s=60.0, grace_s=600.0, sync_hold_s=3600.0, profile_alpha=0.5,
                 warmup=2)


def _q_site() -> SiteHealth:
    site = SiteHealth()
    for t in (0.0, 100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 900.0, 1200.0, 1250.0):
        assert site.position("C1", t, Q) == []
    return site


def test_a_site_follows_its_settings_on_traffic():
    site = _q_site()
    c = site.cells["C1"]
    # bins of 6 and 2: rate 4, rate_sq 20 (no dispersion), profile 0.5 * 2 + 0.5 * 6
    assert (c.bins, c.rate, c.rate_sq, c.profile[0]) == (2, 4.0, 20.0, 4.0)
    assert c.silence_at == 1250.0 + 2.0 / (4.0 / 600)  # silence_k / lam
    (v,) = site.kpi(Kpi("C1", 1100.0, 900.0, 10, 0, 0.99, None, None), Q)  # to 2000
    assert (v.start_time, v.at, v.score) == (1250.0, 1550.0, 2.0)
    (r,) = site.position("C1", 2050.0, Q)
    assert r.reason == "traffic_back"
    assert (c.up_at, c.sync_gap, c.sync_until) == (2050.0, 800.0 + 300.0, 2050.0 + 3600.0)
    site.cell_down("C1", 3000.0)
    site.cell_up("C1", 3500.0, Q)
    assert (c.sync_gap, c.sync_until) == (500.0 + 300.0, 3500.0 + 3600.0)
    # the silence reported by a position on another cell: the same
    (v,) = _q_site().position("C2", 2000.0, Q)
    assert (v.cell_id, v.start_time, v.at, v.score) == ("C1", 1250.0, 1550.0, 2.0)


def test_a_site_follows_its_settings_on_kpis():
    site = SiteHealth()
    for i in range(2):
        assert site.kpi(kpi(i), Q) == []
    (v,) = site.kpi(kpi(2, attempts=10, drops=0, rrc=0.9), Q)
    assert (v.kind, v.start_time) == ("sleeping", P)
    (r,) = site.kpi(kpi(3), Q)
    assert (r.status, r.end_time, r.at) == ("resolved", 3 * P, 4 * P)
    c = site.cells["C1"]
    assert (c.up_at, c.sync_until) == (3 * P, 3 * P + 3600.0)
    assert site.kpi(kpi(3, drops=90), Q) == []  # within the grace after waking: not judged
    assert c.s_drop == 0.0 and c.periods == 2
    assert site.kpi(kpi(4, drops=90), Q) == [] and c.s_drop == Q.drop_llr_cap  # 3600 >= 3300


def test_a_period_with_a_little_drop_evidence_is_not_healthy():
    h = _degraded()
    llr = _llr(h, 110, 4)
    assert 0 < llr < 1
    assert h.observe_kpi(kpi(10, attempts=110, drops=4)) == [] and h.healthy == 0
    assert h.open["degradation"][1][-1] == kpi_ref("C1", 10 * P)


def test_a_run_starts_with_its_first_period_of_evidence_however_small():
    h = warm()
    llr = _llr(h, 110, 4)
    assert 0 < llr < 1
    assert h.observe_kpi(kpi(6, attempts=110, drops=4)) == [] and h.s_drop == pytest.approx(llr)
    for i in range(7, 9):
        assert h.observe_kpi(kpi(i, drops=20)) == []
    (v,) = h.observe_kpi(kpi(9, drops=20))
    assert (v.reason, v.start_time) == ("drop_rate", 6 * P)
    # the RRC CUSUM: a little over the allowance, then a collapse
    h = warm()
    assert h.observe_kpi(kpi(6, rrc=0.9825)) == []  # z = 1.875
    assert h.s_rrc == pytest.approx(0.375)
    (v,) = h.observe_kpi(kpi(7, rrc=0.9))
    assert (v.reason, v.start_time) == ("rrc", 6 * P)


def test_a_period_without_an_rrc_figure_leaves_the_rrc_cusum_as_it_is():
    h = warm()
    assert h.observe_kpi(kpi(6, rrc=0.98)) == [] and h.s_rrc == pytest.approx(1.0)
    assert h.observe_kpi(kpi(7, rrc=None)) == [] and h.s_rrc == pytest.approx(1.0)


def test_a_sleeping_cell_taken_down_and_up_at_once_is_not_bunched():
    site = _site_warm()
    (v,) = site.advance(3250.0)
    (r,) = site.cell_down("C1", 3300.0)
    assert (r.kind, r.reason) == ("sleeping", "outage")
    site.cell_up("C1", 3300.0)
    assert site.position("C1", 4000.0) == []
    assert site.cells["C1"].silence_at == 4000.0 + DEFAULT.min_silence_s


def test_a_degradation_score_is_rounded_once_to_three_decimals():
    p = HealthParams(min_rrc_sd=0.0625)
    h = warm_p(p, rrc=1.0)
    score = ((1.0 - 0.27843125) / 0.0625 - p.rrc_k) / p.rrc_h  # 1.00451
    assert round(score, 3) != round(round(score, 4), 3)
    (v,) = h.observe_kpi(kpi(6, rrc=0.27843125), p)
    assert (v.reason, v.score) == ("rrc", round(score, 3))


def test_a_cell_seen_again_after_its_silence_fell_due_reports_it_then_wakes():
    h = CellHealth("C1")
    for t in (0.0, 100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 900.0, 1200.0, 1250.0):
        assert h.observe_traffic(t, Q) == []
    v, r = h.observe_traffic(2000.0, Q)
    assert (v.status, v.start_time, v.at, v.score) == ("open", 1250.0, 1550.0, 2.0)
    assert (r.status, r.reason, r.end_time) == ("resolved", "traffic_back", 2000.0)
