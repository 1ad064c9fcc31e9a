"""Hostile rulebooks: every one is refused as ``file:line: key: what`` (never a traceback,
never gigabytes), and a running flow refuses them on hot reload and keeps its rules."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import yaml
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.testing import TestingSink
from prometheus_client import REGISTRY

from forewarn.cli import main
from forewarn.dataflows.flow import FlowConfig, Outputs
from forewarn.rules.reload import REFUSAL_CODES, RulebookWatcher
from forewarn.rules.rulebook import DEFAULT_DIR, MAX_RULES, RANGES, RulebookError, load_rulebook
from forewarn.rules.safe_yaml import MAX_BYTES, MAX_DEPTH, MAX_NODES
from forewarn.runner import execute
from tests.builders import Scenario, without_budgets

DEFAULT_TEXT = (DEFAULT_DIR / "rulebook.yaml").read_text(encoding="utf-8")
PROBLEM = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<key>\S+): (?P<what>.+)$")


def write(tmp_path: Path, data: str | bytes) -> Path:
    file = tmp_path / "rulebook.yaml"
    file.write_bytes(data.encode() if isinstance(data, str) else data)
    return file


def publish(tmp_path: Path, data: str | bytes) -> None:
    """Replace the live rulebook atomically (as docs/rules.md advises): the watcher never
    sees half a file."""
    tmp = tmp_path / ".rulebook.yaml.new"
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, tmp_path / "rulebook.yaml")


def edited(*pairs: tuple[str, str], extra: str = "") -> str:
    text = DEFAULT_TEXT
    for old, new in pairs:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text + extra


def refused(tmp_path: Path, data: str | bytes, code: str) -> list[re.Match]:
    """Load ``data`` and return its problems, each checked to be ``file:line: key: what``."""
    file = write(tmp_path, data)
    with pytest.raises(RulebookError) as exc:
        load_rulebook(tmp_path)
    assert exc.value.code == code, exc.value.problems
    found = [PROBLEM.match(p) for p in exc.value.problems]
    assert all(found), exc.value.problems
    assert {m["file"] for m in found} == {str(file)}
    return found


def line_of(data: str | bytes, needle: str | bytes, nth: int = 1) -> int:
    """1-based line of the nth occurrence of ``needle``."""
    raw = data.encode() if isinstance(data, str) else data
    pos = -1
    for _ in range(nth):
        pos = raw.index(needle.encode() if isinstance(needle, str) else needle, pos + 1)
    return raw.count(b"\n", 0, pos) + 1


# ---- numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize("old,new,key", [
    ("hold_down_s: 120 ", "hold_down_s: .nan ", "correlation.hold_down_s"),
    ("hold_down_s: 120 ", "hold_down_s: .inf ", "correlation.hold_down_s"),
    ("group_wait_s: 60 ", "group_wait_s: -.Inf ", "correlation.group_wait_s"),
    ("window_s: 1800 ", "window_s: 1.0e+400 ", "correlation.flapping.window_s"),
    ("amount_gb: 5,", "amount_gb: .NaN,", "rules[4].offer.amount_gb"),
    ("cooldown_s: 86400", "cooldown_s: !!float nan", "rules[6].limits.cooldown_s"),
    ("outages: 4 ", "outages: 99999999999999999999 ", "correlation.flapping.outages"),
])
def test_nan_infinity_and_absurd_numbers_are_refused_anywhere(tmp_path, old, new, key):
    text = edited((old, new))
    (m,) = refused(tmp_path, text, "bad_number")
    assert m["key"] == key and int(m["line"]) == line_of(text, new.strip(" ,"))
    assert "give a" in m["what"]


@pytest.mark.parametrize("old,new,key", [
    ("hold_down_s: 120 ", "hold_down_s: -120 ", "correlation.hold_down_s"),
    ("hold_down_s: 120 ", "hold_down_s: 0 ", "correlation.hold_down_s"),
    ("hold_down_s: 120 ", "hold_down_s: 172800 ", "correlation.hold_down_s"),
    ("group_wait_s: 60 ", "group_wait_s: -60 ", "correlation.group_wait_s"),
    ("position_max_age_s: 3600", "position_max_age_s: -1", "correlation.position_max_age_s"),
    ("outages: 4 ", "outages: 1 ", "correlation.flapping.outages"),
    ("stable_s: 600 ", "stable_s: -600 ", "correlation.flapping.stable_s"),
    ("at: duration, min_duration_s: 14400}\n    audience: {segment: [consumer]}",
     "at: duration, min_duration_s: -14400}\n    audience: {segment: [consumer]}",
     "rules[long-outage-compensation].trigger.min_duration_s"),
    ("count: 2, window_s: 1800", "count: 2, window_s: -1800",
     "rules[dropped-call-apology].trigger.dropped_calls.window_s"),
    ("count: 2, window_s: 1800", "count: 0, window_s: 1800",
     "rules[dropped-call-apology].trigger.dropped_calls.count"),
    ("cooldown_s: 86400", "cooldown_s: -86400", "rules[dropped-call-apology].limits.cooldown_s"),
    ("amount_gb: 5,", "amount_gb: -5,", "rules[long-outage-compensation].offer.amount_gb"),
    ("max_contacts_per_day: null", "max_contacts_per_day: 0", "limits.max_contacts_per_day"),
])
def test_negative_zero_and_too_large_durations_and_counts_are_refused(tmp_path, old, new, key):
    text = edited((old, new))
    problems = refused(tmp_path, text, "invalid")
    m = next(m for m in problems if m["key"] == key)
    assert int(m["line"]) == line_of(text, new)
    assert m["what"].startswith(("expected more than", "expected at least"))


def _with_value(key: str, value: float) -> str:
    """The default rulebook with the number at RANGES key ``key`` set to ``value``."""
    v = int(value) if float(value).is_integer() else value
    leaf = key.rsplit(".", 1)[-1]
    consumer = "audience: {segment: [consumer]}"
    if key == "version":
        return edited(("version: 1\n\ncorrelation", f"version: {v}\n\ncorrelation"))
    if key == "rules.version":
        return edited(("  - id: restored-notice\n    version: 1",
                       f"  - id: restored-notice\n    version: {v}"))
    if key.startswith("correlation.storm."):
        old = {"sites": "    sites: 5 ", "window_s": "    window_s: 900 "}[leaf]
        return edited((old, f"    {leaf}: {v} "))
    if key.startswith("correlation."):
        line = re.search(rf"^ +{leaf}: .*$", DEFAULT_TEXT, re.M).group(0)
        return edited((line, line.split(":")[0] + f": {v}"))
    if key == "rules.trigger.min_duration_s":
        return edited((f"min_duration_s: 14400}}\n    {consumer}",
                       f"min_duration_s: {v}}}\n    {consumer}"))
    if key.startswith("rules.trigger.dropped_calls."):
        return edited(("count: 2, window_s: 1800", {"count": f"count: {v}, window_s: 1800",
                                                    "window_s": f"count: 2, window_s: {v}"}[leaf]))
    if key.startswith("rules.audience."):
        field = {"tenure_months.min": f"tenure_months: {{min: {v}}}",
                 "tenure_months.max": f"tenure_months: {{max: {v}}}",
                 "complaints.min": f"complaints: {{min: {v}}}",
                 "min_propensity": f"min_propensity: {v}"}[key.split(".", 2)[2]]
        return edited((consumer, consumer[:-1] + f", {field}}}"))
    if key == "rules.limits.cooldown_s":
        return edited(("cooldown_s: 86400", f"cooldown_s: {v}"))
    if key == "rules.limits.cell_cooldown_s":
        return edited(("cell_cooldown_s: 43200", f"cell_cooldown_s: {v}"))
    if key.startswith("rules.trigger.expected."):
        terms = {"silence_s": 3600, "within_s": 0, "min_outage_s": 0, leaf: v}
        return edited(("expected: {silence_s: 3600, within_s: 0, min_outage_s: 0}",
                       "expected: {" + ", ".join(f"{k}: {x}" for k, x in terms.items()) + "}"))
    if key == "rules.offer.amount_gb":
        return edited(("amount_gb: 5,", f"amount_gb: {v},"))
    if key == "limits.max_contacts_per_day":
        return edited(("max_contacts_per_day: null", f"max_contacts_per_day: {v}"))
    if key.startswith("budgets."):
        per_day, per_minute = (v, 1) if leaf == "compensation_per_day" else (1, v)
        delay = f"  max_delay_s: {v}\n" if leaf == "max_delay_s" else ""
        return without_budgets(DEFAULT_TEXT).replace(
            "\nrules:\n", f"\nbudgets:\n  compensation_per_day: {per_day}\n"
            f"  per_minute: {{sms: {per_minute}}}\n{delay}\nrules:\n")
    raise AssertionError(f"no way to set {key}: add one")


def test_every_range_is_enforced_at_both_ends(tmp_path):
    """Each RANGES entry accepts its bounds and refuses the values just outside them."""
    for key, (lo, hi, open_lo) in RANGES.items():
        for good in ((lo + hi) / 2 if open_lo else lo, hi):
            if key.endswith(("count", "outages", "version", "per_day", "per_minute", ".min",
                             ".max")):
                good = int(good)
            text = _with_value(key, good)
            if key == "correlation.group_wait_s":  # must stay below the hold-down
                text = text.replace("hold_down_s: 120 ", "hold_down_s: 7200 ")
            write(tmp_path, text)
            assert load_rulebook(tmp_path), (key, good)
        for bad in ((lo if open_lo else lo - 1), hi + 1):
            problems = refused(tmp_path, _with_value(key, bad), "invalid")
            assert any(re.sub(r"\[[^\]]*\]", "", m["key"]) in (key, f"{key}.sms")
                       and m["what"].startswith("expected") for m in problems), (key, bad)


@pytest.mark.parametrize("start", ["2026-11-23 00:00:00", '"2026-11-23T00:00:00"',
                                   "2026-02-30T00:00:00Z"])
def test_silence_times_need_a_real_date_and_an_offset(tmp_path, start):
    text = edited(("\nrules:\n", f"\nsilences:\n  - {{id: s, start: {start}, end: "
                   "2026-11-24T00:00:00Z, regions: [north]}\nrules:\n"))
    code = "bad_number" if "02-30" in start else "invalid"
    (m,) = refused(tmp_path, text, code)
    assert m["key"] == "silences[0].start" and int(m["line"]) == line_of(text, "id: s,")


def test_too_many_rules_are_refused_before_comparing_every_pair(tmp_path):
    rule = ("  - {id: r%d, version: 1, owner: o, description: d, action: apology, templates: "
            "{en: x}, trigger: {dropped_calls: {count: 2, window_s: 60}}, "
            "audience: {plan: [p%d]}}\n")
    text = DEFAULT_TEXT + "".join(rule % (i, i) for i in range(MAX_RULES))
    t0 = time.process_time()
    (m,) = refused(tmp_path, text, "too_large")
    assert time.process_time() - t0 < 2.0
    assert m["key"] == "rules" and int(m["line"]) == line_of(text, "  - id: outage-notice")
    default_rules = len(load_rulebook().rules)
    assert f"{MAX_RULES + default_rules} rules; at most {MAX_RULES}" in m["what"]


def test_problems_are_capped_not_endless(tmp_path):
    many_dups = DEFAULT_TEXT + "x:\n" + "  k: 1\n" * 5000
    problems = refused(tmp_path, many_dups, "duplicate_key")
    assert len(problems) == 101 and "stopped after 100 problems" in problems[-1]["what"]
    many_bad = edited(("outage_severities: [critical, major]",
                       "outage_severities: [" + ", ".join(["bogus"] * 5000) + "]"))
    problems = refused(tmp_path, many_bad, "invalid")
    assert len(problems) == 101 and "4900 more problem(s) not shown" in problems[-1]["what"]


# ---- structure -------------------------------------------------------------------------


def test_duplicate_top_level_rules_key_is_refused_not_six_rules_dropped(tmp_path):
    second = ("\nrules:\n  - id: only-one\n    version: 1\n    owner: x\n    description: x\n"
              "    trigger: {dropped_calls: {count: 3, window_s: 600}}\n    action: apology\n"
              "    templates: {en: \"Sorry $name\"}\n")
    text = DEFAULT_TEXT + second
    (m,) = refused(tmp_path, text, "duplicate_key")
    assert m["key"] == "rules" and int(m["line"]) == line_of(text, "\nrules:", 2) + 1
    assert f"first at line {line_of(text, chr(10) + 'rules:') + 1}" in m["what"]


@pytest.mark.parametrize("old,new,key", [
    ("hold_down_s: 120 ", "hold_down_s: 120\n  hold_down_s: 60 ", "correlation.hold_down_s"),
    ("    action: apology\n", "    action: apology\n    action: compensation\n",
     "rules[6].action"),
    ("{incident: [outage, flapping], at: hold_down}",
     "{incident: [outage, flapping], at: hold_down, at: resolved}", "rules[0].trigger.at"),
    ("      pl: \"Cześć $name, usługa", "      en: \"x\"\n      pl: \"Cześć $name, usługa",
     "rules[3].templates.en"),
])
def test_duplicate_keys_are_refused_at_every_level(tmp_path, old, new, key):
    text = edited((old, new))
    problems = refused(tmp_path, text, "duplicate_key")
    assert [m["key"] for m in problems] == [key]
    assert "key given twice (first at line" in problems[0]["what"]


@pytest.mark.parametrize("tag", [
    '!!python/object/apply:os.system ["touch {marker}"]',
    "!!python/name:os.system",
    '!!python/object/new:subprocess.Popen [["touch", "{marker}"]]',
    "!custom value",
    "!!binary aGVsbG8=",
    "!!set {a, b}",
])
def test_python_and_unknown_tags_are_refused_and_run_nothing(tmp_path, tag):
    marker = tmp_path / "ran"
    text = edited(("rulebook: default", f"rulebook: {tag.replace('{marker}', str(marker))}"))
    (m,) = refused(tmp_path, text, "unsafe_tag")
    assert m["key"] == "rulebook" and int(m["line"]) == line_of(text, "rulebook: !")
    assert "remove the tag" in m["what"]
    text = "%TAG !p! tag:yaml.org,2002:python/\n---\n" + edited(
        ("rulebook: default", f"rulebook: !p!object/apply:os.system ['touch {marker}']"))
    (m,) = refused(tmp_path, text, "unsafe_tag")
    assert not marker.exists()


@pytest.mark.parametrize("extra,key,at", [
    ("? [a, b]\n: c\n", "(top)", "? ["),
    ("? {a: 1}\n: c\n", "(top)", "? {"),
    ("inhibit2: {[x]: 1}\n", "inhibit2", "inhibit2"),
    ("x: &k key\n*k : value\n", "(top)", "*k :"),
    ("base: &b {a: 1}\nmerged:\n  <<: *b\n", "merged", "<<"),
])
def test_complex_alias_and_merge_keys_are_refused(tmp_path, extra, key, at):
    text = DEFAULT_TEXT + extra
    (m,) = refused(tmp_path, text, "complex_key")
    assert m["key"] == key and int(m["line"]) == line_of(text, at)
    assert "write the key" in m["what"] or "write the keys out" in m["what"]


def test_non_utf8_files_are_refused_with_the_line(tmp_path):
    text = edited(("Bonjour $name, nous savons", "Bonjour $name, nous savons"))
    latin1 = text.replace("problème", "probl\xe8me").encode("latin-1", errors="replace")
    (m,) = refused(tmp_path, latin1, "not_utf8")
    assert int(m["line"]) == line_of(latin1, b"probl\xe8me") and "save the file as UTF-8" in \
        m["what"] and "0xe8" in m["what"]
    (m,) = refused(tmp_path, DEFAULT_TEXT.encode("utf-16"), "not_utf8")
    assert m["line"] == "1"
    # A UTF-8 byte-order mark is fine.
    write(tmp_path, b"\xef\xbb\xbf" + DEFAULT_TEXT.encode())
    assert load_rulebook(tmp_path).version == 1


@pytest.fixture(params=["libyaml", "python"])
def loader(request, monkeypatch):
    """Both YAML parsers PyYAML may use: libyaml when built with it, else pure Python."""
    if request.param == "python":
        monkeypatch.setattr("forewarn.rules.safe_yaml._LOADER", yaml.SafeLoader)
    return request.param


@pytest.mark.parametrize("nest", ["flow", "block"])
def test_deep_nesting_is_refused_quickly(tmp_path, nest, loader):
    if nest == "flow":
        deep = "deep: " + "[" * 5000 + "]" * 5000 + "\n"
    else:  # as deep as the size limit allows in block style
        deep = "deep:\n" + "".join(" " * i + "- \n" for i in range(1, 600))
    text = DEFAULT_TEXT + deep
    t0 = time.process_time()
    (m,) = refused(tmp_path, text, "too_deep")
    assert time.process_time() - t0 < 2.0
    assert m["key"].startswith("deep[0]") and f"more than {MAX_DEPTH} levels" in m["what"]
    assert int(m["line"]) >= line_of(text, "deep:")


def _laughs(levels: int = 9, width: int = 10) -> str:
    out = ["      lol0: &l0 [" + ", ".join(['"lol"'] * width) + "]"]
    out += [f"      lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]"
            for i in range(1, levels + 1)]
    return "\n".join(out) + f"\n      en: *l{levels}\n"


def test_billion_laughs_in_a_template_is_refused_fast_with_little_memory(tmp_path, loader):
    text = edited(('      en: "Hi $name, sorry about your dropped calls',
                   _laughs() + '      fr: "Hi $name, sorry about your dropped calls'))
    tracemalloc.start()
    t0 = time.process_time()
    try:
        (m,) = refused(tmp_path, text, "too_many_nodes")
        cpu = time.process_time() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert cpu < 2.0, cpu  # 10^9 expanded values: minutes and gigabytes if they were expanded
    assert peak < 20 * 2**20, peak
    assert m["key"].startswith("rules[6].templates.lol") and str(MAX_NODES) in m["what"]
    # A wide, flat fan-out of one alias is refused too.
    flat = DEFAULT_TEXT + "many: &m [a, b, c, d, e, f, g, h, i, j]\nfan: [" + ", ".join(
        ["*m"] * 12_000) + "]\n"
    (m,) = refused(tmp_path, flat, "too_many_nodes")
    assert m["key"].startswith("fan[")


def test_aliases_within_the_limits_still_work(tmp_path):
    text = edited(('      en: "Hi $name, sorry about your dropped calls. We\'re looking into '
                   'the network around $area."',
                   '      en: &apology "Hi $name, sorry about your dropped calls."\n'
                   '      it: *apology'))
    write(tmp_path, text)
    rule = load_rulebook(tmp_path).rule("dropped-call-apology")
    assert rule.templates["it"] == rule.templates["en"] == "Hi $name, sorry about your " \
        "dropped calls."


def test_oversize_and_special_files_are_refused_without_reading_them(tmp_path):
    text = DEFAULT_TEXT + "# " + "x" * MAX_BYTES + "\n"
    (m,) = refused(tmp_path, text, "too_large")
    assert m["line"] == "1" and m["key"] == "(file)" and "256 KiB" in m["what"]
    with (tmp_path / "rulebook.yaml").open("wb") as fh:  # sparse: 8 GiB, nothing to read
        fh.truncate(8 * 2**30)
    tracemalloc.start()
    try:
        with pytest.raises(RulebookError) as exc:
            load_rulebook(tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert exc.value.code == "too_large" and peak < 4 * MAX_BYTES
    os.mkfifo(tmp_path / "fifo")  # opening it would wait for a writer forever
    for special in ("/dev/zero", tmp_path / "fifo"):
        with pytest.raises(RulebookError) as exc:
            load_rulebook(special)
        assert exc.value.code == "unreadable" and "not a regular file" in exc.value.problems[0]
    with pytest.raises(RulebookError) as exc:
        load_rulebook(tmp_path / "nowhere")
    assert exc.value.code == "unreadable" and PROBLEM.match(exc.value.problems[0])


HOSTILE_VALUES = ("[]", "{}", ".nan", "-.inf", "1e400", "!!binary aGk=", "null", "-1",
                  "100000000000000000000", "*nowhere", "&a [*a]", "'" + "x" * 6000 + "'",
                  "2026-13-45", "!!timestamp yesterday", "!!int x", "{a: 1, a: 2}", "? [x]")


def test_any_value_anywhere_gives_errors_never_an_exception(tmp_path):
    """Every `key: value` line of the default rulebook, given each hostile value: the loader
    either accepts it or reports file:line problems; nothing else escapes."""
    lines = DEFAULT_TEXT.splitlines(keepends=True)
    spots = [i for i, ln in enumerate(lines) if re.match(r"^\s*(- )?[a-z_]+: \S", ln)]
    assert len(spots) > 40
    outcomes = {"accepted": 0, "refused": 0}
    for n, i in enumerate(spots):
        value = HOSTILE_VALUES[n % len(HOSTILE_VALUES)]
        key = re.match(r"^(\s*(?:- )?[a-z_]+:)", lines[i]).group(1)
        text = "".join(lines[:i] + [f"{key} {value}\n"] + lines[i + 1:])
        write(tmp_path, text)
        try:
            load_rulebook(tmp_path)
            outcomes["accepted"] += 1
        except RulebookError as exc:
            outcomes["refused"] += 1
            assert exc.problems and all(PROBLEM.match(p) for p in exc.problems), exc.problems
    assert outcomes["refused"] > len(spots) // 2, outcomes


def test_rules_check_reports_each_hostile_file_as_file_line_errors(tmp_path, capsys):
    cases = {
        "nan": edited(("hold_down_s: 120 ", "hold_down_s: .nan ")),
        "negative": edited(("group_wait_s: 60 ", "group_wait_s: -60 ")),
        "duplicate": DEFAULT_TEXT + "rules: []\n",
        "tag": edited(("rulebook: default", "rulebook: !!python/name:os.system")),
        "complex": DEFAULT_TEXT + "? [a]\n: b\n",
        "latin1": DEFAULT_TEXT.replace("problème", "probl\xe8me").encode("latin-1",
                                                                          "replace"),
        "deep": DEFAULT_TEXT + "d: " + "[" * 5000 + "]" * 5000 + "\n",
        "laughs": edited(('      en: "Hi $name, sorry about your dropped calls',
                          _laughs() + '      fr: "Hi $name, sorry about your dropped calls')),
        "oversize": DEFAULT_TEXT + "#" * MAX_BYTES,
    }
    for name, data in cases.items():
        d = tmp_path / name
        d.mkdir()
        write(d, data)
        assert main(["rules", "check", str(d)]) == 1, name
        out = capsys.readouterr()
        lines = out.err.strip().splitlines()
        assert lines[-1].endswith("problem(s); the rulebook was not accepted"), name
        for line in lines[:-1]:
            m = PROBLEM.match(line)
            assert m and m["file"] == str(d / "rulebook.yaml"), (name, line)
        assert "Traceback" not in out.err + out.out


# ---- hot reload ------------------------------------------------------------------------


def reloads(outcome: str, reason: str) -> float:
    return REGISTRY.get_sample_value("forewarn_rulebook_reloads_total",
                                     {"outcome": outcome, "reason": reason}) or 0.0


def file_refused() -> float | None:
    return REGISTRY.get_sample_value("forewarn_rulebook_file_refused")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def rule_logs():
    handler = _Records()
    logger = logging.getLogger("forewarn.rules")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(level)


HOSTILE_RELOADS = {
    "not_utf8": DEFAULT_TEXT.replace("problème", "probl\xe8me").encode("latin-1", "replace"),
    "unsafe_tag": edited(("rulebook: default", "rulebook: !!python/object/apply:os.system "
                          "['touch MARKER']")),
    "too_many_nodes": edited(('      en: "Hi $name, sorry about your dropped calls',
                              _laughs() + '      fr: "Hi $name, sorry about your dropped')),
    "bad_number": edited(("hold_down_s: 120 ", "hold_down_s: .nan "), (  # seen if applied
        "  - id: outage-notice\n    version: 1", "  - id: outage-notice\n    version: 9")),
    "duplicate_key": DEFAULT_TEXT + "rules: []\n",
    "too_deep": DEFAULT_TEXT + "d: " + "[" * 5000 + "]" * 5000 + "\n",
    "too_large": DEFAULT_TEXT + "#" * MAX_BYTES,
    "invalid": edited(("group_wait_s: 60 ", "group_wait_s: -60 ")),
    "complex_key": DEFAULT_TEXT + "? [a]\n: b\n",
}


def test_hot_reload_refuses_each_hostile_file_logs_and_counts_it(tmp_path, rule_logs):
    assert set(HOSTILE_RELOADS) <= set(REFUSAL_CODES)
    write(tmp_path, DEFAULT_TEXT)
    watcher = RulebookWatcher(tmp_path, interval_s=0)
    running = watcher.current()
    for n, (code, data) in enumerate(HOSTILE_RELOADS.items(), start=1):
        marker = tmp_path / f"ran-{code}"
        if isinstance(data, str):
            data = data.replace("MARKER", str(marker))
        before = reloads("refused", code)
        write(tmp_path, data)
        for _ in range(3):  # a refused file is parsed, logged and counted once
            assert watcher.current() is running
        assert reloads("refused", code) == before + 1 and watcher.refused == n
        assert watcher.last_code == code and file_refused() == 1
        assert not marker.exists()
        (log,) = [r for r in rule_logs if r.getMessage().startswith("rulebook change refused")]
        rule_logs.clear()
        assert log.reason == code and log.file == str(tmp_path / "rulebook.yaml")
        assert log.running_version == 1 and log.errors and all(
            PROBLEM.match(e) for e in log.errors)
    applied = reloads("applied", "none")
    write(tmp_path, DEFAULT_TEXT)  # the bad edit undone: in force again, nothing to apply
    assert watcher.current() is running and file_refused() == 0
    write(tmp_path, DEFAULT_TEXT.replace("version: 1\n", "version: 2\n", 1))
    assert watcher.current().version == 2 and reloads("applied", "none") == applied + 1
    assert watcher.last_errors == [] and watcher.last_code is None


def test_hot_reload_refuses_even_an_unexpected_failure(tmp_path, monkeypatch):
    write(tmp_path, DEFAULT_TEXT)
    watcher = RulebookWatcher(tmp_path, interval_s=0)
    running = watcher.current()

    def broken(path):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr("forewarn.rules.reload.load_rulebook", broken)
    before = reloads("refused", "internal")
    write(tmp_path, DEFAULT_TEXT + "# edited\n")
    assert watcher.current() is running
    assert reloads("refused", "internal") == before + 1
    assert PROBLEM.match(watcher.last_errors[0]) and "RecursionError" in watcher.last_errors[0]


class _GatedPartition(StatefulSourcePartition):
    def __init__(self, phases: list[list[bytes]], gates: list[threading.Event], filler: bytes):
        self.phases, self.gates, self.filler = [list(p) for p in phases], gates, filler
        self.phase = 0
        self.awake: datetime | None = None

    def next_batch(self) -> list:
        self.awake = None
        if self.phases[self.phase]:
            batch, self.phases[self.phase] = self.phases[self.phase][:1], \
                self.phases[self.phase][1:]
            return [("lines", line) for line in batch]
        if self.phase == len(self.phases) - 1:
            raise StopIteration
        if self.gates[self.phase].is_set():
            self.phase += 1
            return []
        # Waiting for the test: a repeated topology record keeps batches (and so rulebook
        # checks) flowing without moving event time.
        self.awake = datetime.now(UTC) + timedelta(milliseconds=10)
        return [("lines", self.filler)]

    def next_awake(self) -> datetime | None:
        return self.awake

    def snapshot(self) -> None:
        return None


class GatedSource(FixedPartitionedSource):
    """Phases of lines; phase i+1 starts once ``gates[i]`` is set."""

    def __init__(self, phases: list[list[bytes]], gates: list[threading.Event], filler: bytes):
        self.phases, self.gates, self.filler = phases, gates, filler

    def list_parts(self) -> list[str]:
        return ["gated"]

    def build_part(self, step_id: str, for_part: str, resume_state):
        return _GatedPartition(self.phases, self.gates, self.filler)


def _wait(what: str, cond: Callable[[], bool], ended: threading.Event,
          timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if ended.is_set():
            raise AssertionError(f"the flow ended before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)  # polling a condition with a deadline


def _outage(s: Scenario, sid: str, site: str, at: float) -> Scenario:
    s.seen(sid, f"{site}-C1", at).alarm(f"A-{site}", at + 1, cell=f"{site}-C1")
    for minute in range(int(at) + 2, int(at) + 12):
        s.tick(minute)  # past the 2 min hold-down: the outage notice is due
    return s


def test_running_flow_refuses_hostile_rulebooks_and_keeps_its_rules(tmp_path, rule_logs):
    """A flow watching its rules dir: hostile rulebooks written over the live one are
    refused while they stay in place (observed through the metric), actions go on under
    the running rules, and a valid change afterwards still applies."""
    write(tmp_path, DEFAULT_TEXT)
    watcher = RulebookWatcher(tmp_path, interval_s=0)
    setup = Scenario().site("S1").site("S2").site("S3")
    for sid in ("U", "W", "X"):
        setup.subscriber(sid)
    far = orjson.dumps(dict(type="cell", cell_id="FAR-C1", site_id="FAR"))
    phases = [[far, *setup.lines, *_outage(Scenario(), "U", "S1", 1).lines],
              _outage(Scenario(), "W", "S2", 20).lines,
              _outage(Scenario(), "X", "S3", 40).lines]
    gates = [threading.Event(), threading.Event()]
    outputs: dict[str, list] = {k: [] for k in ("actions", "incidents", "dead_letters",
                                                "suppressed")}
    seen: dict[str, tuple[int, float | None]] = {}
    marker = tmp_path / "ran"
    failures: list[BaseException] = []
    ended = threading.Event()
    hostile = ("unsafe_tag", "not_utf8", "too_many_nodes", "bad_number")

    def actions_for(sid: str) -> list[dict]:
        return [a for a in (orjson.loads(line) for _, line in list(outputs["actions"]))
                if a["subscriber_id"] == sid]

    def editor() -> None:
        try:
            _wait("U's outage notice", lambda: actions_for("U"), ended)
            for code in hostile:
                data = HOSTILE_RELOADS[code]
                data = data.replace("MARKER", str(marker)) if isinstance(data, str) else data
                before = reloads("refused", code)
                publish(tmp_path, data)
                _wait(f"the refusal ({code})",
                      lambda c=code, b=before: reloads("refused", c) > b, ended)
                seen[code] = (watcher.refused, file_refused())
            gates[0].set()  # W's outage runs with the NaN rulebook still on disk
            _wait("W's outage notice", lambda: actions_for("W"), ended)
            applied = reloads("applied", "none")
            publish(tmp_path, DEFAULT_TEXT.replace("version: 1\n", "version: 2\n", 1).replace(
                "  - id: outage-notice\n    version: 1", "  - id: outage-notice\n    version: 2"))
            _wait("the valid change", lambda: reloads("applied", "none") > applied, ended)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test thread
            failures.append(exc)
        finally:
            for gate in gates:
                gate.set()  # never leave the flow waiting

    thread = threading.Thread(target=editor)
    thread.start()
    try:
        execute(GatedSource(phases, gates, far),
                Outputs(**{k: TestingSink(v) for k, v in outputs.items()}),
                FlowConfig(book=watcher.current(), watch=watcher), epoch_s=0.05)
    finally:
        ended.set()
        thread.join(timeout=120)
    if failures:
        raise failures[0]
    notices = {a["subscriber_id"]: a["rule_version"]
               for a in (orjson.loads(line) for _, line in outputs["actions"])
               if a["kind"] == "outage_notice"}
    assert notices == {"U": 1, "W": 1, "X": 2}
    assert [seen[c] for c in hostile] == [(1, 1), (2, 1), (3, 1), (4, 1)]
    assert watcher.reloads == 1 and file_refused() == 0 and not marker.exists()
    refusals = [r for r in rule_logs if r.getMessage().startswith("rulebook change refused")]
    assert [r.reason for r in refusals] == list(hostile)
