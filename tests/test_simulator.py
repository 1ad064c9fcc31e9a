"""The network simulator: determinism, contract-valid lines, and honest ground truth."""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from datetime import datetime

import orjson
import pytest

from forewarn.codec import stream_time as raw_stream_time
from forewarn.simulator import Scenario, ScenarioConfig, simulate, write_scenario
from forewarn.simulator import cli as simulator_cli

SMALL = ScenarioConfig(seed=5, sites=30, hours=3.0, subscribers_per_cell=20)
TINY = ScenarioConfig(seed=11, sites=12, hours=2.0, subscribers_per_cell=10)

SEVERITIES = {"critical", "major", "minor", "warning", "indeterminate", "cleared"}
ALARM_TYPES = {"communicationsAlarm", "qualityOfServiceAlarm", "processingErrorAlarm",
               "equipmentAlarm", "environmentalAlarm"}
OUTAGE_CAUSES = {"lossOfSignal", "powerProblem", "transmitterFailure", "equipmentMalfunction",
                 "cellUnavailable"}
REQUIRED = {
    "cell": {"cell_id": str, "site_id": str},
    "alarm": {"alarm_id": str, "event_time": str, "perceived_severity": str,
              "probable_cause": str},
    "location": {"subscriber_id": str, "cell_id": str, "event_time": str},
    "call": {"call_id": str, "subscriber_id": str, "cell_id": str, "start_time": str,
             "end_time": str, "dropped": bool},
    "kpi": {"cell_id": str, "period_start": str, "period_s": int, "call_attempts": int,
            "dropped_calls": int},
    "subscriber": {"subscriber_id": str, "op": str, "updated_at": str},
    "maintenance": {"window_id": str, "op": str, "start_time": str, "end_time": str},
    "complaint": {"complaint_id": str, "subscriber_id": str, "event_time": str, "category": str},
}
UPSERT_REQUIRED = {"language": str, "timezone": str, "segment": str, "channels": dict}


def ts(text: str) -> int:
    """RFC 3339 -> POSIX seconds."""
    parsed = datetime.fromisoformat(text)
    assert parsed.tzinfo is not None, text
    return int(parsed.timestamp())


def stream_time(record: dict) -> float | None:
    """The flow's stream time of a good input record (:func:`forewarn.codec.stream_time`,
    the one definition), None for timeless reference data."""
    at = raw_stream_time(orjson.dumps(record))
    assert at is not None, record
    return None if at == float("-inf") else at


def contract_problem(record: object, cells: set[str]) -> str | None:
    """Why a parsed record is not a valid contract input (None if it is)."""
    if not isinstance(record, dict) or record.get("type") not in REQUIRED:
        return "not a typed object"
    fields = dict(REQUIRED[record["type"]])
    if record["type"] == "subscriber" and record.get("op") == "upsert":
        fields.update(UPSERT_REQUIRED)
    for name, kind in fields.items():
        if not isinstance(record.get(name), kind):
            return f"field {name}"
    for name in ("event_time", "start_time", "end_time", "updated_at", "period_start"):
        if name in record and not 1_700_000_000 < ts(record[name]) < 1_900_000_000:
            return "absurd time"
    if record["type"] == "alarm":
        if record["perceived_severity"] not in SEVERITIES:
            return "severity"
        if ("cell_id" in record) == ("site_id" in record):
            return "alarm needs exactly one of cell_id/site_id"
        if record.get("alarm_type") not in ALARM_TYPES:
            return "alarm_type"
    if "cell_id" in record and record["type"] != "cell" and record["cell_id"] not in cells:
        return "unknown cell"
    if record["type"] == "complaint" and record["category"] not in {
            "no_service", "dropped_calls", "slow_data", "other"}:
        return "category"
    if record["type"] == "subscriber" and record.get("segment", "consumer") not in {
            "consumer", "business", "vip"}:
        return "segment"
    return None


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return simulate(SMALL)


@pytest.fixture(scope="module")
def parsed(scenario: Scenario) -> list[dict | None]:
    """Parsed lines; None where the truth says the line is defective."""
    bad = {r["line"] for r in scenario.truth if r["type"] == "truth_bad_line"}
    return [None if i in bad else orjson.loads(line) for i, line in enumerate(scenario.lines)]


