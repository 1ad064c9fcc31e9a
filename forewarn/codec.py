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
    Action,
    Alarm,
    Call,
    Cell,
    Channel,
    Complaint,
    DeadLetter,
    Incident,
    Kpi,
    Location,
    Maintenance,
    Record,
    Subscriber,
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
    """A record defect; the message is the dead-letter reason."""


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


# ---- field readers -----------------------------------------------------------


def _req(obj: dict, typ: str, name: str) -> Any:
    value = obj.get(name)
    if value is None:
        raise Invalid(f"{typ}.{name}: required field missing")
    return value


@overload
def _str(obj: dict, typ: str, name: str, required: Literal[True] = True) -> str: ...
@overload
def _str(obj: dict, typ: str, name: str, required: Literal[False]) -> str | None: ...
def _str(obj: dict, typ: str, name: str, required: bool = True) -> str | None:
    value = _req(obj, typ, name) if required else obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise Invalid(f"{typ}.{name}: expected a non-empty string, got {_show(value)}")
    return value


def _time(obj: dict, typ: str, name: str) -> float:
    value = _req(obj, typ, name)
    if not isinstance(value, str):
        raise Invalid(f"{typ}.{name}: expected an RFC 3339 time string, got {_show(value)}")
    at = _time_of(value)
    if at is None:
        raise Invalid(f"{typ}.{name}: expected an RFC 3339 time with offset, got {_show(value)}")
    return at


@overload
def _num(obj: dict, typ: str, name: str, required: Literal[True] = True) -> float: ...
@overload
def _num(obj: dict, typ: str, name: str, required: Literal[False]) -> float | None: ...
def _num(obj: dict, typ: str, name: str, required: bool = True) -> float | None:
    value = _req(obj, typ, name) if required else obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(f"{typ}.{name}: expected a number, got {_show(value)}")
    return value


@overload
def _int(obj: dict, typ: str, name: str, required: Literal[True] = True) -> int: ...
@overload
def _int(obj: dict, typ: str, name: str, required: Literal[False]) -> int | None: ...
def _int(obj: dict, typ: str, name: str, required: bool = True) -> int | None:
    value = _req(obj, typ, name) if required else obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"{typ}.{name}: expected an integer, got {_show(value)}")
    if value < 0:
        raise Invalid(f"{typ}.{name}: expected a non-negative integer, got {value}")
    return value


@overload
def _enum(obj: dict, typ: str, name: str, allowed: tuple[str, ...],
          required: Literal[True] = True) -> str: ...
@overload
def _enum(obj: dict, typ: str, name: str, allowed: tuple[str, ...],
          required: Literal[False]) -> str | None: ...
def _enum(obj: dict, typ: str, name: str, allowed: tuple[str, ...],
          required: bool = True) -> str | None:
    value = _req(obj, typ, name) if required else obj.get(name)
    if value is None:
        return None
    if value not in allowed:
        raise Invalid(f"{typ}.{name}: expected one of {','.join(allowed)}, got {_show(value)}")
    return value


def _str_list(obj: dict, typ: str, name: str) -> tuple[str, ...]:
    value = obj.get(name)
    strings = _strings(value)
    if strings is None:
        raise Invalid(f"{typ}.{name}: expected a list of strings, got {_show(value)}")
    return strings


def _show(value: Any) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---- per-type decoders ---------------------------------------------------------


def _cell(o: dict) -> Cell:
    return Cell(
        cell_id=_str(o, "cell", "cell_id"),
        site_id=_str(o, "cell", "site_id"),
        region=_str(o, "cell", "region", False),
        lat=_num(o, "cell", "lat", False),
        lon=_num(o, "cell", "lon", False),
        technology=_str(o, "cell", "technology", False),
    )


