"""The rulebook checker's messages, exactly: for each malformed rulebook, the line, the key,
what was expected and what was found, and nothing else; and a valid rulebook read in full.

Each case edits ``BASE`` (a small valid rulebook) and lists every problem the checker must
report as ``LINE: KEY: MESSAGE`` (the ``file:`` prefix is checked once for all). The first
line of ``BASE`` is a comment, so a problem placed at the top mapping (line 2) is told
apart from one with no place at all (line 1); nested mappings are written out in block
style, so a key's own line differs from its mapping's first line.
"""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from forewarn.model import CHANNEL_NAMES
from forewarn.rules.rulebook import (
    Audience,
    Budgets,
    ChannelPolicy,
    Correlation,
    Rule,
    Rulebook,
    RulebookError,
    Silence,
    load_rulebook,
    parse_rulebook,
)

BASE = """\
# A small valid rulebook; the cases edit it and expect problems at these lines.
rulebook: t
version: 1
correlation:
  outage_severities: [critical]
quiet_hours:
  start: "22:00"
  end: "08:00"
rules:
  - id: r1
    version: 1
    owner: o
    description: d
    trigger:
      incident: [outage]
      at: hold_down
    action: outage_notice
    templates:
      en: "Hi $name"
"""
RULE = BASE.split("rules:\n")[1]  # lines 10-19
TRIGGER = "    trigger:\n      incident: [outage]\n      at: hold_down\n"  # lines 14-16


def edit(*pairs: tuple[str, str], extra: str = "") -> str:
    text = BASE
    for old, new in pairs:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text + extra


def top(section: str) -> str:
    """``section`` from line 9, before ``rules:``."""
    return edit(("rules:\n", section + "rules:\n"))


def rule(keys: str, action: str = "outage_notice") -> str:
    """Rule r1 with ``keys`` from line 18, after its action."""
    return edit(("    action: outage_notice\n", f"    action: {action}\n{keys}"))


def trigger(body: str, action: str = "outage_notice") -> str:
    """Rule r1 with another trigger; its first key is on line 15."""
    return edit((TRIGGER, "    trigger:\n" + body),
                ("action: outage_notice", f"action: {action}"))


def problems(tmp_path: Path, text: str) -> list[str]:
    file = tmp_path / "rulebook.yaml"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(RulebookError) as exc:
        load_rulebook(file)
    assert exc.value.code == "invalid"
    assert all(p.startswith(f"{file}:") for p in exc.value.problems), exc.value.problems
    return [p.removeprefix(f"{file}:") for p in exc.value.problems]


RANGE = " (see Limits in docs/rules.md)"
ID_RULE = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
TOP_KEYS = ("adapters, budgets, channels, correlation, inhibit, limits, quiet_hours, rulebook, "
            "rules, silences, version")
CORRELATION_KEYS = ("flapping, group_wait_s, hold_down_s, nearby, outage_causes, "
                    "outage_severities, position_max_age_s, storm")
ACTIONS = "outage_notice, restored_notice, apology, compensation, care_callback, area_notice"
HHMM = 'expected a local time HH:MM (quoted: "22:00"), got'
FIELDS = "area, eta, incident_id, name, offer, plan"
AUDIENCE_KEYS = ("complaints, language, min_propensity, plan, region, segment, tags, "
                 "tenure_months")
STRINGS = "expected a string or a list of strings, got"
RFC3339 = "expected an RFC 3339 time with offset, got"
SILENCE_KEYS = "comment, end, id, regions, site_ids, start"
NO_SCOPE = "a silence needs site_ids or regions (it would silence all)"
X5001, X5000 = "x" * 5001, "x" * 5000

