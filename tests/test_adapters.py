"""Operators' alarm feeds (VES 7.x fault events, TMF642 alarm notifications): the same
network told through them gives the same incidents and actions as told in the contract's
own ``alarm`` records; what cannot be mapped is a dead letter with its code; the mapping
tables are checked with file:line."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from functools import cache
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forewarn.adapters import translate, ves_alarm_id
from forewarn.cli import main
from forewarn.codec import Expanded, decode, fmt_time
from forewarn.model import Alarm, DeadLetter
from forewarn.rules.rulebook import (
    DEFAULT_DIR,
    Rulebook,
    RulebookError,
    load_rulebook,
    parse_rulebook,
)
from forewarn.runner import run_collect
from forewarn.simulator import ScenarioConfig, simulate
from tests.builders import Scenario, comparable, ts

DEFAULT_TEXT = (DEFAULT_DIR / "rulebook.yaml").read_text(encoding="utf-8")
#: The default rulebook with naming rules for the simulator's and the builders' names
#: (CELL0001-1 and SITE0001; S1-C1 and S1).
NAMING = """    - match: '(?P<cell>CELL\\d+-\\d+|S\\d+-C\\d+)'
    - match: '(?P<site>SITE\\d+|S\\d+)'
"""
DEFAULT_NAMING = "    - match: '(?P<cell>.+)' # otherwise: the name is a cell id of the topology\n"
PROBLEM = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<key>\S+): (?P<what>.+)$")


def rulebook_text(naming: str = NAMING, extra: tuple[tuple[str, str], ...] = ()) -> str:
    assert DEFAULT_TEXT.count(DEFAULT_NAMING) == 1
    text = DEFAULT_TEXT.replace(DEFAULT_NAMING, naming)
    for old, new in extra:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


@cache
def book() -> Rulebook:
    return parse_rulebook(rulebook_text(), Path("adapters-test/rulebook.yaml"))


# ---- the contract's alarms told as VES and TMF642 --------------------------------------

VES_SEVERITY = {"critical": "CRITICAL", "major": "MAJOR", "minor": "MINOR",
                "warning": "WARNING", "indeterminate": "WARNING", "cleared": "NORMAL"}


def ves_event(name: str, condition: str, severity: str, at: float, *,
              problem: str | None = None, domain: str = "fault", seq: int = 0,
              interface: str | None = None) -> dict:
    """A VES 7.1 event (commonEventHeader + faultFields, as ONAP's collector passes it on)."""
    micros = int(round(at * 1e6))
    fields = {"faultFieldsVersion": "4.0", "alarmCondition": condition,
              "eventSeverity": severity, "eventSourceType": "gNB",
              "specificProblem": problem or condition, "vfStatus": "Active",
              "eventCategory": "equipment",
              "alarmAdditionalInformation": {"vendor": "acme"}}
    if interface:
        fields["alarmInterfaceA"] = interface
    return {"commonEventHeader": {
        "domain": domain, "eventId": f"fault-{name}-{condition}-{seq}",
        "eventName": f"Fault_gNB-Acme_{condition}", "eventType": "Fault",
        "sourceName": name, "reportingEntityName": "ems-1", "priority": "High",
        "sequence": seq, "startEpochMicrosec": micros, "lastEpochMicrosec": micros,
        "version": "4.1", "vesEventListenerVersion": "7.1.1", "nfVendorName": "Acme",
        "timeZoneOffset": "UTC+00:00"}, "faultFields": fields}


def to_ves(line: bytes, ids: dict[str, str]) -> bytes:
    """A contract alarm as a VES fault event (other lines as they are); ``ids`` learns
    which VES alarm id each contract alarm id became."""
    rec = decode(line, "t")
    if type(rec) is not Alarm:
        return line
    name = rec.cell_id or rec.site_id
    assert name is not None
    ids[rec.alarm_id] = ves_alarm_id(name, rec.probable_cause)
    return orjson.dumps({"event": ves_event(name, rec.probable_cause,
                                            VES_SEVERITY[rec.severity], rec.event_time,
                                            problem=rec.specific_problem)})


def to_tmf642(line: bytes, raised: set[str]) -> bytes:
    """A contract alarm as a TMF642 notification: create, attribute change (a repeat of
    an open alarm) or clear."""
    rec = decode(line, "t")
    if type(rec) is not Alarm:
        return line
    at = fmt_time(rec.event_time)
    alarm: dict = {"id": rec.alarm_id, "href": f"/alarmManagement/v4/alarm/{rec.alarm_id}",
                   "alarmType": rec.alarm_type or "equipmentAlarm",
                   "probableCause": rec.probable_cause, "sourceSystemId": "oss-1",
                   "alarmedObject": {"id": rec.cell_id or rec.site_id,
                                     "@referredType": "ManagedElement"},
                   "@type": "Alarm"}
    if rec.specific_problem:
        alarm["specificProblem"] = rec.specific_problem
    if rec.cleared:
        kind = "ClearAlarmEvent"
        alarm.update(perceivedSeverity="cleared", state="cleared", alarmClearedTime=at)
        raised.discard(rec.alarm_id)
    elif rec.alarm_id in raised:
        kind = "AlarmAttributeValueChangeEvent"
        alarm.update(perceivedSeverity=rec.severity, state="updated", alarmChangedTime=at)
    else:
        kind = "AlarmCreateEvent"
        alarm.update(perceivedSeverity=rec.severity, state="raised", alarmRaisedTime=at)
        raised.add(rec.alarm_id)
    return orjson.dumps({"eventId": f"ev-{rec.alarm_id}-{kind}", "eventTime": at,
                         "eventType": kind, "event": {"alarm": alarm}})


def normalised(lines: list[bytes], ids: dict[str, str] | None = None) -> list[bytes]:
    """Outputs comparable across feeds: model evidence left out, alarm evidence under the
    feed's ids, each alarm once (a VES alarm's occurrences share one id)."""
    out = []
    for line in lines:
        rec = orjson.loads(comparable(line) if b'"action_id"' in line else line)
        evidence = [("alarm:" + (ids or {}).get(e[6:], e[6:])) if e.startswith("alarm:")
                    else e for e in rec["evidence"]]
        rec["evidence"] = list(dict.fromkeys(evidence))
        out.append(orjson.dumps(rec, option=orjson.OPT_SORT_KEYS))
    return sorted(out)


def codes(dead: list[bytes]) -> Counter:
    return Counter(orjson.loads(d)["code"] for d in dead)


def outage_scenario() -> Scenario:
    """A cell outage past the hold-down, a blip under it, a whole-site outage on another
    site, a repeated raise and a noise alarm, around people who will be told."""
    sc = Scenario().site("S1").site("S2", cells=2)
    for i in range(1, 4):
        sc.subscriber(f"U{i}")
    sc.subscriber("V1", segment="vip", preferred=["sms"])
    sc.seen("U1", "S1-C1", 1).seen("U2", "S1-C2", 2).seen("U3", "S2-C1", 3)
    sc.seen("V1", "S2-C2", 4)
    sc.alarm("A1", 10, cell="S1-C1", cause="lossOfSignal")
    sc.alarm("A1", 11, cell="S1-C1", cause="lossOfSignal")  # repeated before its clear
    sc.alarm("N1", 12, cell="S1-C2", severity="warning", cause="highTemperature")
    sc.alarm("B1", 20, cell="S1-C2", cause="powerProblem")
    sc.clear("B1", 20.5, cell="S1-C2", cause="powerProblem")  # under the hold-down
    sc.alarm("P1", 30, site="S2", cause="powerProblem")
    sc.tick(40)
    sc.clear("A1", 50, cell="S1-C1", cause="lossOfSignal")
    sc.clear("P1", 300, site="S2", cause="powerProblem")
    sc.tick(301).tick(320)
    return sc


def run(lines: list[bytes], rulebook: Rulebook | None = None):
    head = orjson.dumps({"type": "cell", "cell_id": "FAR-C1", "site_id": "FAR"})
    return run_collect([head, *lines], rulebook or book())


# ---- the same outputs ------------------------------------------------------------------------


def test_ves_gives_the_same_incidents_and_actions_as_contract_alarms():
    lines = outage_scenario().lines
    ids: dict[str, str] = {}
    ves = [to_ves(line, ids) for line in lines]
    assert sum(line.startswith(b'{"event"') for line in ves) == 8
    want, got = run(lines), run(ves)
    assert want.actions and {orjson.loads(a)["kind"] for a in want.actions} >= {
        "outage_notice", "restored_notice"}
    assert normalised(got.actions) == normalised(want.actions, ids)
    assert normalised(got.incidents) == normalised(want.incidents, ids)
    assert got.dead_letters == want.dead_letters == []
    # the action ids do not depend on alarm ids: the very same ones
    assert sorted(orjson.loads(a)["action_id"] for a in got.actions) == \
        sorted(orjson.loads(a)["action_id"] for a in want.actions)


def test_tmf642_gives_the_same_incidents_and_actions_as_contract_alarms():
    lines = outage_scenario().lines
    raised: set[str] = set()
    tmf = [to_tmf642(line, raised) for line in lines]
    want, got = run(lines), run(tmf)
    assert got.dead_letters == []
    assert normalised(got.actions) == normalised(want.actions)
    assert normalised(got.incidents) == normalised(want.incidents)


@cache
def small_network() -> list[bytes]:
    return simulate(ScenarioConfig(seed=3, sites=40, hours=6.0, subscribers_per_cell=20)).lines


@pytest.mark.parametrize("feed", ["ves", "tmf642"])
def test_a_simulated_network_through_each_feed(feed):
    """The simulator's alarms (outages, site power, flapping, noise, defective lines)
    through VES or TMF642: the same incidents and actions; dead letters by the same codes
    (the simulator's defective lines are not alarms of a feed: they stay as they are)."""
    lines = small_network()
    ids: dict[str, str] = {}
    raised: set[str] = set()
    told = [to_ves(x, ids) if feed == "ves" else to_tmf642(x, raised) for x in lines]
    assert sum(a != b for a, b in zip(lines, told, strict=True)) > 40
    want, got = run_collect(lines, book()), run_collect(told, book())
    assert len(want.actions) > 50 and len(want.incidents) > 10
    assert normalised(got.actions) == normalised(want.actions, ids)
    assert normalised(got.incidents) == normalised(want.incidents, ids)
    assert codes(got.dead_letters) == codes(want.dead_letters)


def test_a_ves_batch_is_its_events():
    """One ``eventList`` line stands for each of its events; a bad event in it is a dead
    letter of its own (its raw: that event), the others go on."""
    sc = outage_scenario()
    ids: dict[str, str] = {}
    ves = [to_ves(line, ids) for line in sc.lines]
    # the blip's raise and clear in one batch, with a bad event between them
    i = next(i for i, x in enumerate(sc.lines) if b'"alarm_id":"B1"' in x)
    j = i + 1
    bad = ves_event("S1-C3", "lossOfSignal", "MAJOR", 0)
    del bad["commonEventHeader"]["lastEpochMicrosec"]
    batch = orjson.dumps({"eventList": [orjson.loads(ves[i])["event"], bad,
                                        orjson.loads(ves[j])["event"]]})
    got = run([*ves[:i], batch, *ves[i + 1:j], *ves[j + 1:]])
    want = run(ves)
    assert normalised(got.actions) == normalised(want.actions)
    assert normalised(got.incidents) == normalised(want.incidents)
    [dead] = [orjson.loads(d) for d in got.dead_letters]
    assert dead["code"] == "missing_field"
    assert dead["reason"].startswith("ves.eventList[1].commonEventHeader.lastEpochMicrosec")
    assert orjson.loads(dead["raw"]) == bad


# ---- bad input ---------------------------------------------------------------------------


def at(minutes: float) -> float:
    from forewarn.codec import parse_time

    return parse_time(ts(minutes))


def ves_line(name: str, condition: str, severity: str, minutes: float, **kw) -> bytes:
    return orjson.dumps({"event": ves_event(name, condition, severity, at(minutes), **kw)})


BAD_VES = {
    "unknown_source": ves_line("enb-lab-7", "lossOfSignal", "CRITICAL", 13),
    "unknown_condition": ves_line("S1-C3", "fanSpeedLow", "MAJOR", 13),
    "missing_field": orjson.dumps({"event": {
        "commonEventHeader": {k: v for k, v in ves_event("S1-C3", "LOS", "MAJOR", 0)[
            "commonEventHeader"].items() if not k.endswith("EpochMicrosec")},
        "faultFields": ves_event("S1-C3", "LOS", "MAJOR", 0)["faultFields"]}}),
    "clear_without_raise": ves_line("S1-C3", "LOS", "NORMAL", 14),
    "unsupported_event": ves_line("S1-C3", "LOS", "MAJOR", 14, domain="heartbeat"),
    "bad_enum": ves_line("S1-C3", "LOS", "SEVERE", 14),
    "bad_time": orjson.dumps({"event": ves_event("S1-C3", "LOS", "MAJOR", -5.0)}),
}
BAD_TMF = {
    "unknown_source": {"alarmedObject": {"id": "lab-bench-4"}},
    "unknown_condition": {"probableCause": "fanSpeedLow", "specificProblem": "fan slow"},
    "missing_field": {"alarmRaisedTime": None},
    "bad_time": {"alarmRaisedTime": "yesterday"},
    "bad_enum": {"perceivedSeverity": "SEVERE"},
}


def tmf_line(minutes: float, kind: str = "AlarmCreateEvent", **alarm) -> bytes:
    base = {"id": "T9", "alarmType": "equipmentAlarm", "perceivedSeverity": "MAJOR",
            "probableCause": "LOS", "alarmedObject": {"id": "S1-C3"},
            "alarmRaisedTime": ts(minutes), "state": "raised", "sourceSystemId": "oss-1"}
    base.update(alarm)
    return orjson.dumps({"eventType": kind, "eventTime": ts(minutes),
                         "event": {"alarm": {k: v for k, v in base.items() if v is not None}}})


def test_unmappable_feed_events_are_dead_letters_and_the_rest_goes_on():
    """Each event that cannot be mapped is a dead letter with its code and its raw
    payload; the good events around them give what they give without them."""
    ids: dict[str, str] = {}
    good = [to_ves(line, ids) for line in outage_scenario().lines]
    bad = [*BAD_VES.values(), *(tmf_line(15, **v) for v in BAD_TMF.values()),
           tmf_line(16, "ClearAlarmEvent", id="T404", perceivedSeverity="cleared",
                    alarmClearedTime=ts(16)),
           tmf_line(16, "AlarmDeleteEvent"),
           orjson.dumps({"eventList": []}), orjson.dumps({"eventList": [7]})]
    # the bad ones (minutes 13 to 16) go in among the good ones, in time order
    k = 1 + next(i for i, x in enumerate(good) if b"highTemperature" in x)
    got = run([*good[:k], *bad, *good[k:]])
    want = run(good)
    assert normalised(got.actions) == normalised(want.actions)
    assert normalised(got.incidents) == normalised(want.incidents)
    dead = [orjson.loads(d) for d in got.dead_letters]
    want_codes = Counter({code: 1 for code in BAD_VES}) + Counter(
        {code: 1 for code in BAD_TMF}) + Counter(
        {"clear_without_raise": 1, "unsupported_event": 1, "bad_type": 1, "not_object": 1})
    assert Counter(d["code"] for d in dead) == want_codes
    raws = {d["raw"].encode() for d in dead}
    assert set(BAD_VES.values()) <= raws  # the raw payload, as it came
    for d in dead:
        assert d["reason"] and "Traceback" not in d["reason"]


def test_no_adapters_section_makes_feed_events_dead_letters(tmp_path):
    text = DEFAULT_TEXT[:DEFAULT_TEXT.index("# Operators' alarm feeds")] + \
        DEFAULT_TEXT[DEFAULT_TEXT.index("rules:\n  - id: outage-notice"):]
    plain = parse_rulebook(text, tmp_path / "rulebook.yaml")
    assert plain.adapters is None
    got = run([ves_line("S1-C1", "LOS", "MAJOR", 1), tmf_line(2)], plain)
    dead = [orjson.loads(d) for d in got.dead_letters]
    assert [d["code"] for d in dead] == ["no_adapter", "no_adapter"]
    assert "docs/adapters.md" in dead[0]["reason"]


def test_repeated_raise_is_one_alarm_and_a_raise_after_the_clear_the_next_one():
    sc = Scenario().site("S1").subscriber("U1").seen("U1", "S1-C1", 1)
    lines = [*sc.lines,
             ves_line("S1-C1", "LOS", "MINOR", 5),      # not an outage yet
             ves_line("S1-C1", "LOS", "CRITICAL", 6),   # escalates: the outage opens
             ves_line("S1-C1", "LOS", "CRITICAL", 7),   # repeated: the same alarm
             ves_line("S1-C1", "LOS", "NORMAL", 20),    # clears it
             ves_line("S1-C1", "LOS", "NORMAL", 21),    # again: nothing is open
             ves_line("S1-C1", "LOS", "MAJOR", 40),     # the next occurrence
             ves_line("S1-C1", "LOS", "NORMAL", 60)]
    got = run([*lines, orjson.dumps({"type": "location", "subscriber_id": "Z",
                                     "cell_id": "FAR-C1", "event_time": ts(70)})])
    incidents = [orjson.loads(i) for i in got.incidents]
    opened = sorted({(i["incident_id"], i["start_time"]) for i in incidents})
    assert [start for _, start in opened] == [ts(6), ts(40)]
    assert all(i["evidence"] == ["alarm:ves:S1-C1|LOS"] for i in incidents)
    assert [orjson.loads(d)["code"] for d in got.dead_letters] == ["clear_without_raise"]
    kinds = Counter(orjson.loads(a)["kind"] for a in got.actions)
    assert kinds == {"outage_notice": 2, "restored_notice": 2}


def test_naming_rules_with_templates_and_interface():
    text = rulebook_text(
        naming="    - {match: '(?P<site>[A-Z]{3}\\d{2})/sector-(?P<n>\\d)', cell: '{site}-C{n}'}\n"
               "    - {match: '(?P<site>[A-Z]{3}\\d{2})'}\n",
        extra=(("    object: [sourceName]    #", "    object: [alarmInterfaceA, sourceName] #"),))
    rb = parse_rulebook(text, Path("r.yaml"))
    sc = Scenario().site("ABC01", cells=2).subscriber("U1").seen("U1", "ABC01-C2", 1)
    sc.subscriber("U2").seen("U2", "ABC01-C1", 2)
    lines = [*sc.lines,
             ves_line("ABC01", "LOS", "MAJOR", 5, interface="ABC01/sector-2"),
             ves_line("ABC01", "LOS", "MAJOR", 6, interface="ABC01/sector-1"),
             ves_line("ABC01", "LOS", "NORMAL", 30, interface="ABC01/sector-2"),
             ves_line("ABC01", "LOS", "NORMAL", 31, interface="ABC01/sector-1"),
             ves_line("ABC01", "powerFail", "CRITICAL", 40, interface="rectifier-1"),
             ves_line("ABC01", "powerFail", "NORMAL", 50, interface="rectifier-1")]
    got = run([*lines, orjson.dumps({"type": "location", "subscriber_id": "Z",
                                     "cell_id": "FAR-C1", "event_time": ts(60)})], rb)
    assert got.dead_letters == []
    incidents = [orjson.loads(i) for i in got.incidents]
    first = [i for i in incidents if i["start_time"] == ts(5)]
    assert first and first[-1]["cell_ids"] == ["ABC01-C1", "ABC01-C2"]
    assert set(first[-1]["evidence"]) == {"alarm:ves:ABC01|ABC01/sector-2|LOS",
                                          "alarm:ves:ABC01|ABC01/sector-1|LOS"}
    site_wide = [i for i in incidents if i["start_time"] == ts(40)]  # rectifier-1: no cell
    assert site_wide and site_wide[-1]["scope"] == "site"


# ---- the mapping tables in the rulebook ------------------------------------------------------


def problems(tmp_path: Path, text: str) -> list[re.Match]:
    d = tmp_path / "rb"
    d.mkdir(exist_ok=True)
    (d / "rulebook.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(RulebookError) as exc:
        load_rulebook(d)
    out = []
    for p in exc.value.problems:
        m = PROBLEM.match(p)
        assert m, p
        out.append(m)
    return out


def line_of(text: str, needle: str) -> int:
    return text[:text.index(needle)].count("\n") + 1


BAD_TABLES = [
    ("    - match: '(?P<cell>(CELL|ABC)+'\n", "adapters.naming[0].match",
     "not a valid regular expression"),
    ("    - match: '(?P<cell>(\\w+-?)+)'\n", "adapters.naming[0].match",
     "a repetition inside a repetition"),
    ("    - match: '(?P<cell>(CELL|CELL-)+)'\n", "adapters.naming[0].match",
     "an alternation inside a repetition"),
    ("    - match: '(?P<cell>\\w*-\\w*-\\w*-\\w+)'\n", "adapters.naming[0].match",
     "more than 3 unbounded repetitions"),
    ("    - match: '(?P<x>\\w+)'\n", "adapters.naming[0].match", "named group"),
    ("    - {match: '(?P<x>\\w+)', cell: '{x}-{y}'}\n", "adapters.naming[0].cell",
     "{y} are not named groups"),
    ("    - {match: '(?P<x>\\w+)', site: '{x!r}'}\n", "adapters.naming[0].site",
     "only plain {group}"),
    ("    - {match: '(?P<cell>\\w+)', area: north}\n", "adapters.naming[0].area",
     "unknown key"),
]


@pytest.mark.parametrize(("naming", "key", "what"), BAD_TABLES)
def test_bad_naming_rules_are_named_with_file_and_line(tmp_path, naming, key, what):
    text = rulebook_text(naming=naming)
    [p] = problems(tmp_path, text)
    assert p["key"] == key and what in p["what"], p.group(0)
    assert int(p["line"]) == line_of(text, naming.strip()[:12])
    assert p["file"].endswith("rulebook.yaml")


@pytest.mark.parametrize(("old", "new", "key", "what"), [
    ("      LOS: lossOfSignal\n", "      LOS: [lossOfSignal]\n", "adapters.ves.causes.LOS",
     "expected a probable cause"),
    ("    object: [sourceName]    #", "    object: [sourceNam]    #", "adapters.ves.object",
     "expected among sourceName"),
    ("    unmapped: dead_letter   #", "    unmapped: drop   #", "adapters.ves.unmapped",
     "expected one of dead_letter, keep"),
    ("    object: [alarmedObject.id]", "    objects: [alarmedObject.id]",
     "adapters.tmf642.objects", "unknown key"),
    ("    causes: *causes", "    causes: {}", "adapters.tmf642.causes", "expected a mapping"),
])
def test_bad_feed_tables_are_named_with_file_and_line(tmp_path, old, new, key, what):
    text = rulebook_text(extra=((old, new),))
    found = problems(tmp_path, text)
    assert any(p["key"] == key and what in p["what"]
               and int(p["line"]) == line_of(text, new.strip()) for p in found), found


def test_rules_check_names_each_problem(tmp_path, capsys):
    text = rulebook_text(naming="    - match: '(?P<cell>(a+)+)'\n",
                         extra=(("      LOS: lossOfSignal\n", "      LOS: 7\n"),))
    d = tmp_path / "rb"
    d.mkdir()
    (d / "rulebook.yaml").write_text(text)
    assert main(["rules", "check", str(d)]) == 1
    err = capsys.readouterr().err
    assert f"rulebook.yaml:{line_of(text, '(a+)+')}: adapters.naming[0].match:" in err
    assert f"rulebook.yaml:{line_of(text, 'LOS: 7')}: adapters.ves.causes.LOS:" in err
    # the tmf642 table is the same YAML node (an alias): its problem is told there too
    assert "3 problem(s)" in err and "Traceback" not in err


# ---- file mode --------------------------------------------------------------------------------


def test_forewarn_run_reads_ves_and_tmf642_files_beside_contract_files(tmp_path):
    """`forewarn run --input ves.jsonl tmf.jsonl other.jsonl`: the feeds' files merge by
    their events' times with the contract's records."""
    lines = outage_scenario().lines
    head = orjson.dumps({"type": "cell", "cell_id": "FAR-C1", "site_id": "FAR"})
    ids: dict[str, str] = {}
    raised: set[str] = set()
    alarms = [x for x in lines if b'"type":"alarm"' in x]
    on_s2 = [x for x in alarms if b'"site_id":"S2"' in x]
    others = [head, *(x for x in lines if x not in alarms)]
    (tmp_path / "ves.jsonl").write_bytes(b"".join(
        to_ves(x, ids) + b"\n" for x in alarms if x not in on_s2))
    (tmp_path / "tmf.jsonl").write_bytes(b"".join(to_tmf642(x, raised) + b"\n" for x in on_s2))
    (tmp_path / "other.jsonl").write_bytes(b"".join(x + b"\n" for x in others))
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "rulebook.yaml").write_text(rulebook_text())
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "forewarn.cli", "run", "--input", str(tmp_path / "ves.jsonl"),
         str(tmp_path / "tmf.jsonl"), str(tmp_path / "other.jsonl"), "--out", str(out),
         "--rules", str(rules), "--metrics-port", "-1", "--log-level", "ERROR"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    want = run(lines)
    got_actions = (out / "actions.jsonl").read_bytes().splitlines()
    got_incidents = (out / "incidents.jsonl").read_bytes().splitlines()
    assert (out / "dead_letters.jsonl").read_bytes() == b""
    assert normalised(got_actions) == normalised(want.actions, ids)
    assert normalised(got_incidents) == normalised(want.incidents, ids)


# ---- hostile feed events ---------------------------------------------------------------------



_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1),
                     st.floats(allow_nan=False, allow_infinity=False),
                     st.sampled_from(["", "S1-C1", "SITE1", "CRITICAL", "NORMAL", "fault", "LOS",
                                      "cleared", "ClearAlarmEvent", "AlarmCreateEvent",
                                      "2026-11-23T10:00:00Z", "x" * 300, "S1/sector-9"]))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
