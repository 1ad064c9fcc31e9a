"""A small storm day end to end (CI: a few seconds): one regional event for the NOC, at
most 2.2 messages per impacted subscriber, everyone notified within the storm's onset plus
the hold-down, and summary.json's storm block."""

from __future__ import annotations

from pathlib import Path

from forewarn.rules.rulebook import load_rulebook, storm_day
from forewarn.runner import run_lines
from forewarn.simulator import ScenarioConfig, simulate
from forewarn.summary import format_table, summarize


def test_a_storm_day_is_one_event_with_few_messages_per_customer(tmp_path: Path):
    sc = simulate(ScenarioConfig(seed=21, sites=40, hours=4.0, subscribers_per_cell=30,
                                 storm_region="north"))
    run_lines(sc.lines, tmp_path, load_rulebook())
    summary = summarize(tmp_path, events_in=len(sc.lines), truth=sc.truth)
    st = summary["storm"]
    assert st["storms"] == st["parents"] == st["parents_on_storms"] == 1
    assert st["impacted"] > 500 and st["outage_notices"] > 300
    assert st["messages_per_impacted"] <= 2.2
    # every site down within 15 min (+1 min) of the start, notices at their hold-down
    assert st["time_to_notify_s"] <= 900 + 60 + 120 + st["max_send_delay_s"]
    assert st["overflow"] == 0
    assert summary["quality"]["precision"] >= 0.9
    table = format_table(summary)
    assert "storms / NOC regional events" in table and "time to notify everyone" in table


def test_one_notice_per_customer_once_the_regional_event_has_formed():
    """With the storm-day settings: four sites of the north fail a minute apart from
    10:10, a fifth at 10:16: the
    regional event forms when the fifth site's incident opens (10:17). Someone told of S1
    at 10:12 who walked onto S5 before it failed is not told again (S5's hold-down, 10:18,
    finds the event with S1 among its children), and gets one restored notice when the
    last of the two is back; someone told of S1 who walked onto S4 gets S4's notice too
    (10:15: no event yet), and a restored notice for each."""
    from tests.builders import Scenario, ts
    s = Scenario()
    for i in range(1, 6):
        s.site(f"S{i}")
    s.subscriber("U0").subscriber("U1").subscriber("U2")
    s.seen("U0", "S1-C1", 1).seen("U1", "S5-C1", 2).seen("U2", "S1-C1", 3)
    fails = {1: 10, 2: 11, 3: 12, 4: 13, 5: 16}
    for i, at in fails.items():
        s.alarm(f"A{i}", at, site=f"S{i}")
        if i == 3:
            s.seen("U2", "S4-C1", 12.5)  # onto S4 before it fails
        if i == 4:
            s.seen("U0", "S5-C1", 14)  # onto S5 before it fails
    for i in range(1, 6):
        s.clear(f"A{i}", 60 + 10 * i, site=f"S{i}")
    s.tick(200)
    r = s.run(storm_day(load_rulebook()))
    inc = {i: f"INC-S{i}-20261123T10{at:02d}00" for i, at in fails.items()}
    parents = {i["incident_id"] for i in r.incidents if i["kind"] == "regional_outage"}
    assert parents == {"REG-north-20261123T101000"}
    assert [(a["kind"], a["incident_id"], a["event_time"]) for a in r.actions
            if a["subscriber_id"] == "U0"] == [
        ("outage_notice", inc[1], ts(12)), ("restored_notice", inc[1], ts(110))]
    restored = next(a for a in r.actions if a["subscriber_id"] == "U0"
                    and a["kind"] == "restored_notice")
    assert f"incident:{inc[5]}" in restored["evidence"]
    assert [(a["kind"], a["incident_id"]) for a in r.actions
            if a["subscriber_id"] == "U1"] == [("outage_notice", inc[5]),
                                               ("restored_notice", inc[5])]
    assert [(a["kind"], a["incident_id"], a["event_time"]) for a in r.actions
            if a["subscriber_id"] == "U2"] == [
        ("outage_notice", inc[1], ts(12)), ("outage_notice", inc[4], ts(15)),
        ("restored_notice", inc[1], ts(70)), ("restored_notice", inc[4], ts(100))]
    # the default rulebook: each incident's impacted get its own notices, at once
    d = s.run()
    assert [(a["kind"], a["incident_id"], a["event_time"], a["send_after"]) for a in d.actions
            if a["subscriber_id"] == "U0"] == [
        ("outage_notice", inc[1], ts(12), None), ("outage_notice", inc[5], ts(18), None),
        ("restored_notice", inc[1], ts(70), None), ("restored_notice", inc[5], ts(110), None)]
