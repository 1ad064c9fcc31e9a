"""One site's correlation (dataflows/site.py) alone, message by message, at its edges:
silent failures superseded and resolved, drop notes at the ends of an outage, moves
seen exactly at the hold-down, positions exactly as old as allowed, an incident's
causes."""

from __future__ import annotations

from forewarn.codec import parse_time
from forewarn.dataflows.degradation import Verdict
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
from forewarn.dataflows.site import SiteCorrelator
from forewarn.model import Alarm, Cell, Incident, Kpi, Maintenance
from forewarn.rules.rulebook import load_rulebook

BOOK = load_rulebook()  # group wait 60 s, hold-down 120 s, positions at most 60 min old
T0 = parse_time("2026-11-23T10:00:00Z")


def site() -> SiteCorrelator:
    s = SiteCorrelator("S1", BOOK)
    for c in ("C1", "C2", "C3"):
        s.handle(Cell(c, "S1", region="north"))
    return s


def alarm(aid: str, at: float, cell: str, cause: str = "powerProblem",
          severity: str = "critical") -> Alarm:
    return Alarm(aid, T0 + at, severity, cause, cell_id=cell)


def records(out: list) -> list[tuple]:
    return [(m.incident_id, m.status, m.event_time - T0, m.silent_kind, m.detector,
             m.evidence, m.impacted_subscribers, m.end_time)
            for kind, m in out if kind == "incident" and isinstance(m, Incident)]


def care(out: list) -> list:
    return [m for kind, m in out if kind == "care"]


class Scripted:
    """Silent-failure detectors whose verdicts are given in advance, by tick time."""

    def __init__(self, verdicts: dict[float, list[Verdict]],
                 downs: dict[str, list[Verdict]] | None = None) -> None:
        self.verdicts = verdicts
        self.downs = downs or {}  # cell -> verdicts when an alarm takes it down
        self.cells: dict = {}  # no cell's traffic is followed: pruning keeps nobody longer

    def advance(self, at: float) -> list[Verdict]:
        return self.verdicts.pop(at, [])

    def position(self, cell: str, at: float) -> list[Verdict]:
        return []

    def kpi(self, k: object) -> list[Verdict]:
        return []

    def cell_down(self, cell: str, at: float) -> list[Verdict]:
        return self.downs.pop(cell, [])

    def cell_up(self, cell: str, at: float) -> None:
        pass


def verdict(kind: str, status: str, start: float, at: float, reason: str,
            evidence: tuple[str, ...] = (), cell: str = "C1") -> Verdict:
    return Verdict(cell, kind, status, T0 + start, T0 + at,
                   T0 + at if status == "resolved" else None, 1.0, reason, evidence)


def test_a_degradation_superseded_by_a_sleeping_cell_then_resolved():
    """C1 degrades (drop rate), then is found sleeping: the same incident, updated with
    the new kind, detector and evidence, and its users impacted; traffic back resolves
    it, telling them; a later verdict opens a new incident."""
    s = site()
    s.health = Scripted({
        T0 + 1000: [verdict("degradation", "open", 400, 1000, "drop_rate", ("kpi:C1@a",))],
        T0 + 2000: [verdict("sleeping", "open", 1500, 2000, "silence", ("traffic:C1@b",))],
        T0 + 3000: [verdict("sleeping", "resolved", 1500, 3000, "traffic_back"),
                    verdict("sleeping", "resolved", 1500, 3000, "traffic_back", cell="C2")],
        T0 + 4000: [verdict("degradation", "open", 3500, 4000, "rrc", ("kpi:C1@c",))],
    })
    s.handle(position("U1", "C1", T0 + 300, "r1"))  # on C1 before it degraded
    s.handle(position("U2", "C1", T0 + 500, "r2"))  # arrived after: not impacted
    s.handle(position("U3", "C2", T0 + 300, "r3"))  # another cell
    deg = "DEG-C1-20261123T100640"  # from its onset, 10:06:40
    out = s.handle(Tick(T0 + 1000))
    assert records(out) == [(deg, "open", 1000, "degradation", "drop_rate", ("kpi:C1@a",), 0,
                             None)]
    assert s.silent == {"C1": deg}
    out = s.handle(Tick(T0 + 2000))
    assert records(out) == [
        (deg, "updated", 2000, "sleeping", "silence", ("traffic:C1@b",), 0, None),
        (deg, "updated", 2000, "sleeping", "silence", ("traffic:C1@b",), 1, None)]
    facts = IncidentFacts(deg, "degradation", "S1", "North", T0 + 400, (("C1", T0 + 400),),
                          ("traffic:C1@b",), "north", "cell", (), False)
    assert care(out) == [Impact("U1", facts, T0 + 2000, (T0 + 300, "C1", "r1"), False)]
    out = s.handle(Tick(T0 + 3000))
    assert records(out) == [(deg, "resolved", 3000, "sleeping", "traffic_back",
                             ("traffic:C1@b",), 1, T0 + 3000)]
    assert care(out) == [Restored("U1", facts, T0 + 3000)]
    assert s.incidents == {} and s.silent == {} and s.recent == {}
    out = s.handle(Tick(T0 + 4000))
    again = "DEG-C1-20261123T105820"
    assert records(out) == [(again, "open", 4000, "degradation", "rrc", ("kpi:C1@c",), 0,
                             None)]
    assert care(out) == []