def _alarm(o: dict) -> Alarm:
    t = "alarm"
    cell_id = _str(o, t, "cell_id", False)
    site_id = _str(o, t, "site_id", False)
    if cell_id is None and site_id is None:
        raise Invalid("alarm.cell_id/site_id: one of them is required, got neither")
    return Alarm(
        alarm_id=_str(o, t, "alarm_id"),
        event_time=_time(o, t, "event_time"),
        severity=_enum(o, t, "perceived_severity", SEVERITIES),
        probable_cause=_str(o, t, "probable_cause"),
        cell_id=cell_id,
        site_id=site_id,
        alarm_type=_enum(o, t, "alarm_type", ALARM_TYPES, False),
        specific_problem=_str(o, t, "specific_problem", False),
        managed_object=_str(o, t, "managed_object", False),
        additional_text=_str(o, t, "additional_text", False),
    )


def _location(o: dict) -> Location:
    t = "location"
    return Location(
        subscriber_id=_str(o, t, "subscriber_id"),
        cell_id=_str(o, t, "cell_id"),
        event_time=_time(o, t, "event_time"),
    )


def _call(o: dict) -> Call:
    t = "call"
    dropped = _req(o, t, "dropped")
    if not isinstance(dropped, bool):
        raise Invalid(f"call.dropped: expected true or false, got {_show(dropped)}")
    start, end = _time(o, t, "start_time"), _time(o, t, "end_time")
    if end < start:
        raise Invalid("call.end_time: expected at or after start_time, got an earlier time")
    return Call(
        call_id=_str(o, t, "call_id"),
        subscriber_id=_str(o, t, "subscriber_id"),
        cell_id=_str(o, t, "cell_id"),
        start_time=start,
        end_time=end,
        dropped=dropped,
        cause_code=_int(o, t, "cause_code", False),
    )


def _kpi(o: dict) -> Kpi:
    t = "kpi"
    period_s = _num(o, t, "period_s")
    if not 0 < period_s <= MAX_PERIOD_S:
        raise Invalid(f"kpi.period_s: expected a positive number of seconds up to "
                      f"{MAX_PERIOD_S:.0f}, got {_show(period_s)}")
    return Kpi(
        cell_id=_str(o, t, "cell_id"),
        period_start=_time(o, t, "period_start"),
        period_s=float(period_s),
        call_attempts=_int(o, t, "call_attempts"),
        dropped_calls=_int(o, t, "dropped_calls"),
        rrc_success_rate=_num(o, t, "rrc_success_rate", False),
        dl_throughput_mbps=_num(o, t, "dl_throughput_mbps", False),
        active_users=_int(o, t, "active_users", False),
    )


def _channels(o: dict) -> tuple[Channel, ...]:
    raw = _req(o, "subscriber", "channels")
    if not isinstance(raw, dict):
        raise Invalid(f"subscriber.channels: expected an object by channel, got {_show(raw)}")
    out = []
    for name, spec in raw.items():
        where = f"subscriber.channels.{name}"
        if name not in CHANNEL_NAMES:
            raise Invalid(f"{where}: expected a channel among {','.join(CHANNEL_NAMES)}")
        if not isinstance(spec, dict):
            raise Invalid(f"{where}: expected an object, got {_show(spec)}")
        address, consent = spec.get("address"), spec.get("consent")
        if not isinstance(address, str) or not address:
            raise Invalid(f"{where}.address: expected a non-empty string, got {_show(address)}")
        if not isinstance(consent, bool):
            raise Invalid(f"{where}.consent: expected true or false, got {_show(consent)}")
        out.append(Channel(name=name, address=address, consent=consent))
    return tuple(out)


def _subscriber(o: dict) -> Subscriber:
    t = "subscriber"
    sid = _str(o, t, "subscriber_id")
    op = _enum(o, t, "op", ("upsert", "delete"))
    updated_at = _time(o, t, "updated_at")
    if op == "delete":
        return Subscriber(subscriber_id=sid, op=op, updated_at=updated_at)
    tz = _str(o, t, "timezone")
    try:
        zone(tz)
    except (ValueError, KeyError, OSError):
        raise Invalid(f"subscriber.timezone: expected an IANA time zone, got {_show(tz)}") from None
    preferred = _str_list(o, t, "preferred_channels")
    for name in preferred:
        if name not in CHANNEL_NAMES:
            raise Invalid(
                f"subscriber.preferred_channels: expected channels among "
                f"{','.join(CHANNEL_NAMES)}, got {_show(name)}"
            )
    return Subscriber(
        subscriber_id=sid,
        op=op,
        updated_at=updated_at,
        language=_str(o, t, "language"),
        timezone=tz,
        segment=_enum(o, t, "segment", SEGMENTS),
        channels=_channels(o),
        name=_str(o, t, "name", False),
        plan=_str(o, t, "plan", False),
        tenure_months=_int(o, t, "tenure_months", False),
        tags=_str_list(o, t, "tags"),
        preferred_channels=preferred,
    )