CASES = [
    # ---- the top level
    pytest.param("- a\n", ["1: (top): expected a mapping with rulebook, version, rules"],
                 id="top-is-a-list"),
    pytest.param(edit(("\nversion: 1\n", "\nversion: 1\nfoo: 1\n")),
                 [f"4: foo: unknown key; expected among {TOP_KEYS}"], id="unknown-top-key"),
    pytest.param(edit(("\nversion: 1\n", "\nversion: 1\nXtra: 1\n")),
                 [f"4: Xtra: unknown key; expected among {TOP_KEYS}"],
                 id="unknown-top-key-is-named-whole"),
    pytest.param(edit(("rulebook: t\n", "")), ["2: rulebook: required key missing"],
                 id="name-missing"),
    pytest.param(edit(("rulebook: t", "rulebook: null")),
                 ["2: rulebook: required value missing (null)"], id="name-null"),
    pytest.param(edit(("rulebook: t", "rulebook: 5")), ["2: rulebook: expected str, got 5"],
                 id="name-not-text"),
    pytest.param(edit(("rulebook: t", "rulebook: 'a b'")),
                 [f"2: rulebook: expected {ID_RULE}, got 'a b'"], id="name-not-an-id"),
    pytest.param(edit(("\nversion: 1\n", "\n")), ["2: version: required key missing"],
                 id="version-missing"),
    pytest.param(edit(("version: 1\ncorr", "version: -1\ncorr")),
                 [f"3: version: expected at least 0 and at most 2147483647, got -1{RANGE}"],
                 id="version-negative"),
    pytest.param(edit(("version: 1\ncorr", "version: true\ncorr")),
                 ["3: version: expected int, got True"], id="version-bool"),
    pytest.param(edit(("version: 1\ncorr", "version: 1.5\ncorr")),
                 ["3: version: expected int, got 1.5"], id="version-float"),
    # ---- correlation
    pytest.param(edit(("correlation:\n  outage_severities: [critical]\n", "")),
                 ["2: correlation: required key missing"], id="correlation-missing"),
    pytest.param(edit(("correlation:\n  outage_severities: [critical]\n", "correlation: 5\n")),
                 [f"4: correlation: expected a mapping of {CORRELATION_KEYS}"],
                 id="correlation-not-a-mapping"),
    pytest.param(edit(("[critical]", "[critical, bogus, 7]")),
                 ["5: correlation.outage_severities: expected among critical, major, minor, "
                  "warning, indeterminate, cleared, got 'bogus'",
                  f"5: correlation.outage_severities: {STRINGS} 7"], id="severities"),
    pytest.param(edit(("[critical]", "[7, bogus]")),
                 [f"5: correlation.outage_severities: {STRINGS} 7",
                  "5: correlation.outage_severities: expected among critical, major, minor, "
                  "warning, indeterminate, cleared, got 'bogus'"], id="severities-each-checked"),
    pytest.param(edit(("  outage_severities: [critical]\n",
                       "  outage_severities: [critical]\n  outage_causes: [3]\n  hold: 1\n"
                       "  flapping: 3\n")),
                 [f"7: correlation.hold: unknown key; expected among {CORRELATION_KEYS}",
                  f"6: correlation.outage_causes: {STRINGS} 3",
                  "8: correlation.flapping: expected a mapping of outages, stable_s, window_s"],
                 id="correlation-keys"),
    pytest.param(edit(("  outage_severities: [critical]\n",
                       "  outage_severities: [critical]\n  flapping:\n    x: 1\n    outages: 1\n"
                       "    window_s: 0\n    stable_s: 86401\n")),
                 ["7: correlation.flapping.x: unknown key; expected among outages, stable_s, "
                  "window_s",
                  f"8: correlation.flapping.outages: expected at least 2 and at most 100, got 1"
                  f"{RANGE}",
                  "9: correlation.flapping.window_s: expected more than 0 and at most 86400 s, "
                  f"got 0.0{RANGE}",
                  "10: correlation.flapping.stable_s: expected more than 0 and at most 86400 s, "
                  f"got 86401.0{RANGE}"], id="flapping"),
    pytest.param(edit(("  outage_severities: [critical]\n",
                       "  outage_severities: [critical]\n  group_wait_s: 3601\n"
                       "  hold_down_s: 0\n  position_max_age_s: 86401\n")),
                 ["6: correlation.group_wait_s: expected at least 0 and at most 3600 s, got "
                  f"3601.0{RANGE}",
                  "7: correlation.hold_down_s: expected more than 0 and at most 86400 s, got "
                  f"0.0{RANGE}",
                  "8: correlation.position_max_age_s: expected more than 0 and at most 86400 s, "
                  f"got 86401.0{RANGE}"], id="correlation-ranges"),
    pytest.param(edit(("  outage_severities: [critical]\n",
                       "  outage_severities: [critical]\n  hold_down_s: 30\n"
                       "  group_wait_s: 30\n")),
                 ["7: correlation.group_wait_s: expected less than hold_down_s (30), got 30: "
                  "alarms are grouped before notices go"], id="group-wait-not-below-hold-down"),
    pytest.param(edit(("  outage_severities: [critical]\n",
                       "  outage_severities: [critical]\n  hold_down_s: 60\n")),
                 ["5: correlation.group_wait_s: expected less than hold_down_s (60), got 60: "
                  "alarms are grouped before notices go"],
                 id="default-group-wait-not-below-hold-down"),
    pytest.param(edit(("  outage_severities: [critical]\n",
                       "  outage_severities: [critical]\n  group_wait_s: 150\n")),
                 ["6: correlation.group_wait_s: expected less than hold_down_s (120), got 150: "
                  "alarms are grouped before notices go"],
                 id="group-wait-above-default-hold-down"),
    pytest.param(edit(("  outage_severities: [critical]\n",
                       "  outage_severities: [critical]\n  hold_down_s: 30.5\n"
                       "  group_wait_s: 40\n")),
                 ["7: correlation.group_wait_s: expected less than hold_down_s (30.5), got 40: "
                  "alarms are grouped before notices go"],
                 id="group-wait-above-a-fractional-hold-down"),
    # ---- quiet hours, channels, limits, inhibit
    pytest.param(edit(('"22:00"', '"24:00"'), ('"08:00"', '"08:60"')),
                 [f"7: quiet_hours.start: {HHMM} '24:00'", f"8: quiet_hours.end: {HHMM} '08:60'"],
                 id="quiet-hours-out-of-range"),
    pytest.param(edit(('"22:00"', '"-1:00"'), ('"08:00"', '"8"')),
                 [f"7: quiet_hours.start: {HHMM} '-1:00'", f"8: quiet_hours.end: {HHMM} '8'"],
                 id="quiet-hours-negative-or-no-minutes"),
    pytest.param(edit(('  start: "22:00"\n  end: "08:00"\n', '  end: "08:00"\n  start: "x"\n')),
                 [f"8: quiet_hours.start: {HHMM} 'x'"], id="quiet-hours-start-on-its-line"),
    pytest.param(edit(('"22:00"', "22:00")), [f"7: quiet_hours.start: {HHMM} 1320"],
                 id="quiet-hours-unquoted-is-a-yaml-number"),
    pytest.param(edit(('quiet_hours:\n  start: "22:00"\n  end: "08:00"\n',
                       'quiet_hours: "22:00"\n')),
                 ["6: quiet_hours: expected a mapping of defer, defer_unconfirmed, end, start",
                  f"6: quiet_hours.start: {HHMM} None", f"6: quiet_hours.end: {HHMM} None"],
                 id="quiet-hours-not-a-mapping"),
    pytest.param(edit(('  end: "08:00"\n', '  end: "08:00"\n  defer: [nap]\n'
                       "  defer_unconfirmed: nap2\n  x: 1\n")),
                 ["11: quiet_hours.x: unknown key; expected among defer, defer_unconfirmed, end, "
                  "start",
                  f"9: quiet_hours.defer: expected among {ACTIONS}, got 'nap'",
                  f"10: quiet_hours.defer_unconfirmed: expected among {ACTIONS}, got 'nap2'"],
                 id="quiet-hours-defer"),
    pytest.param(top("channels:\n  x: 1\n  default_order: [fax]\n"),
                 ["10: channels.x: unknown key; expected among default_order",
                  "11: channels.default_order: expected among push, sms, email, got 'fax'"],
                 id="channels"),
    pytest.param(top("limits:\n  y: 2\n  max_contacts_per_day: 0\n"),
                 ["10: limits.y: unknown key; expected among max_contacts_per_day",
                  f"11: limits.max_contacts_per_day: expected at least 1 and at most 100, got 0"
                  f"{RANGE}"], id="limits"),
    pytest.param(top("limits: 3\n"), ["9: limits: expected a mapping of max_contacts_per_day"],
                 id="limits-not-a-mapping"),
    pytest.param(top("inhibit:\n  z: 1\n  apology_when_notified: maybe\n"),
                 ["10: inhibit.z: unknown key; expected among apology_when_notified, "
                  "notice_when_notified_in_region",
                  "11: inhibit.apology_when_notified: expected bool, got 'maybe'"],
                 id="inhibit"),
    # ---- the list of rules
    pytest.param(edit(("rules:\n", "rulez:\n")),
                 [f"10: rulez: unknown key; expected among {TOP_KEYS}",
                  "2: rules: expected a list of rules"], id="rules-missing"),
    pytest.param(BASE.split("rules:")[0] + "rules: 5\n", ["9: rules: expected a list of rules"],
                 id="rules-not-a-list"),
    pytest.param(BASE.split("rules:")[0] + "rules:\n  - 5\n",
                 ["10: rules[0]: expected a mapping with id, version, trigger, action, templates"],
                 id="rule-not-a-mapping"),
    pytest.param(edit(extra=RULE), ["20: rules[r1].id: duplicate rule id (also rules[0])"],
                 id="duplicate-id"),
    pytest.param(edit(extra=RULE + RULE.replace("r1", "r3").replace("outage_notice", "hug")),
                 ["20: rules[r1].id: duplicate rule id (also rules[0])",
                  f"37: rules[r3].action: expected one of {ACTIONS}, got 'hug'"],
                 id="rules-after-a-duplicate-are-checked"),
    pytest.param(edit(extra=RULE.replace("r1", "r2")),
                 ["20: rules[r2]: overlaps rules[r1]: both send outage_notice for the same "
                  "trigger to an overlapping audience (a double contact); narrow one audience "
                  "or merge the rules"], id="overlap"),
    # ---- a rule's own keys
    pytest.param(edit(("id: r1", "id: 'r 1'")), [f"10: rules[0].id: expected {ID_RULE}, got 'r 1'"],
                 id="rule-id-not-an-id"),
    pytest.param(edit(("  - id: r1\n    version: 1\n", "  - version: 1\n")),
                 ["10: rules[0].id: required key missing"], id="rule-id-missing"),
    pytest.param(edit(("id: r1", "id: 7")), ["10: rules[0].id: expected str, got 7"],
                 id="rule-id-not-text"),
    pytest.param(rule("    colour: red\n"),
                 ["18: rules[r1].colour: unknown key; expected among action, audience, channels, "
                  "description, id, limits, offer, owner, templates, trigger, version"],
                 id="rule-unknown-key"),
    pytest.param(edit(("    version: 1\n    owner", "    owner")),
                 ["10: rules[r1].version: required key missing"], id="rule-version-missing"),
    pytest.param(edit(("    version: 1\n    owner", "    version: -2\n    owner")),
                 ["11: rules[r1].version: expected at least 0 and at most 2147483647, got -2"
                  f"{RANGE}"], id="rule-version-negative"),
    pytest.param(edit(("    owner: o\n", "")), ["10: rules[r1].owner: required key missing"],
                 id="owner-missing"),
    pytest.param(edit(("    description: d\n", "")),
                 ["10: rules[r1].description: required key missing"], id="description-missing"),
    pytest.param(edit(("id: r1", "id: 'r 1'"), extra=RULE.replace("id: r1", "id: -r2")),
                 [f"10: rules[0].id: expected {ID_RULE}, got 'r 1'",
                  f"20: rules[1].id: expected {ID_RULE}, got '-r2'"],
                 id="two-rules-with-bad-ids-are-not-duplicates"),
    pytest.param(edit(("description: d", "description: [d]")),
                 ["13: rules[r1].description: expected str, got ['d']"],
                 id="description-not-text"),
    pytest.param(edit(("action: outage_notice", "action: hug")),
                 [f"17: rules[r1].action: expected one of {ACTIONS}, got 'hug'"],
                 id="action-unknown"),
    pytest.param(edit(("    action: outage_notice\n", "")),
                 ["10: rules[r1].action: required key missing"], id="action-missing"),
    # ---- templates
    pytest.param(edit(('    templates:\n      en: "Hi $name"\n', "")),
                 ["10: rules[r1].templates: expected a mapping of language to text"],
                 id="templates-missing"),
    pytest.param(edit(('    templates:\n      en: "Hi $name"\n', '    templates: "Hi"\n')),
                 ["18: rules[r1].templates: expected a mapping of language to text"],
                 id="templates-not-a-mapping"),
    pytest.param(edit(('      en: "Hi $name"\n', '      en: "Hi $name"\n      es: "  "\n'
                       '      fr: 5\n      de: "${name"\n      pl: "$nam $zz $area"\n')),
                 ["20: rules[r1].templates.es: expected message text, got '  '",
                  "21: rules[r1].templates.fr: expected message text, got 5",
                  "22: rules[r1].templates.de: invalid placeholder (use $field or ${field}; $$ "
                  "for $)",
                  f"23: rules[r1].templates.pl: unknown field(s) nam, zz; expected among "
                  f"{FIELDS}"], id="template-texts"),
    pytest.param(edit(('      en: "Hi $name"\n', f'      en: "Hi $name"\n      es: "{X5001}"\n'
                       f'      fr: "{X5000}"\n      de: 5\n')),
                 ["20: rules[r1].templates.es: message of 5001 characters; at most 5000 (the "
                  "longest an email body should be)",
                  "22: rules[r1].templates.de: expected message text, got 5"],
                 id="template-too-long"),
    pytest.param(edit(('      en: "Hi $name"\n', '      fr: "Salut $name"\n      de: "Hallo"\n')),
                 ["19: rules[r1].templates: a 'en' template is required (the fallback "
                  "language)"], id="template-english-missing"),
    pytest.param(edit(('      en: "Hi $name"\n', '      de: "Hallo"\n      en: "Hi $who"\n')),
                 [f"20: rules[r1].templates.en: unknown field(s) who; expected among {FIELDS}"],
                 id="template-english-bad-is-not-also-missing"),
    # ---- triggers
    pytest.param(edit((TRIGGER, "")),
                 ["10: rules[r1].trigger: expected a mapping (incident: ... or dropped_calls: "
                  "...)"], id="trigger-missing"),
    pytest.param(edit((TRIGGER, "    trigger: soon\n")),
                 ["14: rules[r1].trigger: expected a mapping (incident: ... or dropped_calls: "
                  "...)"], id="trigger-not-a-mapping"),
    pytest.param(trigger("      alarm: x\n"),
                 ["15: rules[r1].trigger: expected `incident` or `dropped_calls`"],
                 id="trigger-neither-kind"),
    pytest.param(trigger("      incident: [outage, meteor]\n      at: noon\n      when: now\n"
                         "      scope: [planet]\n      probable_cause: [5]\n"),
                 ["17: rules[r1].trigger.when: unknown key; expected among at, expected, "
                  "incident, min_duration_s, probable_cause, scope",
                  "15: rules[r1].trigger.incident: expected among outage, flapping, degradation, "
                  "got 'meteor'",
                  "16: rules[r1].trigger.at: expected one of hold_down, resolved, duration, "
                  "walk_in, reappeared, expected, got 'noon'",
                  "18: rules[r1].trigger.scope: expected among cell, site, got 'planet'",
                  f"19: rules[r1].trigger.probable_cause: {STRINGS} 5"], id="incident-trigger"),
    pytest.param(trigger("      incident: outage\n      scope: cell\n"),
                 ["15: rules[r1].trigger.at: required key missing"], id="trigger-at-missing"),
    pytest.param(trigger("      incident: outage\n      at: duration\n"),
                 ["15: rules[r1].trigger.min_duration_s: required key missing"],
                 id="trigger-duration-missing"),
    pytest.param(trigger("      incident: outage\n      at: duration\n"
                         "      min_duration_s: 604801\n"),
                 ["17: rules[r1].trigger.min_duration_s: expected more than 0 and at most 604800 "
                  f"s (7 days), got 604801.0{RANGE}"], id="trigger-duration-too-long"),
    pytest.param(trigger("      incident: outage\n      at: duration\n      min_duration_s: 0\n"),
                 ["17: rules[r1].trigger.min_duration_s: expected more than 0 and at most 604800 "
                  f"s (7 days), got 0.0{RANGE}"], id="trigger-duration-zero"),
    pytest.param(trigger("      incident: outage\n      at: hold_down\n      min_duration_s: 60\n"),
                 ["17: rules[r1].trigger.min_duration_s: only meaningful with `at: duration`"],
                 id="trigger-duration-without-at-duration"),
    pytest.param(trigger("      dropped_calls: 5\n", "apology"),
                 ["15: rules[r1].trigger.dropped_calls: expected a mapping {count, window_s}",
                  "15: rules[r1].trigger.dropped_calls.count: required key missing",
                  "15: rules[r1].trigger.dropped_calls.window_s: required key missing"],
                 id="dropped-calls-not-a-mapping"),
    pytest.param(trigger("      at: hold_down\n      dropped_calls:\n        count: 2\n"
                         "        window_s: 60\n        per: day\n", "apology"),
                 ["15: rules[r1].trigger.at: unknown key; expected among dropped_calls",
                  "19: rules[r1].trigger.dropped_calls.per: unknown key; expected among count, "
                  "window_s"], id="dropped-calls-keys"),
    pytest.param(trigger("      dropped_calls:\n        count: 101\n        window_s: 0\n",
                         "apology"),
                 ["16: rules[r1].trigger.dropped_calls.count: expected at least 1 and at most "
                  f"100, got 101{RANGE}",
                  "17: rules[r1].trigger.dropped_calls.window_s: expected more than 0 and at most "
                  f"86400 s, got 0.0{RANGE}"], id="dropped-calls-ranges"),
    pytest.param(trigger("      dropped_calls:\n        window_s: 60\n", "apology"),
                 ["16: rules[r1].trigger.dropped_calls.count: required key missing"],
                 id="dropped-calls-count-missing"),
    # ---- audience, offer, limits and channels of a rule
    pytest.param(rule("    audience: everyone\n"), ["18: rules[r1].audience: expected a mapping"],
                 id="audience-not-a-mapping"),
    pytest.param(rule("    audience:\n      segment: [vip]\n      colour: red\n"
                      "      tenure_months:\n        min: 1\n        avg: 2\n"
                      "      complaints:\n        max: 3\n"),
                 [f"20: rules[r1].audience.colour: unknown key; expected among {AUDIENCE_KEYS}",
                  "23: rules[r1].audience.tenure_months.avg: unknown key; expected among max, min",
                  "25: rules[r1].audience.complaints.max: unknown key; expected among min"],
                 id="audience-keys"),
    pytest.param(rule("    audience:\n      segment: [alien]\n      min_propensity: 1.5\n"
                      "      tenure_months:\n        min: 13\n        max: 12\n"
                      "      complaints:\n        min: -1\n"),
                 ["20: rules[r1].audience.min_propensity: expected at least 0 and at most 1, got "
                  f"1.5{RANGE}",
                  "22: rules[r1].audience.tenure_months: min 13 is above max 12: no one would "
                  "match",
                  "19: rules[r1].audience.segment: expected among consumer, business, vip, got "
                  "'alien'",
                  "25: rules[r1].audience.complaints.min: expected at least 0 and at most 10000, "
                  f"got -1{RANGE}"], id="audience-values"),
    pytest.param(rule("    audience:\n      tenure_months:\n        min: -1\n        max: 1201\n"
                      "      region: [5]\n      language: [7]\n      plan: [1]\n      tags: [2]\n"),
                 ["20: rules[r1].audience.tenure_months.min: expected at least 0 and at most "
                  f"1200, got -1{RANGE}",
                  "21: rules[r1].audience.tenure_months.max: expected at least 0 and at most "
                  f"1200, got 1201{RANGE}",
                  f"24: rules[r1].audience.plan: {STRINGS} 1",
                  f"25: rules[r1].audience.tags: {STRINGS} 2",
                  f"22: rules[r1].audience.region: {STRINGS} 5",
                  f"23: rules[r1].audience.language: {STRINGS} 7"], id="audience-strings"),
    pytest.param(rule("    offer: free\n"),
                 ["18: rules[r1].offer: expected a mapping of names to values such as {kind: "
                  "data_credit, amount_gb: 5}, got 'free'"], id="offer-not-a-mapping"),
    pytest.param(rule("    offer: {}\n"),
                 ["18: rules[r1].offer: expected a mapping of names to values such as {kind: "
                  "data_credit, amount_gb: 5}, got {}"], id="offer-empty"),
    pytest.param(rule("    offer: {1: x}\n"),
                 ["18: rules[r1].offer: expected a mapping of names to values such as {kind: "
                  "data_credit, amount_gb: 5}, got {1: 'x'}"], id="offer-key-not-a-name"),
    pytest.param(rule("    offer:\n      kind: data_credit\n      amount_gb: 0\n"
                      "      valid_days: -1\n      extra: [1]\n      ok: null\n      flag: true\n"),
                 ["20: rules[r1].offer.amount_gb: expected more than 0 and at most 1000, got 0.0"
                  f"{RANGE}",
                  "21: rules[r1].offer.valid_days: expected a number of at least 0, got -1",
                  "22: rules[r1].offer.extra: expected text or a number, got [1]"],
                 id="offer-values"),
    pytest.param(rule("    offer:\n      kind: data_credit\n      amount_gb: 1001\n"),
                 ["20: rules[r1].offer.amount_gb: expected more than 0 and at most 1000, got "
                  f"1001.0{RANGE}"], id="offer-amount-too-large"),
    pytest.param(rule("", "compensation"),
                 ["10: rules[r1].offer: a compensation rule needs an offer"],
                 id="compensation-without-offer"),
    pytest.param(rule("    limits:\n      cooldown_s: -1\n      cell_cooldown_s: 2592001\n"
                      "      per: day\n"),
                 ["21: rules[r1].limits.per: unknown key; expected among cell_cooldown_s, "
                  "cooldown_s",
                  "19: rules[r1].limits.cooldown_s: expected at least 0 and at most 2592000 s (30 "
                  f"days), got -1.0{RANGE}",
                  "20: rules[r1].limits.cell_cooldown_s: expected at least 0 and at most 2592000 "
                  f"s (30 days), got 2592001.0{RANGE}"], id="rule-limits"),
    pytest.param(rule("    limits: 86400\n"),
                 ["18: rules[r1].limits: expected a mapping of cell_cooldown_s, cooldown_s, got "
                  "86400"], id="rule-limits-not-a-mapping"),
    pytest.param(trigger("      dropped_calls: {count: 2, window_s: 60}\n", "apology").replace(
        "    action: apology\n",
        "    action: apology\n    limits:\n      cooldown_s: 60\n      cell_cooldown_s: 60\n"),
                 ["18: rules[r1].limits.cell_cooldown_s: only incident rules act about a cell: "
                  "remove it or use cooldown_s"], id="cell-cooldown-on-a-dropped-call-rule"),
    pytest.param(rule("    channels:\n      order: [fax, sms]\n      avoid_down_cell: maybe\n"
                      "      prefer: push\n"),
                 ["21: rules[r1].channels.prefer: unknown key; expected among avoid_down_cell, "
                  "order",
                  "19: rules[r1].channels.order: expected among push, sms, email, got 'fax'",
                  "20: rules[r1].channels.avoid_down_cell: expected bool, got 'maybe'"],
                 id="rule-channels"),
    pytest.param(rule("    channels: push\n"),
                 ["18: rules[r1].channels: expected a mapping of avoid_down_cell, order, got "
                  "'push'"], id="rule-channels-not-a-mapping"),
    # ---- budgets
    pytest.param(top("budgets: 5\n"),
                 ["9: budgets: expected a mapping (see Budgets in docs/rules.md)"],
                 id="budgets-not-a-mapping"),
    pytest.param(top("budgets:\n  compensation_per_day: -1\n  per_minute:\n    sms: 0\n"
                     "    fax: 3\n    push: 10000001\n  priority_segments: [alien]\n"
                     "  reserve_share: 1\n  spare: 1\n"),
                 ["17: budgets.spare: unknown key; expected among compensation_per_day, "
                  "max_delay_s, pace, per_minute, priority_segments, reserve_share",
                  f"12: budgets.per_minute.sms: expected at least 1 and at most 10000000, got 0"
                  f"{RANGE}",
                  "13: budgets.per_minute.fax: expected a channel among push, sms, email",
                  "14: budgets.per_minute.push: expected at least 1 and at most 10000000, got "
                  f"10000001{RANGE}",
                  "16: budgets.reserve_share: expected 0 <= x < 1, got 1.0",
                  "10: budgets.compensation_per_day: expected at least 0 and at most 1000000000, "
                  f"got -1{RANGE}",
                  "15: budgets.priority_segments: expected among consumer, business, vip, got "
                  "'alien'"], id="budgets"),
    pytest.param(top("budgets:\n  per_minute: 300\n"),
                 ["10: budgets.per_minute: expected a mapping of channel to sends a minute, such "
                  "as {sms: 300}, got 300"], id="budgets-per-minute-not-a-mapping"),
    pytest.param(top("budgets:\n  reserve_share: -0.1\n"),
                 ["10: budgets.reserve_share: expected 0 <= x < 1, got -0.1"],
                 id="budgets-share-negative"),
    pytest.param(top("budgets:\n  reserve_share: half\n"),
                 ["10: budgets.reserve_share: expected float, got 'half'"],
                 id="budgets-share-not-a-number"),
    pytest.param(top("budgets:\n  pace: storms\n"),
                 ["10: budgets.pace: expected one of all, regional_events, got 'storms'"],
                 id="budgets-pace"),
    # ---- silences
    pytest.param(top("silences: storm\n"), ["9: silences: expected a list"],
                 id="silences-not-a-list"),
    pytest.param(top("silences:\n  - id: s1\n    start: 2026-11-23T00:00:00Z\n"
                     "    end: 2026-11-22T00:00:00Z\n    regions: [North]\n    why: x\n"
                     "  - start: yesterday\n    end: '2026-11-23T00:00:00'\n  - 5\n"),
                 [f"14: silences[0].why: unknown key; expected among {SILENCE_KEYS}",
                  "12: silences[0].end: expected after start",
                  "15: silences[1].id: required key missing",
                  f"15: silences[1].start: {RFC3339} 'yesterday'",
                  f"16: silences[1].end: {RFC3339} '2026-11-23T00:00:00'",
                  f"15: silences[1]: {NO_SCOPE}",
                  "17: silences[2].id: required key missing",
                  "17: silences[2].start: required key missing",
                  "17: silences[2].end: required key missing",
                  f"17: silences[2]: {NO_SCOPE}"], id="silences"),
    pytest.param(top("silences:\n  - id: s1\n    start: 2026-11-23T00:00:00Z\n"
                     "    end: 2026-11-23T00:00:00Z\n    site_ids: S1\n    comment: [x]\n"),
                 ["12: silences[0].end: expected after start",
                  "14: silences[0].comment: expected str, got ['x']"],
                 id="silence-ends-as-it-starts"),
    pytest.param(top("silences:\n  - id: s1\n    site_ids: S1\n    start: 5\n"
                     "    end: 2026-11-23T00:00:00+01:00\n"),
                 ["12: silences[0].start: expected str/datetime, got 5"],
                 id="silence-start-a-number"),
    pytest.param(top("silences:\n  - id: s1\n    start: 2026-11-23T00:00:00Z\n"
                     "    end: 2026-11-24T00:00:00Z\n    site_ids: [5]\n    regions: [7]\n"),
                 [f"13: silences[0].site_ids: {STRINGS} 5",
                  f"14: silences[0].regions: {STRINGS} 7",
                  f"10: silences[0]: {NO_SCOPE}"], id="silence-sites-and-regions-not-text"),
    pytest.param(top("silences:\n  - id: s1\n    site_ids: [S1]\n"),
                 ["10: silences[0].start: required key missing",
                  "10: silences[0].end: required key missing"], id="silence-times-missing"),
]


