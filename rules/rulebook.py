"""The rulebook: care teams' rules as typed data, loaded from YAML and checked.

Every problem is reported with ``file:line``, the key, what was expected and
what was found; nothing half-valid is ever returned, and no input raises
anything but :class:`RulebookError`. The file is first read within limits and
as plain data only (:mod:`forewarn.rules.safe_yaml`: size, depth, alias expansion, tags,
duplicate keys, finite numbers), then every value is checked for type and range
(:data:`RANGES`). The language is documented in ``docs/rules.md``.

>>> book = load_rulebook()
>>> book.version, [r.id for r in book.rules][:2]
(1, ['outage-notice', 'silent-failure-notice'])
>>> book.render(book.rule("outage-notice"), "de", {"name": "Ada", "area": "North"})[:18]
'Hallo Ada, wir wis'
"""

from __future__ import annotations

import hashlib
import re
import re._parser as sre  # the pattern's tree: repetitions inside repetitions are refused
import reprlib
import string
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from forewarn.adapters import (
    DEFAULT_OBJECTS,
    FEEDS,
    MAX_NAME,
    OBJECT_FIELDS,
    UNMAPPED,
    Adapters,
    FeedSpec,
    NamingRule,
)
from forewarn.model import ACTION_KINDS, CHANNEL_NAMES, INCIDENT_KINDS, SEGMENTS, SEVERITIES
from forewarn.rules.safe_yaml import CODES, MAX_PROBLEMS, YamlRefused, compose_limited, read_limited

DEFAULT_DIR = Path(__file__).parent / "default"
TEMPLATE_FIELDS = frozenset({"name", "area", "offer", "plan", "incident_id", "eta"})
#: When an incident rule acts: ``hold_down`` (the impacted, at the hold-down), ``resolved``,
#: ``duration`` (the incident's age reaches ``min_duration_s``), ``walk_in`` (someone last
#: heard near the outage has been silent past ``correlation.nearby.silence_s``: inside the
#: hole), ``reappeared`` (someone unheard during the outage is back on a restored cell
#: within ``correlation.nearby.reappear_s`` of its restoration) and ``expected`` (someone
#: heard near the outage whose learnt anchor place is the down site at this hour, silent
#: for the trigger's ``expected.silence_s``: :mod:`forewarn.dataflows.anchors`).
TRIGGER_POINTS = ("hold_down", "resolved", "duration", "walk_in", "reappeared", "expected")
#: Trigger points that need the subscribers around an outage watched (the sequencer
#: sends a down site what it hears of them).
NEARBY_TRIGGERS = frozenset({"walk_in", "reappeared", "expected"})
SCOPES = ("cell", "site")
DEFAULT_LANGUAGE = "en"
#: Rule ids and the rulebook's name go into metric labels, logs and action ids.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ID_RULE = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
#: The longest message text a template may hold (an email body; an SMS is 160).
MAX_TEMPLATE_CHARS = 5000
#: Rules in one rulebook (the default has 6). Checking overlaps compares every pair:
#: 500 rules take ~0.5 s, which a hot reload spends inside a batch.
MAX_RULES = 500
# Channels that reach the phone through its serving cell (useless while it is down).
CELL_CHANNELS = frozenset({"push", "sms"})


HOUR, DAY = 3600.0, 86400.0
#: The range of every number in a rulebook: (lowest, highest, lowest itself excluded).
#: Keys are paths with list positions left out. Durations are seconds of event time;
#: docs/rules.md ("Limits") says why each bound is where it is.
RANGES: dict[str, tuple[float, float, bool]] = {
    "version": (0, 2**31 - 1, False),
    "correlation.group_wait_s": (0, HOUR, False),
    "correlation.hold_down_s": (0, DAY, True),
    "correlation.position_max_age_s": (0, DAY, True),
    "correlation.flapping.outages": (2, 100, False),
    "correlation.flapping.window_s": (0, DAY, True),
    "correlation.flapping.stable_s": (0, DAY, True),
    "correlation.nearby.sites": (1, 50, False),
    "correlation.nearby.silence_s": (0, DAY, True),
    "correlation.nearby.reappear_s": (0, 6 * HOUR, True),
    "correlation.storm.sites": (2, 10_000, False),
    "correlation.storm.window_s": (0, 6 * HOUR, True),
    "rules.version": (0, 2**31 - 1, False),
    "rules.trigger.min_duration_s": (0, 7 * DAY, True),
    "rules.trigger.dropped_calls.count": (1, 100, False),
    "rules.trigger.dropped_calls.window_s": (0, DAY, True),
    "rules.limits.cooldown_s": (0, 30 * DAY, False),
    "rules.trigger.expected.silence_s": (0, DAY, True),
    "rules.trigger.expected.within_s": (0, 12 * HOUR, False),
    "rules.trigger.expected.min_outage_s": (0, DAY, False),
    "rules.limits.cell_cooldown_s": (0, 30 * DAY, False),
    "rules.audience.tenure_months.min": (0, 1200, False),
    "rules.audience.tenure_months.max": (0, 1200, False),
    "rules.audience.complaints.min": (0, 10_000, False),
    "rules.audience.min_propensity": (0, 1, False),
    "rules.offer.amount_gb": (0, 1000, True),
    "limits.max_contacts_per_day": (1, 100, False),
    "budgets.compensation_per_day": (0, 10**9, False),
    "budgets.per_minute": (1, 10**7, False),
    "budgets.max_delay_s": (60, DAY, False),
}
#: Values shown in error messages are cut short (a hostile value may be huge).
_SHOW = reprlib.Repr()
_SHOW.maxstring, _SHOW.maxother, _SHOW.maxlist, _SHOW.maxdict, _SHOW.maxlevel = 60, 60, 4, 4, 2