_VES_KEYS = ["domain", "sourceName", "lastEpochMicrosec", "alarmInterfaceA", "sourceId"]
_FAULT_KEYS = ["alarmCondition", "eventSeverity", "specificProblem", "alarmInterfaceA"]
_TMF_KEYS = ["id", "perceivedSeverity", "probableCause", "specificProblem", "alarmedObject",
             "alarmRaisedTime", "alarmClearedTime", "alarmChangedTime", "state", "alarmType"]


def _partial(keys: list[str]):
    return st.dictionaries(st.sampled_from(keys), _values, max_size=len(keys))


_ves_events = st.fixed_dictionaries({"commonEventHeader": _partial(_VES_KEYS) | _values,
                                     "faultFields": _partial(_FAULT_KEYS) | _values})
_feed_events = st.one_of(
    st.builds(lambda e: {"event": e}, _ves_events),
    st.builds(lambda es: {"eventList": es}, st.lists(_ves_events | _values, max_size=4) | _values),
    st.builds(lambda t, a, when: {"eventType": t, "eventTime": when, "event": {"alarm": a}},
              st.sampled_from(["AlarmCreateEvent", "ClearAlarmEvent", "AlarmDeleteEvent",
                               "AlarmAttributeValueChangeEvent", "x"]),
              _partial(_TMF_KEYS) | _values, _values))


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(_feed_events)
def test_any_feed_event_is_an_alarm_or_dead_letters_never_an_exception(obj):
    raw = orjson.dumps(obj)
    naming = "    - {match: '(?P<site>S\\d+)(/sector-(?P<n>\\d))?', cell: '{site}-C{n}'}\n" + NAMING
    rb = _templated_book(naming)
    got = translate(obj, raw, "f", rb.adapters)
    items = [r for _, r in got] if type(got) is Expanded else [got]
    assert items and all(isinstance(r, Alarm | DeadLetter) for r in items)
    for r in items:
        if isinstance(r, DeadLetter):
            assert r.code != "invalid" and r.reason