def test_a_sleeping_cell_found_at_once_is_opened_and_impacts_in_one_step():
    s = site()
    s.health = Scripted({T0 + 900: [verdict("sleeping", "open", 600, 900, "kpi_collapse",
                                            ("kpi:C2@a",), cell="C2")]})
    s.handle(position("U1", "C2", T0 + 100, "r1"))
    out = s.handle(Tick(T0 + 900))
    deg = "DEG-C2-20261123T101000"
    assert records(out) == [
        (deg, "open", 900, "sleeping", "kpi_collapse", ("kpi:C2@a",), 0, None),
        (deg, "updated", 900, "sleeping", "kpi_collapse", ("kpi:C2@a",), 1, None)]
    facts = IncidentFacts(deg, "degradation", "S1", "North", T0 + 600, (("C2", T0 + 600),),
                          ("kpi:C2@a",), "north", "cell", (), True)
    assert care(out) == [Impact("U1", facts, T0 + 900, (T0 + 100, "C2", "r1"), False)]


def test_drop_notes_at_the_ends_of_an_outage_and_with_the_sites_region():
    """A drop one group wait (60 s) before an outage's start, or exactly at its end, is
    explained by it; a second earlier, or later, is not. A drop the outage explains waits
    for its hold-down (care knows who was told by then)."""
    s = site()
    inc = "INC-S1-20261123T100140"  # C1 down from 10:01:40 to 10:05:00
    s.handle(Drop("U1", "C1", "K1", T0 + 39))
    s.handle(Drop("U2", "C1", "K2", T0 + 40))
    s.handle(alarm("A1", 100, "C1"))
    out = s.handle(Tick(T0 + 161))
    assert care(out) == [DropNote("U1", "K1", "C1", T0 + 39, None, False, "North", T0 + 159,
                                  "north")]
    out = s.handle(Tick(T0 + 221))  # the hold-down at 220, then the drop it explains
    assert care(out) == [DropNote("U2", "K2", "C1", T0 + 40, inc, False, "North", T0 + 220,
                                  "north")]
    s.handle(alarm("A1", 300, "C1", severity="cleared"))
    s.handle(Drop("U3", "C1", "K3", T0 + 300))
    s.handle(Drop("U4", "C1", "K4", T0 + 301))
    out = s.handle(Tick(T0 + 500))
    assert care(out) == [
        DropNote("U3", "K3", "C1", T0 + 300, inc, False, "North", T0 + 420, "north"),
        DropNote("U4", "K4", "C1", T0 + 301, None, False, "North", T0 + 421, "north")]