def _show(value: Any) -> str:
    return _SHOW.repr(value)


#: Why a rulebook is refused: a file refused before its contents are checked
#: (:data:`forewarn.rules.safe_yaml.CODES`), or ``invalid`` contents (type, range, reference).
ERROR_CODES = (*CODES, "invalid")


class RulebookError(ValueError):
    """A rulebook that cannot be used; ``problems`` lists each defect.

    ``code`` (one of :data:`ERROR_CODES`) classifies the first one.
    """

    def __init__(self, problems: list[str], code: str = "invalid"):
        self.problems = problems
        self.code = code
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
    # around an outage (walk_in / reappeared triggers): the nearest sites watched, the
    # silence that says "inside the hole" (3GPP T3412, the phones' periodic update timer,
    # 54 min + 4 min: the network's implicit detach; + 15 min for a call in progress: a
    # call is reported at its end), and how soon after restoration a return counts as
    # coming back from it
    nearby_sites: int = 16
    silence_s: float = 4380.0
    reappear_s: float = 600.0
    # a regional event (Alertmanager's group_by: [region]): incidents on ``storm_sites``
    # sites of one region, started within ``storm_window_s`` of each other, are grouped
    # under one ``regional_outage`` incident for the NOC (None: no grouping)
    storm_sites: int | None = None
    storm_window_s: float = 900.0

    def is_outage(self, severity: str, probable_cause: str) -> bool:
        """Does an alarm of this severity and cause mean the cell carries no traffic?"""
        return severity in self.outage_severities and probable_cause in self.outage_causes


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
    # `at: expected` rules: (silence_s, within_s, min_outage_s), see ExpectedTerms
    expected: ExpectedTerms | None = None

    @property
    def segments(self) -> tuple[str, ...]:
        return self.audience.segments


@dataclass(frozen=True, slots=True)
class ExpectedTerms:
    """Who an ``at: expected`` rule is for: heard near the outage, anchored at the down
    site in the bucket of the day of now or of ``within_s`` from now, unheard for
    ``silence_s``, the outage at least ``min_outage_s`` old."""

    silence_s: float = 1800.0
    within_s: float = 0.0
    min_outage_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Budgets:
    compensation_per_day: int | None = None  # per UTC day of event time
    per_minute: dict[str, int] = field(default_factory=dict)  # channel -> sends a minute
    priority_segments: tuple[str, ...] = ("vip", "business")
    reserve_share: float = 0.2  # of each minute kept for the priority segments
    # no send deferred past this long after it became due: past it, it goes in the
    # bound's minute over the rate (counted: forewarn_budget_overflow_total); None: a day
    max_delay_s: float | None = None
    # which sends ``per_minute`` may defer: every send (``all``), or only the actions about
    # an incident of a regional event (``regional_events``: the others go at once, and
    # count in their minute)
    pace: str = "all"


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
    # one outage notice and one restored notice per subscriber per regional event: an
    # outage notice is inhibited while they were told of an open outage in the same
    # region that began within ``correlation.storm_window_s`` of it
    inhibit_notice_in_region: bool = False
    budgets: Budgets | None = None
    silences: tuple[Silence, ...] = ()
    digest: str = ""
    # kinds deferred to the end of quiet hours when the incident is an unconfirmed
    # silent failure (a sleeping cell found by its silence alone)
    defer_unconfirmed_kinds: frozenset[str] = frozenset()
    # operators' alarm feeds (VES, TMF642): mapping tables; None: none read
    adapters: Adapters | None = None
    _by_id: dict[str, Rule] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_id.update({r.id: r for r in self.rules})

    def rule(self, rule_id: str) -> Rule:
        return self._by_id[rule_id]

    def incident_rules(self, at: str, incident_kind: str) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.at == at and incident_kind in r.incident_kinds)

    @property
    def watches_nearby(self) -> bool:
        """Does a rule act on walk-ins or reappearances (subscribers around an outage)?"""
        return any(r.at in NEARBY_TRIGGERS for r in self.rules)

    @property
    def expected_terms(self) -> ExpectedTerms | None:
        """The terms of the ``at: expected`` rules (one set: checked at load), if any."""
        return next((r.expected for r in self.rules if r.expected is not None), None)

    def acts_at(self, at: str) -> bool:
        """Does some incident rule act at trigger point ``at``?"""
        return any(r.at == at for r in self.rules)

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
    """Walks YAML nodes so every complaint can name file:line and key.

    Keeps the first ``MAX_PROBLEMS`` (a hostile file can hold thousands) and counts the rest.
    """

    def __init__(self, path: Path):
        self.path = path
        self.problems: list[str] = []
        self.more = 0

    def fail(self, node: yaml.Node | None, key: str, msg: str) -> None:
        if len(self.problems) >= MAX_PROBLEMS:
            self.more += 1
            return
        line = node.start_mark.line + 1 if node is not None else 1
        self.problems.append(f"{self.path}:{line}: {key}: {msg}")

    def all(self) -> list[str]:
        tail = [f"{self.path}:1: (file): {self.more} more problem(s) not shown; fix these "
                "first"] if self.more else []
        return self.problems + tail