def _maintenance(o: dict) -> Maintenance:
    t = "maintenance"
    site_ids, cell_ids = _str_list(o, t, "site_ids"), _str_list(o, t, "cell_ids")
    if not site_ids and not cell_ids:
        raise Invalid("maintenance.site_ids/cell_ids: one of them is required, got neither")
    start, end = _time(o, t, "start_time"), _time(o, t, "end_time")
    if end <= start:
        raise Invalid("maintenance.end_time: expected after start_time")
    return Maintenance(
        window_id=_str(o, t, "window_id"),
        op=_enum(o, t, "op", ("upsert", "cancel")),
        start_time=start,
        end_time=end,
        site_ids=site_ids,
        cell_ids=cell_ids,
        description=_str(o, t, "description", False),
    )


def _complaint(o: dict) -> Complaint:
    t = "complaint"
    return Complaint(
        complaint_id=_str(o, t, "complaint_id"),
        subscriber_id=_str(o, t, "subscriber_id"),
        event_time=_time(o, t, "event_time"),
        category=_enum(o, t, "category", COMPLAINT_CATEGORIES),
        channel=_str(o, t, "channel", False),
    )


DECODERS: dict[str, Callable[[dict], Record]] = {
    "cell": _cell,
    "alarm": _alarm,
    "location": _location,
    "call": _call,
    "kpi": _kpi,
    "subscriber": _subscriber,
    "maintenance": _maintenance,
    "complaint": _complaint,
}


def reason_code(reason: str) -> str:
    """A bounded class for a dead-letter reason (safe as a metric label).

    >>> reason_code("alarm.event_time: required field missing")
    'missing_field'
    >>> reason_code('alarm.alarm_type: expected one of communicationsAlarm, got "x"')
    'bad_enum'
    """
    if reason.startswith("type: expected one of"):  # the record's own type, not a field's
        return "unknown_type"
    for needle, code in _REASON_CODES:
        if needle in reason:
            return code
    return "bad_value"


_REASON_CODES = (
    ("refused by the broker", "refused"),
    # operators' feeds (forewarn.adapters)
    ("mapping (see docs/adapters.md)", "no_adapter"),
    ("(unsupported event)", "unsupported_event"),
    ("(unknown source name)", "unknown_source"),
    ("(unknown condition)", "unknown_condition"),
    ("(clear without raise)", "clear_without_raise"),  # a publisher's: the broker's own reason
    ("not JSON", "not_json"),
    ("expected a JSON object", "not_object"),
    ("required field missing", "missing_field"),
    ("one of them is required", "missing_field"),
    ("expected one of", "bad_enum"),
    ("RFC 3339", "bad_time"),
    ("days from the stream", "time_out_of_range"),
    ("ahead of the stream's progress", "future"),
    ("(wrong topic)", "wrong_topic"),
    ("unknown cell", "unknown_cell"),
    ("unknown site", "unknown_site"),
    ("too large", "too_large"),
    ("expected a", "bad_type"),
    ("expected true or false", "bad_type"),
)


def dead_letter(raw: bytes, source: Source, reason: str) -> DeadLetter:
    name = Origin(*source) if isinstance(source, tuple) else source
    return DeadLetter(source=name, reason=reason, raw=raw[:RAW_LIMIT], code=reason_code(reason))


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


# Slot descriptors' setters: the fast paths fill a record's slots without __init__.
_SUBSCRIBER = tuple(getattr(Subscriber, f).__set__ for f in (
    "subscriber_id", "op", "updated_at", "language", "timezone", "segment", "channels",
    "name", "plan", "tenure_months", "tags", "preferred_channels"))
