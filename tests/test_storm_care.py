"""A storm, per subscriber: one outage notice and one restored notice per regional event
(``inhibit.notice_when_notified_in_region``, on in the storm-day settings), whatever the
order the sites fail and recover in. Only a regional event the region step formed joins
incidents (its verdicts carry it: ``event``, its id and children so far); two outages of
one region that are not one regional event each get their impacted their own notices, as
the contract says."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from forewarn.dataflows.care import CareShard, Suppressed, care_order
from forewarn.dataflows.messages import DropNote, Escalation, Impact, IncidentFacts, Restored
from forewarn.model import Action
from forewarn.rules.rulebook import load_rulebook, storm_day
from tests.test_care_actions import T0, upsert

BOOK = storm_day(load_rulebook())
WINDOW = BOOK.correlation.storm_window_s
HOLD = BOOK.correlation.hold_down_s
EVENT = "REG-north-20261123T100000"


def facts(site: str, start: float, region: str | None = "north") -> IncidentFacts:
    return IncidentFacts(f"INC-{site}-{int(start)}", "outage", site, f"Area {site}", start,
                         ((f"{site}-C1", start),), (f"alarm:A-{site}",), region=region,
                         scope="site", causes=("powerProblem",))


def impact(f: IncidentFacts, sid: str = "U") -> Impact:
    return Impact(sid, f, f.start_time + HOLD, (f.start_time - 60, f"{f.site_id}-C1", None))


def of_event(msg, *children: IncidentFacts, event: str = EVENT):
    """``msg`` as the region step passes it on: its incident one of ``children`` of a
    regional event."""
    return replace(msg, event=(event, tuple(sorted(f.incident_id for f in children))))


def apply(*msgs, book=BOOK) -> list:
    """The messages in care's order (as the flow applies them), after a profile."""
    return CareShard().handle_batch([upsert()] + sorted(msgs, key=care_order), book)


def actions(out: list) -> list[Action]:
    return [a for a in out if isinstance(a, Action)]


def test_the_default_rulebook_notifies_each_incident_as_the_contract_says():
    """Two outages of one regional event, one subscriber told of both: with the default
    rulebook, two outage notices and each restored notice when its own incident clears,
    at once (the contract); the storm-day settings are not its own."""
    default = load_rulebook()
    assert not default.inhibit_notice_in_region and default.budgets is None
    assert BOOK.inhibit_notice_in_region and BOOK.correlation.storm_sites == 5
    a, b = facts("S1", T0), facts("S2", T0 + 300)
    out = apply(impact(a), of_event(impact(b), a, b), Restored("U", a, T0 + 3600),
                of_event(Restored("U", b, T0 + 7200), a, b), book=default)
    assert [(x.action_kind, x.incident_id, x.event_time, x.send_after)
            for x in actions(out)] == [
        ("outage_notice", a.incident_id, T0 + HOLD, None),
        ("outage_notice", b.incident_id, T0 + 300 + HOLD, None),
        ("restored_notice", a.incident_id, T0 + 3600, None),
        ("restored_notice", b.incident_id, T0 + 7200, None)]


def test_two_outages_of_one_region_that_are_no_regional_event_get_a_notice_each():
    """Two outages of one region 5 min apart (fewer sites than a regional event needs: the
    region step tags neither), one subscriber told of both: two outage notices, and each
    restored notice when its own incident clears, as the contract says."""
    a, b = facts("S1", T0), facts("S2", T0 + 300)
    expected = [("outage_notice", a.incident_id, T0 + HOLD),
                ("outage_notice", b.incident_id, T0 + 300 + HOLD),
                ("restored_notice", a.incident_id, T0 + 3600),
                ("restored_notice", b.incident_id, T0 + 7200)]
    for book in (BOOK, replace(BOOK, inhibit_notice_in_region=False)):
        out = apply(impact(a), impact(b), Restored("U", a, T0 + 3600),
                    Restored("U", b, T0 + 7200), book=book)
        assert [(x.action_kind, x.incident_id, x.event_time) for x in actions(out)] == expected
        assert not [x for x in out if isinstance(x, Suppressed)]


def test_a_second_notice_of_one_regional_event_is_inhibited():
    """Told of S1 before the event formed (its notice carries no event); S2's hold-down
    comes once it has, with S1 among its children: no second notice, and one restored
    notice when the last of them is back."""
    a, b = facts("S1", T0), facts("S2", T0 + 300)
    out = apply(impact(a), of_event(impact(b), a, b),
                Restored("U", a, T0 + 3600), of_event(Restored("U", b, T0 + 7200), a, b))
    sent = actions(out)
    assert [(x.action_kind, x.incident_id, x.event_time) for x in sent] == [
        ("outage_notice", a.incident_id, T0 + HOLD),
        ("restored_notice", a.incident_id, T0 + 7200)]  # when the last is back
    # the restored notice names every incident of the event it waited for
    assert sent[1].evidence == ("alarm:A-S1", f"incident:{b.incident_id}")
    assert (sent[0].regional_event, sent[1].regional_event) == (None, EVENT)
    why = [x for x in out if isinstance(x, Suppressed)]
    assert why == [Suppressed("outage-notice", "outage_notice", "same_event", T0 + 300 + HOLD,
                              b.incident_id, (f"incident:{a.incident_id}",))]


