"""The care context (``care.context``): what care knows when a subscriber complains, for
the agent desktop and the IVR. Expected values are worked out from the default rulebook
(``rules/default/rulebook.yaml``)."""

from __future__ import annotations

import orjson

from forewarn.dataflows.care import CareContext, CareShard
from forewarn.dataflows.messages import Restored
from forewarn.model import Complaint
from forewarn.runner import run_collect
from tests.builders import Scenario
from tests.test_care_actions import BOOK, FACTS, HOUR, T0, aid, impact, note, upsert


def context(out: list) -> CareContext:
    found = [o for o in out if type(o) is CareContext]
    assert len(found) == 1, out
    return found[0]


def test_told_of_an_open_outage_the_context_says_so_and_what_comes_next():
    shard = CareShard()
    shard.handle_batch([upsert(), impact()], BOOK)
    ctx = context(shard.handle_batch([Complaint("K1", "U", T0 + HOUR, "no_service", "ivr")],
                                     BOOK))
    assert ctx.forewarned
    assert ctx.incidents == (("INC-S1-1", "outage", "cell", "Riverside", T0,
                              ("S1-C1", "S1-C2"), None),)
    assert ctx.sent == ((aid("outage-notice", "U", "INC-S1-1"), "outage_notice", "email",
                         T0 + 120, None, "outage-notice", "INC-S1-1"),)
    # the default rulebook's 4 h escalations, due at the start + 4 h
    assert ctx.next_steps == (
        ("INC-S1-1", "long-outage-care-callback", "care_callback", T0 + 4 * HOUR),
        ("INC-S1-1", "long-outage-compensation", "compensation", T0 + 4 * HOUR))
    record = ctx.record()
    assert record["incidents"][0]["status"] == "open" and record["channel"] == "ivr"
    assert record["next_steps"][1]["due_time"] == "2026-11-23T14:00:00Z"


def test_after_restoration_the_incident_is_restored_and_nothing_is_next():
    shard = CareShard()
    shard.handle_batch([upsert(), impact(), Restored("U", FACTS, T0 + HOUR)], BOOK)
    ctx = context(shard.handle_batch([Complaint("K1", "U", T0 + 2 * HOUR, "other")], BOOK))
    assert [i[-1] for i in ctx.incidents] == [T0 + HOUR]
    assert [s[1] for s in ctx.sent] == ["outage_notice", "restored_notice"]
    assert ctx.next_steps == () and ctx.forewarned
    assert ctx.record()["incidents"][0]["status"] == "restored"


def test_a_day_later_nothing_is_recent_and_the_contact_was_not_forewarned():
    shard = CareShard()
    shard.handle_batch([upsert(), impact(), Restored("U", FACTS, T0 + HOUR)], BOOK)
    ctx = context(shard.handle_batch([Complaint("K1", "U", T0 + 26 * HOUR, "other")], BOOK))
    assert (ctx.incidents, ctx.sent, ctx.forewarned) == ((), (), False)


def test_unexplained_dropped_calls_are_listed_and_an_apology_forewarns():
    shard = CareShard()
    shard.handle_batch([upsert(), note("C1", T0)], BOOK)
    ctx = context(shard.handle_batch([Complaint("K1", "U", T0 + 600, "dropped_calls")], BOOK))
    assert ctx.drops == (("C1", T0, None),) and not ctx.forewarned
    shard.handle_batch([note("C2", T0 + 900)], BOOK)  # a burst: the apology
    ctx = context(shard.handle_batch([Complaint("K2", "U", T0 + 1800, "dropped_calls")],
                                     BOOK))
    assert ctx.forewarned and [s[1] for s in ctx.sent] == ["apology"]
    assert ctx.drops == ()  # explained by the apology


def test_the_record_holds_no_message_text_name_or_address():
    shard = CareShard()
    shard.handle_batch([upsert(), impact()], BOOK)
    line = orjson.dumps(context(shard.handle_batch(
        [Complaint("K1", "U", T0 + HOUR, "no_service")], BOOK)).record())
    for secret in (b"Ada", b"sms-address", b"email-address", b"Sorry", b"Hi "):
        assert secret not in line