def _plain(node: yaml.Node) -> Any:
    """The Python value of a node (safe_yaml already refused what would not convert)."""
    return SafeConstructor().construct_document(node)


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
        value = float(value)  # safe_yaml bounds every number, so this cannot overflow
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        name = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        ck.fail(node, f"{where}.{key}".lstrip("."), f"expected {name}, got {_show(value)}")
        return None
    return value


def _num(ck: _Checker, parent: yaml.Node | None, m: dict, key: str, where: str, typ,
         default: Any = None, required: bool = False, rng: str | None = None) -> Any:
    """A number within its :data:`RANGES` entry (``default`` when absent or wrong).

    The entry is ``rng``, or the path without list positions: ``rules[x].limits.cooldown_s``
    is ``rules.limits.cooldown_s``.
    """
    value = _get(ck, parent, m, key, where, typ, required)
    if value is None:
        return default
    path = f"{where}.{key}".lstrip(".")
    lo, hi, open_lo = RANGES[rng or re.sub(r"\[[^\]]*\]", "", path)]
    if value != value or value < lo or (open_lo and value == lo) or value > hi:
        low = f"more than {_amount(lo)}" if open_lo else f"at least {_amount(lo)}"
        high = _amount(hi) + (f" s ({_amount(hi / DAY)} days)" if key.endswith("_s") and
                              hi >= 2 * DAY else " s" if key.endswith("_s") else "")
        ck.fail(m[key], path, f"expected {low} and at most {high}, got {_show(value)} "
                "(see Limits in docs/rules.md)")
        return default
    return value


