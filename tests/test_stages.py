"""Pure stage logic, without Bytewax: sequencer, site correlation, subscriber care."""

from __future__ import annotations

from forewarn import safe_pickle
from forewarn.codec import parse_time
from forewarn.dataflows.care import SubscriberCare, Suppressed, quiet_until
from forewarn.dataflows.messages import (
    Drop,
    DropNote,
    Impact,
    IncidentFacts,
    Left,
    Restored,
    Tick,
    position,
)
from forewarn.dataflows.sequencer import Routes, Sequencer
from forewarn.dataflows.site import PRUNE_EVERY_S, SiteCorrelator
from forewarn.model import (
    Action,
    Alarm,
    Cell,
    Channel,
    Location,
    Maintenance,
    Subscriber,
    stream_at,
)
from forewarn.rules.rulebook import load_rulebook
from tests.builders import feed

BOOK = load_rulebook()
T0 = parse_time("2026-11-23T10:00:00Z")


# ---- sequencer ---------------------------------------------------------------------


def seq_with_topology(**kw) -> Sequencer:
    s = Sequencer(warmup=1, **kw)
    for c in ("C1", "C2"):
        feed(s, Cell(c, "S1"), b"", "f")
    feed(s, Cell("D1", "S2"), b"", "f")
    return s


def test_sequencer_routes_by_topology_and_dead_letters_unknown_cells():
    s = seq_with_topology()
    out = feed(s, Location("U", "C2", T0), b"raw", "f")
    assert [(st, k) for st, k, _ in out] == [("site", "S1")]  # positions: their site only
    dead = feed(s, Location("U", "ZZ", T0), b"raw", "f")
    assert dead[0][0] == "dead" and "unknown cell 'ZZ'" in dead[0][2].reason
    alarm = Alarm("A", T0, "major", "powerProblem", site_id="NOPE")
    assert feed(s, alarm, b"", "f")[0][0] == "dead"


def test_sequencer_tells_the_site_a_subscriber_left():
    s = seq_with_topology()
    feed(s, Location("U", "C1", T0), b"", "f")
    assert feed(s, Location("U", "C2", T0 + 10), b"", "f") == [  # same site: nothing to tell
        ("site", "S1", ("U", "C2", T0 + 10, None))]
    out = feed(s, Location("U", "D1", T0 + 20), b"", "f")
    assert out == [("site", "S2", ("U", "D1", T0 + 20, None)), ("site", "S1", Left("U", T0 + 20))]
    assert feed(s, Location("U", "D1", T0 + 30), b"", "f")[1:] == []  # once per move


def test_sequencer_a_late_position_is_not_a_move_when_a_newer_one_is_known():
    s = seq_with_topology()
    feed(s, Location("U", "D1", T0 + 60), b"", "f")
    # older than their latest (on S2): S1's view of them is out of date at once
    out = feed(s, Location("U", "C1", T0), b"", "f")
    assert out == [("site", "S1", ("U", "C1", T0, None)), ("site", "S1", Left("U", T0 + 60))]
    assert s.heard.latest("U") == ("S2", T0 + 60)
    # late, but newer than anything known of them: a move like any other
    feed(s, Location("V", "D1", T0 + 90), b"", "f")
    feed(s, Location("W", "C1", T0), b"", "f")
    out = feed(s, Location("U", "C1", T0 + 70), b"", "f")
    assert out == [("site", "S1", ("U", "C1", T0 + 70, None)), ("site", "S2", Left("U", T0 + 70))]


def test_sequencer_rejects_times_more_than_7_days_from_progress():
    s = seq_with_topology()
    feed(s, Location("U", "C1", T0), b"", "f")
    out = feed(s, Location("U", "C1", T0 + 8 * 86400), b"x", "f")
    assert out[0][0] == "dead" and "more than 7 days" in out[0][2].reason
    assert s.watermark == T0


def test_sequencer_warmup_median_survives_a_bad_first_time():
    s = Sequencer(warmup=3)
    feed(s, Cell("C1", "S1"), b"", "f")
    assert feed(s, Location("U", "C1", 0.0), b"bad", "f") == []  # 1970: held
    feed(s, Location("U", "C1", T0), b"", "f")
    out = feed(s, Location("U", "C1", T0 + 1), b"", "f")
    assert [r[0] for r in out].count("dead") == 1 and s.watermark == T0 + 1