def test_an_outage_that_joined_a_long_open_event_hours_later_gets_its_own_notice():
    """The NOC's event stays open while any of its sites is down, and an outage of the
    region hours later joins it; for care it is another outage: told of S1 at the
    storm's onset, someone on S6 when it fails 5 h later gets S6's notice and each
    restored notice when its own incident clears."""
    a, late = facts("S1", T0), facts("S6", T0 + 5 * 3600)
    out = apply(of_event(impact(a), a), of_event(impact(late), a, late),
                of_event(Restored("U", late, T0 + 6 * 3600), a, late),
                of_event(Restored("U", a, T0 + 10 * 3600), a, late))
    assert [(x.action_kind, x.incident_id, x.event_time) for x in actions(out)] == [
        ("outage_notice", a.incident_id, T0 + HOLD),
        ("outage_notice", late.incident_id, T0 + 5 * 3600 + HOLD),
        ("restored_notice", late.incident_id, T0 + 6 * 3600),
        ("restored_notice", a.incident_id, T0 + 10 * 3600)]
    assert not [x for x in out if isinstance(x, Suppressed)]


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 4).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, int(WINDOW)), min_size=n, max_size=n),
    st.lists(st.integers(HOLD + 1, 6 * 3600), min_size=n, max_size=n),
    st.integers(0, n - 1))))
def test_any_order_of_failures_and_restorations_gives_one_notice_and_one_restored(case):
    """2-4 sites of one region covering one subscriber fail within the storm window and
    recover in any order; the regional event forms at the hold-down of the ``formed``-th
    to fail (the earlier ones' notices carry no event). While the subscriber is without
    service (one of them still down when the next one's hold-down comes), they get exactly
    one outage notice and one restored notice, the restored one when the last site is
    back."""
    starts, lasts, formed = case
    sites = [facts(f"S{i}", T0 + s) for i, s in enumerate(starts)]
    ends = {f.incident_id: f.start_time + d for f, d in zip(sites, lasts, strict=True)}
    told = sorted(sites, key=lambda f: (f.start_time + HOLD, f.incident_id))
    # one event for them: each later hold-down finds an earlier outage still down
    for n, f in enumerate(told[1:], 1):
        assume(any(ends[e.incident_id] > f.start_time + HOLD for e in told[:n]))
    assume(formed <= 1)  # at most the first is told before the event forms (else two)
    msgs = [impact(f) if n < formed else of_event(impact(f), *sites)
            for n, f in enumerate(told)]
    msgs += [of_event(Restored("U", f, ends[f.incident_id]), *sites) for f in sites]
    sent = actions(apply(*msgs))
    assert [x.action_kind for x in sent] == ["outage_notice", "restored_notice"]
    assert sent[0].incident_id == sent[1].incident_id == told[0].incident_id
    assert sent[1].event_time == max(ends.values())


def test_incidents_of_no_regional_event_or_another_keep_one_notice_each():
    """Other regions, no region known, an event that does not hold the incident they were
    told of, or an event over for them before the next outage: each outage its own notice
    and restored notice."""
    a = facts("S1", T0)
    for b in (of_event(impact(facts("S2", T0 + 60, region="south")),
                       facts("S2", T0 + 60, region="south"), event="REG-south"),
              impact(facts("S3", T0 + 60, region=None)),
              of_event(impact(facts("S4", T0 + 600)), facts("S4", T0 + 600),
                       facts("S5", T0 + 601))):  # a's not one of its children
        f = b.facts
        sent = actions(apply(impact(a), b, Restored("U", a, T0 + 7200),
                             Restored("U", f, T0 + 7200)))
        assert sorted((x.action_kind, x.incident_id) for x in sent) == sorted([
            ("outage_notice", a.incident_id), ("outage_notice", f.incident_id),
            ("restored_notice", a.incident_id), ("restored_notice", f.incident_id)])
    b = facts("S2", T0 + 600)  # in the event, but the first is back before its hold-down
    sent = actions(apply(impact(a), Restored("U", a, T0 + 600), of_event(impact(b), a, b),
                         Restored("U", b, T0 + 3600)))
    assert [(x.action_kind, x.incident_id) for x in sent] == [
        ("outage_notice", a.incident_id), ("restored_notice", a.incident_id),
        ("outage_notice", b.incident_id), ("restored_notice", b.incident_id)]


def test_a_third_incident_joins_the_event_they_were_told_of():
    """Told of S1; S2 joined (no notice); S1 is back; S3 of the same event fails while S2
    is still down: it joins too, and the restored notice waits for both."""
    a, b, c = facts("S1", T0), facts("S2", T0 + 120), facts("S3", T0 + 600)
    out = apply(impact(a), of_event(impact(b), a, b), Restored("U", a, T0 + 700),
                of_event(impact(c), a, b, c), Restored("U", b, T0 + 3600),
                Restored("U", c, T0 + 5400))
    sent = actions(out)
    assert [(x.action_kind, x.incident_id, x.event_time) for x in sent] == [
        ("outage_notice", a.incident_id, T0 + HOLD),
        ("restored_notice", a.incident_id, T0 + 5400)]
    assert sent[1].evidence == ("alarm:A-S1", f"incident:{b.incident_id}",
                                f"incident:{c.incident_id}")