_CHANNEL = tuple(getattr(Channel, f).__set__ for f in ("name", "address", "consent"))


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


def _fast_subscriber(o: dict) -> Subscriber | None:
    """A well-formed subscriber upsert, or None for anything :func:`_subscriber` may
    refuse or read differently (it then decides, and names the defect)."""
    sid, at = o.get("subscriber_id"), _time_of(o.get("updated_at"))
    language, tz, segment = o.get("language"), o.get("timezone"), o.get("segment")
    name, plan, tenure = o.get("name"), o.get("plan"), o.get("tenure_months")
    raw_channels = o.get("channels")
    if (o.get("op") != "upsert" or type(sid) is not str or not sid or at is None
            or type(language) is not str or not language or type(tz) is not str or not tz
            or segment not in SEGMENTS or type(raw_channels) is not dict
            or (name is not None and (type(name) is not str or not name))
            or (plan is not None and (type(plan) is not str or not plan))
            or (tenure is not None and (type(tenure) is not int or tenure < 0))):
        return None
    tags = _strings(o.get("tags"))
    preferred = _strings(o.get("preferred_channels"), CHANNEL_NAMES)
    if tags is None or preferred is None:
        return None
    try:
        zone(tz)
    except (ValueError, KeyError, OSError):
        return None
    channels = []
    for cname, spec in raw_channels.items():
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
    rec = _new(Subscriber)
    put = _SUBSCRIBER
    put[0](rec, sid)
    put[1](rec, "upsert")
    put[2](rec, at)
    put[3](rec, language)
    put[4](rec, tz)
    put[5](rec, segment)
    put[6](rec, tuple(channels))
    put[7](rec, name)
    put[8](rec, plan)
    put[9](rec, tenure)
    put[10](rec, tags)
    put[11](rec, preferred)
    return rec


_KPI = tuple(getattr(Kpi, f).__set__ for f in (
    "cell_id", "period_start", "period_s", "call_attempts", "dropped_calls",
    "rrc_success_rate", "dl_throughput_mbps", "active_users"))
_NUMBER = (int, float)  # exact types, as orjson gives them: a bool is not a number here


def _fast_kpi(o: dict) -> Kpi | None:
    """A well-formed KPI record, or None for anything :func:`_kpi` may refuse (it then
    decides, and names the defect)."""
    cell, start, period = o.get("cell_id"), _time_of(o.get("period_start")), o.get("period_s")
    attempts, dropped, users = o.get("call_attempts"), o.get("dropped_calls"), \
        o.get("active_users")
    rrc, dl = o.get("rrc_success_rate"), o.get("dl_throughput_mbps")
    if (type(cell) is not str or not cell or start is None
            or type(period) not in _NUMBER or not 0 < period <= MAX_PERIOD_S  # type: ignore[operator]
            or type(attempts) is not int or attempts < 0
            or type(dropped) is not int or dropped < 0
            or (rrc is not None and type(rrc) not in _NUMBER)
            or (dl is not None and type(dl) not in _NUMBER)
            or (users is not None and (type(users) is not int or users < 0))):
        return None
    rec = _new(Kpi)
    put = _KPI
    put[0](rec, cell)
    put[1](rec, start)
    put[2](rec, float(period))  # type: ignore[arg-type]  # a number: checked above
    put[3](rec, attempts)
    put[4](rec, dropped)
    put[5](rec, rrc)
    put[6](rec, dl)
    put[7](rec, users)
    return rec


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
    """:func:`decode` as the flow reads its input: a well-formed ``location`` or call
    that was not dropped (most of the traffic) comes out as the
    :data:`~forewarn.dataflows.messages.Position` it stands for, ``(subscriber_id, cell_id,
    at, ref)``, checked inline, with its cell id interned (one string per cell in all
    state); anything else as :func:`decode` gives it, except that an object without
    ``type`` that is an operator's alarm feed event (VES, TMF642) is mapped through
    ``adapters`` (the rulebook's tables: :func:`forewarn.adapters.translate`) to an
    alarm, a dead letter or, for a VES batch, an :class:`Expanded` list.

    >>> decode_input(b'{"type":"location","subscriber_id":"S1","cell_id":"C1",'
    ...              b'"event_time":"2026-11-23T10:00:00Z"}', "oss.locations")
    ('S1', 'C1', 1795428000.0, None)
    """
    obj = _parse(raw, source)
    if type(obj) is DeadLetter:
        return obj
    if type(obj) is dict:
        typ = obj.get("type")
        if typ == "location":
            sid, cell = obj.get("subscriber_id"), obj.get("cell_id")
            at = _time_of(obj.get("event_time"))
            if type(sid) is str and type(cell) is str and sid and cell and at is not None:
                return (sid, _intern(cell), at, None)
        elif typ == "call":
            cid, sid, cell = obj.get("call_id"), obj.get("subscriber_id"), obj.get("cell_id")
            dropped, cause = obj.get("dropped"), obj.get("cause_code")
            start, end = _time_of(obj.get("start_time")), _time_of(obj.get("end_time"))
            if (dropped is False and type(cid) is str and type(sid) is str
                    and type(cell) is str and cid and sid and cell and start is not None
                    and end is not None and end >= start
                    and (cause is None or (type(cause) is int and cause >= 0))):
                # known when the call ends: its end_time keeps "as of T" views exact
                return (sid, _intern(cell), end, f"call:{cid}")
        elif typ is None:
            from forewarn.adapters import translate  # an operator's feed: off the hot path

            fed = translate(obj, raw, source, adapters)
            if fed is not None:
                return fed
    return _decode_obj(obj, raw, source)


