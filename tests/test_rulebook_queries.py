"""What a loaded rulebook answers (rules/rulebook.py): who an audience matches, what a
silence covers, which rules act when, how templates render, and which pairs of rules the
checker refuses as overlapping (a double contact)."""

from __future__ import annotations

from pathlib import Path

import pytest

from forewarn.rules.rulebook import Audience, RulebookError, Silence, load_rulebook, parse_rulebook

WHO = {"segment": "vip", "plan": "Gold", "tags": ("fibre", "5g"), "language": "de",
       "tenure": 24, "complaints": 2, "region": "North"}


def who(**changes):
    return {**WHO, **changes}


@pytest.mark.parametrize(("audience", "matches", "misses"), [
    (Audience(), [who(), who(tenure=None, region=None, plan="")], []),
    (Audience(segments=("vip", "business")), [who(segment="business")],
     [who(segment="consumer")]),
    (Audience(plans=("Gold",)), [who()], [who(plan="Silver"), who(plan="")]),
    (Audience(tags=("5g", "x")), [who(tags=("5g",))], [who(tags=()), who(tags=("fibre",))]),
    (Audience(regions=("north",)), [who(region="NORTH")], [who(region="south"),
                                                           who(region=None)]),
    (Audience(languages=("de",)), [who()], [who(language="en")]),
    (Audience(tenure_min=24), [who(tenure=24), who(tenure=100)],
     [who(tenure=23), who(tenure=None)]),
    (Audience(tenure_max=24), [who(tenure=24), who(tenure=0)],
     [who(tenure=25), who(tenure=None)]),
    (Audience(complaints_min=2), [who(complaints=2)], [who(complaints=1)]),
    (Audience(min_propensity=0.9), [who()], []),  # applied at dispatch, not here
])
def test_each_audience_criterion_narrows_and_an_empty_one_matches_all(audience, matches,
                                                                     misses):
    assert all(audience.matches(**w) for w in matches)
    assert not any(audience.matches(**w) for w in misses)


def test_a_silence_covers_its_sites_or_regions_between_its_times_inclusive():
    s = Silence("s", 100.0, 200.0, site_ids=("S1",), regions=("north",))
    assert s.covers("S1", "North", 100.0) and s.covers("S1", "north", 200.0)
    assert not s.covers("S1", "north", 99.9) and not s.covers("S1", "north", 200.1)
    assert not s.covers("S2", "north", 150.0) and not s.covers("S1", "south", 150.0)
    assert not s.covers("S1", None, 150.0)
    sites_only = Silence("t", 100.0, 200.0, site_ids=("S1",))
    assert sites_only.covers("S1", None, 150.0) and not sites_only.covers("S2", None, 150.0)
    regions_only = Silence("u", 100.0, 200.0, regions=("north",))
    assert regions_only.covers("S9", "NORTH", 150.0)


BOOK = """\
rulebook: q
version: 1
correlation: {outage_severities: [critical]}
quiet_hours: {start: "22:00", end: "08:00"}
silences:
  - {id: first, start: "2026-11-23T00:00:00Z", end: "2026-11-23T01:00:00Z", regions: [north]}
  - {id: second, start: "2026-11-23T00:00:00Z", end: "2026-11-23T02:00:00Z", site_ids: [S1]}
rules:
  - id: notice
    version: 1
    owner: o
    description: d
    trigger: {incident: [outage, flapping], at: hold_down}
    action: outage_notice
    templates: {en: "Hi $name in $area ($offer)", de: "Hallo $name"}
  - id: late
    version: 1
    owner: o
    description: d
    trigger: {incident: outage, at: duration, min_duration_s: 7200}
    action: care_callback
    templates: {en: "Call"}
  - id: early
    version: 1
    owner: o
    description: d
    trigger: {incident: [outage, degradation], at: duration, min_duration_s: 3600}
    action: compensation
    offer: {kind: data_credit, amount_gb: 1}
    templates: {en: "Credit"}
  - id: again
    version: 1
    owner: o
    description: d
    trigger: {incident: degradation, at: duration, min_duration_s: 3600}
    audience: {segment: vip}
    action: care_callback
    templates: {en: "Call"}
  - id: drops
    version: 1
    owner: o
    description: d
    trigger: {dropped_calls: {count: 2, window_s: 600}}
    action: apology
    templates: {en: "Sorry"}
"""


