"""Bounded, plain-data YAML for rulebooks: a hostile file is refused, quickly and cheaply.

A rulebook is read in two passes. :func:`read_limited` reads at most
``MAX_BYTES + 1`` bytes and insists on UTF-8. :func:`compose_limited` first walks
the YAML *event* stream (no Python objects are built, memory stays flat) and
refuses, naming ``file:line: key``, anything that is not plain data within limits:

* nesting deeper than ``MAX_DEPTH``;
* more than ``MAX_NODES`` nodes once every alias is expanded: a "billion laughs"
  (nested aliases) is refused after reading a few hundred bytes of it, since each
  anchor's expanded size is known when the anchor closes and an alias just adds it;
* tags other than the standard plain-data ones (no ``!!python/...``, no custom tags);
* keys that are not plain text: complex keys (``? [a, b]``), alias keys, merge keys
  (``<<``);
* a key given twice in one mapping, at any level;
* numbers and dates that do not convert, NaN and infinities, and numbers beyond
  ``MAX_NUMBER`` in size;
* more than one document.

Only a document that passes is composed into nodes (for the rulebook checker,
which reports its own errors with lines). Uses libyaml when PyYAML has it.

>>> compose_limited(b"a: 1\\nb: [x, y]\\n", Path("r.yaml")).value[1][0].value
'b'
>>> try:
...     compose_limited(b"a: 1\\nb:\\n  c: 2\\n  c: 3\\n", Path("r.yaml"))
... except YamlRefused as exc:
...     print(exc.code, exc.problems[0])
duplicate_key r.yaml:4: b.c: key given twice (first at line 3); keep one and merge what the two say
>>> bomb = b'a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]\\n' + b"".join(
...     b"%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\\n" % ((n, n) + (n - 1,) * 10)
...     for n in range(ord("b"), ord("j")))
>>> try:
...     compose_limited(bomb, Path("r.yaml"))
... except YamlRefused as exc:
...     print(exc.code, exc.problems[0][:40])
too_many_nodes r.yaml:5: e[7]: more than 100000 values
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

#: The default rulebook is ~9 KiB; 256 KiB holds well over a hundred rules in five
#: languages, and parses in a fraction of a second (a hot reload parses in the flow).
MAX_BYTES = 256 * 1024
#: The rulebook language nests at most 6 levels (rules > rule > trigger > dropped_calls).
MAX_DEPTH = 20
#: Nodes (scalars, keys, lists, mappings) once aliases are expanded; the default has ~300.
MAX_NODES = 100_000
#: No count, duration or budget in a rulebook comes near this; beyond it, a typo.
MAX_NUMBER = 10**15
#: Problems reported from one file before giving up (a hostile file may hold thousands).
MAX_PROBLEMS = 100

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_T = "tag:yaml.org,2002:"
#: Explicit tags that only restate plain data (``!!str 42``); anything else is refused.
PLAIN_TAGS = frozenset(_T + t for t in ("str", "int", "float", "bool", "null", "seq", "map",
                                        "timestamp"))
#: Reason codes of a refusal (a bounded set: the metric label of refused reloads).
CODES = ("unreadable", "too_large", "not_utf8", "not_yaml", "too_deep", "too_many_nodes",
         "unsafe_tag", "complex_key", "duplicate_key", "bad_number")


class YamlRefused(ValueError):
    """A file refused before any rulebook check; ``code`` is one of :data:`CODES`."""

    def __init__(self, code: str, problems: list[str]):
        self.code = code
        self.problems = problems
        super().__init__("\n".join(problems))


def read_limited(file: Path) -> bytes:
    """The bytes of a regular file of at most ``MAX_BYTES`` (never reads more)."""
    def refuse(code: str, what: str) -> YamlRefused:
        return YamlRefused(code, [f"{file}:1: (file): {what}"])

    special = refuse("unreadable", "not a regular file; give the path of rulebook.yaml or of "
                     "its directory")
    try:
        if not stat.S_ISREG(os.stat(file).st_mode):
            raise special  # before open(): opening a FIFO would wait for a writer
        with open(file, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise special  # replaced between the two looks
            data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise refuse("unreadable", "no such rulebook file (expected DIR/rulebook.yaml)") \
            from None
    except OSError as exc:
        raise refuse("unreadable", f"cannot be read ({exc.strerror}); check the path and "
                     "its permissions") from None
    if len(data) > MAX_BYTES:
        raise refuse("too_large", f"larger than {MAX_BYTES // 1024} KiB, the most a rulebook "
                      "may be; split long texts or remove unused rules")
    return data


def decode_utf8(data: bytes, file: Path) -> str:
    """Strict UTF-8 (a leading byte-order mark is dropped); the error names the line."""
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise YamlRefused("not_utf8", [
            f"{file}:{line}: (file): not UTF-8 text (byte 0x{data[exc.start]:02x} at column "
            f"{column}); save the file as UTF-8"]) from None


@dataclass(slots=True)
class _Frame:
    """An open mapping or list while walking events."""

    mapping: bool
    start: int  # expanded node count when it opened (itself included)
    anchor: str | None
    expect_key: bool = True  # mappings: the next node is a key
    key: str | None = None  # mappings: the key whose value comes next
    index: int = 0  # lists: position of the next item
    seen: dict[str, int] = field(default_factory=dict)  # mappings: key -> line


def _path(stack: list[_Frame]) -> str:
    out = ""
    for f in stack:
        if f.mapping:
            if f.key is not None and not f.expect_key:
                out += f".{f.key}" if out else f.key
        else:
            out += f"[{f.index}]"
    return out or "(top)"


_RESOLVER = Resolver()
_NUMERIC = {_T + "int": "construct_yaml_int", _T + "float": "construct_yaml_float",
            _T + "timestamp": "construct_yaml_timestamp"}


def _scalar_problem(event: ScalarEvent) -> tuple[str, str] | None:
    """(code, message) when a number or date scalar does not convert to a sane value."""
    tag = event.tag
    if tag is None or tag == "!":
        tag = _RESOLVER.resolve(ScalarNode, event.value, event.implicit)
    method = _NUMERIC.get(tag)
    if method is None:
        return None
    kind = "a date/time" if tag.endswith("timestamp") else "a number"
    if len(event.value) > 40:
        return "bad_number", f"{kind} of {len(event.value)} characters; give a plain value"
    try:
        value = getattr(SafeConstructor(), method)(ScalarNode(tag, event.value))
    except Exception:  # noqa: BLE001 - any conversion failure of this one scalar is the answer
        example = "2026-11-23T10:00:00Z" if kind == "a date/time" else "120 or 0.5"
        return "bad_number", f"not a valid {kind[2:]}: {event.value!r}; write it as {example}"
    if isinstance(value, float) and not math.isfinite(value):
        return "bad_number", (f"{event.value!r} is not a finite number; NaN and infinities "
                              "are not allowed: give a number")
    if isinstance(value, int | float) and abs(value) > MAX_NUMBER:
        return "bad_number", (f"{event.value} is too large (at most {MAX_NUMBER:.0e} in "
                              "size); give a sensible value")
    return None


def check_events(text: str, file: Path) -> None:
    """Walk the event stream; raise :class:`YamlRefused` on anything outside the limits.

    Limits (depth, expanded size), unsafe tags and non-text keys stop the walk at once;
    duplicate keys and bad numbers are collected to the end, so all are reported.
    """
    problems: list[tuple[str, str]] = []
    stack: list[_Frame] = []
    anchors: dict[str, int] = {}  # anchor -> expanded node count of its node
    expanded = 0
    documents = 0
    line = 1

    def note(code: str, what: str, where: str) -> None:
        problems.append((code, f"{file}:{line}: {where}: {what}"))
        if len(problems) >= MAX_PROBLEMS:
            raise YamlRefused(problems[0][0], [p for _, p in problems] + [
                f"{file}:{line}: (file): stopped after {MAX_PROBLEMS} problems; fix these first"])

    def stop(code: str, what: str, where: str | None = None) -> YamlRefused:
        found = [p for _, p in problems]
        return YamlRefused(code, [*found, f"{file}:{line}: {where or _path(stack)}: {what}"])

    try:
        for ev in yaml.parse(text, Loader=_LOADER):
            line = ev.start_mark.line + 1 if ev.start_mark is not None else line
            if isinstance(ev, DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise stop("not_yaml", "more than one YAML document (---); a rulebook "
                               "is one document", "(file)")
                continue
            if isinstance(ev, MappingEndEvent | SequenceEndEvent):
                frame = stack.pop()
                if frame.anchor is not None:
                    anchors[frame.anchor] = expanded - frame.start + 1
                _next(stack)
                continue
            if not isinstance(ev, ScalarEvent | AliasEvent | CollectionStartEvent):
                continue  # stream and document ends
            parent = stack[-1] if stack else None
            if parent is not None and parent.mapping and parent.expect_key:
                if not isinstance(ev, ScalarEvent):
                    raise stop("complex_key", "a key must be plain text, not a list, a "
                               "mapping or an alias; write the key out as text")
                if ev.value == "<<" and ev.implicit[0]:
                    raise stop("complex_key", "merge keys (<<) are not supported; "
                               "write the keys out (an alias may stand for a whole value)")
                if ev.tag not in (None, "!") and ev.tag != _T + "str":
                    raise stop("unsafe_tag", f"tag {ev.tag} on a key; keys are plain "
                               "text: remove the tag")
                if ev.value in parent.seen:
                    where = _path(stack)
                    note("duplicate_key", f"key given twice (first at line "
                         f"{parent.seen[ev.value]}); keep one and merge what the two say",
                         f"{where}.{ev.value}" if where != "(top)" else ev.value)
                else:
                    parent.seen[ev.value] = line
                parent.key, parent.expect_key = ev.value, False
                if ev.anchor is not None:
                    anchors[ev.anchor] = 1
                expanded += 1
                continue
            if isinstance(ev, AliasEvent):
                if ev.anchor not in anchors:
                    raise stop("not_yaml", f"alias *{ev.anchor} does not follow a "
                               f"complete &{ev.anchor} (an alias may not point into its own "
                               "anchor or ahead of it)")
                expanded += anchors[ev.anchor]
            else:
                if ev.tag not in (None, "!") and ev.tag not in PLAIN_TAGS:
                    raise stop("unsafe_tag", f"tag {ev.tag} is not allowed; a rulebook "
                               "holds plain data (text, numbers, lists, mappings): remove the "
                               "tag")
                expanded += 1
                if isinstance(ev, ScalarEvent):
                    bad = _scalar_problem(ev)
                    if bad is not None:
                        note(bad[0], bad[1], _path(stack))
                    if ev.anchor is not None:
                        anchors[ev.anchor] = 1
                else:
                    if len(stack) >= MAX_DEPTH:
                        raise stop("too_deep", f"nested more than {MAX_DEPTH} levels "
                                   "deep; a rulebook needs at most 6")
                    stack.append(_Frame(isinstance(ev, MappingStartEvent), expanded,
                                        ev.anchor))
            if expanded > MAX_NODES:
                raise stop("too_many_nodes", f"more than {MAX_NODES} values once "
                           "aliases are expanded (nested aliases multiply); write the "
                           "values out or use fewer aliases")
            if not isinstance(ev, SequenceStartEvent | MappingStartEvent):
                _next(stack)
    except yaml.YAMLError as exc:
        # libyaml stops at 1000 levels itself while it looks ahead for a key.
        code = "too_deep" if "maximum nesting depth" in str(exc) else "not_yaml"
        raise YamlRefused(code, [*(p for _, p in problems),
                                 _syntax(exc, text, file, _path(stack))]) from None
    if problems:
        raise YamlRefused(problems[0][0], [p for _, p in problems])


def _next(stack: list[_Frame]) -> None:
    """A node ended: its mapping expects a key next, its list the next item."""
    if stack:
        parent = stack[-1]
        if parent.mapping:
            parent.expect_key = True
        else:
            parent.index += 1


def _syntax(exc: yaml.YAMLError, text: str, file: Path, where: str) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        line = mark.line + 1
    elif isinstance(getattr(exc, "position", None), int):  # a reader error (bad character)
        line = text.count("\n", 0, exc.position) + 1
    else:
        line = 1
    what = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc)
    context = getattr(exc, "context", None)
    detail = f"{what} ({context})" if context else str(what)
    if "maximum nesting depth" in detail:
        return (f"{file}:{line}: {where}: nested more than {MAX_DEPTH} levels deep; a "
                "rulebook needs at most 6")
    return f"{file}:{line}: {where}: not valid YAML: {detail}"


def compose_limited(data: bytes, file: Path) -> yaml.Node | None:
    """Nodes of a document that passed every limit (``None`` for an empty file)."""
    if len(data) > MAX_BYTES:
        raise YamlRefused("too_large", [f"{file}:1: (file): larger than {MAX_BYTES // 1024} "
                                        "KiB, the most a rulebook may be"])
    text = decode_utf8(data, file)
    check_events(text, file)
    try:
        return yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as exc:  # the event pass accepted it; kept as a safety net
        raise YamlRefused("not_yaml", [_syntax(exc, text, file, "(top)")]) from None
