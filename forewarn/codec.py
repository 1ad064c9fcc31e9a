"""The one codec: wire JSON <-> domain records, with validation.

Decoding never raises: every defect becomes a :class:`DeadLetter` whose
reason names the field, what was expected and what was found.

>>> decode(b'{"type":"location","subscriber_id":"S1","cell_id":"C1",'
...        b'"event_time":"2026-11-23T10:15:00Z"}', "oss.locations")
Location(subscriber_id='S1', cell_id='C1', event_time=1795428900.0)
>>> decode(b'{"type":"alarm","alarm_id":"A1","cell_id":"C1"}', "oss.alarms").reason
'alarm.event_time: required field missing'
>>> fmt_time(1795428900.0)
'2026-11-23T10:15:00Z'
"""

from __future__ import annotations

import base64
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, overload
from zoneinfo import ZoneInfo

import orjson

from forewarn.model import (
    ALARM_TYPES,
    CHANNEL_NAMES,
    COMPLAINT_CATEGORIES,
    REGIONAL_OUTAGE,
    SEGMENTS,
    SEVERITIES,
    TIME_FIELDS,
    Action,
    Alarm,
    Call,
    Cell,
    Channel,
    Complaint,
    DeadCode,
    DeadLetter,
    Incident,
    Kpi,
    Location,
    Maintenance,
    Record,
    Subscriber,
    stream_at,
)

if TYPE_CHECKING:
    from forewarn.adapters import Adapters

RAW_LIMIT = 4096  # bytes of the offending input kept in a dead letter
#: Inputs larger than this are dead letters ("too large") without being parsed.
MAX_RECORD_BYTES = 256 * 1024


class Origin(str):
    """A record's source name (its Kafka topic) that also knows partition and offset.

    Sources pass the cheap tuple ``(topic, partition, offset)`` along with a record;
    :func:`dead_letter` makes an ``Origin`` of it only when the record is refused.

    >>> o = Origin("oss.calls", 2, 41)
    >>> o == "oss.calls", o.origin()
    (True, {'topic': 'oss.calls', 'partition': 2, 'offset': 41})
    """

    part: int  # the partition (``str.partition`` is a method of the name)
    offset: int

    def __new__(cls, topic: str, partition: int, offset: int) -> Origin:
        self = super().__new__(cls, topic)
        self.part = partition
        self.offset = offset
        return self

    def origin(self) -> dict:
        """Fields added to a dead letter: ``topic``, ``partition``, ``offset``."""
        return {"topic": str(self), "partition": self.part, "offset": self.offset}

    def __reduce__(self):  # pickled inside the sequencer's reorder buffer
        return (Origin, (str(self), self.part, self.offset))


#: Where a record came from: a name (file, topic) or ``(topic, partition, offset)``.
Source = str | tuple[str, int, int]


class Expanded(list):
    """One input that stands for several records (a VES ``eventList`` batch): its
    ``(raw, record or DeadLetter)`` pairs, in order (:mod:`forewarn.adapters`)."""


class Invalid(ValueError):
    """A record defect: the message is the dead-letter reason, ``code`` its class."""

    def __init__(self, reason: str, code: DeadCode):
        super().__init__(reason)
        self.code = code


# ---- time ------------------------------------------------------------------


#: RFC 3339's date-time (section 5.6), nothing more: Python's ``fromisoformat`` also
#: takes ISO 8601 forms the contract does not (a space for ``T``, week dates, basic
#: format, seconds in the offset, no offset).
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:[Zz]|[+-]\d\d:\d\d)",
                      re.ASCII)
#: Times outside these bounds are refused: every later sum and format stays finite
#: (9999-12-31T23:59:59-01:00 is in year 10000 in UTC).
MIN_TIME = 0.0  # 1970-01-01T00:00:00Z
MAX_TIME = 253_402_214_400.0  # 9999-12-31T00:00:00Z
#: The longest KPI period accepted (a day); its end is the record's stream time.
MAX_PERIOD_S = 86_400.0


@lru_cache(maxsize=65536)
def parse_time(text: str) -> float:
    """RFC 3339 with an offset -> POSIX seconds; ``ValueError`` for any other form or
    a time outside 1970-9999.

    >>> parse_time("2026-11-23T11:15:00+01:00") == parse_time("2026-11-23T10:15:00Z")
    True
    >>> for bad in ("2026-11-23 10:15:00Z", "2026-W48-1T10:15:00Z", "2026-11-23T10:15:00",
    ...             "2026-11-23T10:15:00+01:00:30", "9999-12-31T23:59:59-01:00"):
    ...     try:
    ...         parse_time(bad)
    ...     except ValueError:
    ...         pass
    ...     else:
    ...         print("accepted", bad)
    """
    if not _RFC3339.fullmatch(text):
        raise ValueError("not an RFC 3339 date-time")
    # fromisoformat (3.11+) reads any number of fraction digits, keeping microseconds
    ts = datetime.fromisoformat(text[:10] + "T" + text[11:].upper()).timestamp()
    if not MIN_TIME <= ts <= MAX_TIME:
        raise ValueError("outside 1970-9999")
    return ts


