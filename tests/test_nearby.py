"""Around an outage: walk-ins and reappearances (dataflows/nearby.py), through the flow.

Sites are placed on a line: S1 (the one that goes down), S2 next to it, then the
others further along, so S2 is among S1's `nearby.sites` nearest sites and FAR, the
last, is not.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from forewarn import safe_pickle
from forewarn.dataflows import records
from forewarn.dataflows.heard import Heard
from forewarn.dataflows.messages import Near, Watch
from forewarn.dataflows.nearby import MAX_WATCH_S, MAX_WATCHES, NearbyWatch, Surroundings
from forewarn.dataflows.sequencer import Routes, Sequencer
from forewarn.model import Alarm, Cell, Location, Maintenance
from forewarn.rules.rulebook import (
    DEFAULT_DIR,
    Rulebook,
    RulebookError,
    load_rulebook,
    parse_rulebook,
)
from tests.builders import Scenario, feed, ts

SILENCE_MIN = load_rulebook().correlation.silence_s / 60  # 73 min
NEAREST = load_rulebook().correlation.nearby_sites
LAST = NEAREST + 3  # sites S1 ... S{LAST}
FAR = f"S{LAST}"  # not among S1's nearest


def without_walk_ins() -> Rulebook:
    """The default rulebook without its rules on people around an outage (walk-ins and
    those expected there)."""
    book = load_rulebook()
    return replace(book, rules=tuple(r for r in book.rules
                                     if r.id not in ("walk-in-notice", "expected-notice")),
                   _by_id={})


def around() -> Scenario:
    s = Scenario()
    for i in range(1, LAST + 1):  # 0.01 degree (~1 km) apart
        s.site(f"S{i}", cells=2, place=(51.5, -0.1 + 0.01 * (i - 1)))
    for sid in ("U1", "U2", "U3", "U4", "U5", "U6", "U7"):
        s.subscriber(sid)
    return s


def test_a_neighbour_silent_past_the_detach_time_during_an_outage_is_told_then_restored():
    s = around()
    s.seen("U1", "S2-C1", 0)     # heard next door, then silent: walked into S1's outage
    s.seen("U2", "S2-C1", 0)     # heard next door, and again 54 min later: in service
    s.seen("U3", f"{FAR}-C1", 0)  # heard far away, then silent: not near this outage
    s.seen("U4", "S2-C2", -80)   # silent since long before the outage: says nothing of it
    s.seen("U5", "S1-C1", 3)     # on the site when it goes down: the contract's impacted
    s.alarm("A1", 5, site="S1")
    s.seen("U2", "S2-C1", 54)
    s.clear("A1", 120, site="S1")
    s.tick(130)
    r = s.run()
    assert r.subscribers("outage_notice") == {"U5"}  # the contract's notice: the impacted
    assert r.subscribers("area_notice") == {"U1"}
    walk = r.of("area_notice")[0]
    assert walk["rule_id"] == "walk-in-notice" and walk["incident_id"] == "INC-S1-20261123T100500"
    assert walk["event_time"] == ts(SILENCE_MIN)  # last heard at 10:00, silent since
    assert any(e.startswith("last_heard:S2@") for e in walk["evidence"])
    assert "if you are around" in walk["message"]
    # not the contract's impacted: no restored notice, and the NOC's count leaves them out
    assert r.subscribers("restored_notice") == {"U5"}
    opened = [i for i in r.incidents if i["incident_id"] == "INC-S1-20261123T100500"]
    assert opened[-1]["impacted_subscribers"] == 1


def test_no_walk_in_once_the_outage_is_over_in_planned_work_or_without_the_rule():
    s = around()
    s.seen("U1", "S2-C1", 0)
    s.alarm("A1", 5, site="S1").clear("A1", 60, site="S1")  # over before U1 is overdue
    s.seen("U2", "S2-C1", 0)
    s.maintenance("W1", 100, 300, sites=["S3"])
    s.seen("U3", "S4-C1", 100)
    s.alarm("A2", 110, site="S3")  # planned: nobody is told, walk-in or not
    s.tick(260)
    r = s.run()
    assert r.of("area_notice") == []
    no_walk = s.run(book=without_walk_ins())
    assert no_walk.actions == [a for a in r.actions if a["rule_id"] != "walk-in-notice"]


def test_one_site_counts_each_subscriber_around_two_outages():
    """U1, silent next to two outages, is counted by the nearer (one notice, not two);
    U2, on S4 when it went down, is S4's own, not a walk-in at its neighbour S1."""
    s = around()
    s.seen("U1", "S2-C1", 0)     # S2 is next to S1, three sites from S4
    s.seen("U2", "S4-C1", 0)
    s.alarm("A4", 4, site="S4")
    s.alarm("A1", 5, site="S1")
    s.tick(SILENCE_MIN + 5)
    s.clear("A1", SILENCE_MIN + 10, site="S1").clear("A4", SILENCE_MIN + 10, site="S4")
    r = s.run()
    notices = sorted((a["subscriber_id"], a["incident_id"], a["rule_id"]) for a in r.actions
                     if a["kind"] in ("outage_notice", "area_notice"))
    assert notices == [("U1", "INC-S1-20261123T100500", "walk-in-notice"),
                       ("U2", "INC-S4-20261123T100400", "outage-notice")]


