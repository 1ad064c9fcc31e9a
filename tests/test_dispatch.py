"""Dispatch (dataflows/dispatch.py) on its own: propensity scoring and labelling, the
low-propensity floor, the compensation budget per UTC day and the per-minute rate budget
with its reserve for priority segments."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from forewarn.dataflows.care import ComplaintSeen, Suppressed
from forewarn.dataflows.dispatch import MAX_DEFER_MINUTES, OVERFLOW, PACED, Dispatcher
from forewarn.dataflows.propensity import HORIZON_S, CareFeatures, PropensityModel
from forewarn.model import Action
from forewarn.rules.rulebook import DEFAULT_DIR, Budgets, parse_rulebook
from tests.builders import without_budgets

DAY = 86400.0
FEATURES = CareFeatures("consumer", "Basic", 12, "outage", 0.0, 300.0, True, 1, 0, 10)

BOOK = parse_rulebook("""\
rulebook: t
version: 1
correlation: {outage_severities: [critical]}
quiet_hours: {start: "22:00", end: "08:00"}
rules:
  - id: picky
    version: 1
    owner: o
    description: only for subscribers likely to complain
    trigger: {incident: outage, at: hold_down}
    audience: {min_propensity: 0.6}
    action: outage_notice
    templates: {en: "Hi $name"}
  - id: lenient
    version: 1
    owner: o
    description: for subscribers not unlikely to complain
    trigger: {incident: outage, at: resolved}
    audience: {min_propensity: 0.5}
    action: restored_notice
    templates: {en: "Hi $name"}
  - id: everyone
    version: 1
    owner: o
    description: no floor
    trigger: {incident: flapping, at: hold_down}
    action: outage_notice
    templates: {en: "Hi $name"}