def fmt_time(ts: float) -> str:
    """POSIX seconds -> RFC 3339 UTC ('Z'), milliseconds only when needed. Never
    raises: a time no calendar holds is shown as its number of seconds.

    >>> fmt_time(1e308)
    '1e+308 s'
    """
    try:
        dt = datetime.fromtimestamp(ts, UTC)
    except (OverflowError, ValueError, OSError):
        return f"{ts!r} s"
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


# ---- field readers (the full path: each defect named) -------------------------------


def _req(obj: dict, typ: str, name: str) -> Any:
    value = obj.get(name)
    if value is None:
        raise Invalid(f"{typ}.{name}: required field missing", DeadCode.MISSING_FIELD)
    return value


@overload
def _str(obj: dict, typ: str, name: str, required: Literal[True] = True) -> str: ...
@overload
def _str(obj: dict, typ: str, name: str, required: Literal[False]) -> str | None: ...
@overload
def _str(obj: dict, typ: str, name: str, required: bool) -> str | None: ...
def _str(obj: dict, typ: str, name: str, required: bool = True) -> str | None:
    value = _req(obj, typ, name) if required else obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise Invalid(f"{typ}.{name}: expected a non-empty string, got {_show(value)}",
                      DeadCode.BAD_TYPE)
    return value


def _time(obj: dict, typ: str, name: str) -> float:
    value = _req(obj, typ, name)
    if not isinstance(value, str):
        raise Invalid(f"{typ}.{name}: expected an RFC 3339 time string, got {_show(value)}",
                      DeadCode.BAD_TIME)
    at = _time_of(value)
    if at is None:
        raise Invalid(f"{typ}.{name}: expected an RFC 3339 time with offset, got "
                      f"{_show(value)}", DeadCode.BAD_TIME)
    return at


def _num(obj: dict, typ: str, name: str, required: bool = True) -> float | None:
    value = _req(obj, typ, name) if required else obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(f"{typ}.{name}: expected a number, got {_show(value)}", DeadCode.BAD_TYPE)
    return value


def _int(obj: dict, typ: str, name: str, required: bool = True) -> int | None:
    value = _req(obj, typ, name) if required else obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"{typ}.{name}: expected an integer, got {_show(value)}",
                      DeadCode.BAD_TYPE)
    if value < 0:
        raise Invalid(f"{typ}.{name}: expected a non-negative integer, got {value}",
                      DeadCode.BAD_TYPE)
    return value


def _enum(obj: dict, typ: str, name: str, allowed: tuple[str, ...],
          required: bool = True) -> str | None:
    value = _req(obj, typ, name) if required else obj.get(name)
    if value is None:
        return None
    if value not in allowed:
        raise Invalid(f"{typ}.{name}: expected one of {','.join(allowed)}, got {_show(value)}",
                      DeadCode.BAD_ENUM)
    return value


def _bool(obj: dict, typ: str, name: str) -> bool:
    value = _req(obj, typ, name)
    if not isinstance(value, bool):
        raise Invalid(f"{typ}.{name}: expected true or false, got {_show(value)}",
                      DeadCode.BAD_TYPE)
    return value


def _str_list(obj: dict, typ: str, name: str) -> tuple[str, ...]:
    value = obj.get(name)
    strings = _strings(value)
    if strings is None:
        raise Invalid(f"{typ}.{name}: expected a list of strings, got {_show(value)}",
                      DeadCode.BAD_TYPE)
    return strings


def _zone_name(obj: dict, typ: str, name: str) -> str:
    tz = _str(obj, typ, name)
    if not _is_zone(tz):
        raise Invalid(f"{typ}.{name}: expected an IANA time zone, got {_show(tz)}",
                      DeadCode.BAD_TYPE)
    return tz


def _channels(obj: dict, typ: str, name: str) -> tuple[Channel, ...]:
    raw = _req(obj, typ, name)
    if not isinstance(raw, dict):
        raise Invalid(f"{typ}.{name}: expected an object by channel, got {_show(raw)}",
                      DeadCode.BAD_TYPE)
    out = []
    for cname, spec in raw.items():
        where = f"{typ}.{name}.{cname}"
        if cname not in CHANNEL_NAMES:
            raise Invalid(f"{where}: expected a channel among {','.join(CHANNEL_NAMES)}",
                          DeadCode.BAD_TYPE)
        if not isinstance(spec, dict):
            raise Invalid(f"{where}: expected an object, got {_show(spec)}", DeadCode.BAD_TYPE)
        address, consent = spec.get("address"), spec.get("consent")
        if not isinstance(address, str) or not address:
            raise Invalid(f"{where}.address: expected a non-empty string, got {_show(address)}",
                          DeadCode.BAD_TYPE)
        if not isinstance(consent, bool):
            raise Invalid(f"{where}.consent: expected true or false, got {_show(consent)}",
                          DeadCode.BAD_TYPE)
        out.append(Channel(name=cname, address=address, consent=consent))
    return tuple(out)


def _show(value: Any) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_zone(name: str) -> bool:
    try:
        zone(name)
    except (ValueError, KeyError, OSError):
        return False
    return True