def test_sequencer_reorders_within_lateness_and_ticks_active_sites():
    s = seq_with_topology(lateness_s=30, tick_s=10)
    feed(s, Location("U", "C1", T0), b"", "f")
    feed(s, Alarm("A", T0 + 1, "major", "powerProblem", site_id="S1"), b"", "f")
    held = feed(s, Location("U", "C1", T0 + 20), b"", "f")
    assert held == []  # within the reorder window
    early = feed(s, Location("V", "D1", T0 + 5), b"", "f")
    assert early == []
    out = feed(s, Location("U", "C1", T0 + 60), b"", "f")
    for site in ("S1", "S2"):  # each site's positions in event-time order
        times = [m[2] for _, k, m in out if k == site and type(m) is tuple]
        assert times and times == sorted(times)
    assert any(isinstance(m, Tick) and k == "S1" for _, k, m in out)


def decoded(*recs) -> list[tuple]:
    """Records as the decode step hands them to the sequencer (source, raw, record, at)."""
    return [("f", b"", r, stream_at(r)) for r in recs]


def test_sequencer_counts_records_beyond_the_reorder_window_and_the_flow_exports_them():
    from forewarn import metrics
    from forewarn.dataflows.flow import FlowConfig, SequenceLogic

    logic = SequenceLogic(FlowConfig(book=BOOK, lateness_s=30), None)
    logic.seq = seq_with_topology(lateness_s=30)
    late = metrics.LATE_RECORDS.labels(source="oss.alarms")
    before = late._value.get()
    logic.on_batch([decoded(*(Location("U", "C1", t) for t in (T0, T0 + 40, T0 + 100)))])
    assert logic.seq.watermark == T0 + 40  # released: up to T0 + 100 - 30
    alarm = Alarm("A", T0 + 50, "major", "powerProblem", site_id="S1")  # still in time
    logic.on_batch([decoded(alarm)])
    assert logic.seq.late == 0
    too_late = Alarm("B", T0 + 10, "major", "powerProblem", site_id="S1")  # behind T0 + 40
    out, _ = logic.on_batch([decoded(too_late)])
    assert logic.seq.late_by_kind == {"alarm": 1}
    assert late._value.get() == before + 1
    assert any(stage == "site" for stage, _ in out)  # applied (late), not dropped


def test_sequencer_finish_flushes_and_ticks():
    s = seq_with_topology(lateness_s=100)
    feed(s, Alarm("A", T0, "major", "powerProblem", site_id="S1"), b"", "f")
    assert feed(s, Location("U", "C1", T0 + 50), b"", "f") == []  # held: within the window
    routes = Routes()
    s.finish(routes)
    # the tick its release makes due (every tick_s), the position, the last tick
    assert routes.sites["S1"] == [Tick(T0 + 50), ("U", "C1", T0 + 50, None), Tick(T0 + 50)]
    assert routes.cares == {}


# ---- site ------------------------------------------------------------------------


def site() -> SiteCorrelator:
    s = SiteCorrelator("S1", BOOK)
    for c in ("C1", "C2", "C3"):
        s.handle(Cell(c, "S1", region="north"))
    return s


def alarm(aid: str, at: float, cell: str | None = None, sev: str = "critical") -> Alarm:
    return Alarm(aid, T0 + at, sev, "powerProblem", cell_id=cell, site_id=None if cell else "S1")


def test_site_hold_down_fans_out_impacts_with_fresh_positions_only():
    s = site()
    s.handle(position("U1", "C1", T0 - 600, "location:C1@x"))
    s.handle(position("U2", "C1", T0 - 4000, "location:C1@y"))  # stale
    s.handle(position("U3", "C2", T0 - 60, "location:C2@z"))  # other cell
    assert s.handle(alarm("A", 0, "C1")) == []
    out = s.handle(Tick(T0 + 121))
    impacts = [m for kind, m in out if kind == "care"]
    assert [m.subscriber_id for m in impacts] == ["U1"]
    assert impacts[0].at == T0 + 120 and impacts[0].facts.evidence == ("alarm:A",)
    incident = [m for kind, m in out if kind == "incident"]
    assert incident[-1].impacted_subscribers == 1


def test_site_impact_says_whether_the_subscriber_was_seen_elsewhere_by_then():
    s = site()
    for sid in ("U1", "U2", "U3", "U4"):
        s.handle(position(sid, "C1", T0 - 60, "r"))
    s.handle(Left("U1", T0 + 30))  # on another site after the alarm, before the hold-down
    s.handle(Left("U2", T0 + 30))
    s.handle(position("U2", "C1", T0 + 40, "r"))  # ... and back: this site's view is newer
    s.handle(Left("U4", T0 - 90))  # older than this site's view (a late Left): ignored
    s.handle(Alarm("A", T0 + 20, "critical", "powerProblem", cell_id="C1"))
    out = s.handle(Left("U3", T0 + 141))  # after the hold-down time: not for it (it fires first)
    moved = {m.subscriber_id: m.moved for kind, m in out if kind == "care"}
    assert moved == {"U1": True, "U3": False, "U4": False}  # U2's newest is after the alarm
    s.handle(Tick(T0 + PRUNE_EVERY_S + 4000))  # members too old to matter are forgotten
    assert not s.members and not s.away


