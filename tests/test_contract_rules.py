"""The contract's default-rulebook behaviour, one test per rule, through the real dataflow."""

from __future__ import annotations

from tests.builders import Scenario, ts


def base(n_subs: int = 4, cells: int = 3) -> Scenario:
    s = Scenario().site("S1", cells=cells).site("S2", cells=3, region="south")
    for i in range(n_subs):
        s.subscriber(f"U{i}")
    return s


def test_outage_notice_after_hold_down_on_first_consented_channel():
    s = base()
    s.seen("U0", "S1-C1", 1).seen("U1", "S1-C2", 2)
    s.alarm("A1", 10, cell="S1-C1")
    s.tick(20)
    r = s.run()
    notices = r.of("outage_notice")
    assert [a["subscriber_id"] for a in notices] == ["U0"]
    a = notices[0]
    assert a["event_time"] == ts(12)  # alarm time + 120 s hold-down
    assert a["channel"] == "sms" and a["send_after"] is None
    assert a["rule_id"] == "outage-notice" and a["rule_version"] == 1
    assert a["incident_id"] == "INC-S1-20261123T101000"
    assert "alarm:A1" in a["evidence"]
    assert "Name U0" in a["message"]


def test_hold_down_blip_gets_no_customer_action_but_noc_incident():
    s = base()
    s.seen("U0", "S1-C1", 1)
    s.alarm("A1", 10, cell="S1-C1").clear("A1", 12, cell="S1-C1")  # exactly 120 s
    s.tick(30)
    r = s.run()
    assert r.actions == []
    statuses = [i["status"] for i in r.incidents]
    assert statuses[0] == "open" and statuses[-1] == "resolved"


def test_group_wait_groups_cells_of_a_site_into_one_site_incident():
    s = base()
    s.add(type="alarm", alarm_id="A1", event_time=ts(10), perceived_severity="major",
          probable_cause="lossOfSignal", cell_id="S1-C1")
    s.add(type="alarm", alarm_id="A2", event_time=ts(10, 30), perceived_severity="major",
          probable_cause="lossOfSignal", cell_id="S1-C2")
    s.add(type="alarm", alarm_id="A3", event_time=ts(10, 50), perceived_severity="major",
          probable_cause="lossOfSignal", cell_id="S1-C3")
    s.alarm("A4", 12, cell="S2-C1")  # another site: its own incident
    s.tick(20)
    r = s.run()
    ids = {i["incident_id"] for i in r.incidents if i["site_id"] == "S1"}
    assert ids == {"INC-S1-20261123T101000"}
    opened = [i for i in r.incidents if i["site_id"] == "S1" and i["status"] == "open"][0]
    assert opened["scope"] == "site" and opened["cell_ids"] == ["S1-C1", "S1-C2", "S1-C3"]
    assert opened["event_time"] == ts(11)  # when the group wait ended
    s2 = [i for i in r.incidents if i["site_id"] == "S2"]
    assert s2 and s2[0]["scope"] == "cell"


def test_alarm_outside_group_wait_is_a_new_incident():
    s = base()
    s.alarm("A1", 10, cell="S1-C1").alarm("A2", 11 + 1 / 60, cell="S1-C2").tick(20)
    r = s.run()
    assert len({i["incident_id"] for i in r.incidents}) == 2


def test_non_outage_alarms_are_ignored():
    s = base()
    s.seen("U0", "S1-C1", 1)
    s.alarm("A1", 10, cell="S1-C1", severity="minor")
    s.alarm("A2", 10, cell="S1-C1", cause="highTemperature")
    s.tick(30)
    r = s.run()
    assert r.actions == [] and r.incidents == []


def test_impacted_definition_stale_moved_away_and_other_site():
    s = base(n_subs=6)
    s.seen("U0", "S1-C1", 5)  # fresh: impacted
    s.seen("U1", "S1-C1", -60)  # 70 min before the outage: too old
    s.seen("U2", "S1-C1", 5).seen("U2", "S1-C2", 9)  # moved to an up cell before the outage
    s.seen("U3", "S1-C1", 5).seen("U3", "S2-C1", 11)  # moved to another site after the start
    s.call("K1", "U4", "S1-C1", 10, dropped=True)  # call dropped as the cell went down
    s.seen("U5", "S2-C1", 5)  # never on the down cell
    s.alarm("A1", 10, cell="S1-C1")
    s.tick(20)
    r = s.run()
    assert r.subscribers("outage_notice") == {"U0", "U4"}