def _strings(value: Any, allowed: tuple[str, ...] | None = None) -> tuple[str, ...] | None:
    """A list of non-empty strings (absent: empty), as :func:`_str_list` takes it, else
    None; with ``allowed``, each must be one of them."""
    if value is None:
        return ()
    if type(value) is not list:
        return None
    for v in value:
        if type(v) is not str or not v or (allowed is not None and v not in allowed):
            return None
    return tuple(value)


def _fast_channels(raw: Any) -> tuple[Channel, ...] | None:
    """:func:`_channels` of a well-formed object by channel, else None."""
    if type(raw) is not dict:
        return None
    channels = []
    for cname, spec in raw.items():
        if cname not in CHANNEL_NAMES or type(spec) is not dict:
            return None
        address, consent = spec.get("address"), spec.get("consent")
        if type(address) is not str or not address or type(consent) is not bool:
            return None
        channel = _new(Channel)
        _CHANNEL[0](channel, cname)
        _CHANNEL[1](channel, address)
        _CHANNEL[2](channel, consent)
        channels.append(channel)
    return tuple(channels)


_CHANNEL = tuple(getattr(Channel, f).__set__ for f in ("name", "address", "consent"))


# ---- the field tables -------------------------------------------------------------------
#
# Each input record type is one table: its fields in the order they are checked, each with
# its kind, whether it is required and its range, and the rules between fields. Both paths
# read the tables: the full path (:func:`validate`) names the first defect; the fast path
# (:func:`_fast`, a function generated per table) only says whether a record is well formed
# and builds it through its slots, for the records that are most of the traffic.

#: Field kinds: what each accepts, and (full path) its reader.
STR, TIME, NUM, INT, ENUM, BOOL, STRS, ZONE, CHANNELS = (
    "str", "time", "num", "int", "enum", "bool", "strs", "zone", "channels")