def test_an_event_gets_one_compensation_and_its_drops_no_apology():
    a, b = facts("S1", T0), facts("S2", T0 + 120)
    out = apply(impact(a), of_event(impact(b), a, b),
                Escalation("U", b, 4 * 3600.0, b.start_time + 4 * 3600),
                Escalation("U", a, 4 * 3600.0, a.start_time + 4 * 3600),
                DropNote("U", "K1", "S2-C1", T0 + 400, b.incident_id, False, "Area S2",
                         T0 + 400, region="north"),
                DropNote("U", "K2", "S2-C1", T0 + 500, b.incident_id, False, "Area S2",
                         T0 + 500, region="north"))
    assert [x.action_kind for x in actions(out)] == ["outage_notice", "compensation"]


def test_an_area_notice_is_not_inhibited_and_holds_nothing_back():
    """Someone found inside another dark site's area later (a walk-in, an hour or more
    after the notice, often back into the hole) still gets the area notice: inhibiting
    it cost 6 of 1,223 would-be complainers their forewarning on the storm day."""
    from forewarn.dataflows.messages import WALK_IN
    a, b = facts("S1", T0), facts("S2", T0 + 120)
    walk = of_event(replace(impact(b), at=T0 + 5000, trigger=WALK_IN), a, b)
    out = apply(impact(a), walk, Restored("U", a, T0 + 7200), Restored("U", b, T0 + 9000))
    assert [(x.action_kind, x.event_time) for x in actions(out)] == [
        ("outage_notice", T0 + HOLD), ("area_notice", T0 + 5000),
        ("restored_notice", T0 + 7200)]


def test_moved_away_is_not_part_of_their_event():
    a, b = facts("S1", T0), facts("S2", T0 + 120)
    out = apply(impact(a), of_event(replace(impact(b), moved=True), a, b),
                Restored("U", a, T0 + 3600), Restored("U", b, T0 + 7200))
    assert [(x.action_kind, x.event_time) for x in actions(out)] == [
        ("outage_notice", T0 + HOLD), ("restored_notice", T0 + 3600)]


def test_a_restored_notice_speaks_of_the_incident_as_it_resolved():
    """Alone, or the last of its event: the restored notice's evidence is the one the
    resolution carries (alarms that joined after the notice), as without the inhibition."""
    a = facts("S1", T0)
    later = replace(a, evidence=a.evidence + ("alarm:A-late",))
    sent = actions(apply(impact(a), Restored("U", later, T0 + 3600)))
    assert sent[1].evidence == later.evidence
    b = facts("S2", T0 + 60)
    for last in (T0 + 7200, T0 + 1800):  # the incident told of back first, or last
        sent = actions(apply(impact(a), of_event(impact(b), a, b),
                             Restored("U", later, T0 + 3600), Restored("U", b, last)))
        assert sent[1].evidence == later.evidence + (f"incident:{b.incident_id}",)
        assert sent[1].event_time == T0 + 7200 if last > T0 + 3600 else T0 + 3600


def test_care_applies_a_regions_verdicts_alike_with_and_without_recovery():
    """The region step releases a time's restorations before its hold-downs: S1 back at
    the moment S2's hold-down falls due. Care with recovery (a care gate, then the
    bucket the gate passes the messages on to) decides as care shards do (held to the
    frontier, in care's order)."""
    from forewarn.dataflows.flow import CareGateLogic, CareKeys, FlowConfig, _to_care
    from forewarn.dataflows.messages import Frontier

    a, b = facts("S1", T0), facts("S2", T0 + 300)
    at = T0 + 300 + HOLD
    released = [of_event(impact(a), a), of_event(Restored("U", a, at), a, b),
                of_event(impact(b), a, b), of_event(Restored("U", b, T0 + 7200), a, b)]
    got = {}
    for durable in (False, True):
        cfg = FlowConfig(book=BOOK, durable=durable)
        logic = CareKeys(cfg)(None)
        # without recovery the care shard holds; with it, the gate does
        holder = CareGateLogic(cfg, None) if durable else logic
        out, _ = holder.on_batch([[upsert()]])
        for _, box in _to_care(released, cfg.care_key):
            more, _ = holder.on_batch([box])
            out += more
        out += holder.on_batch([Frontier(float("inf"))])[0]
        if durable:  # the gate's lists, on to the bucket
            assert out and all(key == cfg.care_state_key("U") for key, _ in out)
            out = logic.on_batch([lists for _, lists in out])[0]
        got[durable] = [(x.action_kind, x.incident_id, x.event_time) for x in actions(out)]
    assert got[True] == got[False] and got[True]