def test_site_a_late_alarm_judges_moves_by_time():
    s = site()
    s.handle(position("U1", "C1", T0 - 60, "r"))
    s.handle(Left("U1", T0 + 500))  # seen elsewhere long after the outage below began
    s.handle(Tick(T0 + 600))
    s.handle(alarm("A", 0, "C1"))  # late: applied behind the site's clock
    out = s.handle(Tick(T0 + 700))
    assert [(m.subscriber_id, m.moved) for kind, m in out if kind == "care"] == [("U1", False)]


def test_site_deadline_at_exact_time_waits_for_later_input():
    s = site()
    s.handle(position("U1", "C1", T0 - 10, "r"))
    s.handle(alarm("A", 0, "C1"))
    assert [k for k, _ in s.handle(Tick(T0 + 120))] == ["incident"]  # group wait only
    out = s.handle(Alarm("A", T0 + 120, "cleared", "powerProblem", cell_id="C1"))
    assert not any(k == "care" for k, _ in out)  # cleared within the hold-down


def test_site_restore_sends_restored_to_impacted_and_resolves():
    s = site()
    s.handle(position("U1", "C1", T0 - 10, "r"))
    s.handle(alarm("A", 0))  # whole site
    s.handle(Tick(T0 + 200))
    out = s.handle(Alarm("A", T0 + 900, "cleared", "powerProblem", site_id="S1"))
    kinds = [(k, type(m).__name__, getattr(m, "status", None)) for k, m in out]
    assert ("care", "Restored", None) in kinds and ("incident", "Incident", "resolved") in kinds
    resolved = [m for k, m in out if k == "incident"][-1]
    assert resolved.scope == "site" and resolved.end_time == T0 + 900
    assert not s.incidents


def test_site_drop_note_names_the_explaining_outage_after_its_hold_down():
    s = site()
    s.handle(Drop("U1", "C1", "K1", T0 - 20))  # the call dropped just before the alarm
    s.handle(alarm("A", 0, "C1"))
    out = s.handle(Tick(T0 + 300))
    notes = [m for k, m in out if isinstance(m, DropNote)]
    assert notes and notes[0].incident_id == "INC-S1-20261123T100000"
    assert notes[0].at == T0 + 120  # delivered after the incident's hold-down


def test_site_maintenance_windows_mark_planned_work():
    s = site()
    s.handle(Maintenance("W", "upsert", T0 - 60, T0 + 3600, cell_ids=("C1",)))
    s.handle(position("U1", "C1", T0 - 10, "r"))
    s.handle(alarm("A", 0, "C1"))
    out = s.handle(Tick(T0 + 200))
    assert not any(k == "care" for k, _ in out)
    assert [m for k, m in out if k == "incident"][0].maintenance_window == "W"


# ---- care ------------------------------------------------------------------------


def profile(sid: str = "U", tz: str = "Europe/London", consent: bool = True) -> Subscriber:
    return Subscriber(sid, "upsert", T0 - 100, language="fr", timezone=tz, segment="consumer",
                      channels=(Channel("sms", "+33", consent), Channel("email", "a@b", True)),
                      name="Zoé", preferred_channels=("sms", "email"))


FACTS = IncidentFacts("INC-1", "outage", "S1", "North", T0, (("C1", T0),), ("alarm:A",))
IMPACT = Impact("U", FACTS, T0 + 120, (T0 - 30, "C1", "r"))


def test_care_acts_on_the_sites_view_of_the_subscriber():
    c = SubscriberCare()
    c.handle("U", profile(), BOOK)
    out = c.handle("U", Impact("U", FACTS, T0 + 120, (T0 - 30, "C1", "call:K")), BOOK)
    assert isinstance(out[0], Action) and out[0].language == "fr" and "Zoé" in out[0].message
    assert out[0].channel == "sms" and out[0].evidence == ("alarm:A", "call:K")
    assert c.handle("U", IMPACT, BOOK) == []  # once per incident
    restored = c.handle("U", Restored("U", FACTS, T0 + 900), BOOK)
    assert restored[0].action_kind == "restored_notice"


def test_care_suppresses_moved_away_no_consent_and_unknown():
    moved = SubscriberCare()
    moved.handle("U", profile(), BOOK)
    away = Impact("U", FACTS, T0 + 120, (T0 - 30, "C1", "r"), moved=True)
    assert moved.handle("U", away, BOOK)[0].reason == "moved_away"
    unknown = SubscriberCare()
    out = unknown.handle("U", IMPACT, BOOK)
    assert isinstance(out[0], Suppressed) and out[0].reason == "unknown_subscriber"
    mute = SubscriberCare()
    mute.handle("U", Subscriber("U", "upsert", T0, timezone="UTC",
                                channels=(Channel("sms", "+1", False),)), BOOK)
    assert mute.handle("U", IMPACT, BOOK)[0].reason == "no_consent"