@cache
def _templated_book(naming: str) -> Rulebook:
    return parse_rulebook(rulebook_text(naming=naming), Path("r.yaml"))


# ---- fixtures: whole events as the feeds send them -------------------------------------------

FIXTURES = Path(__file__).parent / "fixtures"


def test_fixture_events_decode_to_the_alarms_they_stand_for():
    """ONAP VES 7.1 fault events (every header and fault field, a batch with a clear) and
    TMF642 notifications (create, change, clear) as files hold them."""
    from forewarn.codec import decode_input

    ad = book().adapters
    got = []
    for name in ("ves-fault.jsonl", "tmf642-alarms.jsonl"):
        for line in (FIXTURES / name).read_bytes().splitlines():
            rec = decode_input(line, name, ad)
            got += [r for _, r in rec] if type(rec) is Expanded else [rec]
    assert [(a.alarm_id, a.cell_id, a.site_id, a.severity, a.probable_cause, fmt_time(a.at))
            for a in got] == [
        ("ves:CELL0001-1|RRU-1/port-2|LOS", "CELL0001-1", None, "critical", "lossOfSignal",
         "2026-11-23T10:15:00Z"),
        ("ves:SITE0002|powerFail", None, "SITE0002", "major", "powerProblem",
         "2026-11-23T10:17:00Z"),
        ("ves:CELL0001-1|RRU-1/port-2|LOS", "CELL0001-1", None, "cleared", "lossOfSignal",
         "2026-11-23T10:18:00Z"),
        ("ALM-9001", "CELL0003-2", None, "critical", "transmitterFailure",
         "2026-11-23T10:15:00Z"),
        ("ALM-9001", "CELL0003-2", None, "major", "transmitterFailure", "2026-11-23T10:16:00Z"),
        ("ALM-9001", "CELL0003-2", None, "cleared", "transmitterFailure",
         "2026-11-23T10:40:00Z"),
    ]
    assert {a.adapter for a in got} == {"ves", "tmf642"}
