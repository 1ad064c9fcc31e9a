"""A small storm day end to end (CI: a few seconds): one regional event for the NOC, at
most 2.2 messages per impacted subscriber, everyone notified within the storm's onset plus
the hold-down, and summary.json's storm block."""

from __future__ import annotations

from pathlib import Path

from forewarn.rules.rulebook import load_rulebook
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