def test_care_apology_defers_in_quiet_hours():
    c = SubscriberCare()
    c.handle("U", profile(tz="Asia/Tokyo"), BOOK)  # 10:00 UTC = 19:00 Tokyo; 14:00 UTC = 23:00
    late = T0 + 4 * 3600
    note = DropNote("U", "K1", "C1", late, None, False, "North", late + 120)
    assert c.handle("U", note, BOOK) == []
    note2 = DropNote("U", "K2", "C1", late + 60, None, False, "North", late + 180)
    out = c.handle("U", note2, BOOK)
    assert out[0].action_kind == "apology"
    assert out[0].send_after == parse_time("2026-11-24T08:00:00+09:00")


def test_quiet_hours_boundaries():
    assert quiet_until(parse_time("2026-11-23T21:59:00Z"), "UTC", BOOK) is None
    assert quiet_until(parse_time("2026-11-23T22:00:00Z"), "UTC", BOOK) == parse_time(
        "2026-11-24T08:00:00Z")
    assert quiet_until(parse_time("2026-11-24T07:59:00Z"), "UTC", BOOK) == parse_time(
        "2026-11-24T08:00:00Z")
    assert quiet_until(parse_time("2026-11-24T08:00:00Z"), "UTC", BOOK) is None


def test_care_apology_is_the_same_whatever_order_two_sites_notes_arrive_in():
    a = DropNote("U", "K1", "C1", T0, None, False, "North", T0 + 120, "north")
    b = DropNote("U", "K2", "D1", T0 + 600, None, False, "South", T0 + 720, "south")
    results = []
    for notes in ((a, b), (b, a)):
        c = SubscriberCare()
        c.handle("U", profile(), BOOK)
        out = [x for n in notes for x in c.handle("U", n, BOOK)]
        results.append([(x.action_id, x.event_time, x.evidence[:2], x.message) for x in out])
    assert results[0] == results[1] and len(results[0]) == 1
    assert results[0][0][1] == T0 + 720 and results[0][0][2] == ("call:K1", "call:K2")


def test_state_with_care_position_history_loads():
    """Snapshots of the state layout in which care kept each subscriber's positions
    (``SubscriberCare.seen``), sites had no ``away`` map and the sequencer no latest sites
    (bare pickles without the format header, and format 1) still load: care's position
    history is dropped, the site's away map and the sequencer's latest sites start empty."""
    import copy
    import pickle

    from forewarn.dataflows.flow import FlowConfig, SequenceLogic
    from forewarn.dataflows.records import thaw_site

    old = SubscriberCare.__new__(SubscriberCare)  # as pickle rebuilds one of an older format
    old.__setstate__((None, {"profile": None, "complaints": 2, "notified": None,
                             "drops": (), "deleted_at": None,
                             "seen": ((T0, "C1", None),)}))
    assert old.complaints == 2 and not hasattr(old, "seen")
    again = pickle.loads(pickle.dumps(old))
    assert again.complaints == 2 and not again.empty()

    s = site()
    s.handle(position("U1", "C1", T0, "r"))
    del s.away  # a SiteCorrelator of an older format has no such slot
    frozen = copy.copy(s)
    frozen.book = None  # as format 1 kept a site: pickled whole, without its rulebook
    thawed, _, _ = thaw_site(safe_pickle.dump_state((frozen, [])), book=BOOK)
    assert thawed.away == {} and "U1" in thawed.members

    seq = seq_with_topology()
    del seq.heard  # a Sequencer of an older format, without latest sites
    logic = SequenceLogic(FlowConfig(book=BOOK), pickle.dumps(seq))  # no format header
    logic.seq.warmup = 1  # (configuration, as the snapshot's was: not kept in a record)
    out, _ = logic.on_batch([decoded(Location("U", "C1", T0), Location("U", "D1", T0 + 5))])
    sites = dict(out[0][1])
    assert sites["S1"][1][-1] == Left("U", T0 + 5)


def test_a_resumed_sequencer_takes_the_reorder_window_from_the_command_line():
    """`--lateness` given to a resumed run wins over the value in the snapshot."""
    from forewarn.dataflows.flow import FlowConfig, SequenceLogic

    old = seq_with_topology(lateness_s=30, tick_s=10)
    blob = safe_pickle.dump_state(old)
    logic = SequenceLogic(FlowConfig(book=BOOK, lateness_s=5, tick_s=15), blob)
    assert (logic.seq.lateness_s, logic.seq.tick_s) == (5, 15)
    assert logic.seq.cell_site == old.cell_site  # the state itself is the snapshot's