def test_a_flow_run_writes_one_context_per_complaint_the_same_on_any_layout():
    s = Scenario().site("S1", cells=2).subscriber("U1").subscriber("U2")
    s.seen("U1", "S1-C1", 1).seen("U2", "S1-C2", 1)
    s.alarm("A1", 10, cell="S1-C1")
    s.add(type="complaint", complaint_id="K1", subscriber_id="U1",
          event_time="2026-11-23T10:40:00Z", category="no_service")
    s.add(type="complaint", complaint_id="K2", subscriber_id="U2",
          event_time="2026-11-23T10:41:00Z", category="other")
    s.seen("U2", "S1-C2", 50)
    one = run_collect(s.lines, BOOK)
    two = run_collect(s.lines, BOOK, workers=2, batch=3, epoch_s=0.01)
    assert sorted(one.care_context) == sorted(two.care_context)
    got = {r["subscriber_id"]: r for r in map(orjson.loads, one.care_context)}
    assert set(got) == {"U1", "U2"}
    assert got["U1"]["forewarned"] and got["U1"]["incidents"][0]["cell_ids"] == ["S1-C1"]
    assert not got["U2"]["forewarned"] and got["U2"]["incidents"] == []


# ---- care.status: each subscriber's current impact --------------------------------------


def statuses(out: list) -> list:
    from forewarn.dataflows.care import CareStatus

    return [(o.at, [i[0] for i in o.incidents]) for o in out if type(o) is CareStatus]


def test_the_status_follows_the_open_incidents_that_impact_them():
    from dataclasses import replace

    other = replace(FACTS, incident_id="INC-2", down_cells=(("S2-C1", T0 + 60),))
    shard = CareShard()
    out = shard.handle_batch([upsert(), impact(), impact(T0 + 300, other)], BOOK, status=True)
    assert statuses(out) == [(T0 + 120, ["INC-S1-1"]), (T0 + 300, ["INC-S1-1", "INC-2"])]
    out = shard.handle_batch([Restored("U", FACTS, T0 + HOUR)], BOOK, status=True)
    assert statuses(out) == [(T0 + HOUR, ["INC-2"])]
    out = shard.handle_batch([Restored("U", other, T0 + 2 * HOUR)], BOOK, status=True)
    assert statuses(out) == [(T0 + 2 * HOUR, [])]  # cleared: a tombstone on Kafka
    record = [o for o in out if type(o).__name__ == "CareStatus"][0].record()
    assert record["impacted"] is False and record["incidents"] == []


def test_a_walk_in_is_no_status_and_without_the_output_none_is_made():
    from forewarn.dataflows.messages import WALK_IN

    shard = CareShard()
    out = shard.handle_batch([upsert(), impact(trigger=WALK_IN)], BOOK, status=True)
    assert statuses(out) == []  # not the contract's impacted: no restored follows
    quiet = CareShard()
    assert statuses(quiet.handle_batch([upsert(), impact()], BOOK)) == []
    assert quiet.subscribers["U"].impacts == ("INC-S1-1",)  # (kept: a later status is right)


def test_a_flow_run_writes_statuses_the_same_on_any_layout():
    s = Scenario().site("S1", cells=2).subscriber("U1").subscriber("U2")
    s.seen("U1", "S1-C1", 1).seen("U2", "S1-C2", 1)
    s.alarm("A1", 10, cell="S1-C1").clear("A1", 40, cell="S1-C1")
    s.seen("U2", "S1-C2", 50)
    one = run_collect(s.lines, BOOK)
    two = run_collect(s.lines, BOOK, workers=2, batch=3, epoch_s=0.01)
    assert sorted(one.care_status) == sorted(two.care_status)
    got = [orjson.loads(r) for r in one.care_status]
    assert [(r["subscriber_id"], r["impacted"], [i["incident_id"] for i in r["incidents"]])
            for r in got] == [("U1", True, ["INC-S1-20261123T101000"]), ("U1", False, [])]