@pytest.fixture(scope="module")
def truth(scenario: Scenario) -> dict[str, list[dict]]:
    by_type: dict[str, list[dict]] = defaultdict(list)
    for record in scenario.truth:
        by_type[record["type"]].append(record)
    return by_type


def down_periods(truth: dict[str, list[dict]]) -> list[dict]:
    """Every period a cell gave no service: outages and sleeping cells (shaped alike)."""
    sleeping = [{**f, "outage_id": f["failure_id"], "cycle": None, "cell_ids": [f["cell_id"]]}
                for f in truth["truth_silent_failure"] if f["kind"] == "sleeping"]
    return truth["truth_outage"] + sleeping


@pytest.fixture(scope="module")
def cells(parsed: list[dict | None]) -> dict[str, str]:
    return {r["cell_id"]: r["site_id"] for r in parsed if r and r["type"] == "cell"}


def test_same_config_gives_identical_bytes(scenario: Scenario) -> None:
    again = simulate(SMALL)
    assert again.lines == scenario.lines
    assert [orjson.dumps(r) for r in again.truth] == [orjson.dumps(r) for r in scenario.truth]
    assert again.stats == scenario.stats


def test_another_seed_gives_another_scenario(scenario: Scenario) -> None:
    other = simulate(ScenarioConfig(seed=6, sites=30, hours=3.0, subscribers_per_cell=20))
    assert other.lines != scenario.lines


def test_tiny_scenario_still_has_every_outage_kind() -> None:
    sc = simulate(TINY)
    outages = sc.stats["outages"]
    assert outages.pop("storm") == 0  # only on request (--storm)
    assert all(n >= 1 for n in outages.values()), outages
    assert sc.stats["degraded_cells"] >= 1 and sc.stats["bad_lines_total"] >= 9
    assert sc.stats["silent_failures"] == {"sleeping": 1, "degradation": 1}


def test_every_good_line_is_a_valid_contract_record(parsed: list[dict | None],
                                                    cells: dict[str, str]) -> None:
    problems = [(i, contract_problem(r, set(cells))) for i, r in enumerate(parsed) if r]
    assert [p for p in problems if p[1]] == []
    types = Counter(r["type"] for r in parsed if r)
    assert set(types) == set(REQUIRED), types


def test_lines_are_in_stream_order_with_reference_data_first(
        parsed: list[dict | None], scenario: Scenario) -> None:
    good = [r for r in parsed if r]
    n_cells = sum(1 for r in good if r["type"] == "cell")
    assert all(r["type"] == "cell" for r in good[:n_cells])
    t0 = scenario.config.t0
    initial = [r for r in good[n_cells:] if r["type"] == "subscriber" and ts(r["updated_at"]) == t0]
    assert good[n_cells:n_cells + len(initial)] == initial
    times = [t for r in good[n_cells:] if (t := stream_time(r)) is not None]
    assert times == sorted(times)
    assert t0 <= times[0] and times[-1] <= scenario.config.t1


def test_maintenance_is_announced_before_its_window(parsed: list[dict | None]) -> None:
    latest = 0
    seen = 0
    for r in parsed:
        if r is None:
            continue
        t = stream_time(r)
        latest = max(latest, t or 0)
        if r["type"] == "maintenance" and r["op"] == "upsert":
            seen += 1
            assert latest <= ts(r["start_time"]) - 1800
    assert seen >= 1


def test_small_scenario_has_every_outage_kind(truth: dict[str, list[dict]]) -> None:
    kinds = Counter(o["kind"] for o in truth["truth_outage"])
    assert {"cell", "site", "blip", "flap", "maintenance"} <= set(kinds)
    flaps = defaultdict(list)
    for o in truth["truth_outage"]:
        if o["kind"] == "blip":
            assert 20 <= o["duration_s"] <= 110
        if o["kind"] == "flap":
            flaps[o["outage_id"]].append(o)
    for cycles in flaps.values():
        assert 4 <= len(cycles) <= 8
        assert [c["cycle"] for c in cycles] == list(range(1, len(cycles) + 1))
        span = ts(cycles[-1]["end_time"]) - ts(cycles[0]["start_time"])
        assert span <= 1800 and all(20 <= c["duration_s"] <= 200 for c in cycles)


