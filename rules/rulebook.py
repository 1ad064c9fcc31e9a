"""The rulebook: care teams' rules as typed data, loaded from YAML and checked.

Every problem is reported with ``file:line``, the key, what was expected and
what was found; nothing half-valid is ever returned. The language is
documented in ``docs/rules.md``.

>>> book = load_rulebook()
>>> book.version, [r.id for r in book.rules][:2]
(1, ['outage-notice', 'silent-failure-notice'])
>>> book.render(book.rule("outage-notice"), "de", {"name": "Ada", "area": "North"})[:18]
'Hallo Ada, wir wis'
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from forewarn.model import ACTION_KINDS, CHANNEL_NAMES, INCIDENT_KINDS, SEGMENTS, SEVERITIES

DEFAULT_DIR = Path(__file__).parent / "default"
TEMPLATE_FIELDS = frozenset({"name", "area", "offer", "plan", "incident_id", "eta"})
TRIGGER_POINTS = ("hold_down", "resolved", "duration")
SCOPES = ("cell", "site")
DEFAULT_LANGUAGE = "en"
# Channels that reach the phone through its serving cell (useless while it is down).
CELL_CHANNELS = frozenset({"push", "sms"})


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
class Audience:
    """Who a rule is for; an empty criterion matches everyone.

    >>> Audience(segments=("vip",), regions=("north",)).matches(
    ...     segment="vip", plan="", tags=(), language="en", tenure=3, complaints=0,
    ...     region="north")
    True
    """

    segments: tuple[str, ...] = ()
    plans: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()  # any of
    regions: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    tenure_min: int | None = None
    tenure_max: int | None = None
    complaints_min: int | None = None
    min_propensity: float | None = None  # applied at dispatch, where actions are scored

    def matches(self, *, segment: str, plan: str, tags: tuple[str, ...], language: str,
                tenure: int | None, complaints: int, region: str | None) -> bool:
        if self.segments and segment not in self.segments:
            return False
        if self.plans and plan not in self.plans:
            return False
        if self.tags and not set(self.tags) & set(tags):
            return False
        if self.regions and (region or "").lower() not in self.regions:
            return False
        if self.languages and language not in self.languages:
            return False
        if self.tenure_min is not None and (tenure is None or tenure < self.tenure_min):
            return False
        if self.tenure_max is not None and (tenure is None or tenure > self.tenure_max):
            return False
        return self.complaints_min is None or complaints >= self.complaints_min


@dataclass(frozen=True, slots=True)
class ChannelPolicy:
    order: tuple[str, ...] = ()  # overrides the subscriber's preference when set
    avoid_down_cell: bool = False  # skip push/sms while the subscriber's cell is down


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
    scopes: tuple[str, ...] = ()  # empty: any
    causes: tuple[str, ...] = ()  # empty: any outage cause
    audience: Audience = Audience()
    channels: ChannelPolicy = ChannelPolicy()
    offer: dict | None = None
    drop_count: int = 0  # dropped-call rules
    drop_window_s: float = 0.0
    cooldown_s: float = 0.0
    # no second action of this rule to a subscriber about the same cell within this
    # time (incident rules: a silent-failure verdict that reopens is the same problem)
    cell_cooldown_s: float = 0.0

    @property
    def segments(self) -> tuple[str, ...]:
        return self.audience.segments


@dataclass(frozen=True, slots=True)
class Budgets:
    compensation_per_day: int | None = None  # per UTC day of event time
    per_minute: dict[str, int] = field(default_factory=dict)  # channel -> sends a minute
    priority_segments: tuple[str, ...] = ("vip", "business")
    reserve_share: float = 0.2  # of each minute kept for the priority segments


@dataclass(frozen=True, slots=True)
class Silence:
    """Alertmanager-style silence: no customer action for matching incidents."""

    id: str
    start: float
    end: float
    site_ids: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    comment: str = ""

    def covers(self, site_id: str, region: str | None, at: float) -> bool:
        if not self.start <= at <= self.end:
            return False
        if self.site_ids and site_id not in self.site_ids:
            return False
        return not self.regions or (region or "").lower() in self.regions


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
    max_contacts_per_day: int | None = None
    inhibit_apology_when_notified: bool = True
    budgets: Budgets | None = None
    silences: tuple[Silence, ...] = ()
    digest: str = ""
    # kinds deferred to the end of quiet hours when the incident is an unconfirmed
    # silent failure (a sleeping cell found by its silence alone)
    defer_unconfirmed_kinds: frozenset[str] = frozenset()
    _by_id: dict[str, Rule] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_id.update({r.id: r for r in self.rules})

    def rule(self, rule_id: str) -> Rule:
        return self._by_id[rule_id]

    def incident_rules(self, at: str, incident_kind: str) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.at == at and incident_kind in r.incident_kinds)

    def drop_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.drop_count)

    def durations(self, incident_kind: str) -> list[float]:
        """Incident ages at which some rule acts (escalation deadlines)."""
        return sorted({r.min_duration_s for r in self.incident_rules("duration", incident_kind)})

    def silenced(self, site_id: str, region: str | None, at: float) -> str | None:
        return next((s.id for s in self.silences if s.covers(site_id, region, at)), None)

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


def _get(ck: _Checker, parent: yaml.Node | None, m: dict, key: str, where: str, typ,
         required: bool = True):
    node = m.get(key)
    if node is None:
        if required:
            ck.fail(parent, f"{where}.{key}".lstrip("."), "required key missing")
        return None
    value = _plain(node)
    if value is None:  # `key: null` is the same as leaving it out
        if required:
            ck.fail(node, f"{where}.{key}".lstrip("."), "required value missing (null)")
        return None
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        name = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        ck.fail(node, f"{where}.{key}".lstrip("."), f"expected {name}, got {value!r}")
        return None
    return value


def _choices(ck: _Checker, parent, m: dict, key: str, where: str, allowed, lower=False
             ) -> tuple[str, ...]:
    """A string or list of strings, each (optionally) among ``allowed``."""
    node = m.get(key)
    if node is None:
        return ()
    raw = _plain(node)
    values = raw if isinstance(raw, list) else [raw]
    out = []
    for v in values:
        if not isinstance(v, str):
            ck.fail(node, f"{where}.{key}", f"expected a string or a list of strings, got {v!r}")
            continue
        v = v.lower() if lower else v
        if allowed is not None and v not in allowed:
            ck.fail(node, f"{where}.{key}", f"expected among {', '.join(allowed)}, got {v!r}")
            continue
        out.append(v)
    return tuple(out)


def _unknown_keys(ck: _Checker, node, m: dict, where: str, known: set[str]) -> None:
    for key, value in m.items():
        if key not in known:
            ck.fail(value, f"{where}.{key}".lstrip("."),
                    f"unknown key; expected among {', '.join(sorted(known))}")


def _clock(ck: _Checker, node, text: str | None, key: str) -> int:
    try:
        hh, mm = (int(x) for x in str(text).split(":"))
        if 0 <= hh < 24 and 0 <= mm < 60:
            return hh * 60 + mm
    except ValueError:
        pass
    ck.fail(node, key, f"expected a local time HH:MM, got {text!r}")
    return 0


RULE_KEYS = {"id", "version", "owner", "description", "trigger", "audience", "action", "offer",
             "templates", "channels", "limits"}


def _audience(ck: _Checker, node, where: str) -> Audience:
    m = _mapping(node)
    if node is not None and not m:
        ck.fail(node, where, "expected a mapping")
        return Audience()
    _unknown_keys(ck, node, m, where, {"segment", "plan", "tags", "region", "language",
                                       "tenure_months", "complaints", "min_propensity"})
    floor = _get(ck, node, m, "min_propensity", where, float, False)
    if floor is not None and not 0.0 <= floor <= 1.0:
        ck.fail(m["min_propensity"], f"{where}.min_propensity",
                f"expected a probability between 0 and 1, got {floor}")
    tenure = _mapping(m.get("tenure_months"))
    complaints = _mapping(m.get("complaints"))
    return Audience(
        segments=_choices(ck, node, m, "segment", where, SEGMENTS),
        plans=_choices(ck, node, m, "plan", where, None),
        tags=_choices(ck, node, m, "tags", where, None),
        regions=_choices(ck, node, m, "region", where, None, lower=True),
        languages=_choices(ck, node, m, "language", where, None),
        tenure_min=_get(ck, m.get("tenure_months"), tenure, "min", f"{where}.tenure_months",
                        int, False),
        tenure_max=_get(ck, m.get("tenure_months"), tenure, "max", f"{where}.tenure_months",
                        int, False),
        complaints_min=_get(ck, m.get("complaints"), complaints, "min", f"{where}.complaints",
                            int, False),
        min_propensity=floor,
    )


def _rule(ck: _Checker, node: yaml.Node, index: int) -> Rule | None:
    m = _mapping(node)
    where = f"rules[{index}]"
    if not m:
        ck.fail(node, where, "expected a mapping with id, version, trigger, action, templates")
        return None
    rid = _get(ck, node, m, "id", where, str)
    where = f"rules[{rid or index}]"
    _unknown_keys(ck, node, m, where, RULE_KEYS)
    version = _get(ck, node, m, "version", where, int)
    owner = _get(ck, node, m, "owner", where, str)
    description = _get(ck, node, m, "description", where, str)
    action = _get(ck, node, m, "action", where, str)
    if action is not None and action not in ACTION_KINDS:
        ck.fail(m["action"], f"{where}.action",
                f"expected one of {', '.join(ACTION_KINDS)}, got {action!r}")
    templates = _templates(ck, node, m, where)
    trig_node = m.get("trigger")
    trig = _mapping(trig_node)
    if not trig:
        ck.fail(trig_node or node, f"{where}.trigger",
                "expected a mapping (incident: ... or dropped_calls: ...)")
        return None
    kinds: tuple[str, ...] = ()
    at, min_duration, scopes, causes = None, 0.0, (), ()
    drop_count, drop_window = 0, 0.0
    tw = f"{where}.trigger"
    if "incident" in trig:
        _unknown_keys(ck, trig_node, trig, tw, {"incident", "at", "min_duration_s", "scope",
                                                 "probable_cause"})
        kinds = _choices(ck, trig_node, trig, "incident", tw, INCIDENT_KINDS)
        at = _get(ck, trig_node, trig, "at", tw, str)
        if at is not None and at not in TRIGGER_POINTS:
            ck.fail(trig["at"], f"{tw}.at", f"expected one of {', '.join(TRIGGER_POINTS)}, "
                    f"got {at!r}")
        if at == "duration":
            min_duration = _get(ck, trig_node, trig, "min_duration_s", tw, float) or 0.0
        elif "min_duration_s" in trig:
            ck.fail(trig["min_duration_s"], f"{tw}.min_duration_s",
                    "only meaningful with `at: duration`")
        scopes = _choices(ck, trig_node, trig, "scope", tw, SCOPES)
        causes = _choices(ck, trig_node, trig, "probable_cause", tw, None)
    elif "dropped_calls" in trig:
        _unknown_keys(ck, trig_node, trig, tw, {"dropped_calls"})
        dc_node = trig["dropped_calls"]
        dc = _mapping(dc_node)
        drop_count = _get(ck, dc_node, dc, "count", f"{tw}.dropped_calls", int) or 0
        drop_window = _get(ck, dc_node, dc, "window_s", f"{tw}.dropped_calls", float) or 0.0
        if dc and drop_count < 1:
            ck.fail(dc_node, f"{tw}.dropped_calls.count", "expected at least 1")
    else:
        ck.fail(trig_node, tw, "expected `incident` or `dropped_calls`")
    audience = _audience(ck, m.get("audience"), f"{where}.audience")
    offer = _get(ck, node, m, "offer", where, dict, False)
    if action == "compensation" and offer is None:
        ck.fail(node, f"{where}.offer", "a compensation rule needs an offer")
    cooldown = cell_cooldown = 0.0
    if "limits" in m:
        lim = _mapping(m["limits"])
        _unknown_keys(ck, m["limits"], lim, f"{where}.limits", {"cooldown_s", "cell_cooldown_s"})
        cooldown = _get(ck, m["limits"], lim, "cooldown_s", f"{where}.limits", float,
                        False) or 0.0
        cell_cooldown = _get(ck, m["limits"], lim, "cell_cooldown_s", f"{where}.limits", float,
                             False) or 0.0
        if cell_cooldown and not kinds:
            ck.fail(m["limits"], f"{where}.limits.cell_cooldown_s",
                    "only incident rules act about a cell: remove it or use cooldown_s")
    policy = ChannelPolicy()
    if "channels" in m:
        cm = _mapping(m["channels"])
        _unknown_keys(ck, m["channels"], cm, f"{where}.channels", {"order", "avoid_down_cell"})
        policy = ChannelPolicy(
            order=_choices(ck, m["channels"], cm, "order", f"{where}.channels", CHANNEL_NAMES),
            avoid_down_cell=bool(_get(ck, m["channels"], cm, "avoid_down_cell",
                                      f"{where}.channels", bool, False)),
        )
    if None in (rid, version, owner, description, action) or templates is None:
        return None
    return Rule(
        id=rid, version=version, owner=owner, description=description, action=action,
        templates=templates, incident_kinds=kinds, at=at, min_duration_s=min_duration,
        scopes=scopes, causes=causes, audience=audience, channels=policy, offer=offer,
        drop_count=drop_count, drop_window_s=drop_window, cooldown_s=cooldown,
        cell_cooldown_s=cell_cooldown,
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


def _overlaps(ck: _Checker, rules: list[Rule], nodes: dict[str, yaml.Node]) -> None:
    """Two rules that would both contact the same subscriber for the same reason."""
    for i, a in enumerate(rules):
        for b in rules[i + 1:]:
            if a.action != b.action or a.at != b.at or a.min_duration_s != b.min_duration_s:
                continue
            if a.drop_count and b.drop_count:
                pass  # two dropped-call rules with the same action: overlap
            elif not set(a.incident_kinds) & set(b.incident_kinds):
                continue
            if a.scopes and b.scopes and not set(a.scopes) & set(b.scopes):
                continue
            if not _audiences_may_meet(a.audience, b.audience):
                continue
            ck.fail(nodes.get(b.id), f"rules[{b.id}]",
                    f"overlaps rules[{a.id}]: both send {a.action} for the same trigger to "
                    "an overlapping audience (a double contact); narrow one audience "
                    "or merge the rules")


def _audiences_may_meet(a: Audience, b: Audience) -> bool:
    for x, y in ((a.segments, b.segments), (a.plans, b.plans), (a.regions, b.regions),
                 (a.languages, b.languages)):
        if x and y and not set(x) & set(y):
            return False
    lo = max(v for v in (a.tenure_min, b.tenure_min, -1) if v is not None)
    hi = min(v for v in (a.tenure_max, b.tenure_max, 10**9) if v is not None)
    return lo <= hi


def _time(ck: _Checker, node, m: dict, key: str, where: str) -> float:
    text = _get(ck, node, m, key, where, (str, datetime))
    if isinstance(text, datetime):
        return text.timestamp() if text.tzinfo else text.replace(tzinfo=None).timestamp()
    try:
        dt = datetime.fromisoformat(text or "")
        if dt.tzinfo is None:
            raise ValueError
        return dt.timestamp()
    except ValueError:
        if text is not None:
            ck.fail(m.get(key), f"{where}.{key}",
                    f"expected an RFC 3339 time with offset, got {text!r}")
        return 0.0


def _silences(ck: _Checker, node) -> tuple[Silence, ...]:
    if node is None:
        return ()
    if not isinstance(node, yaml.SequenceNode):
        ck.fail(node, "silences", "expected a list")
        return ()
    out = []
    for i, snode in enumerate(node.value):
        m = _mapping(snode)
        where = f"silences[{i}]"
        _unknown_keys(ck, snode, m, where, {"id", "start", "end", "site_ids", "regions",
                                            "comment"})
        sid = _get(ck, snode, m, "id", where, str)
        start, end = _time(ck, snode, m, "start", where), _time(ck, snode, m, "end", where)
        if end and start and end <= start:
            ck.fail(m.get("end"), f"{where}.end", "expected after start")
        sites = _choices(ck, snode, m, "site_ids", where, None)
        regions = _choices(ck, snode, m, "regions", where, None, lower=True)
        if not sites and not regions:
            ck.fail(snode, where, "a silence needs site_ids or regions (it would silence all)")
        if sid:
            out.append(Silence(sid, start, end, sites, regions,
                               _get(ck, snode, m, "comment", where, str, False) or ""))
    return tuple(out)


def _budgets(ck: _Checker, node) -> Budgets | None:
    if node is None:
        return None
    m = _mapping(node)
    _unknown_keys(ck, node, m, "budgets", {"compensation_per_day", "per_minute",
                                           "priority_segments", "reserve_share"})
    per_minute: dict[str, int] = {}
    pm_node = m.get("per_minute")
    for chan, vnode in _mapping(pm_node).items():
        v = _plain(vnode)
        if chan not in CHANNEL_NAMES:
            ck.fail(vnode, f"budgets.per_minute.{chan}",
                    f"expected a channel among {', '.join(CHANNEL_NAMES)}")
        elif not isinstance(v, int) or isinstance(v, bool) or v < 1:
            ck.fail(vnode, f"budgets.per_minute.{chan}", f"expected a positive integer, got {v!r}")
        else:
            per_minute[chan] = v
    share = _get(ck, node, m, "reserve_share", "budgets", float, False)
    if share is not None and not 0 <= share < 1:
        ck.fail(m["reserve_share"], "budgets.reserve_share", f"expected 0 <= x < 1, got {share}")
    return Budgets(
        compensation_per_day=_get(ck, node, m, "compensation_per_day", "budgets", int, False),
        per_minute=per_minute,
        priority_segments=_choices(ck, node, m, "priority_segments", "budgets", SEGMENTS)
        or ("vip", "business"),
        reserve_share=share if share is not None else 0.2,
    )


TOP_KEYS = {"rulebook", "version", "correlation", "quiet_hours", "channels", "limits",
            "inhibit", "budgets", "silences", "rules"}


def load_rulebook(path: str | Path | None = None) -> Rulebook:
    """Load ``rulebook.yaml`` from a directory (or a file); raise RulebookError."""
    path = Path(path) if path is not None else DEFAULT_DIR
    file = path / "rulebook.yaml" if path.is_dir() else path
    if not file.exists():
        raise RulebookError([f"{file}: no such rulebook file (expected DIR/rulebook.yaml)"])
    text = file.read_text(encoding="utf-8")
    return parse_rulebook(text, file)


def parse_rulebook(text: str, file: Path) -> Rulebook:
    import hashlib

    ck = _Checker(file)
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise RulebookError([f"{file}:{line}: not valid YAML: {getattr(exc, 'problem', exc)}"]) \
            from None
    top = _mapping(root)
    if not top:
        raise RulebookError([f"{file}:1: expected a mapping with rulebook, version, rules"])
    _unknown_keys(ck, root, top, "", TOP_KEYS)
    name = _get(ck, root, top, "rulebook", "", str)
    version = _get(ck, root, top, "version", "", int)
    corr_node = top.get("correlation")
    corr = _mapping(corr_node)
    if corr_node is None:
        ck.fail(root, "correlation", "required key missing")
    sev = _choices(ck, corr_node, corr, "outage_severities", "correlation", SEVERITIES)
    causes = _choices(ck, corr_node, corr, "outage_causes", "correlation", None)
    flap_node = corr.get("flapping")
    flap = _mapping(flap_node)

    def num(node, m, key, where, default, typ=float):
        value = _get(ck, node, m, key, where, typ, False)
        return default if value is None else value

    correlation = Correlation(
        outage_severities=frozenset(sev),
        outage_causes=frozenset(causes),
        group_wait_s=num(corr_node, corr, "group_wait_s", "correlation", 60.0),
        hold_down_s=num(corr_node, corr, "hold_down_s", "correlation", 120.0),
        position_max_age_s=num(corr_node, corr, "position_max_age_s", "correlation", 3600.0),
        flapping_outages=num(flap_node, flap, "outages", "correlation.flapping", 4, int),
        flapping_window_s=num(flap_node, flap, "window_s", "correlation.flapping", 1800.0),
        flapping_stable_s=num(flap_node, flap, "stable_s", "correlation.flapping", 600.0),
    )
    if correlation.group_wait_s >= correlation.hold_down_s:
        ck.fail(corr_node, "correlation.group_wait_s", "expected less than hold_down_s")
    qnode = top.get("quiet_hours")
    quiet = _mapping(qnode)
    q_start = _clock(ck, quiet.get("start", qnode), _plain(quiet["start"]) if "start" in quiet
                     else None, "quiet_hours.start")
    q_end = _clock(ck, quiet.get("end", qnode), _plain(quiet["end"]) if "end" in quiet else None,
                   "quiet_hours.end")
    defer = _choices(ck, qnode, quiet, "defer", "quiet_hours", ACTION_KINDS)
    defer_unconfirmed = _choices(ck, qnode, quiet, "defer_unconfirmed", "quiet_hours",
                                 ACTION_KINDS)
    cnode = top.get("channels")
    chans = _mapping(cnode)
    order = _choices(ck, cnode, chans, "default_order", "channels", CHANNEL_NAMES) \
        or CHANNEL_NAMES
    lnode = top.get("limits")
    limits = _mapping(lnode)
    inode = top.get("inhibit")
    inhibit = _mapping(inode)
    rules_node = top.get("rules")
    rules: list[Rule] = []
    rule_nodes: dict[str, yaml.Node] = {}
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
                continue
            seen[rule.id] = i
            rule_nodes[rule.id] = rnode
            rules.append(rule)
        _overlaps(ck, rules, rule_nodes)
    max_contacts = _get(ck, lnode, limits, "max_contacts_per_day", "limits", int, False)
    apology_inhibit = _get(ck, inode, inhibit, "apology_when_notified", "inhibit", bool, False)
    budgets = _budgets(ck, top.get("budgets"))
    silences = _silences(ck, top.get("silences"))
    if ck.problems:
        raise RulebookError(ck.problems)
    return Rulebook(
        name=name, version=version, correlation=correlation, quiet_start_min=q_start,
        quiet_end_min=q_end, defer_kinds=frozenset(defer), channel_order=tuple(order),
        rules=tuple(rules), source=str(file), max_contacts_per_day=max_contacts,
        inhibit_apology_when_notified=True if apology_inhibit is None else apology_inhibit,
        budgets=budgets, silences=silences,
        digest=hashlib.sha256(text.encode()).hexdigest()[:12],
        defer_unconfirmed_kinds=frozenset(defer_unconfirmed),
    )