def _amount(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


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
            ck.fail(node, f"{where}.{key}",
                    f"expected a string or a list of strings, got {_show(v)}")
            continue
        v = v.lower() if lower else v
        if allowed is not None and v not in allowed:
            ck.fail(node, f"{where}.{key}", f"expected among {', '.join(allowed)}, "
                    f"got {_show(v)}")
            continue
        out.append(v)
    return tuple(out)


def _unknown_keys(ck: _Checker, node, m: dict, where: str, known: set[str]) -> None:
    for key, value in m.items():
        if key not in known:
            ck.fail(value, f"{where}.{key}".lstrip("."),
                    f"unknown key; expected among {', '.join(sorted(known))}")


def _nested(ck: _Checker, node: yaml.Node, where: str, known: set[str]) -> dict:
    """A rule's mapping of ``known`` keys (anything else there, even a plain value, is refused:
    ``limits: 86400`` would otherwise set no limit at all)."""
    if not isinstance(node, yaml.MappingNode):
        ck.fail(node, where, f"expected a mapping of {', '.join(sorted(known))}, got "
                f"{_show(_plain(node))}")
    m = _mapping(node)
    _unknown_keys(ck, node, m, where, known)
    return m


def _clock(ck: _Checker, node, text: str | None, key: str) -> int:
    try:
        hh, mm = (int(x) for x in str(text).split(":"))
        if 0 <= hh < 24 and 0 <= mm < 60:
            return hh * 60 + mm
    except ValueError:
        pass
    ck.fail(node, key, f"expected a local time HH:MM (quoted: \"22:00\"), got {_show(text)}")
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
    floor = _num(ck, node, m, "min_propensity", where, float)
    tenure = _mapping(m.get("tenure_months"))
    complaints = _mapping(m.get("complaints"))
    for name, sub, known in (("tenure_months", tenure, {"min", "max"}),
                             ("complaints", complaints, {"min"})):
        if sub:
            _unknown_keys(ck, m[name], sub, f"{where}.{name}", known)
    tenure_min = _num(ck, m.get("tenure_months"), tenure, "min", f"{where}.tenure_months", int)
    tenure_max = _num(ck, m.get("tenure_months"), tenure, "max", f"{where}.tenure_months", int)
    if tenure_min is not None and tenure_max is not None and tenure_min > tenure_max:
        ck.fail(m["tenure_months"], f"{where}.tenure_months",
                f"min {tenure_min} is above max {tenure_max}: no one would match")
    return Audience(
        segments=_choices(ck, node, m, "segment", where, SEGMENTS),
        plans=_choices(ck, node, m, "plan", where, None),
        tags=_choices(ck, node, m, "tags", where, None),
        regions=_choices(ck, node, m, "region", where, None, lower=True),
        languages=_choices(ck, node, m, "language", where, None),
        tenure_min=tenure_min,
        tenure_max=tenure_max,
        complaints_min=_num(ck, m.get("complaints"), complaints, "min", f"{where}.complaints",
                            int),
        min_propensity=floor,
    )


def _rule(ck: _Checker, node: yaml.Node, index: int) -> Rule | None:
    m = _mapping(node)
    where = f"rules[{index}]"
    if not m:
        ck.fail(node, where, "expected a mapping with id, version, trigger, action, templates")
        return None
    rid = _get(ck, node, m, "id", where, str)
    if rid is not None and not ID_PATTERN.fullmatch(rid):
        ck.fail(m["id"], f"{where}.id", f"expected {ID_RULE}, got {_show(rid)}")
        rid = None
    where = f"rules[{rid or index}]"
    _unknown_keys(ck, node, m, where, RULE_KEYS)
    version = _num(ck, node, m, "version", where, int, required=True)
    owner = _get(ck, node, m, "owner", where, str)
    description = _get(ck, node, m, "description", where, str)
    action = _get(ck, node, m, "action", where, str)
    if action is not None and action not in ACTION_KINDS:
        ck.fail(m["action"], f"{where}.action",
                f"expected one of {', '.join(ACTION_KINDS)}, got {_show(action)}")
    templates = _templates(ck, node, m, where)
    trig_node = m.get("trigger")
    trig = _mapping(trig_node)
    if not trig:
        ck.fail(trig_node or node, f"{where}.trigger",
                "expected a mapping (incident: ... or dropped_calls: ...)")
        return None
    kinds: tuple[str, ...] = ()
    at, min_duration = None, 0.0
    scopes: tuple[str, ...] = ()
    causes: tuple[str, ...] = ()
    drop_count, drop_window = 0, 0.0
    expected: ExpectedTerms | None = None
    tw = f"{where}.trigger"
    if "incident" in trig:
        _unknown_keys(ck, trig_node, trig, tw, {"incident", "at", "min_duration_s", "scope",
                                                 "probable_cause", "expected"})
        kinds = _choices(ck, trig_node, trig, "incident", tw, INCIDENT_KINDS)
        at = _get(ck, trig_node, trig, "at", tw, str)
        if at is not None and at not in TRIGGER_POINTS:
            ck.fail(trig["at"], f"{tw}.at", f"expected one of {', '.join(TRIGGER_POINTS)}, "
                    f"got {_show(at)}")
        if at == "duration":
            min_duration = _num(ck, trig_node, trig, "min_duration_s", tw, float, 0.0, True)
        elif "min_duration_s" in trig:
            ck.fail(trig["min_duration_s"], f"{tw}.min_duration_s",
                    "only meaningful with `at: duration`")
        if at == "expected":
            expected = ExpectedTerms()
            if "expected" in trig:
                em = _nested(ck, trig["expected"], f"{tw}.expected",
                             {"silence_s", "within_s", "min_outage_s"})
                ew = f"{tw}.expected"
                expected = ExpectedTerms(
                    silence_s=_num(ck, trig["expected"], em, "silence_s", ew, float, 1800.0),
                    within_s=_num(ck, trig["expected"], em, "within_s", ew, float, 0.0),
                    min_outage_s=_num(ck, trig["expected"], em, "min_outage_s", ew, float,
                                      0.0))
        elif "expected" in trig:
            ck.fail(trig["expected"], f"{tw}.expected", "only meaningful with `at: expected`")
        if at in NEARBY_TRIGGERS and "degradation" in kinds:
            ck.fail(trig["incident"], f"{tw}.incident",
                    f"`at: {at}` acts only for outages (a silent failure has no alarm to "
                    "watch around): list outage and/or flapping")
        scopes = _choices(ck, trig_node, trig, "scope", tw, SCOPES)
        causes = _choices(ck, trig_node, trig, "probable_cause", tw, None)
    elif "dropped_calls" in trig:
        _unknown_keys(ck, trig_node, trig, tw, {"dropped_calls"})
        dc_node = trig["dropped_calls"]
        dc = _mapping(dc_node)
        if not dc:
            ck.fail(dc_node, f"{tw}.dropped_calls", "expected a mapping {count, window_s}")
        _unknown_keys(ck, dc_node, dc, f"{tw}.dropped_calls", {"count", "window_s"})
        drop_count = _num(ck, dc_node, dc, "count", f"{tw}.dropped_calls", int, 0, True)
        drop_window = _num(ck, dc_node, dc, "window_s", f"{tw}.dropped_calls", float, 0.0,
                           True)
    else:
        ck.fail(trig_node, tw, "expected `incident` or `dropped_calls`")
    audience = _audience(ck, m.get("audience"), f"{where}.audience")
    offer = _offer(ck, m.get("offer"), f"{where}.offer")
    if action == "compensation" and offer is None:
        ck.fail(node, f"{where}.offer", "a compensation rule needs an offer")
    cooldown = cell_cooldown = 0.0
    if "limits" in m:
        lim = _nested(ck, m["limits"], f"{where}.limits", {"cooldown_s", "cell_cooldown_s"})
        cooldown = _num(ck, m["limits"], lim, "cooldown_s", f"{where}.limits", float, 0.0)
        cell_cooldown = _num(ck, m["limits"], lim, "cell_cooldown_s", f"{where}.limits", float,
                             0.0)
        if cell_cooldown and not kinds:
            ck.fail(m["limits"], f"{where}.limits.cell_cooldown_s",
                    "only incident rules act about a cell: remove it or use cooldown_s")
    policy = ChannelPolicy()
    if "channels" in m:
        cm = _nested(ck, m["channels"], f"{where}.channels", {"order", "avoid_down_cell"})
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
        cell_cooldown_s=cell_cooldown, expected=expected,
    )