def test_a_late_call_from_a_neighbour_keeps_them_out_of_the_outage():
    """A call is reported when it ends: one that ended before the silence ran out shows
    the phone was in service, so no notice."""
    s = around()
    s.seen("U1", "S2-C1", 0)
    s.seen("U2", "S2-C1", 0)
    s.alarm("A1", 5, site="S1")
    # in a call 10:55-11:07 next door: the periodic update (10:54) fell inside it
    s.call("K1", "U1", "S3-C1", SILENCE_MIN - 1, length_s=12 * 60)
    s.tick(120)
    s.clear("A1", 125, site="S1")
    r = s.run()
    assert r.subscribers("area_notice") == {"U2"}  # U2 stayed silent: a walk-in


APOLOGY = """
  - id: back-after-outage-apology
    version: 1
    owner: care-operations
    description: Unheard during an outage, back on its cells soon after the restoration.
    trigger: {incident: [outage], at: reappeared}
    action: apology
    templates:
      en: "Hi $name, sorry if the network problem around $area caught you."
"""


def with_apology() -> Rulebook:
    """The default rulebook plus a rule on reappearances."""
    default = DEFAULT_DIR / "rulebook.yaml"
    text = default.read_text()
    cut = text.index("  - id: restored-notice")
    return parse_rulebook(text[:cut] + APOLOGY.lstrip("\n") + "\n" + text[cut:], default)


def test_someone_unheard_during_a_short_outage_back_on_its_cells_gets_an_apology():
    s = around()
    s.seen("U6", "S2-C1", -20)   # heard next door before, unheard during, back after
    s.seen("U7", "S2-C1", -20)
    s.alarm("A1", 5, site="S1")
    s.seen("U7", "S2-C1", 15)    # heard during the outage: not caught in it
    s.clear("A1", 30, site="S1")
    s.seen("U6", "S1-C2", 33).seen("U7", "S1-C2", 33)
    s.seen("U1", "S1-C1", 50)    # back too late (after reappear_s): no apology
    s.tick(60)
    r = s.run(book=with_apology())
    assert r.subscribers("apology") == {"U6"}
    a = r.of("apology")[0]
    assert a["rule_id"] == "back-after-outage-apology" and a["event_time"] == ts(33)
    assert a["incident_id"] == "INC-S1-20261123T100500"
    assert "location:S1-C2@" in " ".join(a["evidence"])
    assert r.of("restored_notice") == []  # nobody was told of the outage: nothing restored
    assert s.run().of("apology") == []  # the default rulebook has no such rule


def test_nearby_rulebook_terms_are_checked_with_their_key():
    default = DEFAULT_DIR / "rulebook.yaml"
    text = default.read_text()
    assert load_rulebook().correlation.silence_s == 4380
    bad = text.replace("    sites: 16 ", "    sites: 0  ")
    with pytest.raises(RulebookError) as err:
        parse_rulebook(bad, default)
    assert "correlation.nearby.sites" in str(err.value)
    typo = text.replace("    silence_s: 4380", "    silense_s: 4380")
    with pytest.raises(RulebookError) as err:
        parse_rulebook(typo, default)
    assert "silense_s" in str(err.value)


