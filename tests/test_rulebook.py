"""Rulebook loading and validation: every error names file:line, key, expected and found."""

from __future__ import annotations

from pathlib import Path

import pytest

from forewarn.cli import main
from forewarn.rules.rulebook import DEFAULT_DIR, RulebookError, load_rulebook


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "rulebook.yaml").write_text(text, encoding="utf-8")
    return tmp_path


def broken(tmp_path: Path, old: str, new: str) -> list[str]:
    text = (DEFAULT_DIR / "rulebook.yaml").read_text(encoding="utf-8")
    assert old in text
    with pytest.raises(RulebookError) as exc:
        load_rulebook(write(tmp_path, text.replace(old, new, 1)))
    return exc.value.problems


def test_default_rulebook_is_valid_and_covers_the_contract():
    book = load_rulebook()
    assert {r.action for r in book.rules} == {"outage_notice", "restored_notice", "apology",
                                              "compensation", "care_callback", "area_notice"}
    c = book.correlation
    assert (c.group_wait_s, c.hold_down_s, c.position_max_age_s) == (60, 120, 3600)
    assert c.outage_causes == {"lossOfSignal", "powerProblem", "transmitterFailure",
                               "equipmentMalfunction", "cellUnavailable"}
    for rule in book.rules:
        assert set(rule.templates) >= {"en", "es", "fr", "de", "pl"}


def test_unknown_template_field_is_reported_with_line(tmp_path):
    problems = broken(tmp_path, "we know about a network problem around $area",
                      "we know about $outage_reason")
    assert len(problems) == 1
    p = problems[0]
    assert p.startswith(f"{tmp_path / 'rulebook.yaml'}:")
    line = int(p.split(":")[1])
    text = (tmp_path / "rulebook.yaml").read_text().splitlines()
    assert "$outage_reason" in text[line - 1]
    assert "rules[outage-notice].templates.en" in p and "unknown field(s) outage_reason" in p


def test_bad_enum_and_type_are_reported(tmp_path):
    problems = broken(tmp_path, "action: apology", "action: hug")
    assert any("rules[dropped-call-apology].action: expected one of" in p and "'hug'" in p
               for p in problems)
    problems = broken(tmp_path, "hold_down_s: 120", "hold_down_s: soon")
    assert any("correlation.hold_down_s: expected float, got 'soon'" in p for p in problems)


def test_missing_english_template_and_duplicate_ids(tmp_path):
    problems = broken(tmp_path, "  - id: restored-notice", "  - id: outage-notice")
    assert any("duplicate rule id" in p for p in problems)


def test_not_yaml(tmp_path):
    with pytest.raises(RulebookError) as exc:
        load_rulebook(write(tmp_path, "rules: [\n  - id: x\n  bad"))
    assert "not valid YAML" in exc.value.problems[0]


def test_rules_check_command(tmp_path, capsys):
    assert main(["rules", "check", str(DEFAULT_DIR)]) == 0
    assert "OK" in capsys.readouterr().out
    write(tmp_path, "rulebook: x\nversion: one\n")
    assert main(["rules", "check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "version: expected int, got 'one'" in err and "rulebook.yaml:2" in err