@dataclass(frozen=True, slots=True)
class Field:
    """One wire field: ``str`` (non-empty), ``time`` (RFC 3339 with an offset), ``num``
    (an int or float, not a bool), ``int`` (non-negative), ``enum`` (one of ``allowed``),
    ``bool``, ``strs`` (a list of non-empty strings, absent: empty; each among ``allowed``
    if given), ``zone`` (an IANA time zone name), ``channels`` (the contract's object by
    channel). A ``num`` may have a range, ``above`` < value <= ``most``, named ``expect``
    in a reason (with ``range_code``), and ``convert`` (``float``). ``attr``: the record's
    attribute, when it is not the wire name."""

    name: str
    kind: str
    required: bool = True
    allowed: tuple[str, ...] | None = None
    above: float | None = None
    most: float | None = None
    expect: str = ""
    range_code: DeadCode = DeadCode.BAD_VALUE
    convert: Callable[[Any], Any] | None = None
    attr: str = ""

    @property
    def slot(self) -> str:
        return self.attr or self.name


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule between fields read before it: ``test``, a Python expression over them
    (by wire name), must hold, else the record is refused with ``reason`` and ``code``."""

    test: str
    reason: str
    code: DeadCode


@dataclass(frozen=True, slots=True)
class Until:
    """The record is complete when ``test`` holds (a subscriber delete: the id, ``op`` and
    time); the fields after it are not read. The fast path leaves such a record to the
    full path."""

    test: str


@dataclass(frozen=True, slots=True)
class Table:
    cls: type[Record]
    items: tuple[Field | Rule | Until, ...]

    @property
    def fields(self) -> tuple[Field, ...]:
        return tuple(i for i in self.items if type(i) is Field)


TABLES: dict[str, Table] = {t.cls.kind: t for t in (
    Table(Cell, (
        Field("cell_id", STR), Field("site_id", STR), Field("region", STR, False),
        Field("lat", NUM, False), Field("lon", NUM, False), Field("technology", STR, False),
    )),
    Table(Alarm, (
        Field("cell_id", STR, False), Field("site_id", STR, False),
        Rule("cell_id is not None or site_id is not None",
             "alarm.cell_id/site_id: one of them is required, got neither",
             DeadCode.MISSING_FIELD),
        Field("alarm_id", STR), Field("event_time", TIME),
        Field("perceived_severity", ENUM, allowed=SEVERITIES, attr="severity"),
        Field("probable_cause", STR), Field("alarm_type", ENUM, False, allowed=ALARM_TYPES),
        Field("specific_problem", STR, False), Field("managed_object", STR, False),
        Field("additional_text", STR, False),
    )),
    Table(Location, (
        Field("subscriber_id", STR), Field("cell_id", STR), Field("event_time", TIME),
    )),
    Table(Call, (
        Field("dropped", BOOL), Field("start_time", TIME), Field("end_time", TIME),
        Rule("end_time >= start_time",
             "call.end_time: expected at or after start_time, got an earlier time",
             DeadCode.BAD_TYPE),
        Field("call_id", STR), Field("subscriber_id", STR), Field("cell_id", STR),
        Field("cause_code", INT, False),
    )),
    Table(Kpi, (
        # out of range is `bad_type`: the code dashboards have always counted it under
        Field("period_s", NUM, above=0.0, most=MAX_PERIOD_S, convert=float,
              expect=f"a positive number of seconds up to {MAX_PERIOD_S:.0f}",
              range_code=DeadCode.BAD_TYPE),
        Field("cell_id", STR), Field("period_start", TIME), Field("call_attempts", INT),
        Field("dropped_calls", INT), Field("rrc_success_rate", NUM, False),
        Field("dl_throughput_mbps", NUM, False), Field("active_users", INT, False),
    )),
    Table(Subscriber, (
        Field("subscriber_id", STR), Field("op", ENUM, allowed=("upsert", "delete")),
        Field("updated_at", TIME), Until("op == 'delete'"),
        Field("timezone", ZONE),
        Field("preferred_channels", STRS, allowed=CHANNEL_NAMES,
              expect=f"channels among {','.join(CHANNEL_NAMES)}"),
        Field("language", STR), Field("segment", ENUM, allowed=SEGMENTS),
        Field("channels", CHANNELS), Field("name", STR, False), Field("plan", STR, False),
        Field("tenure_months", INT, False), Field("tags", STRS),
    )),
    Table(Maintenance, (
        Field("site_ids", STRS), Field("cell_ids", STRS),
        Rule("site_ids or cell_ids",
             "maintenance.site_ids/cell_ids: one of them is required, got neither",
             DeadCode.MISSING_FIELD),
        Field("start_time", TIME), Field("end_time", TIME),
        Rule("end_time > start_time", "maintenance.end_time: expected after start_time",
             DeadCode.BAD_TYPE),
        Field("window_id", STR), Field("op", ENUM, allowed=("upsert", "cancel")),
        Field("description", STR, False),
    )),
    Table(Complaint, (
        Field("complaint_id", STR), Field("subscriber_id", STR), Field("event_time", TIME),
        Field("category", ENUM, allowed=COMPLAINT_CATEGORIES), Field("channel", STR, False),
    )),
)}

_RULES: dict[str, Any] = {}  # a rule's test, compiled


def _read_field(o: dict, typ: str, f: Field) -> Any:
    """The full path's reading of one field: its value, or :class:`Invalid` naming the
    defect."""
    kind, name = f.kind, f.name
    if kind == STR:
        return _str(o, typ, name, f.required)
    if kind == TIME:
        return _time(o, typ, name)
    if kind == NUM:
        value = _num(o, typ, name, f.required)
        if value is not None and ((f.above is not None and not f.above < value)
                                  or (f.most is not None and not value <= f.most)):
            raise Invalid(f"{typ}.{name}: expected {f.expect}, got {_show(value)}", f.range_code)
        return value
    if kind == INT:
        return _int(o, typ, name, f.required)
    if kind == ENUM:
        assert f.allowed is not None
        return _enum(o, typ, name, f.allowed, f.required)
    if kind == BOOL:
        return _bool(o, typ, name)
    if kind == STRS:
        strings = _str_list(o, typ, name)
        for item in strings:
            if f.allowed is not None and item not in f.allowed:
                raise Invalid(f"{typ}.{name}: expected {f.expect}, got {_show(item)}",
                              f.range_code)
        return strings
    if kind == ZONE:
        return _zone_name(o, typ, name)
    if kind == CHANNELS:
        return _channels(o, typ, name)
    raise AssertionError(f"unknown field kind {kind!r}")  # pragma: no cover


def validate(table: Table, o: dict) -> Record:
    """The full path: the record ``o`` stands for, or :class:`Invalid` naming its first
    defect (fields and rules in the table's order).

    >>> validate(TABLES["call"], {"dropped": "no"})
    Traceback (most recent call last):
    ...
    forewarn.codec.Invalid: call.dropped: expected true or false, got "no"
    """
    typ = table.cls.kind
    values: dict[str, Any] = {}
    slots: dict[str, Any] = {}
    for item in table.items:
        if isinstance(item, Field):
            value = _read_field(o, typ, item)
            values[item.name] = value
            slots[item.slot] = value if item.convert is None else item.convert(value)
            continue
        test = _RULES.get(item.test)
        if test is None:
            test = _RULES[item.test] = compile(item.test, f"<{typ} rule>", "eval")
        holds = eval(test, {}, values)  # noqa: S307 - a table's own expression
        if type(item) is Until:
            if holds:
                break
        elif not holds:
            assert type(item) is Rule
            raise Invalid(item.reason, item.code)
    return table.cls(**slots)


def _fast_source(table: Table, name: str, result: str | None = None,
                 when: str | None = None) -> str:
    """The source of a fast path: a function of the JSON object that returns None for
    anything the table may refuse, else the record built through its slots; or
    ``result``, an expression over the fields, instead (only ``when`` that holds, if
    given)."""
    lines = [f"def {name}(o):"]
    add = lines.append
    for item in table.items:
        if type(item) is Rule:
            add(f"    if not ({item.test}): return None")
            continue
        if type(item) is Until:
            add(f"    if {item.test}: return None  # the full path reads it")
            continue
        assert type(item) is Field
        v, kind, opt = item.name, item.kind, not item.required
        if kind == TIME:
            add(f"    {v} = _time_of(o.get({v!r}))")
            add(f"    if {v} is None: return None")
            continue
        if kind == STRS:
            allowed = "None" if item.allowed is None else repr(item.allowed)
            add(f"    {v} = _strings(o.get({v!r}), {allowed})")
            add(f"    if {v} is None: return None")
            continue
        if kind == CHANNELS:
            add(f"    {v} = _fast_channels(o.get({v!r}))")
            add(f"    if {v} is None: return None")
            continue
        add(f"    {v} = o.get({v!r})")
        bad = {
            STR: f"type({v}) is not str or not {v}",
            NUM: f"type({v}) is not int and type({v}) is not float",
            INT: f"type({v}) is not int or {v} < 0",
            ENUM: f"{v} not in {item.allowed!r}",
            BOOL: f"type({v}) is not bool",
            ZONE: f"type({v}) is not str or not {v} or not _is_zone({v})",
        }[kind]
        if kind == NUM and (item.above is not None or item.most is not None):
            low = "" if item.above is None else f"{item.above!r} < "
            high = "" if item.most is None else f" <= {item.most!r}"
            bad = f"({bad}) or not {low}{v}{high}"
        add(f"    if {v} is not None and ({bad}): return None" if opt
            else f"    if {bad}: return None")
        if item.convert is not None:
            add(f"    {v} = _convert_{v}({v})")
    if result is not None and when is None:
        add(f"    return {result}")
        return "\n".join(lines)
    if result is not None:
        add(f"    if {when}: return {result}")
    add(f"    rec = _new({table.cls.__name__})")
    read = {f.slot: f.name for f in table.fields}
    for slot in (f.name for f in fields(table.cls)):
        add(f"    _set_{slot}(rec, {read.get(slot, f'_default_{slot}')})")
    add("    return rec")
    return "\n".join(lines)


def _fast(table: Table, name: str, result: str | None = None,
          when: str | None = None) -> Callable[[dict], Any]:
    """The fast path :func:`_fast_source` writes, compiled."""
    cls = table.cls
    scope: dict[str, Any] = {
        "_time_of": _time_of, "_strings": _strings, "_fast_channels": _fast_channels,
        "_is_zone": _is_zone, "_new": _new, "_intern": _intern, cls.__name__: cls}
    for slot in fields(cls):
        scope[f"_set_{slot.name}"] = getattr(cls, slot.name).__set__
        scope[f"_default_{slot.name}"] = slot.default
    for field in table.fields:
        if field.convert is not None:
            scope[f"_convert_{field.name}"] = field.convert
    source = _fast_source(table, name, result, when)
    exec(compile(source, f"<fast path: {name}>", "exec"), scope)  # noqa: S102 - our tables
    fast = scope[name]
    fast.source = source
    return fast


def _full(table: Table) -> Callable[[dict], Record]:
    def read(o: dict) -> Record:
        return validate(table, o)
    read.__name__ = read.__qualname__ = f"_{table.cls.kind}"
    return read


#: The full path per record type: ``DECODERS[type](obj)`` -> record, or :class:`Invalid`.
DECODERS: dict[str, Callable[[dict], Record]] = {typ: _full(t) for typ, t in TABLES.items()}
_cell, _alarm, _location, _call, _kpi, _subscriber, _maintenance, _complaint = (
    DECODERS[t] for t in ("cell", "alarm", "location", "call", "kpi", "subscriber",
                          "maintenance", "complaint"))


def dead_letter(raw: bytes, source: Source, reason: str, code: DeadCode) -> DeadLetter:
    """A refused input: its first :data:`RAW_LIMIT` bytes, where it came from (an
    :class:`Origin` for ``(topic, partition, offset)``), why, and the reason's class."""
    name = Origin(*source) if isinstance(source, tuple) else source
    return DeadLetter(source=name, reason=reason, raw=raw[:RAW_LIMIT], code=code)


# Building a frozen dataclass goes through object.__setattr__ field by field; the
# records on short paths are built through their slots instead.
_new = object.__new__
_intern = sys.intern
_MINUTES: dict[str, float] = {}  # "2026-11-23T10:15:" -> POSIX seconds of that minute
_SECONDS = {f"{i:02d}": float(i) for i in range(60)}
_TIMES: dict[str, float] = {}  # canonical time strings read lately -> POSIX seconds
_TIMES_KEPT = 200_000  # a stream's recent seconds; cleared when full


def _time_of(value: Any) -> float | None:
    """:func:`parse_time` of a string, or None when it is not a valid time.

    The canonical form ``YYYY-MM-DDTHH:MM:SSZ`` is read as its minute (cached) plus
    its seconds, and remembered whole (a stream's events share their recent seconds);
    anything else goes through :func:`parse_time`.

    >>> _time_of("2026-11-23T10:15:42Z") == parse_time("2026-11-23T10:15:42Z")
    True
    >>> _time_of("2026-11-23T10:15:60Z") is None, _time_of(7) is None
    (True, True)
    """
    if type(value) is not str:
        return None
    at = _TIMES.get(value)
    if at is not None:
        return at
    if len(value) == 20 and value[19] == "Z":
        sec = _SECONDS.get(value[17:19])
        if sec is not None:
            base = _MINUTES.get(value[:17])
            if base is None:
                try:
                    base = parse_time(value[:17] + "00Z")
                except ValueError:
                    return None
                if len(_MINUTES) >= 100_000:
                    _MINUTES.clear()
                _MINUTES[value[:17]] = base
            at = base + sec
            if at > MAX_TIME:  # 9999-12-31T00:00:01Z and later: parse_time refuses them
                return None
            if len(_TIMES) >= _TIMES_KEPT:
                _TIMES.clear()
            _TIMES[value] = at
            return at
    try:
        return parse_time(value)
    except ValueError:
        return None


#: The fast paths, generated from the tables (``_fast_kpi.source`` shows one): a
#: well-formed subscriber upsert or KPI record; a location, or a call that was not dropped,
#: as the position the flow routes (:func:`read_input`), a dropped call as its record.
#: By name: ``(record type, result, when)``, as :func:`_fast` takes them.
FAST_PATHS: dict[str, tuple[str, str | None, str | None]] = {
    "_fast_subscriber": ("subscriber", None, None),
    "_fast_kpi": ("kpi", None, None),
    "_location_position": ("location", "(subscriber_id, _intern(cell_id), event_time, None)",
                           None),
    # known when the call ends: its end_time keeps "as of T" views exact
    "_call_position": ("call", "(subscriber_id, _intern(cell_id), end_time, 'call:' + call_id)",
                       "dropped is False"),
}
_fast_subscriber, _fast_kpi, _location_position, _call_position = (
    _fast(TABLES[typ], name, result, when) for name, (typ, result, when) in FAST_PATHS.items())
#: :func:`read_input`'s fast path by record type, and the type it reads.
_FAST_READ: dict[Any, tuple[Callable[[dict], Any], type]] = {
    "location": (_location_position, Location), "call": (_call_position, Call),
    "kpi": (_fast_kpi, Kpi), "subscriber": (_fast_subscriber, Subscriber)}


def decode(raw: bytes, source: Source) -> Record | DeadLetter:
    """One wire record -> a domain record, or a dead letter saying why.

    A well-formed ``subscriber`` upsert or ``kpi`` goes a short path; anything else to
    the per-type decoders, which name the defect. An input over
    :data:`MAX_RECORD_BYTES` is not even parsed. (The flow reads its input with
    :func:`decode_input`.)
    """
    obj = _parse(raw, source)
    if type(obj) is DeadLetter:
        return obj
    return _decode_obj(obj, raw, source)


def decode_input(raw: bytes, source: Source, adapters: Adapters | None = None
                 ) -> Record | tuple | DeadLetter | Expanded:
    """What the flow reads an input as (:func:`read_input`'s item, without its type and
    time): a well-formed ``location`` or call that was not dropped (most of the traffic)
    as the :data:`~forewarn.dataflows.messages.Position` it stands for, ``(subscriber_id,
    cell_id, at, ref)``, with its cell id interned (one string per cell in all state);
    anything else as :func:`decode` gives it, except that an object without ``type``
    that is an operator's alarm feed event (VES, TMF642) is mapped through ``adapters``
    (the rulebook's tables: :func:`forewarn.adapters.translate`) to an alarm, a dead
    letter or, for a VES batch, an :class:`Expanded` list of ``(raw, record)``.

    >>> decode_input(b'{"type":"location","subscriber_id":"S1","cell_id":"C1",'
    ...              b'"event_time":"2026-11-23T10:00:00Z"}', "oss.locations")
    ('S1', 'C1', 1795428000.0, None)
    """
    item, kind, _ = read_input(raw, source, adapters)
    if kind is Expanded:
        return Expanded((one, rec) for one, rec, _, _ in item)
    return item


def read_input(raw: bytes, source: Source, adapters: Adapters | None = None,
               expect: type | None = None) -> tuple[Any, type, float | None]:
    """The one decode routine of the flow's sources: the file and in-memory decode step
    (:func:`forewarn.dataflows.flow._decode_batch`) and the Kafka source
    (:mod:`forewarn.connectors.kafka_source`) read each input with it, so the same bytes
    give the same record, or the same dead letter with the same reason and code, on
    either path. Returns ``(item, kind, at)``:

    * a record (a position for a location or an undropped call, as :func:`decode_input`
      gives it), its record type and its stream time (:func:`~forewarn.model.stream_at`);
    * a :class:`~forewarn.model.DeadLetter`, ``DeadLetter`` and None;
    * for an input that stands for several records (a VES batch), an :class:`Expanded`
      of ``(raw, item, kind, at)``, each read as above, ``Expanded`` and None.

    ``expect``: the record type the input's Kafka topic carries; any other is a dead
    letter ``wrong_topic`` (files may mix types).

    >>> line = b'{"type":"location","subscriber_id":"S1","cell_id":"C1","event_time":"2026-11-23T10:00:00Z"}'
    >>> read_input(line, "f")
    (('S1', 'C1', 1795428000.0, None), <class 'forewarn.model.Location'>, 1795428000.0)
    >>> dead, kind, _ = read_input(line, ("oss.calls", 0, 7), expect=Call)
    >>> kind.__name__, str(dead.code), dead.source.origin()["offset"]
    ('DeadLetter', 'wrong_topic', 7)
    """  # noqa: E501 - a whole line
    rec: Any  # dispatched on its type below
    kind: type
    if len(raw) <= MAX_RECORD_BYTES:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            obj = _parse(raw, source)  # its dead letter
    else:
        obj = _parse(raw, source)
    if type(obj) is dict:
        try:
            fast, kind = _FAST_READ[obj.get("type")]
        except (KeyError, TypeError):  # (an unhashable type: refused)
            rec = _input_obj(obj, raw, source, adapters)
        else:  # a position, a KPI or a profile (most inputs)
            rec = fast(obj)
            if rec is not None:
                if expect is not None and kind is not expect:
                    return wrong_topic(raw, source, kind, expect), DeadLetter, None
                return rec, kind, rec[2] if type(rec) is tuple else rec.at
            rec = _validate_obj(obj, raw, source)  # refused, or a profile's deletion
    elif type(obj) is DeadLetter:
        return obj, DeadLetter, None
    else:
        rec = _validate_obj(obj, raw, source)
    kind = type(rec)
    if kind is DeadLetter:
        return rec, DeadLetter, None
    if kind is Expanded:
        many = Expanded(_one_of_many(one, item, source, expect) for one, item in rec)
        return many, Expanded, None
    if expect is not None and kind is not expect:
        return wrong_topic(raw, source, kind, expect), DeadLetter, None
    return rec, kind, rec.at


def _one_of_many(raw: bytes, rec: Any, source: Source,
                 expect: type | None) -> tuple[bytes, Any, type, float | None]:
    """:func:`read_input`'s ``(raw, item, kind, at)`` of one record of a batch."""
    kind = type(rec)
    if kind is DeadLetter:
        return raw, rec, DeadLetter, None
    if expect is not None and kind is not expect:
        return raw, wrong_topic(raw, source, kind, expect), DeadLetter, None
    return raw, rec, kind, stream_at(rec)


def wrong_topic(raw: bytes, source: Source, kind: Any, expect: Any) -> DeadLetter:
    """A record of a type (``kind``) its Kafka topic does not carry (it carries
    ``expect``; ``source``: the topic first)."""
    topic = source[0] if isinstance(source, tuple) else source
    return dead_letter(raw, source, f"{kind.kind}: record type {kind.kind!r} on topic "
                       f"{topic!r}, which carries only {expect.kind!r} records "
                       f"(wrong topic)", DeadCode.WRONG_TOPIC)


def _input_obj(obj: Any, raw: bytes, source: Source, adapters: Adapters | None
               ) -> Record | DeadLetter | Expanded:
    """A parsed input that takes no fast path, as :func:`read_input` reads it: an
    operator's feed event through ``adapters``, anything else validated."""
    if type(obj) is dict and obj.get("type") is None:
        from forewarn.adapters import translate  # an operator's feed: off the hot path

        fed = translate(obj, raw, source, adapters)
        if fed is not None:
            return fed
    return _validate_obj(obj, raw, source)


def _parse(raw: bytes, source: Source) -> Any:
    """The JSON value of an input, or a dead letter (too large, not JSON)."""
    if len(raw) > MAX_RECORD_BYTES:
        return dead_letter(raw, source, f"record too large: {len(raw)} bytes "
                                        f"(limit {MAX_RECORD_BYTES})", DeadCode.TOO_LARGE)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return dead_letter(raw, source, f"not JSON: {exc.args[0] if exc.args else exc}",
                           DeadCode.NOT_JSON)


def _decode_obj(obj: Any, raw: bytes, source: Source) -> Record | DeadLetter:
    if type(obj) is dict:
        typ = obj.get("type")
        if typ == "subscriber":
            sub = _fast_subscriber(obj)
            if sub is not None:
                return sub
        elif typ == "kpi":
            kpi = _fast_kpi(obj)
            if kpi is not None:
                return kpi
    return _validate_obj(obj, raw, source)


def _validate_obj(obj: Any, raw: bytes, source: Source) -> Record | DeadLetter:
    """The full path of a parsed input: its record, or a dead letter naming its defect."""
    if not isinstance(obj, dict):
        return dead_letter(raw, source, f"expected a JSON object, got {type(obj).__name__}",
                           DeadCode.NOT_OBJECT)
    typ = obj.get("type")
    decoder = DECODERS.get(typ) if isinstance(typ, str) else None
    if decoder is None:
        return dead_letter(
            raw, source, f"type: expected one of {','.join(DECODERS)}, got {_show(typ)}",
            DeadCode.UNKNOWN_TYPE)
    try:
        return decoder(obj)
    except Invalid as exc:
        return dead_letter(raw, source, str(exc), exc.code)


def stream_time(value: bytes | None) -> float | None:
    """The stream time of a raw input line, read without decoding the rest of it: what
    the file merge and the publisher order lines by. Its record type's
    :data:`~forewarn.model.TIME_FIELDS` (the one definition, which ``Record.at`` and the
    Kafka merge read from decoded records), each checked as its field table checks it;
    ``-inf`` for timeless reference data; an operator's feed event (VES, TMF642) its
    event's time; ``None`` when unreadable (it keeps its place in its input).

    >>> stream_time(b'{"type":"call","end_time":"2026-11-23T10:00:00Z"}')
    1795428000.0
    >>> stream_time(b'{"type":"kpi","period_start":"2026-11-23T10:00:00Z","period_s":900}')
    1795428900.0
    >>> stream_time(b'{"type":"cell","cell_id":"C1","site_id":"S1"}')
    -inf
    >>> stream_time(b'not json') is None
    True
    """
    if not value or len(value) > MAX_RECORD_BYTES:  # a dead letter, not parsed
        return None
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is not dict:
        return None
    typ = obj.get("type")
    if typ is None:  # an operator's feed event, or nothing Forewarn reads
        from forewarn.adapters import stream_time as feed_time  # (adapters imports codec)

        return feed_time(obj)
    reader = _TIME_READERS.get(typ) if type(typ) is str else None
    return None if reader is None else reader(obj)


def merge_time(value: bytes) -> float | None:
    """A raw input's time in a merge of inputs (the file merge), as the Kafka merge times
    a message: the stream time of what :func:`read_input` makes of it; ``-inf`` for
    timeless reference data; None for a dead letter, which keeps its place in its input
    (a readable time in a record that is refused moves nothing). An operator's feed event
    (VES, TMF642), which only the rulebook's tables decode, is placed by its event's time.

    >>> merge_time(b'{"type":"kpi","cell_id":"C1","period_start":"2026-11-23T10:00:00Z",'
    ...            b'"period_s":900,"call_attempts":5,"dropped_calls":0}')
    1795428900.0
    >>> merge_time(b'{"type":"location","event_time":"2026-11-23T10:00:00Z"}') is None
    True
    """
    rec, kind, at = read_input(value, "")
    if kind is DeadLetter:
        return stream_time(value) if rec.code == DeadCode.NO_ADAPTER else None
    return NEG_INF if at is None else at


def _time_reader(table: Table) -> Callable[[dict], float | None]:
    """A record type's stream time from its JSON object (None: a time field it would
    refuse); ``-inf`` for a type without one."""
    names = TIME_FIELDS[table.cls.kind]
    if not names:
        return lambda o: NEG_INF
    only = Table(table.cls, tuple(f for f in table.fields if f.name in names))
    return _fast(only, f"_{table.cls.kind}_time", " + ".join(names))


NEG_INF = float("-inf")
_TIME_READERS = {typ: _time_reader(table) for typ, table in TABLES.items()}


# ---- outputs ---------------------------------------------------------------------


def _t(ts: float | None) -> str | None:
    return None if ts is None else fmt_time(ts)


def action_dict(a: Action) -> dict:
    return {
        "type": "action",
        "action_id": a.action_id,
        "subscriber_id": a.subscriber_id,
        "kind": a.action_kind,
        "channel": a.channel,
        "language": a.language,
        "message": a.message,
        "rule_id": a.rule_id,
        "rule_version": a.rule_version,
        "incident_id": a.incident_id,
        "evidence": list(a.evidence),
        "event_time": fmt_time(a.event_time),
        "send_after": _t(a.send_after),
        "offer": a.offer,
        "segment": a.segment,
    }


def incident_dict(i: Incident) -> dict:
    """An incident's output record: the contract's fields, Forewarn's own, ``parent_id``
    (the regional event a site incident is grouped under, or null), and on a
    ``regional_outage`` incident its ``child_ids`` and ``sites``."""
    rec = {
        "type": "incident",
        "incident_id": i.incident_id,
        "status": i.status,
        "kind": i.incident_kind,
        "scope": i.scope,
        "site_id": i.site_id,
        "cell_ids": list(i.cell_ids),
        "start_time": fmt_time(i.start_time),
        "end_time": _t(i.end_time),
        "impacted_subscribers": i.impacted_subscribers,
        "event_time": fmt_time(i.event_time),
        "region": i.region,
        "maintenance_window": i.maintenance_window,
        "evidence": list(i.evidence),
        "silent_kind": i.silent_kind,
        "detector": i.detector,
        "parent_id": i.parent_id,
    }
    if i.incident_kind == REGIONAL_OUTAGE:
        rec["child_ids"] = list(i.child_ids)
        rec["sites"] = list(i.sites)
    return rec


def dead_letter_dict(d: DeadLetter) -> dict:
    """A dead letter's output record; ``raw`` as text when it is UTF-8 (a cut at
    :data:`RAW_LIMIT` inside a character drops that character's first bytes), else
    base64.

    >>> d = dead_letter(("x" * 4095 + "é").encode(), "f", "r", DeadCode.BAD_VALUE)
    >>> dead_letter_dict(d)["raw_encoding"]
    'utf-8'
    """
    raw_bytes = d.raw
    try:
        raw = raw_bytes.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError as exc:
        cut = (len(raw_bytes) == RAW_LIMIT and exc.reason == "unexpected end of data"
               and exc.start >= RAW_LIMIT - 3)
        if cut:  # the limit fell inside a character: keep the text before it
            raw, encoding = raw_bytes[:exc.start].decode("utf-8"), "utf-8"
        else:
            raw, encoding = base64.b64encode(raw_bytes).decode("ascii"), "base64"
    return {
        "type": "dead_letter",
        "source": d.source,
        "reason": d.reason,
        "raw": raw,
        "raw_encoding": encoding,
        "code": d.code,
    }


def encode(out: Action | Incident | DeadLetter) -> bytes:
    """A domain output -> one JSON line (no newline)."""
    if isinstance(out, Action):
        return orjson.dumps(action_dict(out))
    if isinstance(out, Incident):
        return orjson.dumps(incident_dict(out))
    return orjson.dumps(dead_letter_dict(out))
