"""The rulebook: care teams' rules as typed data, loaded from YAML and checked.

Every problem is reported with ``file:line``, the key, what was expected and
what was found; nothing half-valid is ever returned.

>>> book = load_rulebook()
>>> book.version, [r.id for r in book.rules][:2]
(1, ['outage-notice', 'restored-notice'])
>>> book.render(book.rule("outage-notice"), "de", {"name": "Ada", "area": "North"})[:18]
'Hallo Ada, wir wis'
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from forewarn.model import ACTION_KINDS, CHANNEL_NAMES, INCIDENT_KINDS, SEGMENTS, SEVERITIES

DEFAULT_DIR = Path(__file__).parent / "default"
TEMPLATE_FIELDS = frozenset({"name", "area", "offer", "plan", "incident_id", "eta"})
TRIGGER_POINTS = ("hold_down", "resolved", "duration")
DEFAULT_LANGUAGE = "en"


class RulebookError(ValueError):
    """A rulebook that cannot be used; ``problems`` lists each defect."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid rulebook:\n  " + "\n  ".join(problems))


@dataclass(frozen=True, slots=True)
class Correlation:
    outage_severities: frozenset[str]
    outage_causes: frozenset[str]
    group_wait_s: float = 60.0
    hold_down_s: float = 120.0
    position_max_age_s: float = 3600.0
    flapping_outages: int = 4
    flapping_window_s: float = 1800.0
    flapping_stable_s: float = 600.0


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    version: int
    owner: str
    description: str
    action: str
    templates: dict[str, str]
    incident_kinds: tuple[str, ...] = ()
    at: str | None = None  # hold_down | resolved | duration (incident rules)
    min_duration_s: float = 0.0
    segments: tuple[str, ...] = ()  # empty: everyone
    offer: dict | None = None
    drop_count: int = 0  # dropped-call rules
    drop_window_s: float = 0.0
    cooldown_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Rulebook:
    name: str
    version: int
    correlation: Correlation
    quiet_start_min: int  # minutes after local midnight
    quiet_end_min: int
    defer_kinds: frozenset[str]
    channel_order: tuple[str, ...]
    rules: tuple[Rule, ...]
    source: str = ""
    _by_id: dict[str, Rule] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_id.update({r.id: r for r in self.rules})

    def rule(self, rule_id: str) -> Rule:
        return self._by_id[rule_id]

    def incident_rules(self, at: str, incident_kind: str) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.at == at and incident_kind in r.incident_kinds)

    def drop_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.drop_count)

    def render(self, rule: Rule, language: str, fields: dict[str, str]) -> str:
        """Fill the rule's template for ``language`` (falling back to English)."""
        text = rule.templates.get(language) or rule.templates[DEFAULT_LANGUAGE]
        return string.Template(text).safe_substitute(fields)


# ---- loading -------------------------------------------------------------------