def test_moves_and_positions_exactly_at_the_edges_of_the_hold_down():
    """At the hold-down (120 s after the alarm at 10:00): a position exactly 60 min old,
    or exactly at the alarm, counts; a second older does not. Someone seen elsewhere
    exactly when last seen here, or exactly at the hold-down time, has moved."""
    s = site()
    s.handle(position("U4", "C1", T0 - 3601, "r4"))
    s.handle(position("U3", "C1", T0 - 3600, "r3"))
    s.handle(position("U1", "C1", T0 - 60, "r1"))
    s.handle(position("U6", "C1", T0 - 60, "r6"))
    s.handle(position("U7", "C1", T0 - 60, "r7"))
    s.handle(position("U5", "C1", T0, "r5"))
    s.handle(Left("U1", T0 - 60))
    s.handle(alarm("A1", 0, "C1"))
    out = s.handle(Left("U6", T0 + 120))  # the group wait ended; the hold-down is not before
    assert [(r[1], r[2]) for r in records(out)] == [("open", 60)] and care(out) == []
    out = s.handle(Tick(T0 + 121))
    moved = [(m.subscriber_id, m.seen, m.moved, m.at) for m in care(out)]
    assert moved == [("U1", (T0 - 60, "C1", "r1"), True, T0 + 120),  # (in id order)
                     ("U3", (T0 - 3600, "C1", "r3"), False, T0 + 120),
                     ("U5", (T0, "C1", "r5"), False, T0 + 120),
                     ("U6", (T0 - 60, "C1", "r6"), True, T0 + 120),
                     ("U7", (T0 - 60, "C1", "r7"), False, T0 + 120)]


def test_of_two_moves_told_out_of_order_the_earlier_one_counts():
    """Seen elsewhere at 10:08, then (a late record) at 10:00:50: by the hold-down of an
    outage from 10:00, applied late, they had moved."""
    s = site()
    s.handle(position("U1", "C1", T0 - 60, "r1"))
    s.handle(position("U2", "C1", T0 - 60, "r2"))
    s.handle(Left("U1", T0 + 480))
    s.handle(Left("U1", T0 + 50))
    s.handle(Left("U2", T0 + 50))
    s.handle(Left("U2", T0 + 480))  # a later sighting does not move the first one
    s.handle(Tick(T0 + 600))
    s.handle(alarm("A1", 0, "C1"))
    out = s.handle(Tick(T0 + 700))
    assert [(m.subscriber_id, m.moved) for m in care(out)] == [("U1", True), ("U2", True)]


def test_an_incidents_causes_are_its_alarms_probable_causes_once_each_in_order():
    s = site()
    s.handle(position("U1", "C1", T0 - 60, "r1"))
    s.handle(alarm("A1", 0, "C1", "powerProblem"))
    s.handle(alarm("A2", 10, "C2", "lossOfSignal"))
    s.handle(alarm("A3", 20, "C3", "powerProblem"))
    out = s.handle(Tick(T0 + 121))
    inc = "INC-S1-20261123T100000"
    facts = IncidentFacts(inc, "outage", "S1", "North", T0,
                          (("C1", T0), ("C2", T0 + 10), ("C3", T0 + 20)),
                          ("alarm:A1", "alarm:A2", "alarm:A3"), "north", "site",
                          ("powerProblem", "lossOfSignal"), True)
    assert care(out) == [Impact("U1", facts, T0 + 120, (T0 - 60, "C1", "r1"), False)]
    for aid, cell in (("A1", "C1"), ("A2", "C2"), ("A3", "C3")):
        s.handle(alarm(aid, 200, cell, severity="cleared"))
    assert s.alarm_causes == {} and s.incidents == {}
    s.handle(alarm("B1", 900, "C2", "equipmentMalfunction"))  # a new outage: its own cause
    s.handle(position("U2", "C2", T0 + 899, "r2"))
    out = s.handle(Tick(T0 + 1100))
    assert [m.facts.causes for m in care(out)] == [("equipmentMalfunction",)]


def test_a_drop_on_a_cell_in_planned_work_says_so_and_one_on_another_cell_does_not():
    s = site()
    s.handle(Maintenance("W1", "upsert", T0, T0 + 600, cell_ids=("C1",)))
    s.handle(Drop("U1", "C1", "K1", T0 + 100))
    s.handle(Drop("U2", "C2", "K2", T0 + 100))
    out = s.handle(Tick(T0 + 300))
    assert care(out) == [
        DropNote("U1", "K1", "C1", T0 + 100, None, True, "North", T0 + 220, "north"),
        DropNote("U2", "K2", "C2", T0 + 100, None, False, "North", T0 + 220, "north")]