def test_rules_by_trigger_escalation_deadlines_and_silences():
    book = parse_rulebook(BOOK, Path("r.yaml"))
    assert [r.id for r in book.incident_rules("hold_down", "flapping")] == ["notice"]
    assert [r.id for r in book.incident_rules("duration", "outage")] == ["late", "early"]
    assert book.incident_rules("resolved", "outage") == ()
    assert book.durations("outage") == [3600.0, 7200.0]
    assert book.durations("degradation") == [3600.0]  # two rules, one deadline
    assert book.durations("flapping") == []
    assert [r.id for r in book.drop_rules()] == ["drops"]
    t0 = 1795392000.0  # 2026-11-23T00:00:00Z
    assert book.silenced("S1", "north", t0 + 1800) == "first"  # the first that covers
    assert book.silenced("S1", "south", t0 + 5400) == "second"
    assert book.silenced("S2", "south", t0 + 1800) is None
    assert book.silenced("S2", "north", t0 + 5400) is None


def test_templates_render_in_the_language_or_english_leaving_unknown_fields():
    book = parse_rulebook(BOOK, Path("r.yaml"))
    rule = book.rule("notice")
    assert book.render(rule, "de", {"name": "Ada"}) == "Hallo Ada"
    assert book.render(rule, "ja", {"name": "Ada", "area": "North"}) == \
        "Hi Ada in North ($offer)"
    with pytest.raises(KeyError):
        book.rule("nothing")


def overlap(tmp_path, a: str, b: str) -> list[str]:
    text = BOOK.split("rules:\n")[0] + "rules:\n" + a + b
    (tmp_path / "rulebook.yaml").write_text(text, encoding="utf-8")
    try:
        load_rulebook(tmp_path)
    except RulebookError as exc:
        return [p.split(": ", 1)[1] for p in exc.problems]
    return []


def rule(rid: str, trigger: str = "{incident: outage, at: hold_down}",
         audience: str = "{}", action: str = "outage_notice") -> str:
    aud = f"    audience: {audience}\n" if audience != "{}" else ""
    return (f"  - id: {rid}\n    version: 1\n    owner: o\n    description: d\n"
            f"    trigger: {trigger}\n{aud}    action: {action}\n    templates: {{en: x}}\n")


DOUBLE = ("rules[b]: overlaps rules[a]: both send outage_notice for the same trigger to an "
          "overlapping audience (a double contact); narrow one audience or merge the rules")


@pytest.mark.parametrize(("b", "overlaps"), [
    (rule("b"), True),
    (rule("b", action="restored_notice"), False),
    (rule("b", "{incident: outage, at: resolved}"), False),
    (rule("b", "{incident: flapping, at: hold_down}"), False),
    (rule("b", "{incident: [flapping, outage], at: hold_down}"), True),
    (rule("b", "{incident: outage, at: hold_down, scope: site}"), True),  # a: any scope
    (rule("b", audience="{segment: vip}"), True),  # a: everyone
])
def test_which_rule_pairs_overlap(tmp_path, b, overlaps):
    found = overlap(tmp_path, rule("a"), b)
    assert found == ([DOUBLE] if overlaps else [])


@pytest.mark.parametrize(("a_aud", "b_aud", "overlaps"), [
    ("{segment: vip}", "{segment: [vip, business]}", True),
    ("{segment: vip}", "{segment: business}", False),
    ("{plan: Gold}", "{plan: Silver}", False),
    ("{region: north}", "{region: south}", False),
    ("{language: en}", "{language: de}", False),
    ("{language: en}", "{language: en, plan: Gold}", True),
    ("{tags: [x]}", "{tags: [y]}", True),  # tags are 'any of': one subscriber may have both
    ("{tenure_months: {max: 12}}", "{tenure_months: {min: 13}}", False),
    ("{tenure_months: {max: 12}}", "{tenure_months: {min: 12}}", True),
    ("{tenure_months: {min: 0}}", "{tenure_months: {max: 0}}", True),
    ("{tenure_months: {min: 24, max: 36}}", "{tenure_months: {min: 37}}", False),
    ("{tenure_months: {min: 1200}}", "{segment: vip}", True),  # no max: any tenure above
])
def test_audiences_that_cannot_meet_do_not_overlap(tmp_path, a_aud, b_aud, overlaps):
    found = overlap(tmp_path, rule("a", audience=a_aud), rule("b", audience=b_aud))
    assert found == ([DOUBLE] if overlaps else [])