def test_restored_notice_goes_to_everyone_told_of_the_outage():
    s = base()
    s.seen("U0", "S1-C1", 1).seen("U1", "S1-C1", 2)
    s.alarm("A1", 10, cell="S1-C1")
    s.seen("U2", "S1-C2", 13)  # arrives later on an up cell: not told, no restore
    s.clear("A1", 40, cell="S1-C1").tick(50)
    r = s.run()
    restored = r.of("restored_notice")
    assert {a["subscriber_id"] for a in restored} == {"U0", "U1"}
    assert all(a["event_time"] == ts(40) for a in restored)
    assert all(a["incident_id"] == "INC-S1-20261123T101000" for a in restored)


def test_two_independent_outages_of_one_region_within_15_min_each_notify_their_impacted():
    """Two sites of one region fail 5 min apart (fewer sites than a regional event needs):
    someone told of the first who walked onto the second before it failed is impacted by
    both, and gets both outage notices and both restored notices, each at its own time."""
    s = Scenario().site("S1").site("S2").subscriber("U0").subscriber("U1")
    s.seen("U0", "S1-C1", 1).seen("U1", "S2-C1", 2)
    s.alarm("A1", 10, site="S1")
    s.seen("U0", "S2-C1", 13)  # told of S1 at 10:12, then on S2, which fails at 10:15
    s.alarm("A2", 15, site="S2")
    s.clear("A1", 60, site="S1").clear("A2", 90, site="S2").tick(100)
    r = s.run()
    s1, s2 = "INC-S1-20261123T101000", "INC-S2-20261123T101500"
    assert [(a["kind"], a["incident_id"], a["event_time"]) for a in r.actions
            if a["subscriber_id"] == "U0"] == [
        ("outage_notice", s1, ts(12)), ("outage_notice", s2, ts(17)),
        ("restored_notice", s1, ts(60)), ("restored_notice", s2, ts(90))]
    assert r.subscribers("outage_notice") == {"U0", "U1"}
    assert all(a["send_after"] is None for a in r.actions)  # no regional event: at once
    assert all(i["parent_id"] is None for i in r.incidents)


def test_four_hour_outage_gives_compensation_or_callback_by_segment_once():
    s = Scenario().site("S1").site("S2")
    s.subscriber("C", segment="consumer").subscriber("V", segment="vip")
    s.subscriber("B", segment="business")
    for sid in ("C", "V", "B"):
        s.seen(sid, "S1-C1", 1)
    s.alarm("A1", 10, cell="S1-C1")
    s.tick(10 + 240).tick(10 + 300)  # past 4 h, and more
    s.clear("A1", 10 + 320, cell="S1-C1").tick(10 + 330)
    r = s.run()
    assert r.kinds("C") == ["outage_notice", "compensation", "restored_notice"]
    assert r.kinds("V") == ["outage_notice", "care_callback", "restored_notice"]
    assert r.kinds("B") == ["outage_notice", "care_callback", "restored_notice"]
    comp = r.of("compensation")[0]
    assert comp["event_time"] == ts(10 + 240)
    assert comp["offer"]["kind"] == "data_credit"


def test_dropped_call_burst_gets_one_apology_and_the_24h_limit():
    s = base()
    s.call("K1", "U0", "S2-C1", 20, dropped=True).call("K2", "U0", "S2-C1", 40, dropped=True)
    s.call("K3", "U0", "S2-C1", 60, dropped=True).call("K4", "U0", "S2-C1", 70, dropped=True)
    s.call("K5", "U1", "S2-C1", 20, dropped=True).call("K6", "U1", "S2-C1", 60, dropped=True)
    s.tick(24 * 60 + 100)
    s.call("K7", "U0", "S2-C1", 24 * 60 + 110, dropped=True)
    s.call("K8", "U0", "S2-C1", 24 * 60 + 120, dropped=True)
    s.tick(24 * 60 + 200)
    r = s.run()
    apologies = r.of("apology")
    assert [a["subscriber_id"] for a in apologies] == ["U0", "U0"]  # U1's drops 40 min apart
    first, second = apologies
    assert first["event_time"] == ts(42)  # second drop + hold-down
    assert first["evidence"][:2] == ["call:K1", "call:K2"]  # then propensity, model
    assert "the network around South" in first["message"]  # the drops' region
    assert second["event_time"] == ts(24 * 60 + 122)