# ---- the sequencer's watch, without Bytewax ---------------------------------------------


def sequencer() -> Sequencer:
    seq = Sequencer(warmup=1)
    seq.configure(load_rulebook())
    for i in range(1, LAST + 1):
        for c in (1, 2):
            feed(seq, Cell(f"S{i}-C{c}", f"S{i}", lat=51.5, lon=-0.1 + 0.01 * (i - 1)), b"", "f")
    return seq


def near_of(out: Routes, site: str) -> list[Near | Watch]:
    return [m for m in out.sites.get(site, ()) if type(m) in (Near, Watch)]


def test_the_watch_follows_who_is_around_and_ends_after_the_restoration():
    seq = sequencer()
    out = Routes()
    seq.take_batch([[("f", b"", Location("U1", "S2-C1", 100.0), 100.0),
                     ("f", b"", Location("U2", f"{FAR}-C1", 100.0), 100.0)]], out)
    assert near_of(out, "S1") == []  # nothing is down: nothing forwarded
    out = Routes()
    alarm = Alarm("A1", 200.0, "critical", "transmitterFailure", site_id="S1")
    seq.take_batch([[("f", b"", alarm, 200.0),
                     ("f", b"", Location("U3", "S3-C1", 210.0), 210.0),
                     ("f", b"", Location("U1", f"{FAR}-C2", 220.0), 220.0)]], out)
    assert near_of(out, "S1") == [Watch(200.0), Near("U1", "S2", 100.0, sent=200.0),
                                  Near("U3", "S3", 210.0, sent=210.0),
                                  Near("U1", FAR, 220.0, near=False, sent=220.0)]
    assert seq.nearby.nearest("S1", NEAREST) == tuple(f"S{i}" for i in range(2, NEAREST + 2))
    # a snapshot carries the watch
    again = records.thaw_sequence(records.freeze_sequence(seq), lateness_s=seq.lateness_s,
                                  tick_s=seq.tick_s, book=load_rulebook())
    assert again.nearby.followed == {"U3": "S1"}  # U1 went far away: let go
    cleared = Alarm("A1", 300.0, "cleared", "transmitterFailure", site_id="S1")
    reappear = load_rulebook().correlation.reappear_s
    out = Routes()
    seq.take_batch([[("f", b"", cleared, 300.0),
                     ("f", b"", Location("U9", "S2-C1", 300.0 + reappear + 60), 300 + reappear
                      + 60)]], out)
    assert seq.nearby.watches == {} and seq.nearby.followed == {}
    assert near_of(out, "S1") == [Watch(300.0 + reappear + 60, ended=True)]  # forget them


def test_a_stuck_alarm_ends_its_watch_after_twelve_hours():
    w = NearbyWatch()
    for s, lon in (("S1", 0.0), ("S2", 0.01)):
        w.place(s, 0.0, lon)
    w.start("S1", 0.0, 8, Heard.of({"U1": "S2"}, {"U1": 0.0}), {})
    sites: dict = {}
    w.expire(MAX_WATCH_S, Heard.of({"U1": "S2"}, {"U1": 0.0}), sites)
    assert "S1" in w.watches and sites == {}
    w.expire(MAX_WATCH_S + 1, Heard.of({"U1": "S2"}, {"U1": 0.0}), sites)
    assert w.watches == {} and w.near_of == {} and w.followed == {} and w.followers == {}
    assert sites == {"S1": [Watch(MAX_WATCH_S + 1, ended=True)]}  # the site forgets them


def test_the_end_of_a_watch_hands_its_subscribers_to_the_next_down_site():
    """U1, next to S2 and S3 (both down), is S2's (nearer); when S2's watch ends first,
    S3 counts them, with the time they were last heard."""
    w = NearbyWatch()
    for s, lon in (("S2", 0.0), ("N", 0.01), ("S3", 0.03)):
        w.place(s, 0.0, lon)
    sites: dict = {}
    w.start("S3", 0.0, 8, Heard.of({"U1": "N"}, {"U1": 5.0}), sites)
    w.start("S2", 10.0, 8, Heard.of({"U1": "N"}, {"U1": 5.0}), sites)
    assert w.followed == {"U1": "S2"}
    w.stop("S2", 20.0, 0.0)
    sites = {}
    w.expire(30.0, Heard.of({"U1": "N"}, {"U1": 5.0}), sites)
    assert w.followed == {"U1": "S3"}
    assert sites == {"S2": [Watch(30.0, ended=True)], "S3": [Near("U1", "N", 5.0, sent=30.0)]}