def _offer(ck: _Checker, node: yaml.Node | None, where: str) -> dict | None:
    """A flat mapping of plain values (it is copied into actions and rendered as $offer)."""
    if node is None:
        return None
    m = _mapping(node)
    value = _plain(node)
    if not m or not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        ck.fail(node, where, "expected a mapping of names to values such as {kind: "
                f"data_credit, amount_gb: 5}}, got {_show(value)}")
        return None
    for key, vnode in m.items():
        v = value.get(key)
        if isinstance(v, bool) or v is None or isinstance(v, str):
            continue
        if not isinstance(v, int | float):
            ck.fail(vnode, f"{where}.{key}", f"expected text or a number, got {_show(v)}")
        elif key == "amount_gb":
            _num(ck, node, m, key, where, float)
        elif v < 0:
            ck.fail(vnode, f"{where}.{key}", f"expected a number of at least 0, got {v:g}")
    return value


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
            ck.fail(text_node, key, f"expected message text, got {_show(text)}")
            continue
        if len(text) > MAX_TEMPLATE_CHARS:
            ck.fail(text_node, key, f"message of {len(text)} characters; at most "
                    f"{MAX_TEMPLATE_CHARS} (the longest an email body should be)")
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
    try:
        dt = text if isinstance(text, datetime) else datetime.fromisoformat(text or "")
        if dt.tzinfo is None:
            raise ValueError
        return dt.timestamp()
    except (ValueError, OverflowError, OSError):
        if text is not None:
            ck.fail(m.get(key), f"{where}.{key}",
                    f"expected an RFC 3339 time with offset, got {_show(text)}")
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


#: ``budgets.pace``: which sends the per-minute rates may defer.
PACE_CHOICES = ("all", "regional_events")


def _budgets(ck: _Checker, node) -> Budgets | None:
    if node is None:
        return None
    m = _mapping(node)
    if not isinstance(node, yaml.MappingNode):
        ck.fail(node, "budgets", "expected a mapping (see Budgets in docs/rules.md)")
    _unknown_keys(ck, node, m, "budgets", {"compensation_per_day", "per_minute",
                                           "priority_segments", "reserve_share",
                                           "max_delay_s", "pace"})
    per_minute: dict[str, int] = {}
    pm_node = m.get("per_minute")
    pm = _mapping(pm_node)
    if pm_node is not None and not isinstance(pm_node, yaml.MappingNode):
        ck.fail(pm_node, "budgets.per_minute", "expected a mapping of channel to sends a "
                f"minute, such as {{sms: 300}}, got {_show(_plain(pm_node))}")
    for chan, vnode in pm.items():
        if chan not in CHANNEL_NAMES:
            ck.fail(vnode, f"budgets.per_minute.{chan}",
                    f"expected a channel among {', '.join(CHANNEL_NAMES)}")
        elif (n := _num(ck, pm_node, pm, chan, "budgets.per_minute", int,
                        rng="budgets.per_minute")) is not None:
            per_minute[chan] = n
    pace = _get(ck, node, m, "pace", "budgets", str, False)
    if pace is not None and pace not in PACE_CHOICES:
        ck.fail(m["pace"], "budgets.pace",
                f"expected one of {', '.join(PACE_CHOICES)}, got {_show(pace)}")
    share = _get(ck, node, m, "reserve_share", "budgets", float, False)
    if share is not None and not 0 <= share < 1:
        ck.fail(m["reserve_share"], "budgets.reserve_share",
                f"expected 0 <= x < 1, got {_show(share)}")
    return Budgets(
        compensation_per_day=_num(ck, node, m, "compensation_per_day", "budgets", int),
        per_minute=per_minute,
        priority_segments=_choices(ck, node, m, "priority_segments", "budgets", SEGMENTS)
        or ("vip", "business"),
        reserve_share=share if share is not None else 0.2,
        max_delay_s=_num(ck, node, m, "max_delay_s", "budgets", float),
        pace=pace if pace in PACE_CHOICES else "all",
    )


#: Entries in one causes table, naming rules, and characters in one pattern, at most.
MAX_CAUSES = 5000
MAX_NAMING_RULES = 100
MAX_PATTERN = 500


#: Unbounded repetitions one naming pattern may hold: each more multiplies the worst
#: case by the name's length (4 of them take a second on a 256-character name).
MAX_PATTERN_REPEATS = 3


def _children(op: Any, av: Any) -> list:
    """The sub-patterns of a parsed node (none for a literal, set, anchor ...)."""
    if op is sre.SUBPATTERN:
        return [av[3]]
    if op is sre.BRANCH:
        return list(av[1])
    if op in (sre.ASSERT, sre.ASSERT_NOT):
        return [av[1]]
    if op is sre.ATOMIC_GROUP:
        return [av]
    if op is sre.GROUPREF_EXISTS:
        return [c for c in av[1:] if c is not None]
    return []


def _repeats(items: Any) -> int:
    """Unbounded repetitions along the longest path through a parsed pattern."""
    n = 0
    for op, av in items:
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            n += (av[1] is sre.MAXREPEAT) + _repeats(av[2])
        elif op is sre.BRANCH:
            n += max(_repeats(b) for b in av[1])
        else:
            n += sum(_repeats(c) for c in _children(op, av))
    return n


def _slow_pattern(items: Any, inside: bool = False) -> str | None:
    """Why a parsed pattern could backtrack for seconds on a name that almost matches
    (a repetition inside a repetition, an alternation inside one, too many in a row),
    or None."""
    if not inside and _repeats(items) > MAX_PATTERN_REPEATS:
        return f"more than {MAX_PATTERN_REPEATS} unbounded repetitions (* + {{n,}}) in a row"
    for op, av in items:
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            many = av[1] is sre.MAXREPEAT or av[1] > 1
            if many and inside:
                return "a repetition inside a repetition (such as (a+)+)"
            why = _slow_pattern(av[2], inside or many)
        elif op is sre.BRANCH and inside:
            return "an alternation inside a repetition (such as (a|ab)+)"
        else:
            why = next((w for c in _children(op, av) if (w := _slow_pattern(c, inside))), None)
        if why:
            return why
    return None