def test_every_outage_alarm_is_raised_then_cleared(parsed: list[dict | None],
                                                   truth: dict[str, list[dict]],
                                                   cells: dict[str, str]) -> None:
    alarms: dict[str, list[dict]] = defaultdict(list)
    for r in parsed:
        if r and r["type"] == "alarm":
            alarms[r["alarm_id"]].append(r)
    for outage in truth["truth_outage"]:
        assert outage["alarm_ids"], outage
        for alarm_id in outage["alarm_ids"]:
            raised, cleared = alarms[alarm_id]
            assert raised["perceived_severity"] in {"critical", "major"}
            assert raised["probable_cause"] in OUTAGE_CAUSES
            assert cleared["perceived_severity"] == "cleared"
            assert ts(outage["start_time"]) <= ts(raised["event_time"]) <= ts(outage["end_time"])
            assert ts(cleared["event_time"]) >= ts(outage["end_time"])
            target = raised.get("cell_id") or raised["site_id"]
            assert target in outage["cell_ids"] or target == outage["site_id"]
    for alarm_id, records in alarms.items():
        assert records[0]["perceived_severity"] != "cleared", alarm_id
        assert len(records) <= 2
    assert all(c in cells for o in truth["truth_outage"] for c in o["cell_ids"])


def test_nobody_calls_or_reports_from_a_down_cell(parsed: list[dict | None],
                                                  truth: dict[str, list[dict]]) -> None:
    down: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for o in down_periods(truth):
        for cell in o["cell_ids"]:
            down[cell].append((ts(o["start_time"]), ts(o["end_time"])))
    for r in parsed:
        if r and r["type"] in ("location", "call"):
            t = ts(r["event_time"] if r["type"] == "location" else r["start_time"])
            assert not any(a <= t < b for a, b in down[r["cell_id"]]), r


def test_calls_cut_by_an_outage_end_dropped_at_its_start(parsed: list[dict | None],
                                                         truth: dict[str, list[dict]]) -> None:
    starts = {(c, ts(o["start_time"])) for o in down_periods(truth) for c in o["cell_ids"]}
    cut = [r for r in parsed if r and r["type"] == "call" and r.get("cause_code") == 38]
    assert all(r["dropped"] and (r["cell_id"], ts(r["end_time"])) in starts for r in cut)


def test_impacts_reference_real_outages_and_subscribers(parsed: list[dict | None],
                                                        truth: dict[str, list[dict]]) -> None:
    periods = {(o["outage_id"], o["cycle"]): o for o in down_periods(truth)}
    seen_subscribers = {r["subscriber_id"] for r in parsed if r and "subscriber_id" in r}
    impacts = truth["truth_impact"]
    assert impacts
    for i in impacts:
        period = periods[(i["outage_id"], i["cycle"])]
        assert i["cell_id"] in period["cell_ids"] and i["site_id"] == period["site_id"]
        assert i["subscriber_id"] in seen_subscribers
        assert period["start_time"] == i["start_time"] and period["end_time"] == i["end_time"]
        assert i["start_time"] <= i["lost_from"] <= i["lost_to"]
        assert i["recovered_by"] in {"restored", "reselected", "moved"}
        if i["recovered_by"] == "restored":
            assert i["lost_to"] >= i["end_time"]
        if i["at_start"]:
            assert i["lost_from"] == i["start_time"]
        assert i["contactable"] <= i["known"]
        assert i["planned"] == (i["kind"] == "maintenance")
        assert i["flapping"] == (i["kind"] == "flap")


def test_reselection_is_observed_on_an_up_cell(parsed: list[dict | None],
                                               truth: dict[str, list[dict]]) -> None:
    locations = {(r["subscriber_id"], r["event_time"]): r["cell_id"]
                 for r in parsed if r and r["type"] == "location"}
    reselected = [i for i in truth["truth_impact"] if i["recovered_by"] == "reselected"]
    assert reselected
    periods = {(o["outage_id"], o["cycle"]): o for o in down_periods(truth)}
    for i in reselected:
        cell = locations[(i["subscriber_id"], i["lost_to"])]
        assert cell not in periods[(i["outage_id"], i["cycle"])]["cell_ids"]