def test_the_base_rulebook_of_the_cases_is_valid(tmp_path):
    (tmp_path / "rulebook.yaml").write_text(BASE, encoding="utf-8")
    assert [r.id for r in load_rulebook(tmp_path).rules] == ["r1"]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_each_malformed_rulebook_gets_its_exact_messages(tmp_path, text, expected):
    assert problems(tmp_path, text) == expected


def test_a_missing_quiet_hours_section_names_both_keys(tmp_path):
    # No node to point at: the problems are placed on line 1.
    text = edit(('quiet_hours:\n  start: "22:00"\n  end: "08:00"\n', ""))
    assert problems(tmp_path, text) == [f"1: quiet_hours.start: {HHMM} None",
                                        f"1: quiet_hours.end: {HHMM} None"]


def test_the_error_lists_every_problem_on_its_own_line(tmp_path):
    text = edit(("rulebook: t", "rulebook: 5"), ("id: r1", "id: 7"))
    with pytest.raises(RulebookError) as exc:
        parse_rulebook(text, Path("r.yaml"))
    assert str(exc.value) == ("invalid rulebook:\n  r.yaml:2: rulebook: expected str, got 5\n"
                              "  r.yaml:10: rules[0].id: expected str, got 7")


def test_problems_beyond_the_cap_are_counted_not_listed(tmp_path):
    text = edit(("\nversion: 1\n", "\nversion: 1\n" + "".join(f"k{i}: 1\n" for i in range(103))))
    found = problems(tmp_path, text)
    assert len(found) == 101
    assert found[0] == f"4: k0: unknown key; expected among {TOP_KEYS}"
    assert found[99].startswith("103: k99: unknown key")
    assert found[100] == "1: (file): 3 more problem(s) not shown; fix these first"
    # exactly at the cap: no tail
    text = edit(("\nversion: 1\n", "\nversion: 1\n" + "".join(f"k{i}: 1\n" for i in range(100))))
    found = problems(tmp_path, text)
    assert len(found) == 100 and found[-1].startswith("103: k99: unknown key")


