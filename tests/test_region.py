"""Regional events for the NOC (forewarn.dataflows.region): a parent incident over the
site incidents of one region, opened, updated and resolved with its children, the same
whatever order and frontier cuts its inputs come in."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from forewarn.codec import incident_dict
from forewarn.dataflows.messages import Frontier, Impact, IncidentFacts, Restored
from forewarn.dataflows.region import RegionShard, region_key
from forewarn.model import Incident

T0 = 1795428900.0
SITES, WINDOW = 5, 900.0


def records(site: str, start: float, end: float, impacted: int = 10, region: str = "north",
            kind: str = "outage", window: str | None = None) -> list[Incident]:
    """A site incident's records as its site makes them: open at the group wait,
    updated at the hold-down with its impacted, resolved."""
    iid = f"INC-{site}-{int(start)}"

    def rec(status: str, at: float, n: int) -> Incident:
        return Incident(iid, status, kind, "site", site, (f"{site}-C1", f"{site}-C2"), start,
                        at if status == "resolved" else None, n, at, region=region,
                        maintenance_window=window)
    return [rec("open", start + 60, 0), rec("updated", start + 120, impacted),
            rec("resolved", end, impacted)]


def storm(n: int = 7, gap: float = 100.0) -> list[list[Incident]]:
    return [records(f"S{i:02d}", T0 + gap * i, T0 + 3600 + 600 * ((i * 5) % n))
            for i in range(n)]


def run(per_incident: list[list[Incident]], seed: int = 0, cuts: int = 3) -> list[Incident]:
    """Feed each incident's records in its own order, interleaved at random, with
    frontiers at random times in between (as workers and epochs would)."""
    rng = random.Random(seed)
    queues = [list(q) for q in per_incident]
    shard, out, seen = RegionShard(), [], -1e18
    while any(queues):
        q = rng.choice([q for q in queues if q])
        rec = q.pop(0)
        seen = max(seen, rec.event_time)
        out += shard.take([rec], SITES, WINDOW)
        if rng.random() < cuts / 10:
            # a frontier: every record before it has arrived (those behind are held)
            pending = [r.event_time for qq in queues for r in qq]
            out += shard.take([Frontier(min(pending, default=seen + 1))], SITES, WINDOW)
    return out + shard.finish(SITES, WINDOW)


def parents(out: list[Incident]) -> list[Incident]:
    return [i for i in out if i.incident_kind == "regional_outage"]


def test_a_storm_is_one_parent_opened_updated_and_resolved_with_its_children():
    out = run(storm())
    ps = parents(out)
    assert {p.incident_id for p in ps} == {"REG-north-20261123T101500"}
    assert [p.status for p in ps][0] == "open" and ps[-1].status == "resolved"
    first = ps[0]
    # opened when the 5th site's incident opened (group wait), with those 5
    assert first.event_time == T0 + 400 + 60 and len(first.child_ids) == SITES
    assert first.scope == "region" and first.site_id == "S00" and first.region == "north"
    # later incidents join while it is open; it resolves with its last child
    assert ps[-1].child_ids == tuple(f"INC-S{i:02d}-{int(T0 + 100 * i)}" for i in range(7))
    assert ps[-1].end_time == max(r[-1].event_time for r in storm())
    assert ps[-1].impacted_subscribers == 70
    # every child record from the parent's opening on names it; those before do not
    for i in out:
        if i.incident_kind == "outage":
            assert i.parent_id == (first.incident_id if i.event_time >= first.event_time
                                   else None)
    # the children open before it get an `updated` record naming it
    assert [i.incident_id for i in out if i.status == "updated"
            and i.event_time == first.event_time and i.incident_kind == "outage"] == [
        f"INC-S{i:02d}-{int(T0 + 100 * i)}" for i in range(4)]
    # on the wire: child ids and sites on the parent, parent_id on every incident
    wire = incident_dict(ps[-1])
    assert wire["kind"] == "regional_outage" and wire["parent_id"] is None
    assert wire["sites"] == [f"S{i:02d}" for i in range(7)] and len(wire["child_ids"]) == 7
    assert "child_ids" not in incident_dict(out[0]) and incident_dict(out[0])["parent_id"] is None


def test_no_parent_below_the_threshold_outside_the_window_or_for_planned_work():
    few = storm(SITES - 1)
    assert not parents(run(few))
    spread = [records(f"S{i}", T0 + 1000 * i, T0 + 20000) for i in range(8)]
    assert not parents(run(spread))
    planned = [records(f"S{i}", T0 + 10 * i, T0 + 5000, window="W1") for i in range(8)]
    assert not parents(run(planned))
    silent = [records(f"S{i}", T0 + 10 * i, T0 + 5000, kind="degradation") for i in range(8)]
    assert not parents(run(silent))
    regions = [records(f"S{i}", T0 + 10 * i, T0 + 5000, region=f"r{i % 2}") for i in range(8)]
    assert not parents(run(regions))  # 4 and 4


def test_two_storms_in_one_region_are_two_parents():
    one = storm()
    two = [records(f"S{i:02d}", T0 + 30000 + 50 * i, T0 + 40000) for i in range(6)]
    ids = {p.incident_id for p in parents(run(one + two))}
    assert len(ids) == 2


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10**6), st.integers(0, 10))
def test_the_same_outputs_whatever_the_arrival_order_and_frontier_cuts(seed, cuts):
    incidents = storm(9, gap=37.0) + [records("X1", T0 + 50, T0 + 900, region="south")]
    reference = run(incidents, seed=1, cuts=0)  # everything at the end: one order
    got = run(incidents, seed=seed, cuts=cuts)
    key = lambda i: (i.event_time, i.incident_id, i.status)  # noqa: E731
    assert sorted(got, key=key) == sorted(reference, key=key)


def test_region_keys_are_stable():
    assert region_key("north") == region_key("north") and region_key(None).startswith("noc-")


# -- verdicts on their way to care ---------------------------------------------------------


def facts_of(rec: Incident):
    return IncidentFacts(rec.incident_id, rec.incident_kind, rec.site_id, rec.site_id,
                         rec.start_time, ((rec.cell_ids[0], rec.start_time),), (),
                         region=rec.region, scope="site")


def verdicts(per_incident: list[list[Incident]], hold: float = 120.0) -> list[list]:
    """For each incident: a subscriber's hold-down impact and restoration."""
    out = []
    for recs in per_incident:
        f = facts_of(recs[0])
        out.append([Impact(f"U-{f.site_id}", f, f.start_time + hold, (f.start_time, "c", None)),
                    Restored(f"U-{f.site_id}", f, recs[-1].event_time)])
    return out