def _template_fields(ck: _Checker, node, text: Any, key: str, groups: set[str]) -> str | None:
    """A ``{group}`` template of a naming rule, checked against the pattern's groups."""
    if not isinstance(text, str) or not text:
        ck.fail(node, key, f"expected a template such as \"{{site}}-C{{n}}\", got {_show(text)}")
        return None
    try:
        parsed = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(text)
                  if f is not None]
    except ValueError as exc:
        ck.fail(node, key, f"invalid template ({exc}); use {{group}}, {{{{ and }}}} for braces")
        return None
    if any(spec or conv or not f.isidentifier() for f, spec, conv in parsed):
        ck.fail(node, key, "only plain {group} placeholders (no format, index or conversion)")
        return None
    names = [f for f, _, _ in parsed]
    unknown = sorted({f for f in names if f not in groups})
    if unknown:
        ck.fail(node, key, f"placeholder(s) {', '.join('{' + f + '}' for f in unknown)} are not "
                f"named groups of match (it has: {', '.join(sorted(groups)) or 'none'})")
        return None
    return text


def _naming(ck: _Checker, node) -> tuple[NamingRule, ...]:
    where = "adapters.naming"
    if node is None:
        return ()
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        ck.fail(node, where, "expected a list of {match: REGEX, cell: ..., site: ...}")
        return ()
    if len(node.value) > MAX_NAMING_RULES:
        ck.fail(node, where, f"{len(node.value)} rules; at most {MAX_NAMING_RULES}")
        return ()
    out = []
    for i, rnode in enumerate(node.value):
        m = _mapping(rnode)
        w = f"{where}[{i}]"
        if not m:
            ck.fail(rnode, w, "expected a mapping {match: REGEX, cell: ..., site: ...}")
            continue
        _unknown_keys(ck, rnode, m, w, {"match", "cell", "site"})
        pattern = _get(ck, rnode, m, "match", w, str)
        if pattern is None:
            continue
        pnode = m["match"]
        if len(pattern) > MAX_PATTERN:
            ck.fail(pnode, f"{w}.match", f"{len(pattern)} characters; at most {MAX_PATTERN}")
            continue
        try:
            compiled = re.compile(pattern)
            slow = _slow_pattern(sre.parse(pattern).data)
        except re.error as exc:
            ck.fail(pnode, f"{w}.match", f"not a valid regular expression: {exc}")
            continue
        if slow:
            ck.fail(pnode, f"{w}.match", f"{slow} can take seconds or more on a name that "
                    "almost matches, for every alarm; write it without")
            continue
        groups = set(compiled.groupindex)
        templates: dict[str, str | None] = {}
        for part in ("cell", "site"):
            if part in m:
                templates[part] = _template_fields(ck, m[part], _plain(m[part]), f"{w}.{part}",
                                                   groups)
                if templates[part] is None:
                    continue
        if not ({"cell", "site"} & groups) and not any(templates.values()):
            if not any(p in m for p in ("cell", "site")):
                ck.fail(pnode, f"{w}.match", "needs a named group (?P<cell>...) or "
                        "(?P<site>...), or a cell: / site: template of its groups")
            continue
        out.append(NamingRule(compiled, templates.get("cell"), templates.get("site")))
    return tuple(out)


def _feed(ck: _Checker, node, feed: str) -> FeedSpec | None:
    where = f"adapters.{feed}"
    if node is None:
        return None
    m = _mapping(node)
    if not isinstance(node, yaml.MappingNode):
        ck.fail(node, where, "expected a mapping of causes, object, unmapped")
        return None
    _unknown_keys(ck, node, m, where, {"causes", "object", "unmapped"})
    causes: dict[str, str] = {}
    cnode = m.get("causes")
    if not isinstance(cnode, yaml.MappingNode) or not cnode.value:
        ck.fail(cnode or node, f"{where}.causes", "expected a mapping of the feed's condition "
                "or problem names to probable causes, such as {LOS: lossOfSignal}")
    elif len(cnode.value) > MAX_CAUSES:
        ck.fail(cnode, f"{where}.causes", f"{len(cnode.value)} entries; at most {MAX_CAUSES}")
    else:
        for knode, vnode in cnode.value:
            name, cause = _plain(knode), _plain(vnode)
            key = f"{where}.causes.{name}"
            if not isinstance(name, str) or not name or len(name) > MAX_NAME:
                ck.fail(knode, f"{where}.causes", f"expected a name of 1 to {MAX_NAME} "
                        f"characters, got {_show(name)}")
            elif not isinstance(cause, str) or not cause.strip():
                ck.fail(vnode, key, f"expected a probable cause (text such as lossOfSignal), "
                        f"got {_show(cause)}")
            else:
                causes[name] = cause
    objects = _choices(ck, node, m, "object", where, OBJECT_FIELDS[feed]) \
        or DEFAULT_OBJECTS[feed]
    unmapped = _get(ck, node, m, "unmapped", where, str, False) or "dead_letter"
    if unmapped not in UNMAPPED:
        ck.fail(m["unmapped"], f"{where}.unmapped",
                f"expected one of {', '.join(UNMAPPED)}, got {_show(unmapped)}")
    return FeedSpec(causes=causes, objects=objects, unmapped=unmapped)