def test_too_many_rules_are_refused_as_too_large(tmp_path):
    text = BASE.split("rules:")[0] + "rules:\n" + "  - x\n" * 501
    (tmp_path / "rulebook.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(RulebookError) as exc:
        load_rulebook(tmp_path)
    assert exc.value.code == "too_large"
    assert exc.value.problems == [f"{tmp_path / 'rulebook.yaml'}:10: rules: 501 rules; at most "
                                  "500: merge rules that differ only in audience"]
    # 500 rules are checked one by one (here each is refused on its own)
    text = BASE.split("rules:")[0] + "rules:\n" + "  - x\n" * 500
    found = problems(tmp_path, text)
    assert found[0] == ("10: rules[0]: expected a mapping with id, version, trigger, action, "
                        "templates")


def test_a_file_refused_before_its_check_keeps_its_reason(tmp_path):
    with pytest.raises(RulebookError) as exc:
        load_rulebook(tmp_path / "absent.yaml")
    assert exc.value.code == "unreadable"
    assert exc.value.problems[0].startswith(f"{tmp_path / 'absent.yaml'}:1: (file): no such")
    with pytest.raises(RulebookError) as exc:
        parse_rulebook(BASE + "rulebook: u\n", Path("r.yaml"))
    assert exc.value.code == "duplicate_key"
    assert exc.value.problems == ["r.yaml:20: rulebook: key given twice (first at line 2); keep "
                                  "one and merge what the two say"]


def test_a_path_may_name_the_file_itself(tmp_path):
    file = tmp_path / "other.yaml"
    file.write_text(BASE, encoding="utf-8")
    book = load_rulebook(file)
    assert book.source == str(file) and book.name == "t"


# ---- a valid rulebook, read in full ---------------------------------------------------

FULL = """\
rulebook: full.book-1
version: 7
correlation:
  outage_severities: [critical, major]
  outage_causes: lossOfSignal
  group_wait_s: 30
  hold_down_s: 90.5
  position_max_age_s: 1800
  flapping: {outages: 3, window_s: 900, stable_s: 300}
quiet_hours: {start: "21:30", end: "07:15", defer: [apology], defer_unconfirmed: outage_notice}
channels: {default_order: [email, push]}
limits: {max_contacts_per_day: 3}
inhibit: {apology_when_notified: false}
budgets:
  compensation_per_day: 50
  per_minute: {sms: 20, email: 100}
  priority_segments: [vip]
  reserve_share: 0.25
  pace: regional_events
silences:
  - {id: storm, start: "2026-11-23T00:00:00Z", end: 2026-11-24T00:00:00+01:00,
     regions: [North], site_ids: [S1], comment: press}
  - {id: works, start: "2026-11-25T08:00:00+00:00", end: "2026-11-25T09:00:00+00:00",
     site_ids: S2}
rules:
  - id: notice
    version: 2
    owner: care
    description: d
    trigger: {incident: [outage, flapping], at: hold_down, scope: site,
              probable_cause: [powerProblem]}
    audience: {segment: [vip], plan: [Gold], tags: [fibre], region: [North],
               language: [en, de], tenure_months: {min: 6, max: 60}, complaints: {min: 1},
               min_propensity: 0.4}
    channels: {order: [sms], avoid_down_cell: true}
    limits: {cooldown_s: 600, cell_cooldown_s: 3600}
    action: outage_notice
    templates: {en: "Hi $name", de: "Hallo $name"}
  - id: credit
    version: 1
    owner: marketing
    description: e
    trigger: {incident: outage, at: duration, min_duration_s: 7200}
    action: compensation
    offer: {kind: data_credit, amount_gb: 2.5, valid_days: 7, note: null, auto: true}
    templates: {en: "Have $offer"}
  - id: drops
    version: 1
    owner: care
    description: f
    trigger: {dropped_calls: {count: 3, window_s: 600}}
    action: apology
    templates: {en: "Sorry $name"}
"""


def utc(*args: int, hours: int = 0) -> float:
    return datetime(*args, tzinfo=timezone(timedelta(hours=hours))).timestamp()


def test_every_key_of_a_valid_rulebook_is_read(tmp_path):
    file = tmp_path / "rulebook.yaml"
    file.write_text(FULL, encoding="utf-8")
    book = load_rulebook(tmp_path)
    assert book.digest == hashlib.sha256(FULL.encode()).hexdigest()[:12]
    assert dataclasses.replace(book, digest="") == Rulebook(
        name="full.book-1", version=7,
        correlation=Correlation(
            outage_severities=frozenset({"critical", "major"}),
            outage_causes=frozenset({"lossOfSignal"}), group_wait_s=30.0, hold_down_s=90.5,
            position_max_age_s=1800.0, flapping_outages=3, flapping_window_s=900.0,
            flapping_stable_s=300.0),
        quiet_start_min=21 * 60 + 30, quiet_end_min=7 * 60 + 15,
        defer_kinds=frozenset({"apology"}), channel_order=("email", "push"),
        rules=(
            Rule(id="notice", version=2, owner="care", description="d", action="outage_notice",
                 templates={"en": "Hi $name", "de": "Hallo $name"},
                 incident_kinds=("outage", "flapping"), at="hold_down", scopes=("site",),
                 causes=("powerProblem",),
                 audience=Audience(segments=("vip",), plans=("Gold",), tags=("fibre",),
                                   regions=("north",), languages=("en", "de"), tenure_min=6,
                                   tenure_max=60, complaints_min=1, min_propensity=0.4),
                 channels=ChannelPolicy(order=("sms",), avoid_down_cell=True),
                 cooldown_s=600.0, cell_cooldown_s=3600.0),
            Rule(id="credit", version=1, owner="marketing", description="e",
                 action="compensation", templates={"en": "Have $offer"},
                 incident_kinds=("outage",), at="duration", min_duration_s=7200.0,
                 offer={"kind": "data_credit", "amount_gb": 2.5, "valid_days": 7, "note": None,
                        "auto": True}),
            Rule(id="drops", version=1, owner="care", description="f", action="apology",
                 templates={"en": "Sorry $name"}, drop_count=3, drop_window_s=600.0),
        ),
        source=str(file), max_contacts_per_day=3, inhibit_apology_when_notified=False,
        budgets=Budgets(compensation_per_day=50, per_minute={"sms": 20, "email": 100},
                        priority_segments=("vip",), reserve_share=0.25,
                        pace="regional_events"),
        silences=(
            Silence("storm", utc(2026, 11, 23), utc(2026, 11, 24, hours=1), ("S1",),
                    ("north",), "press"),
            Silence("works", utc(2026, 11, 25, 8), utc(2026, 11, 25, 9), ("S2",)),
        ),
        defer_unconfirmed_kinds=frozenset({"outage_notice"}),
    )
    assert book.rule("credit").offer["amount_gb"] == 2.5
    assert [r.id for r in book.drop_rules()] == ["drops"]
    assert book.durations("outage") == [7200.0] and book.durations("degradation") == []


def test_what_a_small_rulebook_leaves_out_takes_its_documented_default(tmp_path):
    file = tmp_path / "rulebook.yaml"
    file.write_text(BASE, encoding="utf-8")
    book = load_rulebook(file)
    assert dataclasses.replace(book, digest="") == Rulebook(
        name="t", version=1,
        correlation=Correlation(frozenset({"critical"}), frozenset(), group_wait_s=60.0,
                                hold_down_s=120.0, position_max_age_s=3600.0,
                                flapping_outages=4, flapping_window_s=1800.0,
                                flapping_stable_s=600.0),
        quiet_start_min=22 * 60, quiet_end_min=8 * 60, defer_kinds=frozenset(),
        channel_order=CHANNEL_NAMES,
        rules=(Rule(id="r1", version=1, owner="o", description="d", action="outage_notice",
                    templates={"en": "Hi $name"}, incident_kinds=("outage",),
                    at="hold_down"),),
        source=str(file), max_contacts_per_day=None, inhibit_apology_when_notified=True,
        budgets=None, silences=(), defer_unconfirmed_kinds=frozenset(),
    )
    file.write_text(top("budgets:\n  compensation_per_day: 0\n"), encoding="utf-8")
    assert load_rulebook(file).budgets == Budgets(
        compensation_per_day=0, per_minute={}, priority_segments=("vip", "business"),
        reserve_share=0.2)


@pytest.mark.parametrize(("section", "value"), [
    ("  group_wait_s: 0\n", ("group_wait_s", 0.0)),
    ("  group_wait_s: 3600\n  hold_down_s: 86400\n", ("hold_down_s", 86400.0)),
    ("  position_max_age_s: 86400\n", ("position_max_age_s", 86400.0)),
    ("  flapping: {outages: 2, window_s: 86400, stable_s: 0.5}\n", ("flapping_outages", 2)),
    ("  flapping: {outages: 100}\n", ("flapping_outages", 100)),
])
def test_numbers_at_the_ends_of_their_ranges_are_accepted(tmp_path, section, value):
    text = edit(("  outage_severities: [critical]\n", "  outage_severities: [critical]\n" +
                 section))
    book = parse_rulebook(text, tmp_path / "rulebook.yaml")
    assert getattr(book.correlation, value[0]) == value[1]


def test_an_offer_may_hold_zeros_text_flags_and_nulls(tmp_path):
    text = rule("    offer: {kind: data_credit, amount_gb: 0.5, valid_days: 0, fee: 0.0, "
                "auto: false, note: null}\n")
    book = parse_rulebook(text, tmp_path / "rulebook.yaml")
    assert book.rules[0].offer == {"kind": "data_credit", "amount_gb": 0.5, "valid_days": 0,
                                   "fee": 0.0, "auto": False, "note": None}


def test_a_rules_limits_default_to_none_each(tmp_path):
    only_cooldown = parse_rulebook(rule("    limits: {cooldown_s: 60}\n"), tmp_path / "r.yaml")
    assert (only_cooldown.rules[0].cooldown_s, only_cooldown.rules[0].cell_cooldown_s) == (
        60.0, 0.0)
    only_cell = parse_rulebook(rule("    limits: {cell_cooldown_s: 60}\n"), tmp_path / "r.yaml")
    assert (only_cell.rules[0].cooldown_s, only_cell.rules[0].cell_cooldown_s) == (0.0, 60.0)


def test_quiet_hours_may_start_or_end_in_the_hour_after_midnight(tmp_path):
    book = parse_rulebook(edit(('"22:00"', '"00:30"'), ('"08:00"', '"23:59"')),
                          tmp_path / "r.yaml")
    assert (book.quiet_start_min, book.quiet_end_min) == (30, 23 * 60 + 59)


def test_a_tenure_range_of_one_month_is_accepted(tmp_path):
    text = edit(("    action: outage_notice\n", "    action: outage_notice\n"
                 "    audience:\n      tenure_months: {min: 12, max: 12}\n"))
    book = parse_rulebook(text, tmp_path / "rulebook.yaml")
    assert (book.rules[0].audience.tenure_min, book.rules[0].audience.tenure_max) == (12, 12)


def test_an_unset_null_value_is_the_same_as_leaving_the_key_out(tmp_path):
    text = top("limits:\n  max_contacts_per_day: null\ninhibit:\n  apology_when_notified: null\n")
    book = parse_rulebook(text, tmp_path / "rulebook.yaml")
    assert book.max_contacts_per_day is None and book.inhibit_apology_when_notified is True