def test_silent_failures_raise_no_alarm_and_show_in_kpis(
        scenario: Scenario, parsed: list[dict | None], truth: dict[str, list[dict]],
        cells: dict[str, str]) -> None:
    silent = truth["truth_silent_failure"]
    assert scenario.stats["silent_failures"] == {
        "sleeping": sum(1 for f in silent if f["kind"] == "sleeping"),
        "degradation": sum(1 for f in silent if f["kind"] == "degradation")}
    assert {f["kind"] for f in silent} == {"sleeping", "degradation"}
    outage_alarms = [r for r in parsed if r and r["type"] == "alarm"
                     and r["perceived_severity"] in ("critical", "major")]
    kpis = [r for r in parsed if r and r["type"] == "kpi"]
    for f in silent:
        a, b = ts(f["start_time"]), ts(f["end_time"])
        assert cells[f["cell_id"]] == f["site_id"] and not f["alarm_ids"]
        assert not [r for r in outage_alarms if a - 1200 <= ts(r["event_time"]) <= b + 1200
                    and (r.get("cell_id") == f["cell_id"] or r.get("site_id") == f["site_id"])]
        inside = [k for k in kpis if k["cell_id"] == f["cell_id"]
                  and a <= ts(k["period_start"]) and ts(k["period_start"]) + 900 <= b]
        assert inside, "a silent failure keeps reporting KPIs"
        if f["kind"] == "sleeping":
            assert all(k["call_attempts"] == 0 and k["active_users"] == 0
                       and k["rrc_success_rate"] < 0.9 for k in inside)
            impacts = [i for i in truth["truth_impact"] if i["outage_id"] == f["failure_id"]]
            assert impacts and all(i["kind"] == "sleeping" for i in impacts)
        else:
            assert 0.08 <= f["peak_drop_rate"] <= 0.2 and 0 < f["ramp_s"] < f["duration_s"]
            early, late = inside[0], inside[-1]
            assert late["rrc_success_rate"] < early["rrc_success_rate"] + 0.01


def test_slow_degradation_ramps_the_drop_rate() -> None:
    from forewarn.simulator.network import Degradation
    d = Degradation("C", 1000, 1000 + 7200, 0.15, ramp_s=3600, failure_id="SIL0001")
    rates = [d.rate_at(t) for t in range(1000, 1000 + 7200, 600)]
    assert rates == sorted(rates) and rates[0] == 0.01 and rates[-1] == 0.15


def test_drop_bursts_chain_drops_within_30_minutes() -> None:
    from forewarn.simulator.customers import _bursts
    from forewarn.simulator.traffic import DroppedCall

    def drop(end: int) -> DroppedCall:
        return DroppedCall(f"C{end}", "CELL0001-1", end - 60, end, 41, None, False)

    chains = _bursts([drop(0), drop(1000), drop(2800), drop(10000), drop(20000), drop(21800)])
    assert [[d.end for d in c] for c in chains] == [[0, 1000, 2800], [20000, 21800]]


def test_observed_position_in_truth_matches_the_lines(parsed: list[dict | None],
                                                      truth: dict[str, list[dict]]) -> None:
    seen: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for r in parsed:
        if r and r["type"] == "location":
            seen[r["subscriber_id"]].append((ts(r["event_time"]), r["cell_id"]))
        elif r and r["type"] == "call":
            seen[r["subscriber_id"]].append((ts(r["end_time"]), r["cell_id"]))
    for i in truth["truth_impact"]:
        start = ts(i["start_time"])
        before = [(t, c) for t, c in seen[i["subscriber_id"]] if t <= start]
        if not before:
            assert i["observed_cell_at_start"] is None
            continue
        t, cell = before[-1]
        assert (i["observed_cell_at_start"], i["observed_age_s"]) == (cell, start - t)


