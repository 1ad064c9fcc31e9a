"""Regional events for the NOC (forewarn.dataflows.region): a parent incident over the
site incidents of one region, opened, updated and resolved with its children, the same
whatever order and frontier cuts its inputs come in."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from forewarn.codec import incident_dict
from forewarn.dataflows.messages import Frontier
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
