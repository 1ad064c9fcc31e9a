"""`summary.json`: the contract's fields and the quality figures (forewarn/summary.py),
on hand-made truth with answers worked out by hand."""

from __future__ import annotations

from pathlib import Path

import orjson

from forewarn.cli import main
from forewarn.summary import anchor_accuracy, format_table, quality, read_jsonl
from tests.builders import Scenario, ts


def truth_line(**rec) -> bytes:
    return orjson.dumps(rec)


def impact(sub: str, complaint: float | None, *, lost=(0, 60), **extra) -> bytes:
    """Subscriber ``sub`` without service from minute lost[0] to lost[1] on S1-C1."""
    rec = dict(type="truth_impact", subscriber_id=sub, cell_id="S1-C1", lost_from=ts(lost[0]),
               lost_to=ts(lost[1]), complaint_time=None if complaint is None else ts(complaint),
               contactable=True, at_start=True, observed_cell_at_start="S1-C1",
               observed_age_s=600)
    rec.update(extra)
    return truth_line(**rec)


#: Nine cases, one line each; the expected figures below are worked out from them.
TRUTH = [
    impact("A", 40),                        # told at 10:02, would complain 10:40: a hit
    impact("I", 12),                        # told at 10:02, would complain 10:12: a hit
    impact("B", 30),                        # told at 10:35, after the complaint: a miss
    impact("C", 50, at_start=False),        # walked in later: a miss the rules cannot see
    impact("D", 45, planned=True),          # planned work: neither reachable nor a miss
    impact("E", 20, contactable=False),     # no consented channel: not reachable
    impact("F", None),                      # never complains: only precision and messages
    truth_line(type="truth_drop_burst", subscriber_id="G", cell_id="S2-C1",
               first_drop=ts(120), complaint_time=ts(170)),  # apology at 12:10: a hit
    truth_line(type="truth_cell_outage", cell_id="S1-C1", start_time=ts(0), end_time=ts(60)),
]


def action(sub: str, kind: str, minute: float) -> dict:
    return {"subscriber_id": sub, "kind": kind, "event_time": ts(minute)}


ACTIONS = [
    action("A", "outage_notice", 2), action("A", "restored_notice", 60),
    action("B", "outage_notice", 35),
    action("F", "outage_notice", 2),
    action("I", "outage_notice", 2),
    action("H", "outage_notice", 2),  # H was never without service: a false notice
    action("G", "apology", 130),
]