def test_no_apology_for_drops_inside_an_outage_they_were_told_of():
    s = base()
    s.call("K0", "U0", "S1-C1", 5)
    s.call("K1", "U0", "S1-C2", 9, dropped=True)
    s.seen("U0", "S1-C1", 9.5)
    s.call("K2", "U0", "S1-C1", 10, dropped=True)
    s.alarm("A1", 10 + 20 / 60, cell="S1-C1")
    s.tick(30)
    r = s.run()
    assert r.kinds("U0") == ["outage_notice"]


def test_calls_cut_by_the_outage_after_its_start_keep_the_subscriber_impacted():
    """Dropped calls on the down cell after the start are the outage itself: notice,
    restored notice, no apology (with or without an earlier position there)."""
    s = base()
    s.seen("U0", "S1-C1", 1)  # on the cell before; only cut calls after the start
    s.alarm("A1", 10, cell="S1-C1")
    s.call("K1", "U0", "S1-C1", 10 + 4 / 60, dropped=True)
    s.call("K2", "U0", "S1-C1", 10 + 40 / 60, dropped=True)
    # never seen before: the first observation on the cell is a cut call in the group wait
    s.call("K3", "U1", "S1-C1", 10 + 5 / 60, dropped=True)
    s.call("K4", "U1", "S1-C1", 10 + 50 / 60, dropped=True)
    # seen on an up cell after the cut calls: no longer impacted, so the drops count
    s.seen("U2", "S1-C1", 2)
    s.call("K5", "U2", "S1-C1", 10 + 5 / 60, dropped=True)
    s.call("K6", "U2", "S1-C1", 10 + 30 / 60, dropped=True)
    s.seen("U2", "S1-C2", 11)
    s.clear("A1", 40, cell="S1-C1").tick(50)
    r = s.run()
    assert r.kinds("U0") == ["outage_notice", "restored_notice"]
    assert r.kinds("U1") == ["outage_notice", "restored_notice"]
    assert r.kinds("U2") == ["apology"]
    notice = [a for a in r.of("outage_notice") if a["subscriber_id"] == "U0"][0]
    assert notice["event_time"] == ts(12)


def test_maintenance_window_suppresses_notices_and_apologies():
    s = base()
    s.maintenance("W1", 5, 120, sites=["S1"])
    s.seen("U0", "S1-C1", 1)
    s.call("K1", "U1", "S1-C2", 20, dropped=True).call("K2", "U1", "S1-C2", 25, dropped=True)
    s.alarm("A1", 10, cell="S1-C1")
    s.clear("A1", 60, cell="S1-C1").tick(130)
    r = s.run()
    assert r.actions == []
    inc = [i for i in r.incidents if i["status"] == "open"][0]
    assert inc["maintenance_window"] == "W1"


def test_cancelled_maintenance_window_suppresses_nothing():
    s = base()
    s.maintenance("W1", 5, 120, sites=["S1"]).maintenance("W2", 5, 120, sites=["S2"])
    s.cancel("W1", 5, 120, sites=["S1"])  # S1's planned work is called off; S2's stands
    s.seen("U0", "S1-C1", 1).seen("U2", "S2-C1", 1)
    s.call("K1", "U1", "S1-C2", 20, dropped=True).call("K2", "U1", "S1-C2", 25, dropped=True)
    s.alarm("A1", 10, cell="S1-C1").alarm("A2", 10, cell="S2-C1")
    s.clear("A1", 60, cell="S1-C1").clear("A2", 60, cell="S2-C1").tick(130)
    r = s.run()
    assert r.kinds("U0") == ["outage_notice", "restored_notice"]
    assert r.kinds("U1") == ["apology"]
    assert r.kinds("U2") == []  # W2 still holds
    opened = {i["site_id"]: i for i in r.incidents if i["status"] == "open"}
    assert opened["S1"]["maintenance_window"] is None
    assert opened["S2"]["maintenance_window"] == "W2"