def run_all(per_incident: list[list[Incident]], per_verdicts: list[list], seed: int = 0,
            cuts: int = 3) -> tuple[list[Incident], list]:
    """As :func:`run`, with each incident's verdicts arriving as their site releases
    them: a list each, after the incident's records of their time."""
    rng = random.Random(seed)
    queues = [[(r.event_time, 0, r) for r in recs] + [(v.at, 1, [v]) for v in vs]
              for recs, vs in zip(per_incident, per_verdicts, strict=True)]
    for q in queues:
        q.sort(key=lambda x: (x[0], x[1]))
    shard, out, seen = RegionShard(), [], -1e18
    while any(queues):
        q = rng.choice([q for q in queues if q])
        at, _, item = q.pop(0)
        seen = max(seen, at)
        out += shard.take([item], SITES, WINDOW)
        if rng.random() < cuts / 10:
            pending = [x[0] for qq in queues for x in qq]
            out += shard.take([Frontier(min(pending, default=seen + 1))], SITES, WINDOW)
    out += shard.finish(SITES, WINDOW)
    incidents = [x for x in out if isinstance(x, Incident)]
    told = [v for x in out if type(x) is list for v in x]
    return incidents, told


def test_verdicts_wait_for_the_frontier_and_carry_the_event_of_their_time():
    """The event opens at T0 + 460 (the 5th site's incident opened): hold-downs before it
    carry no event, those from then on carry it with its children so far, a restoration
    carries the event it was part of (the last one's too, as the event resolves)."""
    incs = storm()
    shard = RegionShard()
    assert shard.take([r for recs in incs for r in recs], SITES, WINDOW) == []
    vs = [v for pair in verdicts(incs) for v in pair]
    assert shard.take([vs], SITES, WINDOW) == []  # held: no frontier yet
    out = shard.take([Frontier(T0 + 100_000)], SITES, WINDOW)
    [told] = [x for x in out if type(x) is list]
    event = "REG-north-20261123T101500"
    impacts = {v.facts.site_id: v.event for v in told if type(v) is Impact}
    assert [impacts[f"S{i:02d}"] for i in range(4)] == [None] * 4  # before it formed
    assert impacts["S04"] == (event, tuple(f"INC-S{i:02d}-{int(T0 + 100 * i)}"
                                           for i in range(5)))
    assert impacts["S06"][0] == event and len(impacts["S06"][1]) == 7
    restored = [v for v in told if type(v) is Restored]
    assert len(restored) == 7 and all(v.event is not None and v.event[0] == event
                                      for v in restored)