def test_quality_figures_on_a_hand_made_truth_file(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    path.write_bytes(b"\n".join(TRUTH) + b"\n")
    q = quality(ACTIONS, read_jsonl(path))
    assert q["would_be_complainers"] == 7  # A B C D E G I (F never complains)
    assert q["reachable_complainers"] == 5  # A B C G I: D planned, E unreachable
    assert q["planned_maintenance_complainers"] == 1
    assert q["recall_before_complaint"] == 0.6  # A G I of A B C G I
    assert q["recall_all"] == round(3 / 7, 4)
    assert q["missed_by_cause"] == {"observed_on_cell": 1, "entered_outage_area_later": 1}
    assert q["recall_knowable"] == 0.75  # C's miss is not the rules' to catch
    assert q["precision"] == 0.8 and q["outage_notices_checked"] == 5  # H's was false
    assert q["median_lead_s"] == 38 * 60  # leads: I 10 min, A 38 min, G 40 min
    assert q["messages_per_impacted"] == 1.25  # A 2, B 1, F 1, I 1


def test_quality_allows_a_notice_5_minutes_before_the_truths_start_not_more() -> None:
    truth = [orjson.loads(impact("A", 40)), orjson.loads(impact("B", 40))]
    q = quality([action("A", "outage_notice", -5), action("B", "outage_notice", -5.5)], truth)
    assert q["recall_before_complaint"] == 0.5
    assert q["precision"] == 0.0  # neither was without service yet at notice time


def test_area_notices_and_apologies_about_an_incident_count_and_are_checked() -> None:
    """Walk-ins (area notices) and restoration apologies reach complainers; each rule's
    precision and the false contacts are worked out by hand below."""
    truth = [orjson.loads(impact("W", 70, lost=(20, 90), site_id="S1", at_start=False)),
             orjson.loads(impact("R", 55, lost=(0, 30), site_id="S1")),
             orjson.loads(impact("X", None, lost=(0, 30), site_id="S2"))]
    inc = "INC-S1-20261123T100000"

    def act(sub: str, kind: str, minute: float, rule: str, incident: str | None = inc) -> dict:
        return {**action(sub, kind, minute), "rule_id": rule, "incident_id": incident}

    actions = [
        act("W", "area_notice", 50, "walk-in-notice"),     # in the hole since 10:20: true
        act("N", "area_notice", 50, "walk-in-notice"),     # N never lost service: false
        act("R", "apology", 32, "back-after-outage-apology"),  # lost it on S1 in it: true
        act("X", "apology", 32, "back-after-outage-apology"),  # lost it on S2, not S1: false
        act("X", "compensation", 32, "long-outage-compensation"),  # about S1: false
        act("W", "apology", 100, "dropped-call-apology", incident=None),  # no burst: false
    ]
    q = quality(actions, truth)
    assert q["recall_before_complaint"] == 1.0  # W by the area notice, R by the apology
    assert q["precision_by_rule"] == {
        "back-after-outage-apology": {"sent": 2, "precision": 0.5},
        "walk-in-notice": {"sent": 2, "precision": 0.5}}
    assert q["false_contact_share"] == round(4 / 6, 4)
    assert q["outage_notices_checked"] == 0  # area notices are not outage notices


def test_summary_json_holds_the_contracts_fields(tmp_path: Path, capsys) -> None:
    """`forewarn run --truth` on files: the counts are those of the outputs it wrote."""
    s = Scenario().site("S1").site("S2").site("FAR", cells=1)  # FAR: tick()'s cell
    s.subscriber("A").subscriber("C", segment="vip")
    s.seen("A", "S1-C1", 1).seen("C", "S1-C1", 1)
    s.call("K1", "G", "S2-C1", 20, dropped=True)
    s.raw(b"{not json").raw(b'{"type": "alarm"}')
    s.alarm("A1", 10, cell="S1-C1").tick(10 + 241)
    s.clear("A1", 10 + 250, cell="S1-C1").tick(10 + 260)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(s.lines) + b"\n")
    truth = tmp_path / "truth.jsonl"
    truth.write_bytes(impact("A", 40, lost=(10, 260)) + b"\n"
                      + impact("C", 11, lost=(10, 260)) + b"\n")
    out = tmp_path / "out"
    assert main(["run", "--input", str(events), "--out", str(out), "--truth", str(truth),
                 "--metrics-port", "-1"]) == 0
    assert "recall before complaint" in capsys.readouterr().out
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert summary["events_in"] == len(s.lines)
    assert summary["dead_letters"] == 2 == len(read_jsonl(out / "dead_letters.jsonl"))
    assert summary["incidents"] == 1
    assert summary["actions"] == {"outage_notice": 2, "restored_notice": 2, "apology": 0,
                                  "compensation": 1, "care_callback": 1, "area_notice": 0}
    q = summary["quality"]
    # A told at 10:12, complains 10:40; C complains at 10:11, inside the hold-down
    assert q["recall_before_complaint"] == 0.5
    assert q["median_lead_s"] == 28 * 60.0
    assert q["precision"] == 1.0
    assert q["messages_per_impacted"] == 3.0  # notice, compensation or callback, restored