def test_a_late_position_before_a_cell_went_down_counts_after_one_that_arrived_after():
    """C1 down at 10:00, C2 at 10:00:50 (the same incident): U1 arrives on C1 at 10:01:10
    (after its start, past the group wait: not impacted); U2's position on C2 at
    10:00:20, before C2 went down, comes after it (a late record): impacted."""
    s = site()
    s.handle(alarm("A1", 0, "C1"))
    s.handle(alarm("A2", 50, "C2"))
    s.handle(position("U1", "C1", T0 + 70, "r1"))
    s.handle(position("U2", "C2", T0 + 20, "r2"))
    out = s.handle(Tick(T0 + 121))
    assert [(m.subscriber_id, m.seen) for m in care(out)] == [("U2", (T0 + 20, "C2", "r2"))]


def test_a_site_alarm_cleared_resolves_every_incident_its_cells_were_in():
    """C1 down from 10:00 (its own incident); the whole site from 10:05 (a second one for
    C2 and C3; C1, already down, stays in the first). A1 clears, then the site alarm:
    both incidents resolve at once."""
    s = site()
    s.handle(position("U1", "C1", T0 - 60, "r1"))
    s.handle(position("U2", "C2", T0 - 60, "r2"))
    s.handle(alarm("A1", 0, "C1"))
    s.handle(Alarm("A2", T0 + 300, "critical", "powerProblem", site_id="S1"))
    s.handle(Tick(T0 + 500))
    s.handle(alarm("A1", 600, "C1", severity="cleared"))
    out = s.handle(Alarm("A2", T0 + 700, "cleared", "powerProblem", site_id="S1"))
    first, second = "INC-S1-20261123T100000", "INC-S1-20261123T100500"
    assert [(r[0], r[1], r[2], r[7]) for r in records(out)] == [
        (first, "resolved", 700, T0 + 700), (second, "resolved", 700, T0 + 700)]
    assert [(m.subscriber_id, m.facts.incident_id, m.at) for m in care(out)] == [
        ("U1", first, T0 + 700), ("U2", second, T0 + 700)]
    assert s.incidents == {} and s.down == {}


def test_verdicts_due_together_are_all_reported_in_their_order():
    s = site()
    s.health = Scripted({
        T0 + 1000: [verdict("degradation", "open", 400, 1000, "drop_rate", ("kpi:C1@a",))],
        T0 + 2000: [verdict("degradation", "open", 1400, 2000, "rrc", ("kpi:C2@b",), "C2"),
                    verdict("degradation", "resolved", 400, 2000, "healthy")],
    })
    s.handle(Tick(T0 + 1000))
    out = s.handle(Tick(T0 + 2000))
    assert [(r[0], r[1], r[4]) for r in records(out)] == [
        ("DEG-C2-20261123T102320", "open", "rrc"),
        ("DEG-C1-20261123T100640", "resolved", "healthy")]
    assert s.silent == {"C2": "DEG-C2-20261123T102320"}


def test_a_record_fires_what_is_due_before_it_is_applied():
    """Without ticks: a drop or a KPI past the hold-down brings its records; a clear past
    it brings the hold-down's impacts first, then the restoration to those impacted."""
    for late in (Drop("U9", "C3", "K9", T0 + 200), Kpi("C3", T0 + 100, 100.0, 10, 0)):
        s = site()
        s.handle(position("U1", "C1", T0 - 60, "r1"))
        s.handle(alarm("A1", 0, "C1"))
        out = s.handle(late)
        assert [(r[1], r[2]) for r in records(out)] == [("open", 60), ("updated", 120)]
        assert [m.subscriber_id for m in care(out)] == ["U1"] and s.clock == T0 + 200
    s = site()
    s.handle(position("U1", "C1", T0 - 60, "r1"))
    s.handle(alarm("A1", 0, "C1"))
    out = s.handle(alarm("A1", 130, "C1", severity="cleared"))
    assert [(r[1], r[2]) for r in records(out)] == [("open", 60), ("updated", 120),
                                                   ("resolved", 130)]
    assert [(type(m).__name__, m.subscriber_id, m.at) for m in care(out)] == [
        ("Impact", "U1", T0 + 120), ("Restored", "U1", T0 + 130)]


