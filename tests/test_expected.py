"""Rules at ``at: expected``: someone heard near an outage whose learnt anchor place is the
down site at this hour, silent since (dataflows/anchors.py, dataflows/site.py).

Sites are placed on a line as in tests/test_nearby.py: S1 goes down, S2 is next to it.
The scenario starts on Monday 10:00; U1 spends the night to Tuesday on S1 (home), U2 on
S5, so from Tuesday 18:00 U1 is expected on S1 and U2 is not. The default rulebook's
`expected-notice` acts after 60 min of silence (a walk-in notice after 73).
"""

from __future__ import annotations

import orjson
import pytest

from forewarn.rules.rulebook import DEFAULT_DIR, Rulebook, RulebookError, parse_rulebook
from tests.builders import Scenario, ts

NIGHT_FROM, NIGHT_TO = 13 * 60, 20 * 60  # Monday 23:00 to Tuesday 06:00, minutes from 10:00
EVENING = 32 * 60 + 30  # Tuesday 18:30
DEFAULT_TEXT = (DEFAULT_DIR / "rulebook.yaml").read_text()
TERMS = "expected: {silence_s: 3600, within_s: 0, min_outage_s: 0}"
SILENCE_MIN = 60

RULE = """
  - id: expected-notice
    version: 1
    owner: care-operations
    description: Anchored at a down site at this hour, heard nearby, silent since.
    trigger: {incident: [outage, flapping], at: expected,
              expected: {silence_s: SILENCE, within_s: 0, min_outage_s: 600}}
    action: area_notice
    templates:
      en: "Hi $name, if you are at or around $area: we know about a network problem there."
"""


def _time(line: bytes) -> str:
    rec = orjson.loads(line)
    return rec.get("event_time", "")


def book_with(rules: str) -> Rulebook:
    """The default rulebook without its expected-notice, plus ``rules``."""
    assert DEFAULT_TEXT.count(TERMS) == 1
    base = DEFAULT_TEXT[:DEFAULT_TEXT.index("  - id: expected-notice")]
    return parse_rulebook(base + rules, DEFAULT_DIR / "rulebook.yaml")


def expected_book(silence_min: float, min_outage_min: float) -> Rulebook:
    """The default rulebook, its expected-notice given other terms."""
    terms = (f"expected: {{silence_s: {int(silence_min * 60)}, within_s: 0, "
             f"min_outage_s: {int(min_outage_min * 60)}}}")
    return parse_rulebook(DEFAULT_TEXT.replace(TERMS, terms), DEFAULT_DIR / "rulebook.yaml")


def evening(site_alarm: bool = True) -> Scenario:
    s = Scenario()
    for i in range(1, 8):
        s.site(f"S{i}", cells=2, place=(51.5, -0.1 + 0.01 * (i - 1)))
    for sid in ("U1", "U2", "U3"):
        s.subscriber(sid)
    for m in range(NIGHT_FROM, NIGHT_TO + 1, 10):  # the night: U1 at home on S1, U2 on S5
        s.seen("U1", "S1-C1", m).seen("U2", "S5-C1", m).seen("U3", "S1-C2", m)
    s.seen("U1", "S2-C1", EVENING).seen("U2", "S2-C1", EVENING)  # both next to S1 at 18:30
    for m in range(EVENING, EVENING + 100, 20):  # U3 too, but heard again and again
        s.seen("U3", "S2-C1", m)
    if site_alarm:
        s.alarm("A1", EVENING + 5, site="S1")
    else:
        s.alarm("A1", EVENING + 5, cell="S1-C1")
    for m in range(EVENING + 10, EVENING + 100, 5):
        s.tick(m)
    s.lines.sort(key=_time)  # (U3's positions among the ticks: in stream order)
    s.clear("A1", EVENING + 100, site="S1" if site_alarm else None,
            cell=None if site_alarm else "S1-C1")
    return s


def test_someone_expected_at_home_on_a_down_site_is_told_before_the_walk_in_silence():
    r = evening().run()
    area = sorted((a["subscriber_id"], a["rule_id"], a["event_time"]) for a in r.of("area_notice"))
    # U1: home (their night anchor) is down, silent 60 min: told at the first tick past it;
    # U2: not anchored there: a walk-in, 73 min after last heard; U3: heard since
    assert [(sid, rule) for sid, rule, _ in area] == [("U1", "expected-notice"),
                                                     ("U2", "walk-in-notice")]
    told = area[0][2]
    assert ts(EVENING + SILENCE_MIN) <= told <= ts(EVENING + SILENCE_MIN + 1)
    notice = r.of("area_notice")[0]
    assert notice["incident_id"] == "INC-S1-20261123T183500".replace("20261123", "20261124")
    assert any(e.startswith("last_heard:S2@") for e in notice["evidence"])
    assert r.subscribers("restored_notice") == set()  # not the contract's impacted


def test_no_expected_notice_without_the_rule_for_a_cell_or_before_the_outage_is_old_enough():
    without = evening().run(book=book_with(""))
    assert {a["rule_id"] for a in without.of("area_notice")} == {"walk-in-notice"}
    assert without.subscribers("area_notice") == {"U1", "U2"}  # U1 as a walk-in, later
    cell_only = evening(site_alarm=False).run()
    assert "expected-notice" not in {a["rule_id"] for a in cell_only.actions}
    # a silence shorter than the outage's required age: told when the outage is 10 min
    # old, and so is U3, heard every 20 min (the price of a short silence)
    quick = evening().run(book=expected_book(silence_min=2, min_outage_min=10))
    told = {a["subscriber_id"]: a["event_time"] for a in quick.actions
            if a["rule_id"] == "expected-notice"}
    assert set(told) == {"U1", "U3"}
    assert ts(EVENING + 5 + 10) <= told["U1"] <= ts(EVENING + 5 + 11)


@pytest.mark.parametrize(("change", "message"), [
    ("at: expected,\n              expected: {silence_s: 0,",
     "trigger.expected.silence_s: expected more than 0"),
    ("at: walk_in,\n              expected: {silence_s: 60,",
     "only meaningful with `at: expected`"),
    ("at: expected,\n              expected: {silence_s: 60, surprise: 1,",
     "surprise"),
])
def test_expected_terms_are_checked(change: str, message: str) -> None:
    text = RULE.replace("at: expected,\n              expected: {silence_s: SILENCE,", change)
    with pytest.raises(RulebookError) as err:
        book_with(text.replace("SILENCE", "1800"))
    assert message in str(err.value)


def test_every_expected_rule_shares_one_set_of_terms() -> None:
    def rule(rid: str, silence_s: int, segment: str) -> str:
        return RULE.replace("id: expected-notice", f"id: {rid}").replace(
            "SILENCE", str(silence_s)).replace(
            "action: area_notice", f"audience: {{segment: [{segment}]}}\n    action: area_notice")

    book = book_with(rule("expected-consumers", 1800, "consumer")
                     + rule("expected-vip", 1800, "vip"))
    terms = book.expected_terms
    assert terms is not None and (terms.silence_s, terms.within_s, terms.min_outage_s) == (
        1800.0, 0.0, 600.0)
    assert book_with("").expected_terms is None
    with pytest.raises(RulebookError) as err:
        book_with(rule("expected-consumers", 1800, "consumer")
                  + rule("expected-vip", 2400, "vip"))
    assert "rules[expected-vip].trigger.expected: differs from rules[expected-consumers]" \
        in str(err.value)
