"""NOC incident lifecycles through the real dataflow: the records the NOC sees (status,
event time, cells, evidence, end time) as cells of a site go down and come back, alarms
overlap, cells flap, maintenance windows start and end."""

from __future__ import annotations

import time

from forewarn.dataflows.site import incident_id
from tests.builders import BASE, Result, Scenario, ts


def records(r: Result, site: str = "S1") -> list[tuple]:
    return [(i["incident_id"], i["status"], i["kind"], i["event_time"], i["cell_ids"],
             i["end_time"], i["evidence"]) for i in r.incidents if i["site_id"] == site]


def test_two_cells_and_two_alarms_on_one_cell_make_one_incident_until_all_clear():
    s = Scenario().site("S1").site("S2")
    s.subscriber("U0").subscriber("U1")
    s.seen("U0", "S1-C1", 1).seen("U1", "S1-C2", 1)
    s.alarm("A1", 10, cell="S1-C1").alarm("A2", 11, cell="S1-C2")  # 60 s apart: grouped
    s.alarm("A3", 12, cell="S1-C1")  # a second alarm on a cell already down
    s.clear("A1", 20, cell="S1-C1")  # A3 still holds S1-C1 down: nothing changes
    s.clear("A2", 25, cell="S1-C2").clear("A3", 30, cell="S1-C1").tick(40)
    r = s.run()
    inc = "INC-S1-20261123T101000"
    cells = ["S1-C1", "S1-C2"]
    first, all3 = ["alarm:A1", "alarm:A2"], ["alarm:A1", "alarm:A2", "alarm:A3"]
    assert records(r) == [
        (inc, "open", "outage", ts(11), cells, None, first),  # when the group wait ended
        (inc, "updated", "outage", ts(12), cells, None, all3),  # the hold-down decision
        (inc, "updated", "outage", ts(25), cells, None, all3),  # S1-C2 back
        (inc, "resolved", "outage", ts(30), cells, ts(30), all3),
    ]
    assert sorted((a["kind"], a["subscriber_id"], a["event_time"]) for a in r.actions) == [
        ("outage_notice", "U0", ts(12)), ("outage_notice", "U1", ts(12)),
        ("restored_notice", "U0", ts(30)), ("restored_notice", "U1", ts(30))]


def test_a_flapping_incident_absorbs_later_outages_and_resolves_after_10_minutes_up():
    s = Scenario().site("S1").site("S2")
    s.subscriber("U0").seen("U0", "S1-C1", 1)
    for n in range(5):  # the 4th starts the flapping incident, the 5th goes down inside it
        s.alarm(f"F{n}", 10 + 5 * n, cell="S1-C1").clear(f"F{n}", 13 + 5 * n, cell="S1-C1")
    s.tick(60)
    r = s.run()
    flap = [x for x in records(r) if x[2] == "flapping"]
    inc = "INC-S1-20261123T102500"
    assert [(x[0], x[1], x[3], x[5]) for x in flap] == [
        (inc, "open", ts(26), None),  # group wait
        (inc, "updated", ts(27), None),  # hold-down
        (inc, "updated", ts(30), None),  # the 5th outage, inside it
        (inc, "updated", ts(32), None),  # its hold-down
        (inc, "resolved", ts(43), ts(43)),  # up since 10:33, stable for 10 min
    ]
    assert flap[-1][6] == ["alarm:F3", "alarm:F4"]
    assert r.kinds("U0") == ["outage_notice", "restored_notice"]  # the first outage's


def test_outages_exactly_at_the_group_wait_and_flapping_window_edges():
    s = Scenario().site("S1").site("S2")
    s.alarm("A1", 10, cell="S1-C1").alarm("A2", 11, cell="S1-C2")  # exactly 60 s later
    for n in range(4):  # the 4th exactly 30 min after the 1st
        s.alarm(f"F{n}", 100 + 10 * n, cell="S2-C1").clear(f"F{n}", 103 + 10 * n,
                                                           cell="S2-C1")
    s.tick(200)
    r = s.run()
    assert {x[0] for x in records(r)} == {"INC-S1-20261123T101000"}
    assert [x[2] for x in records(r, "S2") if x[1] == "open"] == ["outage"] * 3 + ["flapping"]


def test_maintenance_by_cell_and_at_a_windows_edges():
    s = Scenario().site("S1").site("S2").site("S3")
    for sid, cell in (("U1", "S1-C1"), ("U2", "S1-C2"), ("U3", "S2-C1"), ("U4", "S3-C1")):
        s.subscriber(sid).seen(sid, cell, 1)
    s.maintenance("W1", 5, 120, cells=["S1-C2"])  # one cell of S1 only
    s.maintenance("W2", 10, 60, sites=["S2"])  # the outage starts exactly at its start
    s.maintenance("W3", 5, 10, sites=["S3"])  # the outage starts exactly at its end
    for n, cell in enumerate(("S1-C1", "S1-C2", "S2-C1", "S3-C1")):
        s.alarm(f"A{n}", 10, cell=cell)
    s.tick(30)
    r = s.run()
    assert r.subscribers("outage_notice") == {"U1"}  # U2's cell is in planned work
    planned = {i["site_id"]: i["maintenance_window"] for i in r.incidents
               if i["status"] == "open"}
    assert planned == {"S1": None, "S2": "W2", "S3": "W3"}


def test_a_four_hour_outage_in_planned_work_brings_no_compensation_or_callback():
    s = Scenario().site("S1").site("S2")
    s.subscriber("C").subscriber("V", segment="vip")
    s.maintenance("W1", 5, 400, sites=["S1"])
    s.seen("C", "S1-C1", 1).seen("V", "S1-C1", 1)
    s.alarm("A1", 10, cell="S1-C1").tick(10 + 241).clear("A1", 10 + 250, cell="S1-C1")
    s.tick(10 + 260)
    r = s.run()
    assert r.actions == []
    assert {i["maintenance_window"] for i in r.incidents} == {"W1"}


def test_incident_ids_are_utc_whatever_the_machines_time_zone(monkeypatch):
    at = BASE.timestamp()
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert incident_id("S1", at) == "INC-S1-20261123T100000"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_an_outage_cleared_within_the_group_wait_is_opened_and_resolved_at_once():
    s = Scenario().site("S1", region="north").site("S2")
    s.subscriber("U0").seen("U0", "S1-C1", 1)
    s.alarm("A1", 10, cell="S1-C1").clear("A1", 10.5, cell="S1-C1").tick(20)
    r = s.run()
    inc = "INC-S1-20261123T101000"
    assert records(r) == [
        (inc, "open", "outage", ts(10.5), ["S1-C1"], None, ["alarm:A1"]),
        (inc, "resolved", "outage", ts(10.5), ["S1-C1"], ts(10.5), ["alarm:A1"])]
    assert {i["region"] for i in r.incidents} == {"north"}
    assert r.actions == []


def test_notices_name_the_sites_region_as_the_area():
    s = Scenario().site("S1", region="north-east").site("S2")
    s.subscriber("U0").seen("U0", "S1-C1", 1)
    s.alarm("A1", 10, cell="S1-C1").clear("A1", 20, cell="S1-C1").tick(30)
    r = s.run()
    assert [a["message"] for a in r.actions] == [
        "Hi Name U0, we know about a network problem around North-East and are fixing it. "
        "Sorry for the trouble.",
        "Hi Name U0, service around North-East is back. Thank you for your patience."]
    assert {i["region"] for i in r.incidents} == {"north-east"}