def test_complaint_records_match_the_truth(parsed: list[dict | None],
                                           truth: dict[str, list[dict]]) -> None:
    records = {r["complaint_id"]: r for r in parsed if r and r["type"] == "complaint"}
    truths = {c["complaint_id"]: c for c in truth["truth_complaint"]}
    assert records.keys() == truths.keys()
    for cid, r in records.items():
        t = truths[cid]
        assert (r["subscriber_id"], r["event_time"], r["category"]) == (
            t["subscriber_id"], t["complaint_time"], t["category"])
    linked = [x for x in truth["truth_impact"] + truth["truth_drop_burst"] if x["complaint_id"]]
    for x in linked:
        assert records[x["complaint_id"]]["event_time"] == x["complaint_time"]
        assert x["known"] and x["segment"] is not None
    causes = Counter(t["cause"] for t in truths.values())
    assert causes["outage"] == sum(1 for i in truth["truth_impact"] if i["complaint_id"])
    assert causes["drop_burst"] == sum(1 for b in truth["truth_drop_burst"] if b["complaint_id"])


def test_roamers_and_deleted_subscribers_never_complain(parsed: list[dict | None],
                                                        truth: dict[str, list[dict]]) -> None:
    profiles = {r["subscriber_id"] for r in parsed if r and r["type"] == "subscriber"}
    deleted = {r["subscriber_id"] for r in parsed
               if r and r["type"] == "subscriber" and r["op"] == "delete"}
    active = {r["subscriber_id"] for r in parsed if r and r["type"] in ("location", "call")}
    assert active - profiles, "expected some inbound roamers"
    for c in truth["truth_complaint"]:
        assert c["subscriber_id"] in profiles - deleted