def test_calls_on_a_down_cell_after_its_start_keep_their_subscriber_impacted():
    """U1 and U2 on C1 before it went down, both heard on it again after the group wait
    (a call the outage cut): U1 stays impacted from the position at the start; U2 was seen
    on another site in between, so the later call is theirs now: not impacted."""
    s = site()
    s.handle(position("U1", "C1", T0 - 60, "r1"))
    s.handle(position("U2", "C1", T0 - 60, "r2"))
    s.handle(alarm("A1", 0, "C1"))
    s.handle(Left("U2", T0 + 30))
    s.handle(position("U1", "C1", T0 + 90, "call:K1"))
    s.handle(position("U2", "C1", T0 + 90, "call:K2"))
    out = s.handle(Tick(T0 + 121))
    assert [(m.subscriber_id, m.seen) for m in care(out)] == [("U1", (T0 - 60, "C1", "r1"))]


def test_of_two_positions_at_the_same_time_the_later_record_is_the_latest():
    s = site()
    s.handle(position("U1", "C2", T0 - 60, "r1"))
    s.handle(position("U1", "C1", T0 - 60, "r2"))
    s.handle(alarm("A1", 0, "C1"))
    out = s.handle(Tick(T0 + 121))
    assert [(m.subscriber_id, m.seen) for m in care(out)] == [("U1", (T0 - 60, "C1", "r2"))]


def test_an_alarm_raised_again_on_a_cell_still_down_is_named_once():
    s = site()
    s.handle(alarm("A1", 0, "C1"))
    s.handle(alarm("A2", 10, "C1"))
    s.handle(alarm("A1", 20, "C1", severity="cleared"))  # C1 still down (A2)
    s.handle(alarm("A1", 30, "C1"))
    out = s.handle(Tick(T0 + 121))
    assert [(r[1], r[5]) for r in records(out)] == [
        ("open", ("alarm:A1", "alarm:A2")), ("updated", ("alarm:A1", "alarm:A2"))]


def test_a_site_alarm_over_a_degrading_cell_resolves_its_silent_incident_first():
    s = site()
    s.health = Scripted(
        {T0 + 1000: [verdict("degradation", "open", 400, 1000, "drop_rate", ("kpi:C1@a",))]},
        {"C1": [verdict("degradation", "resolved", 400, 1100, "outage")]})
    s.handle(Tick(T0 + 1000))
    out = s.handle(Alarm("A1", T0 + 1100, "critical", "powerProblem", site_id="S1"))
    assert [(r[0], r[1], r[4]) for r in records(out)] == [
        ("DEG-C1-20261123T100640", "resolved", "outage")]
    assert s.down == {"C1": {"A1"}, "C2": {"A1"}, "C3": {"A1"}}


def test_a_prune_between_an_outage_and_its_hold_down_keeps_who_it_may_impact():
    """U1 was seen 58 min 20 s before the cell went down (within the 60 min that make
    them impacted); the site's periodic prune runs 112 s after the alarm, when their
    position is 60 min 12 s old, before the hold-down at 120 s: they are impacted all
    the same. U2, seen 61 min before the alarm, is not."""
    s = site()
    s.handle(position("U2", "C1", T0 - 3660, "r2"))  # (a prune, the first)
    s.handle(position("U1", "C1", T0 - 3500, "r1"))
    s.handle(Tick(T0 - 488))  # a prune: the next is due at T0 + 112
    s.handle(alarm("A1", 0, "C1"))
    s.handle(Tick(T0 + 112))  # the prune: a position from before T0 - 3488 is old now
    out = s.handle(Tick(T0 + 121))
    assert [m.subscriber_id for m in care(out)] == ["U1"]