class _Checker:
    """Walks YAML nodes so every complaint can name file:line and key."""

    def __init__(self, path: Path):
        self.path = path
        self.problems: list[str] = []

    def fail(self, node: yaml.Node | None, key: str, msg: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 1
        self.problems.append(f"{self.path}:{line}: {key}: {msg}")


def _plain(node: yaml.Node) -> Any:
    return yaml.safe_load(yaml.serialize(node))


def _mapping(node: yaml.Node | None) -> dict[str, yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return {k.value: v for k, v in node.value}
    return {}


def _get(ck: _Checker, parent: yaml.Node, m: dict, key: str, where: str, typ, required=True):
    node = m.get(key)
    if node is None:
        if required:
            ck.fail(parent, f"{where}.{key}".lstrip("."), "required key missing")
        return None
    value = _plain(node)
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        name = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        ck.fail(node, f"{where}.{key}".lstrip("."), f"expected {name}, got {value!r}")
        return None
    return value


def _clock(ck: _Checker, node, text: str | None, key: str) -> int:
    try:
        hh, mm = (int(x) for x in str(text).split(":"))
        if 0 <= hh < 24 and 0 <= mm < 60:
            return hh * 60 + mm
    except ValueError:
        pass
    ck.fail(node, key, f"expected a local time HH:MM, got {text!r}")
    return 0


def _rule(ck: _Checker, node: yaml.Node, index: int) -> Rule | None:
    m = _mapping(node)
    where = f"rules[{index}]"
    if not m:
        ck.fail(node, where, "expected a mapping with id, version, action, templates")
        return None
    rid = _get(ck, node, m, "id", where, str)
    where = f"rules[{rid or index}]"
    version = _get(ck, node, m, "version", where, int)
    owner = _get(ck, node, m, "owner", where, str)
    description = _get(ck, node, m, "description", where, str)
    action = _get(ck, node, m, "action", where, str)
    if action is not None and action not in ACTION_KINDS:
        ck.fail(m["action"], f"{where}.action", f"expected one of {', '.join(ACTION_KINDS)}, "
                f"got {action!r}")
    templates = _templates(ck, node, m, where)
    trig_node = m.get("trigger")
    trig = _mapping(trig_node)
    if not trig:
        ck.fail(trig_node or node, f"{where}.trigger", "expected a mapping (incident or "
                "dropped_calls)")
        return None
    kinds: tuple[str, ...] = ()
    at = None
    min_duration = 0.0
    drop_count, drop_window = 0, 0.0
    if "incident" in trig:
        raw = _plain(trig["incident"])
        kinds = tuple(raw) if isinstance(raw, list) else (raw,)
        for k in kinds:
            if k not in INCIDENT_KINDS:
                ck.fail(trig["incident"], f"{where}.trigger.incident",
                        f"expected among {', '.join(INCIDENT_KINDS)}, got {k!r}")
        at = _get(ck, trig_node, trig, "at", f"{where}.trigger", str)
        if at is not None and at not in TRIGGER_POINTS:
            ck.fail(trig["at"], f"{where}.trigger.at",
                    f"expected one of {', '.join(TRIGGER_POINTS)}, got {at!r}")
        if at == "duration":
            min_duration = _get(ck, trig_node, trig, "min_duration_s", f"{where}.trigger",
                                float) or 0.0
    elif "dropped_calls" in trig:
        dc_node = trig["dropped_calls"]
        dc = _mapping(dc_node)
        drop_count = _get(ck, dc_node, dc, "count", f"{where}.trigger.dropped_calls", int) or 0
        drop_window = _get(ck, dc_node, dc, "window_s", f"{where}.trigger.dropped_calls",
                           float) or 0.0
        if drop_count < 1:
            ck.fail(dc_node, f"{where}.trigger.dropped_calls.count", "expected at least 1")
    else:
        ck.fail(trig_node, f"{where}.trigger", "expected `incident` or `dropped_calls`")
    segments: tuple[str, ...] = ()
    aud_node = m.get("audience")
    if aud_node is not None:
        aud = _mapping(aud_node)
        segs = _get(ck, aud_node, aud, "segment", f"{where}.audience", list, False) or []
        for s in segs:
            if s not in SEGMENTS:
                ck.fail(aud["segment"], f"{where}.audience.segment",
                        f"expected among {', '.join(SEGMENTS)}, got {s!r}")
        segments = tuple(segs)
    offer = _get(ck, node, m, "offer", where, dict, False)
    if action == "compensation" and offer is None:
        ck.fail(node, f"{where}.offer", "a compensation rule needs an offer")
    cooldown = 0.0
    if "limits" in m:
        lim = _mapping(m["limits"])
        cooldown = _get(ck, m["limits"], lim, "cooldown_s", f"{where}.limits", float,
                        False) or 0.0
    if None in (rid, version, owner, description, action) or templates is None:
        return None
    return Rule(
        id=rid, version=version, owner=owner, description=description, action=action,
        templates=templates, incident_kinds=kinds, at=at, min_duration_s=min_duration,
        segments=segments, offer=offer, drop_count=drop_count, drop_window_s=drop_window,
        cooldown_s=cooldown,
    )


def _templates(ck: _Checker, node, m: dict, where: str) -> dict[str, str] | None:
    tnode = m.get("templates")
    tm = _mapping(tnode)
    if not tm:
        ck.fail(tnode or node, f"{where}.templates", "expected a mapping of language to text")
        return None
    out: dict[str, str] = {}
    for lang, text_node in tm.items():
        text = _plain(text_node)
        key = f"{where}.templates.{lang}"
        if not isinstance(text, str) or not text.strip():
            ck.fail(text_node, key, f"expected message text, got {text!r}")
            continue
        tpl = string.Template(text)
        if not tpl.is_valid():
            ck.fail(text_node, key, "invalid placeholder (use $field or ${field}; $$ for $)")
            continue
        unknown = set(tpl.get_identifiers()) - TEMPLATE_FIELDS
        if unknown:
            ck.fail(text_node, key, f"unknown field(s) {', '.join(sorted(unknown))}; "
                    f"expected among {', '.join(sorted(TEMPLATE_FIELDS))}")
        out[lang] = text
    if DEFAULT_LANGUAGE not in out:
        ck.fail(tnode, f"{where}.templates", f"a {DEFAULT_LANGUAGE!r} template is required "
                "(the fallback language)")
    return out


def load_rulebook(path: str | Path | None = None) -> Rulebook:
    """Load ``rulebook.yaml`` from a directory (or a file); raise RulebookError."""
    path = Path(path) if path is not None else DEFAULT_DIR
    file = path / "rulebook.yaml" if path.is_dir() else path
    if not file.exists():
        raise RulebookError([f"{file}: no such rulebook file (expected DIR/rulebook.yaml)"])
    ck = _Checker(file)
    try:
        root = yaml.compose(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise RulebookError([f"{file}:{line}: not valid YAML: {getattr(exc, 'problem', exc)}"]) \
            from None
    top = _mapping(root)
    if not top:
        raise RulebookError([f"{file}:1: expected a mapping with rulebook, version, rules"])
    name = _get(ck, root, top, "rulebook", "", str)
    version = _get(ck, root, top, "version", "", int)
    corr_node = top.get("correlation")
    corr = _mapping(corr_node)
    sev = _get(ck, corr_node, corr, "outage_severities", "correlation", list) or []
    for s in sev:
        if s not in SEVERITIES:
            ck.fail(corr.get("outage_severities"), "correlation.outage_severities",
                    f"expected among {', '.join(SEVERITIES)}, got {s!r}")
    causes = _get(ck, corr_node, corr, "outage_causes", "correlation", list) or []
    flap_node = corr.get("flapping")
    flap = _mapping(flap_node)
    correlation = Correlation(
        outage_severities=frozenset(sev),
        outage_causes=frozenset(causes),
        group_wait_s=_get(ck, corr_node, corr, "group_wait_s", "correlation", float) or 60.0,
        hold_down_s=_get(ck, corr_node, corr, "hold_down_s", "correlation", float) or 120.0,
        position_max_age_s=_get(ck, corr_node, corr, "position_max_age_s", "correlation",
                                float) or 3600.0,
        flapping_outages=_get(ck, flap_node, flap, "outages", "correlation.flapping", int) or 4,
        flapping_window_s=_get(ck, flap_node, flap, "window_s", "correlation.flapping",
                               float) or 1800.0,
        flapping_stable_s=_get(ck, flap_node, flap, "stable_s", "correlation.flapping",
                               float) or 600.0,
    )
    if correlation.group_wait_s >= correlation.hold_down_s:
        ck.fail(corr_node, "correlation.group_wait_s", "expected less than hold_down_s")
    qnode = top.get("quiet_hours")
    quiet = _mapping(qnode)
    q_start = _clock(ck, quiet.get("start", qnode), _plain(quiet["start"]) if "start" in quiet
                     else None, "quiet_hours.start")
    q_end = _clock(ck, quiet.get("end", qnode), _plain(quiet["end"]) if "end" in quiet else None,
                   "quiet_hours.end")
    defer = _get(ck, qnode, quiet, "defer", "quiet_hours", list, False) or []
    cnode = top.get("channels")
    chans = _mapping(cnode)
    order = _get(ck, cnode, chans, "default_order", "channels", list, False) or list(CHANNEL_NAMES)
    for c in order:
        if c not in CHANNEL_NAMES:
            ck.fail(chans.get("default_order"), "channels.default_order",
                    f"expected among {', '.join(CHANNEL_NAMES)}, got {c!r}")
    rules_node = top.get("rules")
    rules: list[Rule] = []
    if not isinstance(rules_node, yaml.SequenceNode):
        ck.fail(rules_node or root, "rules", "expected a list of rules")
    else:
        seen: dict[str, int] = {}
        for i, rnode in enumerate(rules_node.value):
            rule = _rule(ck, rnode, i)
            if rule is None:
                continue
            if rule.id in seen:
                ck.fail(rnode, f"rules[{rule.id}].id",
                        f"duplicate rule id (also rules[{seen[rule.id]}])")
            seen[rule.id] = i
            rules.append(rule)
    if ck.problems:
        raise RulebookError(ck.problems)
    return Rulebook(
        name=name, version=version, correlation=correlation, quiet_start_min=q_start,
        quiet_end_min=q_end, defer_kinds=frozenset(defer), channel_order=tuple(order),
        rules=tuple(rules), source=str(file),
    )