def test_an_impact_at_the_time_the_event_forms_carries_it():
    incs = storm()
    f = facts_of(incs[2][0])
    shard = RegionShard()
    shard.take([r for recs in incs for r in recs], SITES, WINDOW)
    shard.take([[Impact("U", f, T0 + 460, (T0, "c", None)),
                 Impact("V", f, T0 + 459, (T0, "c", None))]], SITES, WINDOW)
    [told] = [x for x in shard.take([Frontier(T0 + 461)], SITES, WINDOW) if type(x) is list]
    assert {v.subscriber_id: v.event is not None for v in told} == {"U": True, "V": False}


def test_late_verdicts_go_at_once_and_no_grouping_passes_them_untagged():
    incs = storm()
    shard = RegionShard()
    shard.take([r for recs in incs for r in recs] + [Frontier(T0 + 100_000)], SITES, WINDOW)
    f = facts_of(incs[5][0])
    late = Impact("U", f, T0 + 620, (T0, "c", None))
    [[v]] = shard.take([[late]], SITES, WINDOW)  # behind the frontier: as the event is now
    assert v.event is None  # (it resolved)
    plain = RegionShard()
    assert plain.take([[late]], None, WINDOW) == [[late]]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10**6), st.integers(0, 10))
def test_verdicts_are_tagged_the_same_whatever_the_arrival_order_and_frontier_cuts(seed, cuts):
    incidents = storm(9, gap=37.0) + [records("X1", T0 + 50, T0 + 900, region="south")]
    vs = verdicts(incidents)
    ref_incs, ref_told = run_all(incidents, vs, seed=1, cuts=0)
    got_incs, got_told = run_all(incidents, vs, seed=seed, cuts=cuts)
    key = lambda v: (v.at, v.subscriber_id, type(v).__name__)  # noqa: E731
    assert sorted(got_told, key=key) == sorted(ref_told, key=key)
    assert len(ref_told) == 20 and sum(v.event is not None for v in ref_told) > 10


def test_a_shard_snapshot_from_before_verdicts_passed_through_restores():
    """A region record of version 2 (no ``verdicts``) loads with none held and goes on."""
    from forewarn.dataflows import records
    from forewarn.safe_pickle import dump_record
    shard = RegionShard()
    shard.take([r for recs in storm() for r in recs], SITES, WINDOW)
    blob = dump_record("region", 2, {"groups": shard.groups, "held": shard.held,
                                     "frontier": shard.frontier})
    back = records.thaw_region(blob)
    assert back.verdicts == [] and len(back.held) == len(shard.held)
    assert parents(back.take([Frontier(T0 + 100_000)], SITES, WINDOW))


def test_a_site_moved_to_another_region_mid_storm_resolves_its_regional_event():
    """A topology update moves S1 to the south while its outage is open: the outage keeps
    the region it opened in (its records and verdicts), so the north's regional event
    resolves when its last site is back, and no south event is made of it."""
    from tests.builders import Scenario

    s = Scenario()
    for i in range(1, 6):
        s.site(f"S{i}")
    s.subscriber("U0").seen("U0", "S1-C1", 1)
    for i in range(1, 6):
        s.alarm(f"A{i}", 10 + i, site=f"S{i}")
    s.tick(30)
    s.site("S1", region="south")  # the topology moves it, mid-storm
    for i in range(1, 6):
        s.clear(f"A{i}", 60 + 10 * i, site=f"S{i}")
    r = s.tick(200).run()
    parents = [i for i in r.incidents if i["kind"] == "regional_outage"]
    assert {p["incident_id"] for p in parents} == {"REG-north-20261123T101100"}
    assert parents[-1]["status"] == "resolved"
    s1 = [i for i in r.incidents if i["site_id"] == "S1" and i["kind"] == "outage"]
    assert {i.get("region") for i in s1} == {"north"}
    assert s1[-1]["status"] == "resolved"