def test_a_watch_that_outlives_twelve_hours_makes_no_walk_in_of_those_still_heard():
    """Someone heard next door every 30 min during a 16 h outage is never a walk-in, even
    after the sequencer stops following them (the site forgets what it heard)."""
    s = around()
    s.alarm("A1", 5, site="S1")
    for minute in range(0, 16 * 60, 30):
        s.seen("U1", "S2-C1", minute)
    s.clear("A1", 16 * 60 + 5, site="S1").tick(16 * 60 + 20)
    assert s.run().of("area_notice") == []


def test_a_late_position_does_not_make_someone_far_away_a_walk_in():
    """U1's latest position is far away; a late record of them next door, older than it,
    must not count them around the outage again."""
    s = around()
    s.seen("U1", "S2-C1", 0)
    s.alarm("A1", 5, site="S1")
    s.seen("U1", f"{FAR}-C1", 20)
    s.seen("U1", "S2-C1", 10)    # late: behind their latest
    s.clear("A1", 120, site="S1").tick(130)
    assert s.run().of("area_notice") == []


def test_no_one_is_followed_around_planned_work():
    """An outage inside a maintenance window starts no watch: nobody around it can be
    taken from a real outage nearby, and planned work notifies nobody."""
    seq = sequencer()
    out = Routes()
    window = Maintenance("W1", "upsert", 100.0, 400.0, site_ids=("S1",))
    seq.take_batch([[("f", b"", window, None),
                     ("f", b"", Location("U1", "S2-C1", 150.0), 150.0),
                     ("f", b"", Alarm("A1", 200.0, "critical", "powerProblem", site_id="S1"),
                      200.0)]], out)
    assert seq.nearby.watches == {} and near_of(out, "S1") == []


def test_a_snapshot_of_an_open_incident_from_before_walk_ins_loads():
    """An OpenIncident pickled without the walk-in field gets its default on load."""
    from forewarn.dataflows.site import OpenIncident

    inc = OpenIncident(id="INC-S1-1", kind="outage", start=0.0)
    old_state = {f: getattr(inc, f) for f in inc.__slots__ if f != "walked_in"}
    restored = OpenIncident.__new__(OpenIncident)
    restored.__setstate__((None, old_state))
    assert restored.walked_in == {} and restored.id == "INC-S1-1"
    again = safe_pickle.load_state(safe_pickle.dump_state(inc))
    assert again.walked_in == {} and again.start == 0.0


def test_without_a_walk_in_or_reappeared_rule_nothing_is_followed():
    seq = Sequencer(warmup=1)
    seq.configure(without_walk_ins())
    for i in (1, 2):
        feed(seq, Cell(f"S{i}-C1", f"S{i}", lat=0.0, lon=0.01 * i), b"", "f")
    feed(seq, Location("U1", "S2-C1", 100.0), b"", "f")
    routed = feed(seq, Alarm("A1", 200.0, "critical", "transmitterFailure", site_id="S1"),
                      b"", "f")
    assert [m for _, _, m in routed if type(m) is Near] == []
    assert seq.nearby.watches == {}


def test_what_a_site_heard_in_an_earlier_watch_does_not_make_a_walk_in_later():
    """U1 was around S1's first outage, then went far away once nobody followed them:
    S1's second outage must not count them in on what it heard the first time."""
    s = around()
    s.seen("U1", "S2-C1", 0)
    s.alarm("A1", 5, site="S1").clear("A1", 10, site="S1")  # a watch, over by 10:20
    s.seen("U1", f"{FAR}-C1", 25)  # far away, unfollowed: S1 never hears of it
    s.alarm("A2", 50, site="S1")
    s.seen("U1", f"{FAR}-C1", 79)
    s.clear("A2", 85, site="S1")
    s.tick(90)
    assert s.run().of("area_notice") == []