def test_consent_and_channel_preference():
    s = Scenario().site("S1").site("S2")
    s.subscriber("P", channels={"sms": {"address": "+44", "consent": True},
                                "push": {"address": "tok", "consent": True}})
    s.subscriber("E", channels={"sms": {"address": "+44", "consent": True},
                                "email": {"address": "e@x", "consent": True}},
                 preferred=["email", "sms"])
    s.subscriber("N", channels={"sms": {"address": "+44", "consent": False},
                                "push": {"address": "tok", "consent": False}})
    s.subscriber("F", channels={"push": {"address": "tok", "consent": False},
                                "sms": {"address": "+44", "consent": True}})
    for sid in ("P", "E", "N", "F"):
        s.seen(sid, "S1-C1", 1)
    s.alarm("A1", 10, cell="S1-C1").tick(20)
    r = s.run()
    channel = {a["subscriber_id"]: a["channel"] for a in r.of("outage_notice")}
    assert channel == {"P": "push", "E": "email", "F": "sms"}


def test_quiet_hours_defer_apology_and_compensation_in_local_time_not_notices():
    s = Scenario().site("S1").site("S2")
    # 10:00 UTC is 15:30 in Kolkata and 05:00 in New York.
    s.subscriber("NY", tz="America/New_York").subscriber("IN", tz="Asia/Kolkata")
    for sid in ("NY", "IN"):
        s.seen(sid, "S1-C1", 1)
        s.call(f"{sid}1", sid, "S2-C1", 20, dropped=True)
        s.call(f"{sid}2", sid, "S2-C1", 25, dropped=True)
    s.alarm("A1", 10, cell="S1-C1").tick(40)
    r = s.run()
    notice = {a["subscriber_id"]: a for a in r.of("outage_notice")}
    assert notice["NY"]["send_after"] is None and notice["IN"]["send_after"] is None
    apology = {a["subscriber_id"]: a for a in r.of("apology")}
    assert apology["NY"]["send_after"] == "2026-11-23T13:00:00Z"  # 08:00 New York
    assert apology["IN"]["send_after"] is None


def test_quiet_hours_defer_compensation_to_local_morning_but_never_notices():
    s = Scenario().site("S1").site("S2")
    # The outage starts at 16:40 UTC: 22:10 in Kolkata (quiet), 16:40 in London.
    s.subscriber("IN", tz="Asia/Kolkata").subscriber("UK", tz="Europe/London")
    for sid in ("IN", "UK"):
        s.seen(sid, "S1-C1", 395)
    s.alarm("A1", 400, cell="S1-C1").tick(400 + 241)
    s.clear("A1", 400 + 250, cell="S1-C1").tick(400 + 260)
    r = s.run()
    assert r.kinds("IN") == r.kinds("UK") == ["outage_notice", "compensation",
                                              "restored_notice"]
    by = {(a["subscriber_id"], a["kind"]): a for a in r.actions}
    # 20:40 UTC is 02:10 in Kolkata: the credit waits for 08:00 there (02:30 UTC)
    assert by["IN", "compensation"]["event_time"] == ts(400 + 240)
    assert by["IN", "compensation"]["send_after"] == "2026-11-24T02:30:00Z"
    assert by["UK", "compensation"]["send_after"] is None  # 20:40 in London
    # notices go at once, quiet hours or not (22:12 and 02:20 in Kolkata)
    assert by["IN", "outage_notice"]["send_after"] is None
    assert by["IN", "restored_notice"]["send_after"] is None


