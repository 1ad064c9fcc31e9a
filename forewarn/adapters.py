"""Operators' alarm feeds in: ONAP VES 7.x fault events and TM Forum TMF642 alarm
notifications, mapped to the contract's :class:`~forewarn.model.Alarm`.

The decode step calls :func:`translate` for a JSON object without ``"type"`` (the
contract's records all have one, so the contract format never comes here). It
recognises the shape, maps the event through the rulebook's ``adapters:`` tables
(:class:`Adapters`: probable causes, and naming rules from a source name to a cell
or site) and returns an :class:`~forewarn.model.Alarm`, a dead letter saying why
not, or, for a VES ``eventList`` batch, an :class:`~forewarn.codec.Expanded` list of
``(raw, record)`` pairs, one per event. Everything after decoding is unchanged.

Alarm identity: a VES event has no alarm id; a raise and its later ``NORMAL`` pair
by ``(sourceName, alarmInterfaceA, alarmCondition)``, so the id is made of them
(:func:`ves_alarm_id`): every repeat of a raise before its clear is the same alarm
(the site stage ignores a repeated raise of an open alarm; a higher severity that
makes it an outage opens it then), and a raise after the clear is the next
occurrence under the same id. A TMF642 alarm keeps its ``id``.

>>> from forewarn.codec import Expanded
>>> ad = Adapters(naming=(NamingRule.compile(r"(?P<cell>CELL\\d+-\\d)"),),
...               ves=FeedSpec(causes={"LOS": "lossOfSignal"}, objects=("sourceName",)))
>>> ves = {"event": {"commonEventHeader": {"domain": "fault", "sourceName": "CELL0001-1",
...        "lastEpochMicrosec": 1795428900000000}, "faultFields": {"alarmCondition": "LOS",
...        "eventSeverity": "MAJOR", "specificProblem": "Loss of signal"}}}
>>> a = translate(ves, b"", "f", ad)
>>> a.alarm_id, a.cell_id, a.severity, a.probable_cause, a.event_time
('ves:CELL0001-1|LOS', 'CELL0001-1', 'major', 'lossOfSignal', 1795428900.0)
>>> str(translate({"eventList": [ves["event"], {}]}, b"", "f", ad)[1][1].code)
'missing_field'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson

from forewarn.codec import (
    MAX_TIME,
    MIN_TIME,
    Expanded,
    Source,
    _show,
    _time_of,
    dead_letter,
)
from forewarn.model import ALARM_TYPES, SEVERITIES, Alarm, DeadCode, DeadLetter

#: The feeds Forewarn reads besides its own records.
FEEDS = ("ves", "tmf642")
#: Where a feed's cell or site name may be read, in the order the rulebook lists them.
OBJECT_FIELDS: dict[str, tuple[str, ...]] = {
    "ves": ("sourceName", "alarmInterfaceA", "reportingEntityName", "sourceId"),
    "tmf642": ("alarmedObject.id", "alarmedObject.name", "alarmedObject.href"),
}
DEFAULT_OBJECTS: dict[str, tuple[str, ...]] = {"ves": ("sourceName",),
                                               "tmf642": ("alarmedObject.id",)}
#: What a name not in the causes table becomes: a dead letter, or kept as the cause.
UNMAPPED = ("dead_letter", "keep")
#: VES 7.x ``eventSeverity`` -> X.733 perceived severity (``NORMAL``: the clear).
VES_SEVERITY = {"CRITICAL": "critical", "MAJOR": "major", "MINOR": "minor",
                "WARNING": "warning", "NORMAL": "cleared"}
#: TMF642 event types that raise or change an alarm, and the ones that clear it.
TMF_RAISE = frozenset({"AlarmCreateEvent", "AlarmAttributeValueChangeEvent",
                       "AlarmStateChangeEvent", "AlarmChangeEvent"})
TMF_CLEAR = frozenset({"ClearAlarmEvent", "AlarmClearEvent", "AlarmClearedEvent"})
#: Events in one VES ``eventList``, at most (the record size limit bounds it anyway).
MAX_BATCH = 1000
#: The longest name or condition read (a longer one is a dead letter, never matched).
MAX_NAME = 256

#: Dead-letter codes of the adapters (a clear without raise: the sequencer's).
CODES = (DeadCode.NO_ADAPTER, DeadCode.UNSUPPORTED_EVENT, DeadCode.UNKNOWN_SOURCE,
         DeadCode.UNKNOWN_CONDITION, DeadCode.CLEAR_WITHOUT_RAISE)


@dataclass(frozen=True, slots=True)
class NamingRule:
    """A name (VES ``sourceName``, TMF642 ``alarmedObject.id`` ...) -> a cell or a site.

    ``pattern`` must match the whole name. The cell id is ``cell`` (a template of
    the pattern's named groups, ``{site}-C{n}``) or the group named ``cell``; likewise
    the site. A rule gives a cell, a site, or both.

    >>> r = NamingRule.compile(r"(?P<site>[A-Z]+\\d+)/sector-(?P<n>\\d)", cell="{site}-C{n}")
    >>> r.resolve("ABC12/sector-3")
    ('ABC12-C3', 'ABC12')
    >>> r.resolve("ABC12") is None
    True
    """

    pattern: re.Pattern[str]
    cell: str | None = None
    site: str | None = None

    @classmethod
    def compile(cls, pattern: str, cell: str | None = None,
                site: str | None = None) -> NamingRule:
        return cls(re.compile(pattern), cell, site)

    def resolve(self, name: str) -> tuple[str | None, str | None] | None:
        """``(cell_id, site_id)`` of a name this rule matches (one may be None), else None."""
        m = self.pattern.fullmatch(name)
        if m is None:
            return None
        groups = {k: v for k, v in m.groupdict().items() if v is not None}
        try:
            cell = self.cell.format_map(groups) if self.cell else groups.get("cell")
            site = self.site.format_map(groups) if self.site else groups.get("site")
        except KeyError:  # a template's group took no part in this match
            return None
        if not cell and not site:
            return None
        return cell or None, site or None


@dataclass(frozen=True, slots=True)
class FeedSpec:
    """One feed's mapping: causes table, the fields naming the alarmed object, and
    what an unmapped cause becomes."""

    causes: Mapping[str, str] = field(default_factory=dict)
    objects: tuple[str, ...] = ()
    unmapped: str = "dead_letter"
    targets: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", frozenset(self.causes.values()))

    def cause(self, *names: str | None) -> str | None:
        """The probable cause of the first name the table maps; a name that is itself
        one of the table's causes stands for itself; None when nothing maps."""
        causes = self.causes
        for name in names:
            if name is not None and name in causes:
                return causes[name]
        targets = self.targets
        for name in names:
            if name is not None and name in targets:
                return name
        if self.unmapped == "keep":
            return next((n for n in names if n), None)
        return None


@dataclass(frozen=True, slots=True)
class Adapters:
    """The rulebook's ``adapters:`` section (``docs/adapters.md``)."""

    naming: tuple[NamingRule, ...] = ()
    ves: FeedSpec | None = None
    tmf642: FeedSpec | None = None

    def place(self, names: list[tuple[str, str]]) -> tuple[str | None, str | None] | None:
        """``(cell, site)`` of the first ``(field, name)`` a naming rule resolves."""
        for _, name in names:
            for rule in self.naming:
                got = rule.resolve(name)
                if got is not None:
                    return got
        return None


class _Bad(Exception):
    """A feed event that cannot be mapped: ``(reason, code)``."""

    def __init__(self, reason: str, code: DeadCode):
        super().__init__(reason)
        self.reason = reason
        self.code = code


def _dead(raw: bytes, source: Source, reason: str, code: DeadCode) -> DeadLetter:
    return dead_letter(raw, source, reason, code)


def shape(obj: dict) -> str | None:
    """``"ves"``, ``"ves_batch"``, ``"tmf642"`` or None (not a feed this module reads).

    >>> shape({"eventList": []}), shape({"eventType": "ClearAlarmEvent", "event": {}})
    ('ves_batch', 'tmf642')
    """
    event = obj.get("event")
    if isinstance(event, dict) and "commonEventHeader" in event:
        return "ves"
    if "eventList" in obj:
        return "ves_batch"
    if isinstance(obj.get("eventType"), str) and isinstance(event, dict):
        return "tmf642"
    return None


def translate(obj: dict, raw: bytes, source: Source,
              adapters: Adapters | None) -> Alarm | DeadLetter | Expanded | None:
    """A feed event -> an alarm, a dead letter or (a VES batch) one of each per event;
    None when ``obj`` is no feed's shape (the caller says what it expected)."""
    kind = shape(obj)
    if kind is None:
        return None
    feed = "tmf642" if kind == "tmf642" else "ves"
    spec = getattr(adapters, feed) if adapters is not None else None
    name = "VES" if feed == "ves" else "TMF642"
    if spec is None or adapters is None:
        return _dead(raw, source, f"{name} event: the rulebook has no adapters.{feed} "
                     "mapping (see docs/adapters.md)", DeadCode.NO_ADAPTER)
    if kind == "tmf642":
        try:
            return _tmf642(obj, spec, adapters)
        except _Bad as bad:
            return _dead(raw, source, bad.reason, bad.code)
    if kind == "ves":
        try:
            return _ves(obj["event"], spec, adapters, "ves")
        except _Bad as bad:
            return _dead(raw, source, bad.reason, bad.code)
    events = obj.get("eventList")
    if not isinstance(events, list) or not events:
        return _dead(raw, source, f"ves.eventList: expected a non-empty list of events, got "
                     f"{_show(events)}", DeadCode.BAD_TYPE)
    if len(events) > MAX_BATCH:
        return _dead(raw, source, f"ves.eventList: {len(events)} events; at most {MAX_BATCH} "
                     "in one batch (too large)", DeadCode.TOO_LARGE)
    out = Expanded()
    for i, event in enumerate(events):
        one = orjson.dumps(event) if len(events) > 1 else raw
        where = f"ves.eventList[{i}]"
        try:
            if not isinstance(event, dict):
                raise _Bad(f"{where}: expected a JSON object, got {_show(event)}",
                           DeadCode.NOT_OBJECT)
            out.append((one, _ves(event, spec, adapters, where)))
        except _Bad as bad:
            out.append((one, _dead(one, source, bad.reason, bad.code)))
    return out


# ---- field readers ----------------------------------------------------------------


def _obj(parent: dict, where: str, key: str) -> dict:
    value = parent.get(key)
    if value is None:
        raise _Bad(f"{where}.{key}: required field missing", DeadCode.MISSING_FIELD)
    if not isinstance(value, dict):
        raise _Bad(f"{where}.{key}: expected an object, got {_show(value)}", DeadCode.BAD_TYPE)
    return value


def _text(parent: dict, where: str, key: str, required: bool = True) -> str | None:
    value = parent.get(key)
    if value is None:
        if required:
            raise _Bad(f"{where}.{key}: required field missing", DeadCode.MISSING_FIELD)
        return None
    if not isinstance(value, str) or not value:
        raise _Bad(f"{where}.{key}: expected a non-empty string, got {_show(value)}",
                   DeadCode.BAD_TYPE)
    if len(value) > MAX_NAME:
        raise _Bad(f"{where}.{key}: {len(value)} characters; at most {MAX_NAME} read",
                   DeadCode.BAD_VALUE)
    return value


def _escape(part: str) -> str:
    return quote(part, safe=" !#$&'()*+,-./:;<=>?@[]^_`{}~")  # '|' and '%' escaped


def ves_alarm_id(source_name: str, condition: str, interface: str | None = None) -> str:
    """The alarm id of a VES fault: its source, interface (when given) and condition;
    ``|`` and ``%`` inside them are escaped, so different triples never share an id.

    >>> ves_alarm_id("gNB-7", "lossOfSignal"), ves_alarm_id("a|b", "c", "eth0")
    ('ves:gNB-7|lossOfSignal', 'ves:a%7Cb|eth0|c')
    """
    parts = (source_name, interface, condition) if interface else (source_name, condition)
    return "ves:" + "|".join(_escape(p) for p in parts)


def _place(adapters: Adapters, names: list[tuple[str, str]], where: str,
           fields: tuple[str, ...]) -> tuple[str | None, str | None]:
    if not names:
        raise _Bad(f"{where}: none of the fields the rulebook reads for the alarmed object "
                   f"({', '.join(fields)}) is there (unknown source name)", DeadCode.UNKNOWN_SOURCE)
    got = adapters.place(names)
    if got is None:
        shown = ", ".join(f"{f}={_show(v)}" for f, v in names)
        raise _Bad(f"{where}: {shown} matches no adapters.naming rule (unknown source name)",
                   DeadCode.UNKNOWN_SOURCE)
    return got


def _cause(spec: FeedSpec, where: str, *names: str | None) -> str:
    got = spec.cause(*names)
    if got is None:
        shown = " / ".join(_show(n) for n in names if n is not None)
        raise _Bad(f"{where}: {shown} not in the rulebook's causes table "
                   "(unknown condition)", DeadCode.UNKNOWN_CONDITION)
    return got


# ---- VES 7.x --------------------------------------------------------------------------


def _ves(event: dict, spec: FeedSpec, adapters: Adapters, where: str) -> Alarm:
    header = _obj(event, where, "commonEventHeader")
    hw = f"{where}.commonEventHeader"
    domain = header.get("domain")
    if domain != "fault":
        raise _Bad(f"{hw}.domain: only fault events are read, got {_show(domain)} "
                   "(unsupported event)", DeadCode.UNSUPPORTED_EVENT)
    fields = _obj(event, where, "faultFields")
    fw = f"{where}.faultFields"
    micros = header.get("lastEpochMicrosec")
    if micros is None:
        raise _Bad(f"{hw}.lastEpochMicrosec: required field missing", DeadCode.MISSING_FIELD)
    if isinstance(micros, bool) or not isinstance(micros, int | float):
        raise _Bad(f"{hw}.lastEpochMicrosec: expected a number of microseconds, got "
                   f"{_show(micros)}", DeadCode.BAD_TYPE)
    at = micros / 1e6
    if not MIN_TIME <= at <= MAX_TIME:
        raise _Bad(f"{hw}.lastEpochMicrosec: expected microseconds since 1970 (up to year "
                   f"9999), got {_show(micros)}", DeadCode.BAD_TIME)
    source_name = _text(header, hw, "sourceName")
    assert source_name is not None
    raw_severity = fields.get("eventSeverity")
    severity = VES_SEVERITY.get(raw_severity) if isinstance(raw_severity, str) else None
    if raw_severity is None:
        raise _Bad(f"{fw}.eventSeverity: required field missing", DeadCode.MISSING_FIELD)
    if severity is None:
        raise _Bad(f"{fw}.eventSeverity: expected one of {','.join(VES_SEVERITY)}, got "
                   f"{_show(raw_severity)}", DeadCode.BAD_ENUM)
    condition = _text(fields, fw, "alarmCondition")
    assert condition is not None
    problem = _text(fields, fw, "specificProblem", False)
    interface = _text(fields, fw, "alarmInterfaceA", False)
    cause = _cause(spec, f"{fw}.alarmCondition", condition, problem)
    names = []
    for name in spec.objects:
        value = interface if name == "alarmInterfaceA" else _text(header, hw, name, False)
        if value:
            names.append((name, value))
    cell, site = _place(adapters, names, hw, spec.objects)
    return Alarm(
        alarm_id=ves_alarm_id(source_name, condition, interface),
        event_time=at, severity=severity, probable_cause=cause, cell_id=cell, site_id=site,
        alarm_type=None, specific_problem=problem, managed_object=source_name,
        additional_text=None, adapter="ves",
    )


# ---- TMF642 ----------------------------------------------------------------------------

#: TMF642 perceivedSeverity (any case) -> the contract's.
TMF_SEVERITY = {s: s for s in SEVERITIES}


def _tmf_time(alarm: dict, where: str, *keys: str) -> float:
    for key in keys:
        value = alarm.get(key)
        if value is None:
            continue
        at = _time_of(value)
        if at is None:
            raise _Bad(f"{where}.{key}: expected an RFC 3339 time with offset, got "
                       f"{_show(value)}", DeadCode.BAD_TIME)
        return at
    raise _Bad(f"{where}.{keys[0]}: required field missing", DeadCode.MISSING_FIELD)


def _tmf642(obj: dict, spec: FeedSpec, adapters: Adapters) -> Alarm:
    etype = obj["eventType"]
    if etype not in TMF_RAISE and etype not in TMF_CLEAR:
        raise _Bad(f"tmf642.eventType: expected one of "
                   f"{','.join(sorted(TMF_RAISE | TMF_CLEAR))}, got {_show(etype)} "
                   "(unsupported event)", DeadCode.UNSUPPORTED_EVENT)
    alarm = _obj(obj["event"], "tmf642.event", "alarm")
    w = "tmf642.event.alarm"
    alarm_id = _text(alarm, w, "id")
    assert alarm_id is not None
    raw_sev = alarm.get("perceivedSeverity")
    state = alarm.get("state")
    cleared = (etype in TMF_CLEAR or (isinstance(state, str) and state.lower() == "cleared")
               or (isinstance(raw_sev, str) and raw_sev.lower() == "cleared"))
    severity: str | None = "cleared"
    if cleared:
        at = _tmf_time(alarm, w, "alarmClearedTime", "alarmChangedTime")
    else:
        if raw_sev is None:
            raise _Bad(f"{w}.perceivedSeverity: required field missing", DeadCode.MISSING_FIELD)
        severity = TMF_SEVERITY.get(raw_sev.lower()) if isinstance(raw_sev, str) else None
        if severity is None:
            raise _Bad(f"{w}.perceivedSeverity: expected one of {','.join(SEVERITIES)}, got "
                       f"{_show(raw_sev)}", DeadCode.BAD_ENUM)
        keys = (("alarmRaisedTime",) if etype == "AlarmCreateEvent"
                else ("alarmChangedTime", "alarmRaisedTime"))
        at = _tmf_time(alarm, w, *keys)
        if etype != "AlarmCreateEvent" and "alarmChangedTime" not in alarm:
            top = _time_of(obj.get("eventTime"))  # the change's time, when the alarm lacks it
            at = top if top is not None and top >= at else at
    probable = _text(alarm, w, "probableCause", False)
    problem = _text(alarm, w, "specificProblem", False)
    if probable is None and problem is None:
        raise _Bad(f"{w}.probableCause: required field missing", DeadCode.MISSING_FIELD)
    cause = _cause(spec, f"{w}.probableCause", probable, problem)
    obj_node = alarm.get("alarmedObject")
    names: list[tuple[str, str]] = []
    if isinstance(obj_node, dict):
        for name in spec.objects:
            value = _text(obj_node, f"{w}.alarmedObject", name.split(".", 1)[1], False)
            if value:
                names.append((name, value))
    elif obj_node is not None:
        raise _Bad(f"{w}.alarmedObject: expected an object, got {_show(obj_node)}",
                   DeadCode.BAD_TYPE)
    cell, site = _place(adapters, names, f"{w}.alarmedObject", spec.objects)
    alarm_type: Any = alarm.get("alarmType")
    return Alarm(
        alarm_id=alarm_id, event_time=at, severity=severity or "cleared", probable_cause=cause,
        cell_id=cell, site_id=site,
        alarm_type=alarm_type if alarm_type in ALARM_TYPES else None,
        specific_problem=problem, managed_object=names[0][1] if names else None,
        additional_text=None, adapter="tmf642",
    )


# ---- merge time (file inputs) --------------------------------------------------------------


def stream_time(obj: Any) -> float | None:
    """The time a feed event is merged by among input files (a VES batch: its latest
    event), or None: not a feed event, or no readable time (it keeps its place).

    >>> stream_time({"event": {"commonEventHeader": {"lastEpochMicrosec": 5e6}}})
    5.0
    """
    if not isinstance(obj, dict) or "type" in obj:
        return None
    kind = shape(obj)
    if kind == "ves":
        return _ves_time(obj["event"])
    if kind == "ves_batch":
        events = obj.get("eventList")
        times = [t for e in events[:MAX_BATCH] if (t := _ves_time(e)) is not None] \
            if isinstance(events, list) else []
        return max(times) if times else None
    if kind == "tmf642":
        alarm = obj["event"].get("alarm")
        if not isinstance(alarm, dict):
            return None
        keys = [alarm.get("alarmClearedTime"), alarm.get("alarmChangedTime")]
        if obj.get("eventType") != "AlarmCreateEvent":  # a change's time (as _tmf642)
            keys.append(obj.get("eventTime"))
        for value in (*keys, alarm.get("alarmRaisedTime")):
            at = _time_of(value)
            if at is not None:
                return at
    return None


def _ves_time(event: Any) -> float | None:
    header = event.get("commonEventHeader") if isinstance(event, dict) else None
    micros = header.get("lastEpochMicrosec") if isinstance(header, dict) else None
    if isinstance(micros, bool) or not isinstance(micros, int | float):
        return None
    at = micros / 1e6
    return at if MIN_TIME <= at <= MAX_TIME else None