def test_anchor_accuracy_against_where_the_truth_says_they_live_and_work() -> None:
    def sub(sid: str, home: str, work: str | None) -> dict:
        return {"type": "truth_subscriber", "subscriber_id": sid, "home_site": home,
                "work_site": work}

    truth = [sub("A", "S1", "S2"), sub("B", "S3", None), sub("C", "S4", "S5"),
             sub("D", "S6", None), sub("E", "S7", "S8")]
    learnt = {"A": ("S1", "S2"),      # both right
              "B": ("S3", "S3"),      # stays at home: work anchor = home, right
              "C": ("S4", "S4"),      # a commuter taken for someone staying home: wrong
              "D": (None, "S9"),      # only a (wrong) working-hours anchor
              "X": ("S1", None)}      # not in the truth (a roamer, say): not counted
    r = anchor_accuracy(learnt, truth)
    assert (r["subscribers"], r["learnt"], r["learnt_share"]) == (5, 4, 0.8)
    assert r["accuracy"] == 0.5  # A and B of A B C D
    assert r["night"] == {"learnt": 3, "right": 1.0}
    assert r["work"] == {"learnt": 4, "right": 0.5}
    assert (r["commuters"], r["commuters_work_right"]) == (3, round(1 / 3, 4))
    table = format_table({"events_in": 1, "dead_letters": 0, "incidents": 0,
                          "actions": {}, "anchors": r})
    assert "4 of 5 subscribers, 50.0% all right" in table


def test_a_run_with_truth_reports_the_anchor_places_it_learnt(tmp_path: Path) -> None:
    """`forewarn run --truth`: the anchors the flow learnt reach summary.json."""
    s = Scenario().site("S1").site("S2").site("FAR", cells=1)
    s.subscriber("A").subscriber("B")
    for m in range(13 * 60, 20 * 60 + 1, 10):  # Monday 23:00 to Tuesday 06:00
        s.seen("A", "S1-C1", m).seen("B", "S2-C2", m)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(s.lines) + b"\n")
    truth = tmp_path / "truth.jsonl"
    truth.write_bytes(b"".join(orjson.dumps(
        {"type": "truth_subscriber", "subscriber_id": sid, "home_site": home,
         "work_site": None}) + b"\n" for sid, home in (("A", "S1"), ("B", "S1"))))
    out = tmp_path / "out"
    assert main(["run", "--input", str(events), "--out", str(out), "--truth", str(truth),
                 "--metrics-port", "-1"]) == 0
    anchors = orjson.loads((out / "summary.json").read_bytes())["anchors"]
    assert (anchors["learnt"], anchors["accuracy"]) == (2, 0.5)  # B lives on S2, not S1
    assert anchors["night"] == {"learnt": 2, "right": 0.5}


def test_told_in_an_earlier_spell_of_the_same_outage_is_told_before_the_complaint() -> None:
    """On the site at the outage's start (told), away, back into the hole later and
    complaining then: told about this outage before the complaint. A notice about
    another outage before the spell, or between two spells of this one, does not count."""
    truth = [orjson.loads(impact("A", None, lost=(0, 10), outage_id="O1")),
             orjson.loads(impact("A", 90, lost=(40, 120), outage_id="O1", at_start=False)),
             orjson.loads(impact("B", None, lost=(0, 10), outage_id="O2")),
             orjson.loads(impact("B", 90, lost=(40, 120), outage_id="O1", at_start=False)),
             orjson.loads(impact("C", None, lost=(0, 10), outage_id="O1")),
             orjson.loads(impact("C", None, lost=(20, 30), outage_id="O3")),
             orjson.loads(impact("C", 90, lost=(40, 120), outage_id="O1", at_start=False))]
    q = quality([action("A", "outage_notice", 2), action("B", "outage_notice", 2),
                 action("C", "outage_notice", 25)], truth)
    assert q["recall_before_complaint"] == round(1 / 3, 4)  # A; B's and C's were about O2, O3
    assert q["missed_by_cause"] == {"entered_outage_area_later": 2}
    assert q["median_lead_s"] == 88 * 60