def test_kpis_count_the_simulated_calls(parsed: list[dict | None]) -> None:
    drops: Counter = Counter()
    starts: Counter = Counter()
    for r in parsed:
        if r and r["type"] == "call":
            starts[(r["cell_id"], (ts(r["start_time"]) // 900) * 900)] += 1
            if r["dropped"]:
                drops[(r["cell_id"], (ts(r["end_time"]) // 900) * 900)] += 1
    kpis = [r for r in parsed if r and r["type"] == "kpi"]
    assert kpis
    for k in kpis:
        key = (k["cell_id"], ts(k["period_start"]))
        assert k["period_s"] == 900
        assert k["dropped_calls"] == drops[key]
        assert k["call_attempts"] >= starts[key]
        assert 0 <= k["rrc_success_rate"] <= 1


def test_bad_lines_are_counted_and_really_bad(scenario: Scenario, truth: dict[str, list[dict]],
                                              cells: dict[str, str]) -> None:
    bad = truth["truth_bad_line"]
    assert scenario.stats["bad_lines_total"] == len(bad) == sum(
        scenario.stats["bad_lines"].values())
    assert all(n >= 1 for n in scenario.stats["bad_lines"].values())
    for b in bad:
        line = scenario.lines[b["line"]]
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            assert b["kind"] in {"not_json", "truncated_json", "empty_line"}
            continue
        assert contract_problem(record, set(cells)) is not None, (b, line)


def test_long_outage_in_a_six_hour_scenario() -> None:
    sc = simulate(ScenarioConfig(seed=5, sites=20, hours=6.0, subscribers_per_cell=1))
    assert sc.stats["outages_over_4h"] >= 1


def test_write_scenario_and_cli(tmp_path, scenario: Scenario, capsys) -> None:
    write_scenario(scenario, tmp_path / "a" / "events.jsonl", tmp_path / "a" / "truth.jsonl")
    assert (tmp_path / "a" / "events.jsonl").read_bytes() == b"".join(
        line + b"\n" for line in scenario.lines)

    parser = argparse.ArgumentParser()
    simulator_cli.register(parser.add_subparsers())
    out = tmp_path / "b" / "events.jsonl"
    args = parser.parse_args(["simulate", "--out", str(out), "--seed", "5", "--sites", "30",
                              "--hours", "3", "--subscribers-per-cell", "20"])
    assert args.func(args) == 0
    assert out.read_bytes() == (tmp_path / "a" / "events.jsonl").read_bytes()
    assert (tmp_path / "b" / "truth.jsonl").read_bytes() == (
        tmp_path / "a" / "truth.jsonl").read_bytes()
    assert "simulate:" in capsys.readouterr().err

    # --bootstrap publishes (tests/test_kafka_flow.py); a bad client setting is named
    args = parser.parse_args(["simulate", "--bootstrap", "localhost:9092", "-X", "linger.ms"])
    assert args.func(args) == 2
    assert "-X linger.ms: expected key=value" in capsys.readouterr().err


# ---- a storm: a regional power cut -------------------------------------------------------


def test_a_storm_takes_most_of_a_region_down_within_minutes_and_restores_it_over_hours(
) -> None:
    cfg = ScenarioConfig(seed=13, sites=60, hours=8.0, subscribers_per_cell=4,
                         storm_region="north", storm_start="2026-11-23T09:00:00Z")
    sc = simulate(cfg)
    assert sc.lines == simulate(cfg).lines  # deterministic by seed
    truth = [t for t in sc.truth if t["type"] == "truth_storm"]
    assert len(truth) == 1
    storm = truth[0]
    outages = {t["outage_id"]: t for t in sc.truth if t["type"] == "truth_outage"}
    hit = [outages[o] for o in storm["outage_ids"]]
    region = {r["site_id"] for line in sc.lines if b'"type":"cell"' in line
              and (r := orjson.loads(line)).get("region") == "north"}
    assert {t["site_id"] for t in hit} == set(storm["site_ids"]) <= region
    assert len(hit) >= 0.5 * len(region)  # 70 % asked, less any site already down then
    t0 = datetime.fromisoformat("2026-11-23T09:00:00+00:00").timestamp()
    for t in hit:
        start = datetime.fromisoformat(t["start_time"]).timestamp()
        assert t["kind"] == "storm" and t["scope"] == "site"
        assert t["probable_cause"] == "powerProblem" and len(t["alarm_ids"]) == 1
        assert 0 <= start - t0 <= 900 + 60  # within 15 min of the storm's start
        assert 5400 <= t["duration_s"] <= 18000 or t["end_time"] >= "2026-11-23T13:50:00Z"
    ends = sorted(t["end_time"] for t in hit)
    assert ends[0] < ends[-1]  # restored one by one, not all at once
    # the rest of the plan is the scenario's without a storm
    calm = simulate(ScenarioConfig(seed=13, sites=60, hours=8.0, subscribers_per_cell=4))
    shape = lambda ts: sorted((t["site_id"], t["start_time"], t["end_time"], t["kind"])  # noqa: E731
                              for t in ts if t["type"] == "truth_outage" and t["kind"] != "storm")
    assert shape(sc.truth) == shape(calm.truth)
    assert not [t for t in calm.truth if t["type"] == "truth_storm"]


def test_a_storm_in_a_region_without_sites_is_refused_with_the_regions_there_are() -> None:
    with pytest.raises(ValueError, match="regions: "):
        simulate(ScenarioConfig(seed=13, sites=3, hours=3.0, subscribers_per_cell=1,
                                storm_region="nowhere"))


def test_truth_says_where_each_subscriber_lives_and_works(
        scenario: Scenario, truth: dict[str, list[dict]], cells: dict[str, str]) -> None:
    """``truth_subscriber``: one per subscriber, home and work on cells of the topology, the
    work site ``null`` exactly when there is no work cell; ``truth_stats`` stays last."""
    subs = truth["truth_subscriber"]
    assert [s["subscriber_id"] for s in subs] == sorted({s["subscriber_id"] for s in subs})
    assert len(subs) == scenario.stats["subscribers"]
    for s in subs:
        assert cells[s["home_cell"]] == s["home_site"]
        if s["work_cell"] is None:
            assert s["work_site"] is None
        else:
            assert cells[s["work_cell"]] == s["work_site"] and s["work_cell"] != s["home_cell"]
    assert 0.2 < sum(s["work_site"] is not None for s in subs) / len(subs) < 0.6
    assert scenario.truth[-1]["type"] == "truth_stats"