def _adapters(ck: _Checker, node) -> Adapters | None:
    """The ``adapters:`` section: naming rules and each feed's causes table."""
    if node is None:
        return None
    m = _mapping(node)
    if not isinstance(node, yaml.MappingNode):
        ck.fail(node, "adapters", "expected a mapping of naming, ves, tmf642")
        return None
    _unknown_keys(ck, node, m, "adapters", {"naming", *FEEDS})
    naming = _naming(ck, m.get("naming"))
    feeds = {feed: _feed(ck, m.get(feed), feed) for feed in FEEDS}
    if "naming" not in m and any(feeds.values()):
        ck.fail(node, "adapters.naming", "required key missing: the rules that name a cell "
                "or site from a feed's source name")
    return Adapters(naming=naming, **feeds)


TOP_KEYS = {"rulebook", "version", "correlation", "quiet_hours", "channels", "limits",
            "inhibit", "budgets", "silences", "rules", "adapters"}


def load_rulebook(path: str | Path | None = None) -> Rulebook:
    """Load ``rulebook.yaml`` from a directory (or a file); raise RulebookError.

    Reads at most :data:`forewarn.rules.safe_yaml.MAX_BYTES` (+1) bytes, whatever the file is.
    """
    path = Path(path) if path is not None else DEFAULT_DIR
    file = path / "rulebook.yaml" if path.is_dir() else path
    try:
        data = read_limited(file)
    except YamlRefused as exc:
        raise RulebookError(exc.problems, exc.code) from None
    return parse_rulebook(data, file)


def _section(ck: _Checker, top: dict, key: str, known: set[str]) -> tuple[Any, dict]:
    """A top-level mapping (or nested one, ``key`` with dots), checked for unknown keys."""
    node, parent = None, top
    for part in key.split("."):
        node = parent.get(part)
        parent = _mapping(node)
    if node is not None and not isinstance(node, yaml.MappingNode):
        ck.fail(node, key, f"expected a mapping of {', '.join(sorted(known))}")
    _unknown_keys(ck, node, parent, key, known)
    return node, parent