def test_a_storm_of_outage_alarms_watches_a_bounded_number_of_sites():
    """Each watch scans every subscriber's latest site once: past MAX_WATCHES at once,
    more outages start no watch (and are counted), so one feed raising an alarm on every
    site cannot stall the sequencer."""
    w = NearbyWatch()
    for i in range(MAX_WATCHES + 5):
        w.place(f"S{i}", 0.0, 0.01 * i)
    for i in range(MAX_WATCHES + 5):
        w.start(f"S{i}", 0.0, 4, Heard.of({}, {}), {})
    assert len(w.watches) == MAX_WATCHES and w.unwatched == 5


def test_surroundings_keep_the_least_recently_heard_first_whatever_the_arrival_order():
    """Entries handed over by a watch that ended come older than those already there: the
    silent are still taken oldest first, and forgetting drops only the old ones."""
    s = Surroundings()
    for sid, at in (("U3", 300.0), ("U4", 400.0)):
        s.near(Near(sid, "S2", at))
    assert s.ordered
    for sid, at in (("U1", 100.0), ("U2", 200.0)):  # handed over: older than U4
        s.near(Near(sid, "S2", at))
    assert not s.ordered
    assert s.front() == 100.0 and s.ordered
    assert [sid for sid, _, _ in s.silent_since(250.0, 150.0)] == ["U2"]  # U1: too old
    s.near(Near("U0", "S2", 50.0))
    s.forget_before(350.0)
    assert list(s.heard) == ["U4"]
    s.near(Near("U5", "S2", 10.0))
    s.clear()
    assert s.heard == {} and s.ordered


def test_a_position_on_the_site_itself_forgets_who_was_heard_around_unless_it_is_older():
    s = Surroundings()
    s.near(Near("U1", "S2", 50.0, anchored=0b01))
    s.near(Near("U2", "S2", 60.0, anchored=0b10))
    assert s.here("U1", 40.0) == ("S2", 50.0)  # a late position: their latest stands
    assert s.heard == {"U1": ("S2", 50.0), "U2": ("S2", 60.0)}
    assert s.anchored == {"U1": 0b01, "U2": 0b10}
    assert s.here("U1", 50.0) == ("S2", 50.0)  # as recent: heard here, not around
    assert s.heard == {"U2": ("S2", 60.0)} and s.anchored == {"U2": 0b10}
    assert s.here("U9", 70.0) is None and s.heard == {"U2": ("S2", 60.0)}
    assert s.here("U2", 61.0) == ("S2", 60.0) and s.heard == {} and s.anchored == {}


def test_a_watch_that_ends_hands_over_only_those_another_watch_covers():
    """S1 follows U1 (on S2), U2 and U3 (on S3); S5 watches S2 too, not S3. When S1's
    watch ends, U1 goes to S5; U3's site is watched by nobody now; U2's latest site is
    not known (another shard's): neither is handed over."""
    w = NearbyWatch()
    for s, lon in (("S1", 0.0), ("S2", 0.01), ("S3", -0.01), ("S5", 0.03)):
        w.place(s, 0.0, lon)
    sites: dict = {}
    w.start("S1", 10.0, 2, Heard.of({"U1": "S2", "U2": "S2", "U3": "S3"},
                                    {"U1": 1.0, "U2": 2.0, "U3": 3.0}), sites)
    w.start("S5", 20.0, 1, Heard.of({}, {}), sites)
    assert w.followed == {"U1": "S1", "U2": "S1", "U3": "S1"}
    assert {n: [s for _, s in ws] for n, ws in w.near_of.items()} == {"S2": ["S1", "S5"],
                                                                     "S3": ["S1"]}
    w.stop("S1", 100.0, 0.0)
    sites = {}
    w.expire(101.0, Heard.of({"U1": "S2", "U3": "S3"}, {"U1": 50.0, "U3": 60.0}), sites)
    assert sites == {"S1": [Watch(101.0, ended=True)],
                     "S5": [Near("U1", "S2", 50.0, sent=101.0)]}
    assert w.followed == {"U1": "S5"} and w.followers == {"S5": {"U1": None}}
    assert list(w.watches) == ["S5"] and list(w.near_of) == ["S2"]
    assert [s for _, s in w.near_of["S2"]] == ["S5"]