""", Path("rulebook.yaml"))


def act(i: int | str, at: float, *, kind: str = "apology", channel: str = "sms",
        segment: str | None = "consumer", rule: str = "everyone", features=None,
        send_after: float | None = None, sub: str | None = None) -> Action:
    return Action(f"a{i}", sub or f"S{i}", kind, channel, "en", "m", rule, 1, None, ("e",),
                  at, send_after=send_after, segment=segment, features=features)


def ids(items: list) -> list:
    return [(a.action_id, a.send_after) if isinstance(a, Action) else a for a in items]


# ---- budgets ---------------------------------------------------------------------------

def test_without_budgets_actions_pass_unchanged_and_unordered():
    items = [act(2, 50.0), act(1, 10.0)]
    assert Dispatcher().admit(items, None) is items


def test_compensations_beyond_the_daily_budget_are_suppressed_until_the_next_utc_day():
    d, b = Dispatcher(), Budgets(compensation_per_day=2)
    day1 = [act(i, DAY + 100.0 * i, kind="compensation", rule=f"r{i}") for i in range(3)]
    out = d.admit(day1 + [act(9, DAY + 500.0)], b)  # an apology: not a compensation
    assert ids(out) == [("a0", None), ("a1", None),
                        Suppressed("r2", "compensation", "compensation_budget", DAY + 200.0),
                        ("a9", None)]
    # the last second of the day is still that day; the next one is a new day
    out = d.admit([act(3, 2 * DAY - 1, kind="compensation"),
                   act(4, 2 * DAY, kind="compensation")], b)
    assert ids(out) == [Suppressed("everyone", "compensation", "compensation_budget",
                                   2 * DAY - 1), ("a4", None)]


def test_no_compensation_budget_means_no_limit_and_zero_means_none():
    many = [act(i, 10.0 + i, kind="compensation") for i in range(50)]
    assert all(isinstance(a, Action) for a in Dispatcher().admit(many, Budgets()))
    out = Dispatcher().admit(many[:1], Budgets(compensation_per_day=0))
    assert out == [Suppressed("everyone", "compensation", "compensation_budget", 10.0)]


def test_rate_budget_defers_to_the_next_minute_with_room():
    d, b = Dispatcher(), Budgets(per_minute={"sms": 4}, reserve_share=0.5)
    # consumers may use 4 * (1 - 0.5) = 2 a minute; minute 2 is 120-179 s
    out = d.admit([act(i, 125.0 + i) for i in range(5)], b)
    assert ids(out) == [("a0", None), ("a1", None), ("a2", 180.0), ("a3", 180.0),
                        ("a4", 240.0)]
    # a vip may use the whole minute: minute 2 still has 2 of its 4 sends
    out = d.admit([act("v", 130.0, segment="vip"), act("w", 131.0, segment="vip"),
                   act("x", 132.0, segment="vip")], b)
    assert ids(out) == [("av", None), ("aw", None), ("ax", 180.0)]


def test_rate_budget_is_per_channel_and_a_channel_without_one_is_free():
    d, b = Dispatcher(), Budgets(per_minute={"sms": 1}, reserve_share=0.0)
    out = d.admit([act(1, 60.0), act(2, 61.0, channel="email"), act(3, 62.0, channel="email"),
                   act(4, 63.0, channel="push"), act(5, 64.0)], b)
    assert ids(out) == [("a1", None), ("a2", None), ("a3", None), ("a4", None),
                        ("a5", 120.0)]


def test_a_consumer_always_has_one_send_a_minute_whatever_the_reserve():
    d, b = Dispatcher(), Budgets(per_minute={"sms": 1}, reserve_share=0.9)
    out = d.admit([act(1, 60.0), act(2, 61.0)], b)
    assert ids(out) == [("a1", None), ("a2", 120.0)]
    # with 3 a minute and a 0.5 reserve: int(1.5) = 1 for consumers
    d, b = Dispatcher(), Budgets(per_minute={"sms": 3}, reserve_share=0.5)
    assert ids(d.admit([act(1, 60.0), act(2, 61.0)], b)) == [("a1", None), ("a2", 120.0)]


def test_a_deferred_action_counts_in_the_minute_it_is_sent():
    d, b = Dispatcher(), Budgets(per_minute={"sms": 1}, reserve_share=0.0)
    # sent after quiet hours (send_after 600): minute 10 is free, the action keeps its time
    out = d.admit([act(1, 60.0, send_after=630.0), act(2, 61.0, send_after=640.0),
                   act(3, 62.0)], b)
    assert ids(out) == [("a1", 630.0), ("a2", 660.0), ("a3", None)]


def test_a_send_is_deferred_at_most_a_day():
    d, b = Dispatcher(), Budgets(per_minute={"sms": 1}, reserve_share=0.0)
    out = d.admit([act(i, 60.0) for i in range(MAX_DEFER_MINUTES + 2)], b)
    assert MAX_DEFER_MINUTES == 24 * 60
    assert ids(out)[0] == ("a0", None)
    assert ids(out)[MAX_DEFER_MINUTES - 1][1] == MAX_DEFER_MINUTES * 60.0
    # the day is full: the last two go at the end of it (over the budget)
    assert [a.send_after for a in out[-2:]] == [(1 + MAX_DEFER_MINUTES) * 60.0] * 2


def test_within_a_batch_priority_segments_go_first_at_equal_times():
    d = Dispatcher()
    b = Budgets(per_minute={"sms": 1}, priority_segments=("business",), reserve_share=0.0)
    out = d.admit([act("c", 60.0), act("v", 60.0, segment="vip"),
                   act("b", 60.0, segment="business"), act("a", 60.0), act("e", 59.0)], b)
    assert ids(out) == [("ae", None), ("ab", None), ("aa", 120.0), ("ac", 180.0),
                        ("av", 240.0)]
    # suppressions pass through in time order (and are never counted)
    s = Suppressed("r", "apology", "cooldown", 30.0)
    assert ids(Dispatcher().admit([act(1, 60.0), s], b)) == [s, ("a1", None)]


def test_budget_memory_is_pruned_as_event_time_moves_on():
    d, b = Dispatcher(), Budgets(compensation_per_day=1, per_minute={"sms": 1},
                                 reserve_share=0.0)
    t0 = 1795392000.0  # 2026-11-23T00:00:00Z (UTC day 20780)
    for day in range(10):
        t = t0 + day * DAY + 3600.0
        out = d.admit([act(f"{day}c", t, kind="compensation"),
                       act(f"{day}s", t + 1.0)], b)
        assert ids(out) == [(f"a{day}c", None), (f"a{day}s", t + 60.0)]
    # the last minutes of rate counts and three days of compensation counts are kept
    assert sorted(d.compensations) == [20787, 20788, 20789]
    last = t0 + 9 * DAY + 3600
    assert sorted(d.sends) == [("sms", int(last) // 60), ("sms", int(last) // 60 + 1)]
    # a minute 10 minutes old is kept, 11 minutes old is not
    d.admit([act("late", last + 10 * 60)], b)
    assert sorted(d.sends)[0] == ("sms", int(last) // 60)
    d.admit([act("later", last + 11 * 60)], b)
    assert sorted(d.sends)[0] == ("sms", int(last) // 60 + 1)


# ---- propensity --------------------------------------------------------------------------

def test_scored_actions_carry_score_and_model_in_their_evidence():
    d = Dispatcher()
    out = d.handle([act(1, 100.0, features=FEATURES, rule="everyone")], BOOK)
    (a,) = out
    assert a.evidence == ("e", "propensity:0.500", "model:p0")  # untrained: 1/2
    assert a.features is None
    assert [(t, s, v) for t, _, s, v in d.exposures["S1"].pending] == [(100.0, 0.5, "p0")]


def test_an_action_scored_below_its_rules_floor_is_suppressed():
    d = Dispatcher()
    out = d.handle([act(1, 100.0, features=FEATURES, rule="picky", kind="outage_notice"),
                    act(2, 100.0, features=FEATURES, rule="lenient", kind="restored_notice")],
                   BOOK)
    assert out[0] == Suppressed("picky", "outage_notice", "low_propensity", 100.0)
    assert isinstance(out[1], Action) and out[1].action_id == "a2"  # 0.5 is not below 0.5
    # both were exposures: suppressed or not, they are learnt from
    assert len(d.exposures["S1"].pending) == len(d.exposures["S2"].pending) == 1


def test_without_scoring_features_are_dropped_and_nothing_is_learnt():
    d = Dispatcher()
    (a,) = d.handle([act(1, 100.0, features=FEATURES, rule="picky")], BOOK, score=False)
    assert a.evidence == ("e",) and a.features is None and not d.exposures
    plain = act(2, 100.0)  # an action that is no exposure passes untouched
    assert d.handle([plain], BOOK) == [plain] and not d.exposures


def test_a_complaint_within_the_horizon_labels_the_exposure_positive():
    d = Dispatcher()
    d.handle([act(1, 1000.0, features=FEATURES, sub="U"),
              act(2, 1500.0, features=FEATURES, sub="V")], BOOK)
    # a complaint is consumed, not passed on
    assert d.handle([act(3, 1500.0), ComplaintSeen("U", 1500.0)], BOOK) == [act(3, 1500.0)]
    assert d.model.updates == 0  # settled only once the horizon has passed
    d.handle([ComplaintSeen("U", 1000.0 + HORIZON_S + 1)], BOOK)
    assert (d.model.updates, d.model.positives) == (1, 1)
    # V's exposure is settled (negative) by the periodic sweep, without an event of V's
    assert len(d.exposures["V"].pending) == 1 and "U" not in d.exposures
    d.handle([act(4, 1000.0 + HORIZON_S + 1 + 599)], BOOK)  # no sweep yet
    assert len(d.exposures["V"].pending) == 1
    d.handle([act(5, 1000.0 + HORIZON_S + 1 + 600)], BOOK)
    assert (d.model.updates, d.model.positives) == (2, 1) and "V" not in d.exposures
    # a complaint from a subscriber never exposed is ignored
    d.handle([ComplaintSeen("W", 99999.0)], BOOK)
    assert d.model.updates == 2 and "W" not in d.exposures


def test_the_sweep_runs_every_ten_minutes_of_event_time():
    d = Dispatcher()
    d.handle([act(1, 1000.0, features=FEATURES, sub="U")], BOOK)
    assert d.swept == 1000.0  # the first batch sweeps (nothing to settle yet)
    d.handle([act(2, 1000.0 + HORIZON_S + 1)], BOOK)
    assert d.swept == 1000.0 + HORIZON_S + 1 and d.model.updates == 1
    d.handle([act(3, 1000.0 + HORIZON_S + 500)], BOOK)  # under 600 s since: no sweep
    assert d.swept == 1000.0 + HORIZON_S + 1
    d.handle([act(4, 1000.0 + HORIZON_S + 601)], BOOK)
    assert d.swept == 1000.0 + HORIZON_S + 601
    assert d.clock == 1000.0 + HORIZON_S + 601
    d.handle([act(5, 50.0)], BOOK)  # a late action does not move the clock back
    assert d.clock == 1000.0 + HORIZON_S + 601


def test_finish_settles_what_it_can():
    d = Dispatcher()
    d.handle([act(1, 1000.0, features=FEATURES, sub="U"),
              act(2, 9000.0, features=FEATURES, sub="V")], BOOK)
    d.clock = 1000.0 + HORIZON_S + 1
    assert d.finish(BOOK) == []
    assert d.model.report()["examples"] == 1  # U's exposure, past its horizon: learnt
    assert PropensityModel.from_bytes(d.model.to_bytes()).version == "p1"
    assert set(d.exposures) == {"V"}  # still inside its horizon: kept, not learnt


def test_handle_applies_the_rulebooks_budgets():
    text = without_budgets((DEFAULT_DIR / "rulebook.yaml").read_text())
    book = parse_rulebook(text.replace("\nrules:\n", "\nbudgets:\n  per_minute: {sms: 1}\n"
                                       "  reserve_share: 0\nrules:\n"), Path("r.yaml"))
    out = Dispatcher().handle([act(1, 60.0), act(2, 61.0)], book)
    assert ids(out) == [("a1", None), ("a2", 120.0)]


@pytest.mark.parametrize("rule", ["no-such-rule", "everyone"])
def test_a_rule_without_a_floor_keeps_every_score(rule):
    (a,) = Dispatcher().handle([act(1, 100.0, features=FEATURES, rule=rule)], BOOK)
    assert isinstance(a, Action)


def test_labels_are_validated_with_the_score_given_at_exposure():
    d = Dispatcher()
    d.handle([act(1, 1000.0, features=FEATURES, sub="U"),
              act(2, 1000.0, features=FEATURES, sub="V")], BOOK)  # both scored 0.5
    d.handle([act(3, 1000.0 + HORIZON_S + 1)], BOOK)  # the sweep settles both: negatives
    # the second is validated (the first only learnt) with its exposure score, 0.5
    assert d.model.updates == 2 and d.model.report()["log_loss"] == round(math.log(2), 4)


def test_the_model_learns_the_same_whatever_order_same_time_complaints_arrive_in():
    other = CareFeatures("vip", "Gold", 60, "escalation", 3600.0, 7200.0, False, 0, 3, 20)

    def model_after(complaints):
        d = Dispatcher()
        d.handle([act(1, 1000.0, features=FEATURES, sub="U"),
                  act(2, 1000.0, features=other, sub="V"),
                  ComplaintSeen("U", 1100.0), ComplaintSeen("V", 1100.0)], BOOK)
        d.handle(complaints, BOOK)  # the two labels settle at once, in key order
        assert d.model.updates == 2
        return d.model.score(FEATURES), d.model.score(other)

    t = 1000.0 + HORIZON_S + 1
    assert model_after([ComplaintSeen("U", t), ComplaintSeen("V", t)]) == model_after(
        [ComplaintSeen("V", t), ComplaintSeen("U", t)])


def test_no_send_is_deferred_past_max_delay_it_overflows_at_the_bound():
    d = Dispatcher()
    b = Budgets(per_minute={"sms": 2}, reserve_share=0.0, max_delay_s=120.0)
    out = d.admit([act(i, 60.0) for i in range(8)], b)
    # minutes 1, 2 and 3 (the bound: 60 + 120 s) take two each; the rest go at the bound
    assert [a.send_after for a in out] == [None, None, 120.0, 120.0, 180.0, 180.0,
                                           180.0, 180.0]
    assert [OVERFLOW in a.evidence for a in out] == [False] * 6 + [True] * 2
    assert all((a.send_after or a.event_time) - a.event_time <= 120.0 for a in out)


def test_the_storm_days_pacing_sends_a_full_sites_notices_at_once_and_paces_a_storms():
    """A site at full density (1,200 subscribers) by SMS: the storm day's pacing (the
    default rulebook has none: the contract sends outage and restored notices at once)
    paces nothing of an incident that is no regional event's (and counts it); the same
    notices about a regional event's incident are spread, nobody past 30 min
    (docs/rules.md, "Pacing")."""
    from dataclasses import replace

    from forewarn.rules.rulebook import load_rulebook, storm_day

    notices = [act(i, 120.0, kind=kind, rule="outage-notice") for i in range(1200)
               for kind in ("outage_notice", "restored_notice")]
    assert load_rulebook().budgets is None
    budgets = storm_day(load_rulebook()).budgets
    assert budgets is not None and budgets.pace == "regional_events"
    d = Dispatcher()
    assert all(a.send_after is None for a in d.admit(notices, budgets))
    assert d.sends[("sms", 2)] == 2400  # counted in its minute
    storm = [replace(a, regional_event="REG-north-20261123T101500") for a in notices]
    paced = Dispatcher().admit(storm, budgets)
    waits = [a.send_after - a.event_time for a in paced if a.send_after is not None]
    assert waits and max(waits) <= 1800.0
    # a send the budget moved says so: the gateway and the metrics tell it from quiet hours
    assert all((a.send_after is not None) == (a.evidence[-1] in (PACED, OVERFLOW))
               for a in paced)
    # `pace: all` (a rulebook's choice) paces every send
    every = Dispatcher().admit(notices, replace(budgets, pace="all"))
    assert [a.send_after for a in every] == [a.send_after for a in paced]


def test_a_storms_notices_wait_for_room_that_calm_sends_took():
    """Sends that are not paced still take their room: a regional event's notices of the
    same minute wait behind them."""
    b = Budgets(per_minute={"sms": 4}, reserve_share=0.0, max_delay_s=600.0,
                pace="regional_events")
    calm = [act(i, 60.0) for i in range(3)]
    storm = [Action(f"s{i}", f"T{i}", "outage_notice", "sms", "en", "m", "r", 1, None, (),
                    60.0, segment="consumer", regional_event="REG-x") for i in range(3)]
    out = {a.action_id: a.send_after for a in Dispatcher().admit(calm + storm, b)}
    assert out == {"a0": None, "a1": None, "a2": None, "s0": None, "s1": 120.0, "s2": 120.0}