def test_compensation_is_once_per_incident_so_a_second_day_brings_another():
    s = Scenario().site("S1").site("S2")
    s.subscriber("C", segment="consumer")
    for day in (0, 24 * 60):
        s.seen("C", "S1-C1", day + 1)
        s.alarm(f"A{day}", day + 10, cell="S1-C1").tick(day + 10 + 241)
        s.clear(f"A{day}", day + 10 + 250, cell="S1-C1").tick(day + 10 + 260)
    r = s.run()
    comp = r.of("compensation")
    assert [(a["event_time"], a["incident_id"]) for a in comp] == [
        (ts(10 + 240), "INC-S1-20261123T101000"),
        (ts(24 * 60 + 10 + 240), "INC-S1-20261124T101000")]
    assert len({a["action_id"] for a in comp}) == 2


def test_deleted_and_unknown_subscribers_get_nothing():
    s = base(n_subs=2)
    s.seen("U0", "S1-C1", 1).seen("U1", "S1-C1", 1).seen("GHOST", "S1-C1", 1)
    s.delete("U1", 5)
    s.alarm("A1", 10, cell="S1-C1").tick(20)
    r = s.run()
    assert r.subscribers("outage_notice") == {"U0"}


def test_flapping_cell_is_one_flapping_incident_and_one_notice_at_most():
    s = base()
    s.seen("U0", "S1-C1", 1)
    t = 10.0
    for n in range(6):  # six outages of 3 minutes within 30 minutes
        s.alarm(f"F{n}", t, cell="S1-C1").clear(f"F{n}", t + 3, cell="S1-C1")
        t += 5
    s.tick(t + 30)
    r = s.run()
    kinds = {i["incident_id"]: i["kind"] for i in r.incidents}
    assert list(kinds.values()).count("flapping") == 1
    assert r.kinds("U0").count("outage_notice") == 1


def flaps(outages: int) -> Scenario:
    """``outages`` outages of 3 minutes on one cell, one every 5 minutes (within 30 min)."""
    s = base()
    s.seen("U0", "S1-C1", 1)
    for n in range(outages):
        t = 10.0 + 5 * n
        s.alarm(f"F{n}", t, cell="S1-C1").clear(f"F{n}", t + 3, cell="S1-C1")
    return s.tick(10 + 5 * outages + 30)


def test_three_outages_in_30_minutes_are_not_flapping_four_are():
    three = flaps(3).run()
    assert sorted(i["kind"] for i in three.incidents if i["status"] == "open") == [
        "outage"] * 3
    four = flaps(4).run()
    opened = [i for i in four.incidents if i["status"] == "open"]
    assert [i["kind"] for i in opened] == ["outage"] * 3 + ["flapping"]
    assert opened[-1]["start_time"] == ts(25)  # the fourth outage's start


def test_dead_letters_carry_reason_and_never_stop_the_flow():
    s = base()
    s.raw(b"{not json").raw(b"[1,2]").raw(b"")
    s.add(type="alarm", alarm_id="X", event_time=ts(1), perceived_severity="urgent",
          probable_cause="powerProblem", cell_id="S1-C1")
    s.add(type="call", call_id="K", subscriber_id="U0", cell_id="S1-C1", start_time=ts(1),
          end_time=ts(2), dropped="yes")
    s.add(type="location", subscriber_id="U0", cell_id="NOPE", event_time=ts(3))
    s.add(type="location", subscriber_id="U0", cell_id="S1-C1", event_time="1999-01-01T00:00:00Z")
    s.add(type="location", subscriber_id="U0", event_time=ts(3))
    s.seen("U0", "S1-C1", 4).alarm("A1", 10, cell="S1-C1").tick(20)
    r = s.run()
    reasons = sorted(d["code"] for d in r.dead)
    assert reasons == sorted(["not_json", "not_object", "not_json", "bad_enum", "bad_type",
                              "unknown_cell", "time_out_of_range", "missing_field"])
    assert any("perceived_severity" in d["reason"] and "urgent" in d["reason"] for d in r.dead)
    assert r.subscribers("outage_notice") == {"U0"}


def test_action_ids_are_deterministic():
    s = base()
    s.seen("U0", "S1-C1", 1).alarm("A1", 10, cell="S1-C1").tick(20)
    first, second = s.run().actions, s.run().actions
    assert [a["kind"] for a in first] == ["outage_notice"]
    assert [a["action_id"] for a in first] == [a["action_id"] for a in second]