def test_scopes_and_durations_and_drop_rules_overlap_only_when_they_meet(tmp_path):
    site = "{incident: outage, at: hold_down, scope: site}"
    cell = "{incident: outage, at: hold_down, scope: cell}"
    assert overlap(tmp_path, rule("a", site), rule("b", cell)) == []
    assert overlap(tmp_path, rule("a", site), rule("b", "{incident: outage, at: hold_down, "
                                                       "scope: [cell, site]}")) == [DOUBLE]
    one_h = "{incident: outage, at: duration, min_duration_s: 3600}"
    two_h = "{incident: outage, at: duration, min_duration_s: 7200}"
    assert overlap(tmp_path, rule("a", one_h), rule("b", two_h)) == []
    assert overlap(tmp_path, rule("a", one_h), rule("b", one_h)) == [DOUBLE]
    drops = "{dropped_calls: {count: 2, window_s: 600}}"
    more = "{dropped_calls: {count: 5, window_s: 3600}}"
    assert overlap(tmp_path, rule("a", drops, action="apology"),
                   rule("b", more, action="apology")) == [
        DOUBLE.replace("outage_notice", "apology")]
    assert overlap(tmp_path, rule("a", drops, action="apology"),
                   rule("b", more, action="apology", audience="{segment: vip}")) == [
        DOUBLE.replace("outage_notice", "apology")]
    assert overlap(tmp_path, rule("a", drops, action="apology", audience="{segment: business}"),
                   rule("b", more, action="apology", audience="{segment: vip}")) == []

@pytest.mark.parametrize(("a", "b", "c"), [
    (rule("a"), rule("b", action="care_callback"), rule("c")),
    (rule("a"), rule("b", "{incident: flapping, at: hold_down}"), rule("c")),
    (rule("a", "{incident: outage, at: hold_down, scope: site}"),
     rule("b", "{incident: outage, at: hold_down, scope: cell}"),
     rule("c", "{incident: outage, at: hold_down, scope: site}")),
    (rule("a", audience="{segment: business}"), rule("b", audience="{segment: vip}"),
     rule("c", audience="{segment: business}")),
])
def test_each_rule_is_compared_with_every_earlier_one(tmp_path, a, b, c):
    # a and b do not overlap (for each of the reasons), a and c do
    assert overlap(tmp_path, a + b, c) == [DOUBLE.replace("rules[b]", "rules[c]")]


def test_no_overlap_between_an_incident_rule_and_a_dropped_call_rule(tmp_path):
    # even when the incident rule is refused for its missing `at` (no trigger point)
    found = overlap(tmp_path, rule("a", "{incident: outage}", action="apology"),
                    rule("b", "{dropped_calls: {count: 2, window_s: 600}}", action="apology"))
    assert found == ["rules[a].trigger.at: required key missing"]


def test_a_missing_count_or_duration_is_not_taken_for_a_value(tmp_path):
    no_count = rule("a", "{dropped_calls: {window_s: 600}}", action="apology")
    drops = rule("b", "{dropped_calls: {count: 1, window_s: 600}}", action="apology")
    assert overlap(tmp_path, no_count, drops) == [
        "rules[a].trigger.dropped_calls.count: required key missing"]
    no_duration = rule("a", "{incident: outage, at: duration}")
    one_s = rule("b", "{incident: outage, at: duration, min_duration_s: 1}")
    assert overlap(tmp_path, no_duration, one_s) == [
        "rules[a].trigger.min_duration_s: required key missing"]


def test_rules_refused_for_a_missing_key_are_not_compared(tmp_path):
    no_action = rule("a").replace("    action: outage_notice\n", "")
    found = overlap(tmp_path, no_action, no_action.replace("id: a", "id: b"))
    assert found == ["rules[a].action: required key missing",
                     "rules[b].action: required key missing"]