def parse_rulebook(data: bytes | str, file: Path) -> Rulebook:
    """Check a rulebook's text (bytes as read from ``file``); raise RulebookError."""
    raw = data.encode() if isinstance(data, str) else data
    ck = _Checker(file)
    try:
        root = compose_limited(raw, file)
    except YamlRefused as exc:
        raise RulebookError(exc.problems, exc.code) from None
    top = _mapping(root)
    if not top:
        raise RulebookError([f"{file}:1: (top): expected a mapping with rulebook, version, "
                             "rules"])
    _unknown_keys(ck, root, top, "", TOP_KEYS)
    name = _get(ck, root, top, "rulebook", "", str)
    if name is not None and not ID_PATTERN.fullmatch(name):
        ck.fail(top["rulebook"], "rulebook", f"expected {ID_RULE}, got {_show(name)}")
    version = _num(ck, root, top, "version", "", int, required=True)
    corr_node, corr = _section(ck, top, "correlation", {
        "outage_severities", "outage_causes", "group_wait_s", "hold_down_s",
        "position_max_age_s", "flapping", "nearby", "storm"})
    if corr_node is None:
        ck.fail(root, "correlation", "required key missing")
    sev = _choices(ck, corr_node, corr, "outage_severities", "correlation", SEVERITIES)
    causes = _choices(ck, corr_node, corr, "outage_causes", "correlation", None)
    flap_node, flap = _section(ck, top, "correlation.flapping",
                               {"outages", "window_s", "stable_s"})
    near_node, near = _section(ck, top, "correlation.nearby",
                               {"sites", "silence_s", "reappear_s"})
    storm_node, storm = _section(ck, top, "correlation.storm", {"sites", "window_s"})
    if storm_node is not None and "sites" not in storm:
        ck.fail(storm_node, "correlation.storm.sites",
                "required key missing: how many sites of one region make a regional "
                "outage, such as {sites: 5, window_s: 900}")

    def num(node, m, key, where, default, typ=float):
        return _num(ck, node, m, key, where, typ, default)

    correlation = Correlation(
        outage_severities=frozenset(sev),
        outage_causes=frozenset(causes),
        group_wait_s=num(corr_node, corr, "group_wait_s", "correlation", 60.0),
        hold_down_s=num(corr_node, corr, "hold_down_s", "correlation", 120.0),
        position_max_age_s=num(corr_node, corr, "position_max_age_s", "correlation", 3600.0),
        flapping_outages=num(flap_node, flap, "outages", "correlation.flapping", 4, int),
        flapping_window_s=num(flap_node, flap, "window_s", "correlation.flapping", 1800.0),
        flapping_stable_s=num(flap_node, flap, "stable_s", "correlation.flapping", 600.0),
        nearby_sites=num(near_node, near, "sites", "correlation.nearby", 16, int),
        silence_s=num(near_node, near, "silence_s", "correlation.nearby", 4380.0),
        reappear_s=num(near_node, near, "reappear_s", "correlation.nearby", 600.0),
        storm_sites=num(storm_node, storm, "sites", "correlation.storm", None, int),
        storm_window_s=num(storm_node, storm, "window_s", "correlation.storm", 900.0),
    )
    if correlation.group_wait_s >= correlation.hold_down_s:
        ck.fail(corr.get("group_wait_s", corr_node), "correlation.group_wait_s",
                f"expected less than hold_down_s ({_amount(correlation.hold_down_s)}), got "
                f"{_amount(correlation.group_wait_s)}: alarms are grouped before notices go")
    qnode, quiet = _section(ck, top, "quiet_hours", {"start", "end", "defer", "defer_unconfirmed"})
    q_start = _clock(ck, quiet.get("start", qnode), _plain(quiet["start"]) if "start" in quiet
                     else None, "quiet_hours.start")
    q_end = _clock(ck, quiet.get("end", qnode), _plain(quiet["end"]) if "end" in quiet else None,
                   "quiet_hours.end")
    defer = _choices(ck, qnode, quiet, "defer", "quiet_hours", ACTION_KINDS)
    defer_unconfirmed = _choices(ck, qnode, quiet, "defer_unconfirmed", "quiet_hours",
                                 ACTION_KINDS)
    cnode, chans = _section(ck, top, "channels", {"default_order"})
    order = _choices(ck, cnode, chans, "default_order", "channels", CHANNEL_NAMES) \
        or CHANNEL_NAMES
    lnode, limits = _section(ck, top, "limits", {"max_contacts_per_day"})
    inode, inhibit = _section(ck, top, "inhibit", {"apology_when_notified",
                                                   "notice_when_notified_in_region"})
    rules_node = top.get("rules")
    rules: list[Rule] = []
    rule_nodes: dict[str, yaml.Node] = {}
    if not isinstance(rules_node, yaml.SequenceNode):
        ck.fail(rules_node or root, "rules", "expected a list of rules")
    elif len(rules_node.value) > MAX_RULES:  # checking overlaps is quadratic in rules
        raise RulebookError([f"{file}:{rules_node.start_mark.line + 1}: rules: "
                             f"{len(rules_node.value)} rules; at most {MAX_RULES}: merge rules "
                             "that differ only in audience"], "too_large")
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
        terms = {r.expected for r in rules if r.expected is not None}
        if len(terms) > 1:  # a down site looks for the expected once, with one set of terms
            first = next(r for r in rules if r.expected is not None)
            for r in rules:
                if r.expected is not None and r.expected != first.expected:
                    ck.fail(rule_nodes[r.id], f"rules[{r.id}].trigger.expected",
                            f"differs from rules[{first.id}].trigger.expected: every "
                            "`at: expected` rule must give the same silence_s, within_s "
                            "and min_outage_s")
    max_contacts = _num(ck, lnode, limits, "max_contacts_per_day", "limits", int)
    apology_inhibit = _get(ck, inode, inhibit, "apology_when_notified", "inhibit", bool, False)
    region_inhibit = _get(ck, inode, inhibit, "notice_when_notified_in_region", "inhibit",
                          bool, False)
    if region_inhibit and storm_node is None:
        ck.fail(inhibit["notice_when_notified_in_region"],
                "inhibit.notice_when_notified_in_region",
                "needs correlation.storm (its window_s says which outages of a region are "
                "one event): add `storm: {sites: 5, window_s: 900}` under correlation, or "
                "set this to false")
    budgets = _budgets(ck, top.get("budgets"))
    silences = _silences(ck, top.get("silences"))
    adapters = _adapters(ck, top.get("adapters"))
    if ck.problems:
        raise RulebookError(ck.all())
    return Rulebook(
        name=name, version=version, correlation=correlation, quiet_start_min=q_start,
        quiet_end_min=q_end, defer_kinds=frozenset(defer), channel_order=tuple(order),
        rules=tuple(rules), source=str(file), max_contacts_per_day=max_contacts,
        inhibit_apology_when_notified=True if apology_inhibit is None else apology_inhibit,
        inhibit_notice_in_region=bool(region_inhibit),
        budgets=budgets, silences=silences,
        digest=hashlib.sha256(raw).hexdigest()[:12],
        defer_unconfirmed_kinds=frozenset(defer_unconfirmed),
        adapters=adapters,
    )


#: The storm day's pacing (docs/rules.md, "Pacing"): what an SMS gateway, a push service
#: and a mail relay take a minute; VIP and business first; nobody waits past 30 min; only
#: the actions about a regional event's incidents wait.
STORM_DAY_BUDGETS = Budgets(per_minute={"sms": 500, "push": 3000, "email": 1000},
                            priority_segments=("vip", "business"), reserve_share=0.2,
                            max_delay_s=1800.0, pace="regional_events")


def storm_day(book: Rulebook) -> Rulebook:
    """``book`` with the storm-day settings on: one outage notice and one restored notice
    per customer per regional event (``inhibit.notice_when_notified_in_region``), and
    :data:`STORM_DAY_BUDGETS` unless it has budgets of its own. The default rulebook has
    neither (the contract sends each incident's notices, at once); ``forewarn demo
    --storm`` runs this on the rulebook it is given.

    >>> default = load_rulebook()
    >>> b = storm_day(default)
    >>> b.inhibit_notice_in_region, b.budgets.per_minute["sms"], default.budgets
    (True, 500, None)
    """
    return replace(book, inhibit_notice_in_region=True,
                   budgets=book.budgets if book.budgets is not None else STORM_DAY_BUDGETS)