def _parse(raw: bytes, source: Source) -> Any:
    """The JSON value of an input, or a dead letter (too large, not JSON)."""
    if len(raw) > MAX_RECORD_BYTES:
        return dead_letter(raw, source, f"record too large: {len(raw)} bytes "
                                        f"(limit {MAX_RECORD_BYTES})")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return dead_letter(raw, source, f"not JSON: {exc.args[0] if exc.args else exc}")


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
    if not isinstance(obj, dict):
        return dead_letter(raw, source, f"expected a JSON object, got {type(obj).__name__}")
    typ = obj.get("type")
    decoder = DECODERS.get(typ) if isinstance(typ, str) else None
    if decoder is None:
        return dead_letter(
            raw, source, f"type: expected one of {','.join(DECODERS)}, got {_show(typ)}"
        )
    try:
        return decoder(obj)
    except Invalid as exc:
        return dead_letter(raw, source, str(exc))


STREAM_TIME_FIELD = {
    "alarm": "event_time",
    "location": "event_time",
    "call": "end_time",
    "subscriber": "updated_at",
    "complaint": "event_time",
}
#: Reference data: applied at once, merged before everything (``-inf``).
TIMELESS = frozenset({"cell", "maintenance"})


def stream_time(value: bytes | None) -> float | None:
    """The stream time of a raw input line, read without decoding it: what the file and
    Kafka merges order inputs by, and the same as :func:`~forewarn.model.stream_at` of
    the record it decodes to (a call's end, a KPI period's end, a profile's update);
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
    if not isinstance(obj, dict):
        return None
    typ = obj.get("type")
    if typ is None:  # an operator's feed event, or nothing Forewarn reads
        from forewarn.adapters import stream_time as feed_time  # (adapters imports codec)

        return feed_time(obj)
    try:
        if typ == "kpi":
            period = obj.get("period_s")
            if isinstance(period, bool) or not isinstance(period, int | float) \
                    or not 0 < period <= MAX_PERIOD_S:
                return None
            return parse_time(obj["period_start"]) + period
        name = STREAM_TIME_FIELD.get(typ) if isinstance(typ, str) else None
        if name is None:
            return float("-inf") if typ in TIMELESS else None
        return parse_time(obj[name])
    except (KeyError, TypeError, ValueError):
        return None


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

    >>> dead_letter_dict(dead_letter(("x" * 4095 + "é").encode(), "f", "r"))["raw_encoding"]
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