def _by_hundreds(t: float) -> int | None:
    """A day of 300 s: night (bucket 0) for its first 100, work (1) for the next 100."""
    return {0: 0, 1: 1}.get(int(t // 100) % 3)


def _anchored_around() -> Surroundings:
    s = Surroundings()
    s.near(Near("U1", "S2", 10.0, anchored=0b01))  # anchored here at night
    s.near(Near("U2", "S2", 12.0))  # not anchored here
    s.near(Near("U3", "S2", 20.0, anchored=0b10))  # anchored here in working hours
    return s


@pytest.mark.parametrize(("now", "within", "silence", "from_", "told"), [
    (90.0, 0.0, 30.0, 0.0, ["U1"]),  # night: U1 only
    (90.0, 20.0, 30.0, 0.0, ["U1", "U3"]),  # night, and work within 20 s
    (190.0, 20.0, 30.0, 0.0, ["U3"]),  # work, and no bucket within 20 s
    (250.0, 0.0, 30.0, 0.0, []),  # no bucket now or soon
    (290.0, 20.0, 30.0, 0.0, ["U1"]),  # no bucket now, night soon
    (150.0, 0.0, 130.0, 0.0, ["U3"]),  # U3 silent exactly 130 s
    (150.0, 0.0, 131.0, 0.0, []),
    (150.0, 0.0, 30.0, 20.0, ["U3"]),  # U3 heard exactly at the start of the span
    (150.0, 0.0, 30.0, 21.0, []),
])
def test_those_expected_here_now_or_within_a_while_are_taken_out_of_the_anchored(
        now: float, within: float, silence: float, from_: float, told: list[str]) -> None:
    s = _anchored_around()
    out = s.expected(now, within, silence, from_, _by_hundreds)
    assert out == [(sid, "S2", {"U1": 10.0, "U3": 20.0}[sid]) for sid in told]
    assert s.anchored == {sid: bits for sid, bits in (("U1", 1), ("U3", 2)) if sid not in told}
    assert list(s.heard) == ["U1", "U2", "U3"]  # (a walk-in check skips the told)


def test_forgetting_and_taking_out_the_silent_forget_their_anchor_bits_too() -> None:
    s = _anchored_around()
    s.near(Near("U1", "S2", 30.0))  # heard again, not anchored here this time
    assert s.anchored == {"U3": 0b10}
    s.near(Near("U3", "S9", 40.0, near=False))  # gone farther away
    assert s.heard == {"U2": ("S2", 12.0), "U1": ("S2", 30.0)} and s.anchored == {}
    s = _anchored_around()
    assert s.silent_since(11.0, 10.0) == [("U1", "S2", 10.0)]  # heard exactly at from_
    assert s.anchored == {"U3": 0b10}
    assert s.silent_since(20.0, 15.0) == [("U3", "S2", 20.0)]  # U2 too old: dropped
    assert s.heard == {} and s.anchored == {}
    s = _anchored_around()
    s.forget_before(12.0)  # U2 was heard exactly then: kept
    assert list(s.heard) == ["U2", "U3"] and s.anchored == {"U3": 0b10}
    s.forget_before(20.5)
    assert s.heard == {} and s.anchored == {}


def test_a_site_is_where_its_first_cell_with_both_coordinates_is():
    w = NearbyWatch()
    w.place("S1", 50.0, None)
    w.place("S1", None, 1.0)
    w.place("S1", 50.0, 1.0)
    w.place("S1", 51.0, 2.0)
    assert w.site_xy == {"S1": (50.0, 1.0)}


def test_nearest_sites_by_distance_with_longitudes_shrunk_by_the_latitude():
    w = NearbyWatch()
    for s, lat, lon in (("A", 50.0, 0.0), ("B", 50.1, 0.0), ("C", 50.0, 0.1),
                        ("D", 49.9, 0.05), ("E", 49.95, -0.15)):
        w.place(s, lat, lon)
    shrink2 = math.cos(math.radians(50.0)) ** 2
    ranked = w.ranked("A", 4)
    assert [s for _, s in ranked] == ["C", "B", "D", "E"]
    assert [d for d, _ in ranked] == pytest.approx(
        [0.01 * shrink2, 0.01, 0.01 + 0.0025 * shrink2, 0.0025 + 0.0225 * shrink2])


def test_an_outage_alarm_on_a_site_already_watched_keeps_its_watch_and_opens_it_again():
    w = NearbyWatch()
    for s, lon in (("S1", 0.0), ("S2", 0.01)):
        w.place(s, 0.0, lon)
    sites: dict = {}
    w.start("S1", 10.0, 1, Heard.of({"U1": "S2"}, {"U1": 5.0}), sites)
    w.stop("S1", 20.0, 100.0)
    w.start("S1", 30.0, 1, Heard.of({"U1": "S2"}, {"U1": 25.0}), sites)
    assert w.watches == {"S1": [("S2",), 10.0, None]}
    assert sites == {"S1": [Watch(10.0), Near("U1", "S2", 5.0, sent=10.0)]}
    assert [s for _, s in w.near_of["S2"]] == ["S1"]


def test_a_watch_ends_only_after_its_end_and_hands_over_only_those_not_silent_too_long():
    w = NearbyWatch()
    for s, lon in (("S1", 0.0), ("S2", 0.01), ("S5", 0.03)):
        w.place(s, 0.0, lon)
    w.start("S1", 10.0, 1, Heard.of({"U1": "S2", "U2": "S2"}, {"U1": 40.0, "U2": 41.0}), {})
    w.start("S5", 20.0, 1, Heard.of({}, {}), {})
    w.stop("S1", 100.0, 50.0)
    sites: dict = {}
    w.expire(150.0, Heard.of({}, {}), sites, 10.0)  # the watch lasts to 150 itself
    assert sites == {} and list(w.watches) == ["S1", "S5"]
    w.expire(151.0, Heard.of({"U1": "S2", "U2": "S2"}, {"U1": 40.0, "U2": 41.0}), sites, 111.0)
    # U1 silent since 40: 40 + 111 is not after 151 (S1 judged them); U2 is handed over
    assert sites == {"S1": [Watch(151.0, ended=True)],
                     "S5": [Near("U2", "S2", 41.0, sent=151.0)]}
    assert w.followed == {"U2": "S5"}


def test_someone_heard_again_near_the_same_site_or_near_another_is_told_to_each_once():
    w = NearbyWatch()
    for s, lon in (("S1", 0.0), ("S2", 0.01), ("S4", 0.1), ("S5", 0.11)):
        w.place(s, 0.0, lon)
    sites: dict = {}
    w.start("S1", 10.0, 1, Heard.of({}, {}), sites)
    w.start("S5", 10.0, 1, Heard.of({}, {}), sites)
    sites = {}
    w.heard("U1", "S2", 20.0, sites)
    w.heard("U1", "S2", 30.0, sites)  # again near S1: nothing to let go of
    w.heard("U1", "S4", 40.0, sites)  # near S5 now: S1 lets them go
    assert sites == {"S1": [Near("U1", "S2", 20.0, sent=20.0), Near("U1", "S2", 30.0, sent=30.0),
                            Near("U1", "S4", 40.0, near=False, sent=40.0)],
                     "S5": [Near("U1", "S4", 40.0, sent=40.0)]}
    assert w.followed == {"U1": "S5"} and w.followers == {"S1": {}, "S5": {"U1": None}}


def test_someone_heard_around_then_on_an_up_cell_of_the_site_is_no_walk_in():
    """U1 is heard next door before a cell of S1 goes down, then on S1's other cell,
    which is up, during the outage: heard on the site, they are no longer someone only
    heard around, so their silence after is no walk-in. U2, heard next door and silent
    since, is one."""
    s = around()
    s.seen("U1", "S2-C1", 0)
    s.seen("U2", "S2-C1", 0)
    s.alarm("A1", 5, cell="S1-C1")
    s.seen("U1", "S1-C2", 20)  # on the site's cell that is up
    s.clear("A1", 120, cell="S1-C1")
    s.tick(130)
    r = s.run()
    assert r.subscribers("area_notice") == {"U2"}
