"""rules/safe_yaml.py on small inputs: each refusal's code and exact message (file:line,
key path, what to do), and the limits at their exact edges."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from forewarn.rules.safe_yaml import (
    MAX_BYTES,
    MAX_DEPTH,
    MAX_NODES,
    MAX_NUMBER,
    YamlRefused,
    compose_limited,
    read_limited,
)

F = Path("r.yaml")
TWICE = "keep one and merge what the two say"
NOT_TEXT = ("a key must be plain text, not a list, a mapping or an alias; write the key out as "
            "text")
TOO_MANY = (f"more than {MAX_NODES} values once aliases are expanded (nested aliases "
            "multiply); write the values out or use fewer aliases")
TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep; a rulebook needs at most 6"
NOT_FINITE = "is not a finite number; NaN and infinities are not allowed: give a number"
AHEAD = "(an alias may not point into its own anchor or ahead of it)"


def refused(data: bytes) -> tuple[str, list[str]]:
    with pytest.raises(YamlRefused) as exc:
        compose_limited(data, F)
    assert str(exc.value) == "\n".join(exc.value.problems)
    return exc.value.code, exc.value.problems


def nested(levels: int) -> bytes:
    """A mapping holding lists nested ``levels`` deep (``levels + 1`` collections)."""
    return b"a: " + b"[" * levels + b"]" * levels + b"\n"


def scalar_aliased(extra: int) -> bytes:
    """Like :func:`aliased`, with a list of 999 aliases of one anchored scalar."""
    return (b"s: &s x\nl: &l [" + b", ".join([b"*s"] * 999) + b"]\nb: [" +
            b", ".join([b"*l"] * 98 + [b"y"] * extra) + b"]\n")


def aliased(extra: int) -> bytes:
    """Exactly ``MAX_NODES - 996 + extra`` values once expanded: 1,002 for ``a`` (the top
    mapping, the key, its list of 999), 2 for ``b`` and its list, 98 x 1,000 aliased."""
    return (b"a: &a [" + b", ".join([b"x"] * 999) + b"]\nb: [" +
            b", ".join([b"*a"] * 98 + [b"y"] * extra) + b"]\n")


@pytest.mark.parametrize(("data", "code", "problems"), [
    pytest.param(b"a: 1\nb: 2\na: 3\n", "duplicate_key",
                 [f"r.yaml:3: a: key given twice (first at line 1); {TWICE}"], id="dup-top"),
    pytest.param(b"a: 1\nb:\n  c: 2\n  c: 3\n", "duplicate_key",
                 [f"r.yaml:4: b.c: key given twice (first at line 3); {TWICE}"],
                 id="dup-nested"),
    pytest.param(b"rules:\n  - id: x\n    id: y\n  - id: z\n    k: [1, {m: 1, m: 2}]\n",
                 "duplicate_key",
                 [f"r.yaml:3: rules[0].id: key given twice (first at line 2); {TWICE}",
                  f"r.yaml:5: rules[1].k[1].m: key given twice (first at line 5); {TWICE}"],
                 id="dup-in-lists"),
    pytest.param(b"a: 1\na: .nan\n", "duplicate_key",
                 [f"r.yaml:2: a: key given twice (first at line 1); {TWICE}",
                  f"r.yaml:2: a: '.nan' {NOT_FINITE}"], id="dup-and-nan-both-reported"),
    pytest.param(nested(MAX_DEPTH), "too_deep",
                 [f"r.yaml:1: a{'[0]' * (MAX_DEPTH - 1)}: {TOO_DEEP}"], id="too-deep"),
    pytest.param(aliased(997), "too_many_nodes", [f"r.yaml:2: b[1094]: {TOO_MANY}"],
                 id="too-many-nodes"),
    pytest.param(scalar_aliased(995), "too_many_nodes", [f"r.yaml:3: b[1092]: {TOO_MANY}"],
                 id="too-many-nodes-of-an-aliased-scalar"),
    pytest.param(b"[" * 1100 + b"]" * 1100 + b": x\n", "too_deep", [f"r.yaml:1: (top): {TOO_DEEP}"],
                 id="too-deep-for-libyaml-itself"),
    pytest.param(b"a: 1\nb: !!python/name:os.system\n", "unsafe_tag",
                 ["r.yaml:2: b: tag tag:yaml.org,2002:python/name:os.system is not allowed; a "
                  "rulebook holds plain data (text, numbers, lists, mappings): remove the tag"],
                 id="python-tag"),
    pytest.param(b"a: 1\nb: [!custom x]\n", "unsafe_tag",
                 ["r.yaml:2: b[0]: tag !custom is not allowed; a rulebook holds plain data "
                  "(text, numbers, lists, mappings): remove the tag"], id="custom-tag"),
    pytest.param(b"a: 1\n!!int 5: x\n", "unsafe_tag",
                 ["r.yaml:2: (top): tag tag:yaml.org,2002:int on a key; keys are plain text: "
                  "remove the tag"], id="tag-on-a-key"),
    pytest.param(b"a: 1\n? [x]\n: y\n", "complex_key", [f"r.yaml:2: (top): {NOT_TEXT}"],
                 id="list-key"),
    pytest.param(b"a:\n  {x: 1}: y\n", "complex_key", [f"r.yaml:2: a: {NOT_TEXT}"],
                 id="mapping-key"),
    pytest.param(b"a: &k x\n*k : 2\n", "complex_key", [f"r.yaml:2: (top): {NOT_TEXT}"],
                 id="alias-key"),
    pytest.param(b"b: &b {x: 1}\nc:\n  <<: *b\n", "complex_key",
                 ["r.yaml:3: c: merge keys (<<) are not supported; write the keys out (an "
                  "alias may stand for a whole value)"], id="merge-key"),
    pytest.param(b"a: 1\n---\nb: 2\n", "not_yaml",
                 ["r.yaml:2: (file): more than one YAML document (---); a rulebook is one "
                  "document"], id="two-documents"),
    pytest.param(b"a: *x\nb: &x 1\n", "not_yaml",
                 [f"r.yaml:1: a: alias *x does not follow a complete &x {AHEAD}"],
                 id="alias-ahead"),
    pytest.param(b"a: &x [1, *x]\n", "not_yaml",
                 [f"r.yaml:1: a[1]: alias *x does not follow a complete &x {AHEAD}"],
                 id="alias-into-its-anchor"),
    pytest.param(b"a: [1, 2\nb: 3\n", "not_yaml",
                 ["r.yaml:2: a[2]: not valid YAML: did not find expected ',' or ']' (while "
                  "parsing a flow sequence)"], id="syntax-with-context"),
    pytest.param(b"a: 1\n b: 2\n", "not_yaml",
                 ["r.yaml:2: (top): not valid YAML: mapping values are not allowed in this "
                  "context"], id="syntax"),
    pytest.param(b"a: 1\nb: \x07\n", "not_yaml",
                 ["r.yaml:2: (top): not valid YAML: control characters are not allowed"],
                 id="control-character"),
    pytest.param(b"a: " + b"1" * 41 + b"\n", "bad_number",
                 ["r.yaml:1: a: a number of 41 characters; give a plain value"],
                 id="long-number"),
    pytest.param(b"a: 2026-11-23T10:00:00." + b"0" * 34 + b"Z\n", "bad_number",
                 [f"r.yaml:1: a: a date/time of {20 + 34 + 1} characters; give a plain value"],
                 id="long-date"),
    pytest.param(b"a: 2026-13-45\n", "bad_number",
                 ["r.yaml:1: a: not a valid date/time: '2026-13-45'; write it as "
                  "2026-11-23T10:00:00Z"], id="bad-date"),
    pytest.param(b"a: !!int x\n", "bad_number",
                 ["r.yaml:1: a: not a valid number: 'x'; write it as 120 or 0.5"],
                 id="bad-number"),
    pytest.param(b"a: .nan\nb: [-.inf]\n", "bad_number",
                 [f"r.yaml:1: a: '.nan' {NOT_FINITE}", f"r.yaml:2: b[0]: '-.inf' {NOT_FINITE}"],
                 id="not-finite"),
    pytest.param(b"a: 1000000000000001\nb: -1000000000000001.0\n", "bad_number",
                 ["r.yaml:1: a: 1000000000000001 is too large (at most 1e+15 in size); give a "
                  "sensible value",
                  "r.yaml:2: b: -1000000000000001.0 is too large (at most 1e+15 in size); give "
                  "a sensible value"], id="too-large-numbers"),
    pytest.param(b"a: 1\nb: caf\xe9\n", "not_utf8",
                 ["r.yaml:2: (file): not UTF-8 text (byte 0xe9 at column 7); save the file as "
                  "UTF-8"], id="latin-1"),
    pytest.param(b"a: 1\n" * 2 + b"#" * MAX_BYTES, "too_large",
                 [f"r.yaml:1: (file): larger than {MAX_BYTES // 1024} KiB, the most a rulebook "
                  "may be"], id="too-large"),
])
def test_each_refusal_has_its_code_and_exact_message(data, code, problems):
    assert refused(data) == (code, problems)


@pytest.mark.parametrize("data", [
    nested(MAX_DEPTH - 1),
    aliased(996),
    scalar_aliased(994),
    b"a: 0." + b"0" * 37 + b"1\n",  # a number of 40 characters
    b"! a: 1\n",  # the non-specific tag on a key
    b"a: !!str 42\nb: ! 7\nc: !!int '8'\nd: !!float '1.5'\ne: !!bool yes\nf: !!null ''\n"
    b"g: !!seq [1]\nh: !!map {x: 1}\ni: !!timestamp 2026-11-23\n",  # plain-data tags
    b"!!str 5: x\n'<<': 1\n&k a: 1\nb: *k\n",  # a text key may be tagged, quoted or anchored
    b"\xef\xbb\xbfa: 1\n",  # a UTF-8 byte-order mark
    b"a: %d\nb: %d\nc: 1e16\n" % (MAX_NUMBER, -MAX_NUMBER),  # 1e16 is text in YAML 1.1
    b"a: 2026-11-23T10:00:00Z\nb: 0x1F\nc: 0o17\nd: 1_000\n",
    b"a: 1\n" + b"#" * (MAX_BYTES - 5),
])
def test_plain_data_within_the_limits_is_composed(data):
    node = compose_limited(data, F)
    assert isinstance(node, yaml.MappingNode)


def test_an_empty_file_is_no_document():
    assert compose_limited(b"", F) is None
    assert compose_limited(b"# only a comment\n", F) is None


def test_after_a_hundred_problems_the_walk_stops():
    code, problems = refused(b"a: 1\n" + b"a: 1\n" * 120)
    assert code == "duplicate_key" and len(problems) == 101
    assert problems[99] == f"r.yaml:101: a: key given twice (first at line 1); {TWICE}"
    assert problems[100] == "r.yaml:101: (file): stopped after 100 problems; fix these first"
    code, problems = refused(b"a: 1\n" + b"a: 1\n" * 99)
    assert len(problems) == 99 and "stopped" not in problems[-1]


@pytest.mark.parametrize(("data", "line", "column"), [
    (b"\na: 1\nb: caf\xe9\nc: 2\nd: 3\n", 3, 7),
    (b"\nb: caf\xe9\n", 2, 7),
    (b"\xff: 1\n", 1, 1),
])
def test_bytes_that_are_not_utf8_are_placed_by_line_and_column(data, line, column):
    byte = data[data.index(b"caf") + 3] if b"caf" in data else data[0]
    assert refused(data) == ("not_utf8", [
        f"r.yaml:{line}: (file): not UTF-8 text (byte 0x{byte:02x} at column {column}); save "
        "the file as UTF-8"])


def test_the_code_of_a_stopped_walk_is_that_of_its_first_problem():
    code, problems = refused(b"a: .nan\n" + b"a: 1\n" * 120)
    assert code == "bad_number" and len(problems) == 101


def test_the_pure_python_parsers_errors_are_placed_on_their_line(monkeypatch):
    monkeypatch.setattr("forewarn.rules.safe_yaml._LOADER", yaml.SafeLoader)
    assert refused(b"a: 1\nb: \x07\nc: 3\n") == ("not_yaml", [
        "r.yaml:2: (top): not valid YAML: special characters are not allowed"])
    assert refused(b"\na: \x07\n")[1][0].startswith("r.yaml:2: (top): not valid YAML")


def test_problems_found_before_a_limit_stops_the_walk_are_kept():
    code, problems = refused(b"a: 1\na: 2\nb: " + b"[" * 30 + b"]" * 30 + b"\n")
    assert code == "too_deep"
    assert problems == [f"r.yaml:2: a: key given twice (first at line 1); {TWICE}",
                        f"r.yaml:3: b{'[0]' * (MAX_DEPTH - 1)}: {TOO_DEEP}"]
    code, problems = refused(b"a: .nan\nb: [1, 2\n")
    assert code == "not_yaml" and problems[0] == f"r.yaml:1: a: '.nan' {NOT_FINITE}"
    assert problems[1].startswith("r.yaml:3: b[2]: not valid YAML: ")


def test_libyamls_own_depth_limit_is_reported_as_too_deep():
    code, problems = refused(b"a: " + b"{x: " * 1100 + b"1" + b"}" * 1100 + b"\n")
    assert code == "too_deep" and problems[0].endswith(TOO_DEEP)


# ---- reading the file --------------------------------------------------------------------

def read_refused(path: Path) -> tuple[str, list[str]]:
    with pytest.raises(YamlRefused) as exc:
        read_limited(path)
    return exc.value.code, exc.value.problems


def test_a_file_of_at_most_the_limit_is_read_whole(tmp_path):
    f = tmp_path / "rulebook.yaml"
    f.write_bytes(b"x" * MAX_BYTES)
    assert read_limited(f) == b"x" * MAX_BYTES
    f.write_bytes(b"x" * (MAX_BYTES + 1))
    assert read_refused(f) == ("too_large", [
        f"{f}:1: (file): larger than 256 KiB, the most a rulebook may be; split long texts "
        "or remove unused rules"])


def test_missing_special_and_unreachable_files_are_unreadable(tmp_path):
    missing = tmp_path / "nowhere.yaml"
    assert read_refused(missing) == ("unreadable", [
        f"{missing}:1: (file): no such rulebook file (expected DIR/rulebook.yaml)"])
    assert read_refused(tmp_path) == ("unreadable", [
        f"{tmp_path}:1: (file): not a regular file; give the path of rulebook.yaml or of its "
        "directory"])
    os.mkfifo(tmp_path / "fifo")
    assert read_refused(tmp_path / "fifo")[0] == "unreadable"
    (tmp_path / "plain").write_text("a: 1\n")
    under_a_file = tmp_path / "plain" / "rulebook.yaml"
    assert read_refused(under_a_file) == ("unreadable", [
        f"{under_a_file}:1: (file): cannot be read (Not a directory); check the path and its "
        "permissions"])
