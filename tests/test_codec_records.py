"""Whole records through the codec, per the wire contract (``/work/shared/CONTRACT.md``).

Every record type is decoded whole (all fields, then only the required ones), and each
validation is refused with its exact dead letter: reason, code, source and raw bytes.
The short paths (a subscriber upsert, a KPI, a position for the flow, a canonical time)
are compared with the per-field validators on the same inputs. Expected times are built
with :class:`datetime.datetime`, not with the codec's own reader.
"""

from __future__ import annotations

import pickle
import sys
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forewarn import codec
from forewarn.codec import (
    DECODERS,
    Invalid,
    Origin,
    action_dict,
    dead_letter,
    dead_letter_dict,
    decode,
    decode_input,
    encode,
    fmt_time,
    incident_dict,
    parse_time,
    stream_time,
)
from forewarn.model import (
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
    Subscriber,
)


def ts(*args: int, micro: int = 0) -> float:
    """POSIX seconds of a UTC calendar time."""
    return datetime(*args, microsecond=micro, tzinfo=UTC).timestamp()


T = "2026-11-23T10:15:00Z"
T_S = ts(2026, 11, 23, 10, 15)
@pytest.fixture(autouse=True)
def _fresh_rule_cache(monkeypatch) -> None:
    """Each test compiles the tables' rules itself (the codec keeps them once compiled):
    a rule is read as its table says, not as an earlier reading left it."""
    monkeypatch.setattr(codec, "_RULES", {})


LATER = "2026-11-23T11:20:30+01:00"  # 10:20:30 UTC
LATER_S = ts(2026, 11, 23, 10, 20, 30)

# The contract's enumerations, spelled out here rather than imported from the model.
SEVERITIES = "critical,major,minor,warning,indeterminate,cleared"
ALARM_TYPES = ("communicationsAlarm,qualityOfServiceAlarm,processingErrorAlarm,"
               "equipmentAlarm,environmentalAlarm")
CATEGORIES = "no_service,dropped_calls,slow_data,other"
TYPES = "cell,alarm,location,call,kpi,subscriber,maintenance,complaint"

BASE: dict[str, dict] = {
    "cell": {"type": "cell", "cell_id": "C1", "site_id": "S1"},
    "alarm": {"type": "alarm", "alarm_id": "A1", "event_time": T,
              "perceived_severity": "major", "probable_cause": "lossOfSignal", "cell_id": "C1"},
    "location": {"type": "location", "subscriber_id": "U1", "cell_id": "C1", "event_time": T},
    "call": {"type": "call", "call_id": "K1", "subscriber_id": "U1", "cell_id": "C1",
             "start_time": T, "end_time": LATER, "dropped": True},
    "kpi": {"type": "kpi", "cell_id": "C1", "period_start": T, "period_s": 900,
            "call_attempts": 120, "dropped_calls": 3},
    "subscriber": {"type": "subscriber", "subscriber_id": "U1", "op": "upsert",
                   "updated_at": T, "language": "es", "timezone": "Europe/Madrid",
                   "segment": "vip",
                   "channels": {"sms": {"address": "+34600000000", "consent": True}}},
    "maintenance": {"type": "maintenance", "window_id": "W1", "op": "upsert",
                    "start_time": T, "end_time": LATER, "site_ids": ["S1"]},
    "complaint": {"type": "complaint", "complaint_id": "Q1", "subscriber_id": "U1",
                  "event_time": T, "category": "no_service"},
}

MINIMAL = {
    "cell": Cell("C1", "S1"),
    "alarm": Alarm("A1", T_S, "major", "lossOfSignal", cell_id="C1"),
    "location": Location("U1", "C1", T_S),
    "call": Call("K1", "U1", "C1", T_S, LATER_S, True),
    "kpi": Kpi("C1", T_S, 900.0, 120, 3),
    "subscriber": Subscriber(
        "U1", "upsert", T_S, language="es", timezone="Europe/Madrid", segment="vip",
        channels=(Channel("sms", "+34600000000", True),)),
    "maintenance": Maintenance("W1", "upsert", T_S, LATER_S, site_ids=("S1",)),
    "complaint": Complaint("Q1", "U1", T_S, "no_service"),
}

FULL = [
    ({**BASE["cell"], "region": "north", "lat": 51.5, "lon": -0.125, "technology": "5G",
      "vendor": "ignored"},
     Cell("C1", "S1", region="north", lat=51.5, lon=-0.125, technology="5G")),
    ({**BASE["alarm"], "site_id": "S1", "alarm_type": "equipmentAlarm",
      "specific_problem": "PA fault", "managed_object": "ME=1,Cell=C1",
      "additional_text": "from probe", "perceived_severity": "cleared"},
     Alarm("A1", T_S, "cleared", "lossOfSignal", cell_id="C1", site_id="S1",
           alarm_type="equipmentAlarm", specific_problem="PA fault",
           managed_object="ME=1,Cell=C1", additional_text="from probe")),
    ({**BASE["alarm"], "cell_id": None, "site_id": "S1"},
     Alarm("A1", T_S, "major", "lossOfSignal", site_id="S1")),
    ({**BASE["call"], "dropped": False, "cause_code": 16},
     Call("K1", "U1", "C1", T_S, LATER_S, False, 16)),
    ({**BASE["call"], "end_time": T, "cause_code": 0},
     Call("K1", "U1", "C1", T_S, T_S, True, 0)),
    ({**BASE["kpi"], "period_s": 86_400, "rrc_success_rate": 0.98,
      "dl_throughput_mbps": 12, "active_users": 0},
     Kpi("C1", T_S, 86_400.0, 120, 3, rrc_success_rate=0.98, dl_throughput_mbps=12,
         active_users=0)),
    ({**BASE["kpi"], "period_s": 0.5, "call_attempts": 0, "dropped_calls": 0},
     Kpi("C1", T_S, 0.5, 0, 0)),
    ({**BASE["subscriber"], "name": "Ana", "plan": "max", "tenure_months": 0,
      "tags": ["roamer", "b2c"], "preferred_channels": ["email", "sms"],
      "channels": {"push": {"address": "tok", "consent": False},
                   "sms": {"address": "+34600000000", "consent": True},
                   "email": {"address": "a@example.com", "consent": True}}},
     Subscriber("U1", "upsert", T_S, language="es", timezone="Europe/Madrid", segment="vip",
                channels=(Channel("push", "tok", False), Channel("sms", "+34600000000", True),
                          Channel("email", "a@example.com", True)),
                name="Ana", plan="max", tenure_months=0, tags=("roamer", "b2c"),
                preferred_channels=("email", "sms"))),
    ({**BASE["subscriber"], "segment": "consumer", "channels": {}, "tags": None,
      "preferred_channels": None, "name": None, "plan": None, "tenure_months": None},
     Subscriber("U1", "upsert", T_S, language="es", timezone="Europe/Madrid",
                segment="consumer")),
    ({**BASE["subscriber"], "segment": "business", "timezone": "UTC"},
     Subscriber("U1", "upsert", T_S, language="es", timezone="UTC", segment="business",
                channels=(Channel("sms", "+34600000000", True),))),
    # a delete needs only its id and time: the profile's fields are not read
    ({"type": "subscriber", "subscriber_id": "U1", "op": "delete", "updated_at": T,
      "timezone": 5, "channels": "none"},
     Subscriber("U1", "delete", T_S)),
    ({**BASE["maintenance"], "op": "cancel", "site_ids": [], "cell_ids": ["C1", "C2"],
      "description": "swap"},
     Maintenance("W1", "cancel", T_S, LATER_S, cell_ids=("C1", "C2"), description="swap")),
    ({**BASE["maintenance"], "site_ids": ["S1"], "cell_ids": ["C9"]},
     Maintenance("W1", "upsert", T_S, LATER_S, site_ids=("S1",), cell_ids=("C9",))),
    ({**BASE["complaint"], "category": "other", "channel": "phone"},
     Complaint("Q1", "U1", T_S, "other", channel="phone")),
]


def _decoded(obj: dict) -> object:
    return decode(orjson.dumps(obj), "oss.test")


@pytest.mark.parametrize("typ", sorted(BASE))
def test_each_type_with_its_required_fields_only(typ: str) -> None:
    got = _decoded(BASE[typ])
    assert got == MINIMAL[typ] and type(got) is type(MINIMAL[typ])
    assert DECODERS[typ](BASE[typ]) == MINIMAL[typ]  # the per-field validator agrees


@pytest.mark.parametrize("obj, expected", FULL)
def test_each_type_with_its_optional_fields(obj: dict, expected: object) -> None:
    assert _decoded(obj) == expected
    assert DECODERS[obj["type"]](obj) == expected


@pytest.mark.parametrize("severity", SEVERITIES.split(","))
@pytest.mark.parametrize("alarm_type", ALARM_TYPES.split(","))
def test_every_severity_and_alarm_type_of_the_contract(severity: str, alarm_type: str) -> None:
    got = _decoded({**BASE["alarm"], "perceived_severity": severity, "alarm_type": alarm_type})
    assert got == Alarm("A1", T_S, severity, "lossOfSignal", cell_id="C1", alarm_type=alarm_type)
    assert got.cleared is (severity == "cleared")


@pytest.mark.parametrize("category", CATEGORIES.split(","))
def test_every_complaint_category(category: str) -> None:
    assert _decoded({**BASE["complaint"], "category": category}) == \
        Complaint("Q1", "U1", T_S, category)


@pytest.mark.parametrize("segment", ["consumer", "business", "vip"])
@pytest.mark.parametrize("channel", ["push", "sms", "email"])
def test_every_segment_and_channel(segment: str, channel: str) -> None:
    obj = {**BASE["subscriber"], "segment": segment,
           "channels": {channel: {"address": "x", "consent": True}},
           "preferred_channels": [channel]}
    assert _decoded(obj) == Subscriber(
        "U1", "upsert", T_S, language="es", timezone="Europe/Madrid", segment=segment,
        channels=(Channel(channel, "x", True),), preferred_channels=(channel,))


# ---- refusals: (record type, changes to its BASE (None: drop the field), reason, code) ----

MISSING = "required field missing"
DROP = object()

REFUSED: list[tuple[str, dict, str, str]] = [
    # cell
    ("cell", {"cell_id": DROP}, "cell.cell_id: " + MISSING, "missing_field"),
    ("cell", {"cell_id": None}, "cell.cell_id: " + MISSING, "missing_field"),
    ("cell", {"cell_id": ""}, 'cell.cell_id: expected a non-empty string, got ""', "bad_type"),
    ("cell", {"site_id": 7}, "cell.site_id: expected a non-empty string, got 7", "bad_type"),
    ("cell", {"site_id": DROP}, "cell.site_id: " + MISSING, "missing_field"),
    ("cell", {"region": ""}, 'cell.region: expected a non-empty string, got ""', "bad_type"),
    ("cell", {"lat": "51.5"}, 'cell.lat: expected a number, got "51.5"', "bad_type"),
    ("cell", {"lat": True}, "cell.lat: expected a number, got true", "bad_type"),
    ("cell", {"lon": [1]}, "cell.lon: expected a number, got [1]", "bad_type"),
    ("cell", {"technology": 5}, "cell.technology: expected a non-empty string, got 5",
     "bad_type"),
    # alarm
    ("alarm", {"cell_id": DROP},
     "alarm.cell_id/site_id: one of them is required, got neither", "missing_field"),
    ("alarm", {"cell_id": None, "site_id": None},
     "alarm.cell_id/site_id: one of them is required, got neither", "missing_field"),
    ("alarm", {"cell_id": ""}, 'alarm.cell_id: expected a non-empty string, got ""',
     "bad_type"),
    ("alarm", {"site_id": 3}, "alarm.site_id: expected a non-empty string, got 3", "bad_type"),
    ("alarm", {"alarm_id": DROP}, "alarm.alarm_id: " + MISSING, "missing_field"),
    ("alarm", {"event_time": DROP}, "alarm.event_time: " + MISSING, "missing_field"),
    ("alarm", {"event_time": 1795428900},
     "alarm.event_time: expected an RFC 3339 time string, got 1795428900", "bad_time"),
    ("alarm", {"event_time": "2026-11-23T10:15:00"},
     'alarm.event_time: expected an RFC 3339 time with offset, got "2026-11-23T10:15:00"',
     "bad_time"),
    ("alarm", {"perceived_severity": DROP}, "alarm.perceived_severity: " + MISSING,
     "missing_field"),
    ("alarm", {"perceived_severity": "Major"},
     f'alarm.perceived_severity: expected one of {SEVERITIES}, got "Major"', "bad_enum"),
    ("alarm", {"perceived_severity": ["major"]},
     f'alarm.perceived_severity: expected one of {SEVERITIES}, got ["major"]', "bad_enum"),
    ("alarm", {"probable_cause": ""}, 'alarm.probable_cause: expected a non-empty string, '
     'got ""', "bad_type"),
    ("alarm", {"alarm_type": "fooAlarm"},
     f'alarm.alarm_type: expected one of {ALARM_TYPES}, got "fooAlarm"', "bad_enum"),
    ("alarm", {"specific_problem": 1},
     "alarm.specific_problem: expected a non-empty string, got 1", "bad_type"),
    ("alarm", {"managed_object": ""},
     'alarm.managed_object: expected a non-empty string, got ""', "bad_type"),
    ("alarm", {"additional_text": {}},
     "alarm.additional_text: expected a non-empty string, got {}", "bad_type"),
    # location
    ("location", {"subscriber_id": DROP}, "location.subscriber_id: " + MISSING,
     "missing_field"),
    ("location", {"subscriber_id": 5},
     "location.subscriber_id: expected a non-empty string, got 5", "bad_type"),
    ("location", {"cell_id": ""}, 'location.cell_id: expected a non-empty string, got ""',
     "bad_type"),
    ("location", {"event_time": DROP}, "location.event_time: " + MISSING, "missing_field"),
    ("location", {"event_time": "2026-11-23T10:15:60Z"},
     'location.event_time: expected an RFC 3339 time with offset, got "2026-11-23T10:15:60Z"',
     "bad_time"),
    ("location", {"event_time": ["2026-11-23T10:15:00Z"]},
     'location.event_time: expected an RFC 3339 time string, got ["2026-11-23T10:15:00Z"]',
     "bad_time"),
    # call
    ("call", {"dropped": DROP}, "call.dropped: " + MISSING, "missing_field"),
    ("call", {"dropped": "false"}, 'call.dropped: expected true or false, got "false"',
     "bad_type"),
    ("call", {"dropped": 0}, "call.dropped: expected true or false, got 0", "bad_type"),
    ("call", {"start_time": DROP}, "call.start_time: " + MISSING, "missing_field"),
    ("call", {"end_time": "soon"},
     'call.end_time: expected an RFC 3339 time with offset, got "soon"', "bad_time"),
    ("call", {"end_time": "2026-11-23T10:14:59Z"},
     "call.end_time: expected at or after start_time, got an earlier time", "bad_type"),
    ("call", {"call_id": DROP}, "call.call_id: " + MISSING, "missing_field"),
    ("call", {"subscriber_id": ""}, 'call.subscriber_id: expected a non-empty string, got ""',
     "bad_type"),
    ("call", {"cell_id": 1}, "call.cell_id: expected a non-empty string, got 1", "bad_type"),
    ("call", {"cause_code": -1}, "call.cause_code: expected a non-negative integer, got -1",
     "bad_type"),
    ("call", {"cause_code": 16.0}, "call.cause_code: expected an integer, got 16.0",
     "bad_type"),
    ("call", {"cause_code": True}, "call.cause_code: expected an integer, got true",
     "bad_type"),
    ("call", {"cause_code": "16"}, 'call.cause_code: expected an integer, got "16"',
     "bad_type"),
    # kpi
    ("kpi", {"period_s": DROP}, "kpi.period_s: " + MISSING, "missing_field"),
    ("kpi", {"period_s": "900"}, 'kpi.period_s: expected a number, got "900"', "bad_type"),
    ("kpi", {"period_s": True}, "kpi.period_s: expected a number, got true", "bad_type"),
    ("kpi", {"period_s": 0},
     "kpi.period_s: expected a positive number of seconds up to 86400, got 0", "bad_type"),
    ("kpi", {"period_s": -900},
     "kpi.period_s: expected a positive number of seconds up to 86400, got -900", "bad_type"),
    ("kpi", {"period_s": 86_400.5},
     "kpi.period_s: expected a positive number of seconds up to 86400, got 86400.5",
     "bad_type"),
    ("kpi", {"period_s": 1e308},
     "kpi.period_s: expected a positive number of seconds up to 86400, got 1e+308",
     "bad_type"),
    ("kpi", {"cell_id": ""}, 'kpi.cell_id: expected a non-empty string, got ""', "bad_type"),
    ("kpi", {"cell_id": DROP}, "kpi.cell_id: " + MISSING, "missing_field"),
    ("kpi", {"period_start": "2026-11-23"},
     'kpi.period_start: expected an RFC 3339 time with offset, got "2026-11-23"', "bad_time"),
    ("kpi", {"call_attempts": DROP}, "kpi.call_attempts: " + MISSING, "missing_field"),
    ("kpi", {"call_attempts": 1.0}, "kpi.call_attempts: expected an integer, got 1.0",
     "bad_type"),
    ("kpi", {"call_attempts": -1},
     "kpi.call_attempts: expected a non-negative integer, got -1", "bad_type"),
    ("kpi", {"dropped_calls": False}, "kpi.dropped_calls: expected an integer, got false",
     "bad_type"),
    ("kpi", {"dropped_calls": -2},
     "kpi.dropped_calls: expected a non-negative integer, got -2", "bad_type"),
    ("kpi", {"rrc_success_rate": "high"},
     'kpi.rrc_success_rate: expected a number, got "high"', "bad_type"),
    ("kpi", {"dl_throughput_mbps": True},
     "kpi.dl_throughput_mbps: expected a number, got true", "bad_type"),
    ("kpi", {"active_users": -3}, "kpi.active_users: expected a non-negative integer, got -3",
     "bad_type"),
    ("kpi", {"active_users": 2.5}, "kpi.active_users: expected an integer, got 2.5",
     "bad_type"),
    # subscriber
    ("subscriber", {"subscriber_id": DROP}, "subscriber.subscriber_id: " + MISSING,
     "missing_field"),
    ("subscriber", {"op": DROP}, "subscriber.op: " + MISSING, "missing_field"),
    ("subscriber", {"op": "create"},
     'subscriber.op: expected one of upsert,delete, got "create"', "bad_enum"),
    ("subscriber", {"op": "cancel"},
     'subscriber.op: expected one of upsert,delete, got "cancel"', "bad_enum"),
    ("subscriber", {"updated_at": DROP}, "subscriber.updated_at: " + MISSING, "missing_field"),
    ("subscriber", {"updated_at": "2026-11-23T10:15:00+0100"},
     'subscriber.updated_at: expected an RFC 3339 time with offset, '
     'got "2026-11-23T10:15:00+0100"', "bad_time"),
    ("subscriber", {"timezone": DROP}, "subscriber.timezone: " + MISSING, "missing_field"),
    ("subscriber", {"timezone": 1}, "subscriber.timezone: expected a non-empty string, got 1",
     "bad_type"),
    ("subscriber", {"timezone": "Mars/Olympus"},
     'subscriber.timezone: expected an IANA time zone, got "Mars/Olympus"', "bad_type"),
    ("subscriber", {"timezone": "../../etc/passwd"},
     'subscriber.timezone: expected an IANA time zone, got "../../etc/passwd"', "bad_type"),
    ("subscriber", {"timezone": "Europe"},
     'subscriber.timezone: expected an IANA time zone, got "Europe"', "bad_type"),
    ("subscriber", {"preferred_channels": "sms"},
     'subscriber.preferred_channels: expected a list of strings, got "sms"', "bad_type"),
    ("subscriber", {"preferred_channels": ["sms", ""]},
     'subscriber.preferred_channels: expected a list of strings, got ["sms",""]', "bad_type"),
    ("subscriber", {"preferred_channels": ["sms", "fax"]},
     'subscriber.preferred_channels: expected channels among push,sms,email, got "fax"',
     "bad_value"),
    ("subscriber", {"language": DROP}, "subscriber.language: " + MISSING, "missing_field"),
    ("subscriber", {"language": ""}, 'subscriber.language: expected a non-empty string, '
     'got ""', "bad_type"),
    ("subscriber", {"segment": DROP}, "subscriber.segment: " + MISSING, "missing_field"),
    ("subscriber", {"segment": "gold"},
     'subscriber.segment: expected one of consumer,business,vip, got "gold"', "bad_enum"),
    ("subscriber", {"channels": DROP}, "subscriber.channels: " + MISSING, "missing_field"),
    ("subscriber", {"channels": []},
     "subscriber.channels: expected an object by channel, got []", "bad_type"),
    ("subscriber", {"channels": {"fax": {"address": "1", "consent": True}}},
     "subscriber.channels.fax: expected a channel among push,sms,email", "bad_type"),
    ("subscriber", {"channels": {"sms": "+34600000000"}},
     'subscriber.channels.sms: expected an object, got "+34600000000"', "bad_type"),
    ("subscriber", {"channels": {"sms": {"consent": True}}},
     "subscriber.channels.sms.address: expected a non-empty string, got null", "bad_type"),
    ("subscriber", {"channels": {"push": {"address": "", "consent": True}}},
     'subscriber.channels.push.address: expected a non-empty string, got ""', "bad_type"),
    ("subscriber", {"channels": {"email": {"address": "a@b", "consent": "yes"}}},
     'subscriber.channels.email.consent: expected true or false, got "yes"', "bad_type"),
    ("subscriber", {"channels": {"sms": {"address": "1", "consent": True},
                                 "email": {"address": "a@b"}}},
     "subscriber.channels.email.consent: expected true or false, got null", "bad_type"),
    ("subscriber", {"name": ""}, 'subscriber.name: expected a non-empty string, got ""',
     "bad_type"),
    ("subscriber", {"plan": 5}, "subscriber.plan: expected a non-empty string, got 5",
     "bad_type"),
    ("subscriber", {"tenure_months": -1},
     "subscriber.tenure_months: expected a non-negative integer, got -1", "bad_type"),
    ("subscriber", {"tenure_months": True},
     "subscriber.tenure_months: expected an integer, got true", "bad_type"),
    ("subscriber", {"tags": "vip"}, 'subscriber.tags: expected a list of strings, got "vip"',
     "bad_type"),
    ("subscriber", {"tags": ["a", 1]}, 'subscriber.tags: expected a list of strings, '
     'got ["a",1]', "bad_type"),
    # maintenance
    ("maintenance", {"site_ids": DROP},
     "maintenance.site_ids/cell_ids: one of them is required, got neither", "missing_field"),
    ("maintenance", {"site_ids": [], "cell_ids": []},
     "maintenance.site_ids/cell_ids: one of them is required, got neither", "missing_field"),
    ("maintenance", {"site_ids": "S1"},
     'maintenance.site_ids: expected a list of strings, got "S1"', "bad_type"),
    ("maintenance", {"cell_ids": [""]},
     'maintenance.cell_ids: expected a list of strings, got [""]', "bad_type"),
    ("maintenance", {"start_time": DROP}, "maintenance.start_time: " + MISSING,
     "missing_field"),
    ("maintenance", {"end_time": T}, "maintenance.end_time: expected after start_time",
     "bad_type"),
    ("maintenance", {"end_time": "2026-11-23T10:00:00Z"},
     "maintenance.end_time: expected after start_time", "bad_type"),
    ("maintenance", {"end_time": "2026-11-23T11:20:30"},
     'maintenance.end_time: expected an RFC 3339 time with offset, got "2026-11-23T11:20:30"',
     "bad_time"),
    ("maintenance", {"window_id": DROP}, "maintenance.window_id: " + MISSING, "missing_field"),
    ("maintenance", {"op": "delete"},
     'maintenance.op: expected one of upsert,cancel, got "delete"', "bad_enum"),
    ("maintenance", {"description": ""},
     'maintenance.description: expected a non-empty string, got ""', "bad_type"),
    # complaint
    ("complaint", {"complaint_id": DROP}, "complaint.complaint_id: " + MISSING,
     "missing_field"),
    ("complaint", {"subscriber_id": ""},
     'complaint.subscriber_id: expected a non-empty string, got ""', "bad_type"),
    ("complaint", {"event_time": None}, "complaint.event_time: " + MISSING, "missing_field"),
    ("complaint", {"category": DROP}, "complaint.category: " + MISSING, "missing_field"),
    ("complaint", {"category": "billing"},
     f'complaint.category: expected one of {CATEGORIES}, got "billing"', "bad_enum"),
    ("complaint", {"channel": 5}, "complaint.channel: expected a non-empty string, got 5",
     "bad_type"),
]


def _changed(typ: str, changes: dict) -> dict:
    obj = dict(BASE[typ])
    for key, value in changes.items():
        if value is DROP:
            obj.pop(key, None)
        else:
            obj[key] = value
    return obj


@pytest.mark.parametrize("typ, changes, reason, code", REFUSED,
                         ids=[f"{r[0]}-{r[2][:50]}" for r in REFUSED])
def test_each_defect_is_a_dead_letter_naming_it(typ: str, changes: dict, reason: str,
                                                code: str) -> None:
    obj = _changed(typ, changes)
    raw = orjson.dumps(obj)
    expected = DeadLetter(source="oss.test", reason=reason, raw=raw, code=code)
    assert decode(raw, "oss.test") == expected
    assert decode_input(raw, "oss.test") == expected  # the flow's reader names it alike
    with pytest.raises(Invalid) as exc:
        DECODERS[typ](obj)
    assert str(exc.value) == reason
    # the short paths leave every defect to the validators
    assert codec._fast_subscriber(obj) is None and codec._fast_kpi(obj) is None


@pytest.mark.parametrize("raw, reason, code", [
    (b"[1]", "expected a JSON object, got list", "not_object"),
    (b"1", "expected a JSON object, got int", "not_object"),
    (b'"cell"', "expected a JSON object, got str", "not_object"),
    (b"null", "expected a JSON object, got NoneType", "not_object"),
    (b'{"cell_id":"C1"}', f"type: expected one of {TYPES}, got null", "unknown_type"),
    (b'{"type":"Cell"}', f'type: expected one of {TYPES}, got "Cell"', "unknown_type"),
    (b'{"type":5}', f"type: expected one of {TYPES}, got 5", "unknown_type"),
    (b'{"type":["cell"]}', f'type: expected one of {TYPES}, got ["cell"]', "unknown_type"),
    (b'{"type":"action"}', f'type: expected one of {TYPES}, got "action"', "unknown_type"),
])
def test_what_is_not_a_record(raw: bytes, reason: str, code: str) -> None:
    assert decode(raw, "f") == DeadLetter("f", reason, raw, code)
    # the flow's reader too: an object without a type that is no operator's feed event
    assert decode_input(raw, "f") == DeadLetter("f", reason, raw, code)


@pytest.mark.parametrize("raw", [
    b"", b"{oops", b'{"type":"cell"', b"\xff\xfe",
    b'{"type":"cell","cell_id":"C\xff","site_id":"S1"}',  # not UTF-8
    b'{"type":"cell","cell_id":"\\ud800","site_id":"S1"}',  # a lone surrogate
    b'{"type":"kpi","period_s":1e400}',
], ids=["empty", "broken", "truncated", "binary", "latin1", "surrogate", "infinite"])
def test_what_is_not_json_or_not_utf8(raw: bytes) -> None:
    out = decode(raw, "f")
    assert type(out) is DeadLetter and out.code == "not_json" and out.raw == raw
    assert out.reason.startswith("not JSON: ") and len(out.reason) > len("not JSON: ")
    assert decode_input(raw, "f") == out
    assert dead_letter_dict(out)["raw_encoding"] == ("base64" if b"\xff" in raw else "utf-8")


def _padded(size: int) -> bytes:
    head = b'{"type":"cell","cell_id":"C1","site_id":"S1","pad":"'
    return head + b"x" * (size - len(head) - 2) + b'"}'


def test_records_up_to_256_kib_are_read_larger_ones_are_not_parsed() -> None:
    limit = 256 * 1024
    assert decode(_padded(limit), "f") == Cell("C1", "S1")
    assert stream_time(_padded(limit)) == float("-inf")
    big = _padded(limit + 1)
    out = decode(big, "f")
    assert out == DeadLetter("f", f"record too large: {limit + 1} bytes (limit {limit})",
                             big[:4096], "too_large")
    assert decode_input(big, "f") == out and stream_time(big) is None


def test_a_dead_letter_keeps_the_first_4_kib_and_where_it_came_from() -> None:
    raw = orjson.dumps({**BASE["location"], "cell_id": "", "pad": "y" * 5000})
    out = decode(raw, ("oss.locations", 3, 1207))
    assert out == DeadLetter("oss.locations", 'location.cell_id: expected a non-empty string, '
                             'got ""', raw[:4096], "bad_type")
    assert len(out.raw) == 4096
    origin = out.source
    assert type(origin) is Origin
    assert origin.origin() == {"topic": "oss.locations", "partition": 3, "offset": 1207}
    back = pickle.loads(pickle.dumps(origin))
    assert type(back) is Origin and back.origin() == origin.origin()
    assert decode(raw, "file.jsonl").source == "file.jsonl"


def test_long_values_are_shown_cut_in_reasons() -> None:
    def shown(value: str) -> str:
        out = decode(orjson.dumps({**BASE["complaint"], "category": value}), "f")
        return out.reason.split(", got ", 1)[1]

    assert shown("b" * 58) == '"' + "b" * 58 + '"'  # 60 characters: whole
    assert shown("b" * 59) == '"' + "b" * 56 + "..."  # 61: cut to 57 and "..."
    assert codec._show(b"\x00") == "b'\\x00'"  # bytes (not JSON) shown as Python does


# ---- times ---------------------------------------------------------------------

MAX = ts(9999, 12, 31)

TIMES_READ = [
    ("2026-11-23T10:15:42Z", ts(2026, 11, 23, 10, 15, 42)),
    ("2026-11-23t10:15:42z", ts(2026, 11, 23, 10, 15, 42)),
    ("2026-11-23T11:15:42+01:00", ts(2026, 11, 23, 10, 15, 42)),
    ("2026-11-23T05:45:42-04:30", ts(2026, 11, 23, 10, 15, 42)),
    ("2026-11-23T10:15:42-00:00", ts(2026, 11, 23, 10, 15, 42)),
    ("2026-11-23T10:15:42.5Z", ts(2026, 11, 23, 10, 15, 42, micro=500_000)),
    ("2026-11-23T10:15:42.123456789+00:00", ts(2026, 11, 23, 10, 15, 42, micro=123_456)),
    ("2026-11-23T10:15:42.9999999Z", ts(2026, 11, 23, 10, 15, 42, micro=999_999)),
    ("2024-02-29T00:00:59Z", ts(2024, 2, 29, 0, 0, 59)),
    ("1970-01-01T00:00:00Z", 0.0),
    ("1970-01-01T01:00:00+01:00", 0.0),
    ("9999-12-30T23:59:59Z", MAX - 1),
    ("9999-12-31T00:00:00Z", MAX),
    ("9999-12-31T01:00:00+01:00", MAX),
]

TIMES_REFUSED = [
    "1969-12-31T23:59:59Z", "1970-01-01T00:59:59+01:00", "9999-12-31T00:00:01Z",
    "9999-12-31T00:00:59Z", "9999-12-31T00:01:00Z", "9999-12-30T23:00:00-01:01",
    "2026-11-23T10:15:60Z", "2026-02-30T10:15:00Z", "2026-13-23T10:15:00Z",
    "2026-11-23T24:00:00Z", "2026-11-23T10:60:00Z", "2026-11-23T10:15:00+24:00",
    "2026-11-23T10:15:00", "2026-11-23T10:15Z", "2026-11-23T10:15:0Z", "2026-11-23T10:15:00.Z",
    "2026-11-23T10:15:00.1234567890Z", "2026-11-23 10:15:00Z", "2026-11-23X10:15:00Z",
    "2026-11-23T10:15:00+0100", "2026-11-23T10:15:00+01:00:30", "2026-11-23T10:15:00ZZ",
    " 2026-11-23T10:15:00Z", "2026-11-23T10:15:00Z ", "2026-11-23T10:1a:00Z",
    "2026-11-23T10:15:0aZ", "2026-11-23T10:15:00+", "２０２６-11-23T10:15:00Z",
    "2026-11-23T10:15:0１Z", "20261123T101500Z", "2026-W48-1T10:15:00Z", "0000-01-01T00:00:00Z",
    "2026-11-23T10:15:00z0", "",
]


@pytest.mark.parametrize("text, expected", TIMES_READ)
def test_rfc3339_times_are_read_exactly(text: str, expected: float) -> None:
    assert parse_time(text) == expected
    assert codec._time_of(text) == expected
    assert codec._time_of(text) == expected  # remembered, still the same
    assert _decoded({**BASE["location"], "event_time": text}) == Location("U1", "C1", expected)
    assert decode_input(orjson.dumps({**BASE["location"], "event_time": text}), "f") == \
        ("U1", "C1", expected, None)


@pytest.mark.parametrize("text", TIMES_REFUSED)
def test_other_times_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)
    assert codec._time_of(text) is None
    raw = orjson.dumps({**BASE["location"], "event_time": text})
    reason = ("location.event_time: expected an RFC 3339 time with offset, got "
              + orjson.dumps(text).decode())
    assert decode(raw, "f") == DeadLetter("f", reason, raw, "bad_time")
    assert decode_input(raw, "f") == DeadLetter("f", reason, raw, "bad_time")


def test_the_time_caches_stay_bounded() -> None:
    """The short path remembers minutes (up to 100,000) and whole times (up to
    200,000), and starts afresh when full."""
    try:
        codec._MINUTES.clear()
        codec._MINUTES.update({f"k{i}": 0.0 for i in range(100_000)})
        assert codec._time_of("2031-01-02T03:04:05Z") == ts(2031, 1, 2, 3, 4, 5)
        assert {"2031-01-02T03:04:": ts(2031, 1, 2, 3, 4)} == codec._MINUTES
        codec._MINUTES.update({f"k{i}": 0.0 for i in range(99_998)})
        assert codec._time_of("2031-01-02T03:05:05Z") == ts(2031, 1, 2, 3, 5, 5)
        assert len(codec._MINUTES) == 100_000  # one short of full: nothing forgotten

        codec._TIMES.clear()
        codec._TIMES.update({f"k{i}": 0.0 for i in range(200_000)})
        assert codec._time_of("2031-01-02T03:04:06Z") == ts(2031, 1, 2, 3, 4, 6)
        assert {"2031-01-02T03:04:06Z": ts(2031, 1, 2, 3, 4, 6)} == codec._TIMES
        codec._TIMES.update({f"k{i}": 0.0 for i in range(199_998)})
        assert codec._time_of("2031-01-02T03:04:07Z") == ts(2031, 1, 2, 3, 4, 7)
        assert len(codec._TIMES) == 200_000
    finally:
        codec._MINUTES.clear()
        codec._TIMES.clear()


def test_the_short_path_parses_each_minute_once(monkeypatch) -> None:
    """A stream's canonical times within one minute cost one full parse."""
    calls: list[str] = []
    real = codec.parse_time

    def counting(text: str) -> float:
        calls.append(text)
        return real(text)

    monkeypatch.setattr(codec, "parse_time", counting)
    codec._MINUTES.clear()
    codec._TIMES.clear()
    try:
        seconds = (0, 1, 59, 1, 30)
        got = [codec._time_of(f"2032-05-06T07:08:{s:02d}Z") for s in seconds]
        assert got == [ts(2032, 5, 6, 7, 8, s) for s in seconds]
        assert len(calls) == 1
    finally:
        codec._MINUTES.clear()
        codec._TIMES.clear()


# ---- the short paths against the validators -------------------------------------


def _general(obj: dict) -> object:
    try:
        return DECODERS[obj["type"]](obj)
    except Invalid as exc:
        return exc


def generated() -> dict[str, Any]:
    """The codec's generated readers, written again from its tables now: the fast paths
    (:data:`forewarn.codec.FAST_PATHS`), a stream-time reader and a validator per record
    type. The codec writes its own once, at import; the checks below run both, so they
    test the generators as well as what they wrote then (a mutation test only sees a
    generator at work when a test calls it)."""
    paths: dict[str, Any] = {name: codec._fast(codec.TABLES[typ], name, result, when)
                             for name, (typ, result, when) in codec.FAST_PATHS.items()}
    for typ, table in codec.TABLES.items():
        paths[f"time:{typ}"] = codec._time_reader(table)
        paths[f"full:{typ}"] = codec._full(table)
    return paths


def _check_paths(obj: dict) -> None:
    """decode (short path when it takes it) == the per-field validator, and the flow's
    reader gives the same record, position or dead letter; the readers written again
    from the tables agree."""
    raw = orjson.dumps(obj)
    slow = _general(obj)
    got = decode(raw, "f")
    if isinstance(slow, Invalid):
        assert got == DeadLetter("f", str(slow), raw, slow.code), obj
    else:
        assert got == slow and hash(got) == hash(slow), obj
    # the short paths take every valid subscriber upsert and KPI, and only those
    typ = obj["type"]
    again = generated()
    for fast in ((codec._fast_subscriber, again["_fast_subscriber"]) if typ == "subscriber"
                 else (codec._fast_kpi, again["_fast_kpi"])):
        if typ == "kpi" or (typ == "subscriber" and obj.get("op") == "upsert"):
            assert fast(obj) == (None if isinstance(slow, Invalid) else slow), obj
        else:
            assert fast(obj) is None, obj
    flow = decode_input(raw, "f")
    if isinstance(got, Location):
        assert flow == (got.subscriber_id, got.cell_id, got.event_time, None)
    elif isinstance(got, Call) and not got.dropped:
        assert flow == (got.subscriber_id, got.cell_id, got.end_time, f"call:{got.call_id}")
    else:
        assert flow == got
    if typ in ("location", "call"):  # a position, a dropped call's record, or refused
        position = again[f"_{typ}_position"](obj)
        assert position == (None if isinstance(got, DeadLetter) else flow), obj
        if position is not None:
            assert type(position) is not tuple or position[1] is sys.intern(position[1])
    try:
        full = again[f"full:{typ}"](obj)
    except Invalid as exc:
        full = exc
    assert (str(full), full.code) == (str(slow), slow.code) if isinstance(slow, Invalid) \
        else full == slow, obj
    assert again[f"full:{typ}"].__name__ == again[f"full:{typ}"].__qualname__ == f"_{typ}"
    at = again[f"time:{typ}"](obj)
    if not isinstance(got, DeadLetter):
        assert stream_time(raw) == at == (got.at if got.at is not None else float("-inf"))
    else:  # a time field it would refuse, or its time though another field is refused
        assert at == stream_time(raw), obj


def test_well_formed_records_take_the_short_paths() -> None:
    sub = {**BASE["subscriber"], "tags": ["t"], "preferred_channels": ["sms"], "name": "N",
           "plan": "P", "tenure_months": 3}
    assert codec._fast_subscriber(sub) == Subscriber(
        "U1", "upsert", T_S, language="es", timezone="Europe/Madrid", segment="vip",
        channels=(Channel("sms", "+34600000000", True),), name="N", plan="P",
        tenure_months=3, tags=("t",), preferred_channels=("sms",))
    kpi = {**BASE["kpi"], "rrc_success_rate": 1, "dl_throughput_mbps": 2.5, "active_users": 4}
    assert codec._fast_kpi(kpi) == Kpi("C1", T_S, 900.0, 120, 3, 1, 2.5, 4)
    assert type(codec._fast_kpi(kpi).period_s) is float
    assert type(DECODERS["kpi"](kpi).period_s) is float  # the validator converts it too
    assert type(generated()["_fast_kpi"](kpi).period_s) is float
    # each fast path shows the source it was compiled from
    again = generated()
    for name in codec.FAST_PATHS:
        assert again[name].source == getattr(codec, name).source
        assert again[name].source.startswith(f"def {name}(o):\n")
    call = orjson.dumps({**BASE["call"], "dropped": False, "cause_code": 0})
    out = decode_input(call, "f")
    assert out == ("U1", "C1", LATER_S, "call:K1")
    assert out[1] is sys.intern("C1")
    loc = decode_input(orjson.dumps({**BASE["location"], "cell_id": "C" + "7"}), "f")
    assert loc == ("U1", "C7", T_S, None) and loc[1] is sys.intern("C7")
    # a dropped call is the flow's record as it is
    assert decode_input(orjson.dumps(BASE["call"]), "f") == MINIMAL["call"]


def test_decode_takes_the_short_path_for_well_formed_upserts_and_kpis(monkeypatch) -> None:
    """The per-field validators are for records that may be refused (and deletes)."""
    def validator(obj: dict) -> object:
        raise AssertionError(f"validator called for {obj}")

    monkeypatch.setitem(DECODERS, "subscriber", validator)
    monkeypatch.setitem(DECODERS, "kpi", validator)
    assert decode(orjson.dumps(BASE["subscriber"]), "f") == MINIMAL["subscriber"]
    assert decode(orjson.dumps(BASE["kpi"]), "f") == MINIMAL["kpi"]
    for obj in ({**BASE["subscriber"], "op": "delete"}, {**BASE["kpi"], "period_s": 0}):
        with pytest.raises(AssertionError, match="validator called"):
            decode(orjson.dumps(obj), "f")


def test_an_operators_feed_event_through_the_flows_reader() -> None:
    """An object without ``type`` that is a VES fault event is mapped by the rulebook's
    adapters tables (docs/adapters.md), and is a dead letter ``no_adapter`` without them."""
    from pathlib import Path

    from forewarn.rules.rulebook import load_rulebook

    line = (Path(__file__).parent / "fixtures" / "ves-fault.jsonl").read_bytes().splitlines()[0]
    event = orjson.loads(line)["event"]
    assert event["commonEventHeader"]["lastEpochMicrosec"] == 1_795_428_900_000_000
    at = ts(2026, 11, 23, 10, 15)
    got = decode_input(line, ("oss.alarms", 1, 7), load_rulebook().adapters)
    assert got == Alarm("ves:CELL0001-1|RRU-1/port-2|LOS", at, "critical", "lossOfSignal",
                        cell_id="CELL0001-1", specific_problem="Loss of signal on CPRI link",
                        managed_object="CELL0001-1", adapter="ves")
    dead = decode_input(line, ("oss.alarms", 1, 7))
    assert dead == DeadLetter("oss.alarms", "VES event: the rulebook has no adapters.ves "
                              "mapping (see docs/adapters.md)", line, "no_adapter")
    assert dead.source.origin() == {"topic": "oss.alarms", "partition": 1, "offset": 7}
    assert stream_time(line) == at
    assert decode(line, "f").code == "unknown_type"  # decode reads the contract's records only


def test_a_lines_time_in_a_merge() -> None:
    """merge_time: the stream time of what read_input makes of a line; ``-inf`` for
    reference data; None for a dead letter (a time it shows moves nothing), except an
    operator's feed event only the rulebook's tables read, placed at its event's time."""
    from pathlib import Path

    ves = (Path(__file__).parent / "fixtures" / "ves-fault.jsonl").read_bytes().splitlines()[0]
    assert codec.merge_time(orjson.dumps(BASE["kpi"])) == T_S + 900
    assert codec.merge_time(orjson.dumps(BASE["subscriber"])) == T_S
    assert codec.merge_time(orjson.dumps({**BASE["call"], "dropped": False})) == LATER_S
    assert codec.merge_time(orjson.dumps(BASE["cell"])) == float("-inf")
    assert codec.merge_time(orjson.dumps({**BASE["location"], "cell_id": ""})) is None
    assert codec.merge_time(b"{oops") is None
    assert codec.merge_time(ves) == ts(2026, 11, 23, 10, 15)


def test_a_record_on_a_topic_that_carries_another_type() -> None:
    line = orjson.dumps(BASE["kpi"])
    dead, kind, at = codec.read_input(line, ("oss.locations", 2, 9), expect=Location)
    assert (kind, at) == (DeadLetter, None)
    assert dead == DeadLetter("oss.locations", "kpi: record type 'kpi' on topic "
                              "'oss.locations', which carries only 'location' records "
                              "(wrong topic)", line, "wrong_topic")
    assert dead.source.origin() == {"topic": "oss.locations", "partition": 2, "offset": 9}
    named = codec.wrong_topic(line, "oss.calls", Kpi, Call)
    assert named.reason.startswith("kpi: record type 'kpi' on topic 'oss.calls', which "
                                   "carries only 'call' records")
    assert named.source == "oss.calls"
    assert codec.read_input(line, ("oss.kpis", 0, 1), expect=Kpi)[0] == MINIMAL["kpi"]
    cell = orjson.dumps(BASE["cell"])  # (no short path for reference data)
    assert codec.read_input(cell, ("oss.locations", 0, 3), expect=Location) == (
        DeadLetter("oss.locations", "cell: record type 'cell' on topic 'oss.locations', "
                   "which carries only 'location' records (wrong topic)", cell,
                   "wrong_topic"), DeadLetter, None)
    assert codec.read_input(cell, ("oss.topology", 0, 3), expect=Cell) == (
        MINIMAL["cell"], Cell, None)


def test_a_batch_of_feed_events_is_each_of_them_checked_for_its_topic() -> None:
    """A VES ``eventList`` read through the rulebook's tables: each event is its own
    ``(raw, item, kind, at)``, a bad one a dead letter, and on a topic that does not
    carry alarms each record a dead letter ``wrong_topic``."""
    from pathlib import Path

    from forewarn.rules.rulebook import load_rulebook

    adapters = load_rulebook().adapters
    lines = (Path(__file__).parent / "fixtures" / "ves-fault.jsonl").read_bytes().splitlines()
    events = [orjson.loads(lines[0])["event"], *orjson.loads(lines[1])["eventList"]][:2]
    header = {k: v for k, v in events[0]["commonEventHeader"].items()
              if k != "lastEpochMicrosec"}
    bad = {**events[0], "commonEventHeader": header}
    batch = orjson.dumps({"eventList": [events[0], bad, events[1]]})
    many, kind, at = codec.read_input(batch, ("oss.alarms", 0, 4), adapters, expect=Alarm)
    assert kind is codec.Expanded and type(many) is codec.Expanded and at is None
    assert [k for _, _, k, _ in many] == [Alarm, DeadLetter, Alarm]
    first = codec.decode_input(lines[0], "x", adapters)
    assert many[0][1:] == (first, Alarm, first.at) and many[0][1].at is not None
    assert orjson.loads(many[1][0]) == bad and many[1][3] is None
    assert many[1][1].code == "missing_field"
    wrong, _, _ = codec.read_input(batch, ("oss.kpis", 0, 4), adapters, expect=Kpi)
    assert [(k, x.code, a) for _, x, k, a in wrong] == [
        (DeadLetter, "wrong_topic", None), (DeadLetter, "missing_field", None),
        (DeadLetter, "wrong_topic", None)]
    assert wrong[0][1].reason.startswith("alarm: record type 'alarm' on topic 'oss.kpis'")
    assert orjson.loads(wrong[2][0]) == events[1]
    any_topic, _, _ = codec.read_input(batch, ("oss.alarms", 0, 4), adapters)
    assert [k for _, _, k, _ in any_topic] == [Alarm, DeadLetter, Alarm]
    flow = decode_input(batch, ("oss.alarms", 0, 4), adapters)
    assert type(flow) is codec.Expanded
    assert list(flow) == [(raw, item) for raw, item, _, _ in any_topic]


def test_a_record_with_a_type_is_never_read_as_a_feed_event() -> None:
    """Only an object without ``type`` goes to the rulebook's adapters tables."""
    from pathlib import Path

    from forewarn.rules.rulebook import load_rulebook

    adapters = load_rulebook().adapters
    ves = orjson.loads((Path(__file__).parent / "fixtures" / "ves-fault.jsonl")
                       .read_bytes().splitlines()[0])
    assert type(decode_input(orjson.dumps(ves), "f", adapters)) is Alarm
    cell = orjson.dumps({**BASE["cell"], **ves})
    assert decode_input(cell, "f", adapters) == MINIMAL["cell"]
    bogus = orjson.dumps({"type": "bogus", **ves})
    assert decode_input(bogus, "f", adapters).code == "unknown_type"


SHORT_PATH_EDGES = [
    ("subscriber", {"op": "delete"}), ("subscriber", {"subscriber_id": ""}),
    ("subscriber", {"updated_at": LATER}), ("subscriber", {"language": 5}),
    ("subscriber", {"timezone": ""}), ("subscriber", {"segment": None}),
    ("subscriber", {"channels": None}), ("subscriber", {"name": 5}),
    ("subscriber", {"plan": ""}), ("subscriber", {"tenure_months": 1.5}),
    ("subscriber", {"tenure_months": 0}), ("subscriber", {"tags": [None]}),
    ("subscriber", {"preferred_channels": ["push", "push"]}),
    ("subscriber", {"channels": {"sms": {"address": "x", "consent": 1}}}),
    ("subscriber", {"channels": {"sms": {"address": 1, "consent": False}}}),
    ("subscriber", {"channels": {"sms": []}}),
    ("kpi", {"cell_id": 7}), ("kpi", {"period_start": LATER}), ("kpi", {"period_s": 86_400}),
    ("kpi", {"period_s": 1e-9}), ("kpi", {"period_s": None}), ("kpi", {"call_attempts": None}),
    ("kpi", {"call_attempts": 0}), ("kpi", {"dropped_calls": 0.0}),
    ("kpi", {"rrc_success_rate": False}), ("kpi", {"rrc_success_rate": None}),
    ("kpi", {"dl_throughput_mbps": "1"}), ("kpi", {"dl_throughput_mbps": 0}),
    ("kpi", {"active_users": True}), ("kpi", {"active_users": 0}),
    ("location", {"subscriber_id": None}), ("location", {"cell_id": 5}),
    ("location", {"event_time": LATER}), ("location", {"event_time": 5}),
    ("call", {"dropped": False, "end_time": T}), ("call", {"dropped": False, "call_id": ""}),
    ("call", {"dropped": False, "subscriber_id": 1}), ("call", {"dropped": False, "cell_id": ""}),
    ("call", {"dropped": False, "start_time": "x"}), ("call", {"dropped": False, "end_time": 1}),
    ("call", {"dropped": False, "cause_code": True}), ("call", {"dropped": False, "cause_code": 0}),
    ("call", {"dropped": False, "cause_code": -1}), ("call", {"dropped": None}),
    ("call", {"dropped": 0}), ("call", {"dropped": False, "end_time": "2026-11-23T10:14:59Z"}),
]


@pytest.mark.parametrize("typ, changes", SHORT_PATH_EDGES)
def test_short_paths_and_validators_agree_at_the_edges(typ: str, changes: dict) -> None:
    _check_paths(_changed(typ, changes))


@pytest.mark.parametrize("typ, changes, reason, code", REFUSED)
def test_short_paths_and_validators_agree_on_every_defect(typ, changes, reason, code) -> None:
    _check_paths(_changed(typ, changes))


# Hypothesis: records built from valid and hostile values, field by field.
_times = st.one_of(
    st.datetimes(min_value=datetime(1969, 12, 31), max_value=datetime(9999, 12, 31, 0, 1),
                 timezones=st.just(UTC)).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")),
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30),
                 timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5, minutes=-30))]))
    .map(lambda d: d.isoformat()),
    st.sampled_from(["9999-12-31T00:00:00Z", "9999-12-31T00:00:01Z", "1970-01-01T00:00:00Z",
                     "2026-11-23T10:15:60Z", "2026-11-23 10:15:00Z", "yesterday"]),
    st.integers(-(2**63), 2**64 - 1),  # what JSON integers orjson reads
)
_junk = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(-1, 1e6),
                  st.sampled_from(["", "x", "sms", "fax"]), st.lists(st.sampled_from(["sms", ""]),
                                                                    max_size=2))
_texts = st.one_of(st.sampled_from(["C1", "U1"]), _junk)
_counts = st.one_of(st.integers(0, 10**6), _junk)
_numbers = st.one_of(st.floats(0, 100_000, allow_nan=False), st.integers(-1, 100_000), _junk)
_channel = st.fixed_dictionaries({}, optional={
    "address": st.one_of(st.just("+1"), _junk), "consent": st.one_of(st.booleans(), _junk)})

FIELDS = {
    "subscriber": {
        "subscriber_id": _texts, "op": st.sampled_from(["upsert", "upsert", "delete", "x"]),
        "updated_at": _times, "language": _texts,
        "timezone": st.one_of(st.sampled_from(["UTC", "Europe/Madrid", "Mars/X"]), _junk),
        "segment": st.one_of(st.sampled_from(["consumer", "business", "vip"]), _junk),
        "channels": st.one_of(st.dictionaries(st.sampled_from(["push", "sms", "email", "fax"]),
                                              st.one_of(_channel, _junk), max_size=3), _junk),
        "name": _texts, "plan": _texts, "tenure_months": _counts,
        "tags": st.one_of(st.lists(st.sampled_from(["a", "b"]), max_size=2), _junk),
        "preferred_channels": st.one_of(
            st.lists(st.sampled_from(["push", "sms", "email"]), max_size=3), _junk),
    },
    "kpi": {
        "cell_id": _texts, "period_start": _times, "period_s": _numbers,
        "call_attempts": _counts, "dropped_calls": _counts, "rrc_success_rate": _numbers,
        "dl_throughput_mbps": _numbers, "active_users": _counts,
    },
    "location": {"subscriber_id": _texts, "cell_id": _texts, "event_time": _times},
    "call": {"call_id": _texts, "subscriber_id": _texts, "cell_id": _texts,
             "start_time": _times, "end_time": _times, "dropped": st.one_of(st.booleans(), _junk),
             "cause_code": _counts},
}


@st.composite
def records(draw) -> dict:
    typ = draw(st.sampled_from(sorted(FIELDS)))
    obj = dict(BASE[typ])
    for name, values in FIELDS[typ].items():
        how = draw(st.integers(0, 9))
        if how == 0:
            obj.pop(name, None)
        elif how <= 3:
            obj[name] = draw(values)
    return obj


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])  # a loaded machine
@given(records())
def test_short_paths_and_validators_agree_on_generated_records(obj: dict) -> None:
    _check_paths(obj)


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])  # a loaded machine
@given(_times)
def test_the_canonical_time_short_path_agrees_with_parse_time(text: object) -> None:
    try:
        expected: float | None = parse_time(text)
    except (ValueError, TypeError):
        expected = None
    assert codec._time_of(text) == expected


# ---- stream time ---------------------------------------------------------------


@pytest.mark.parametrize("obj, expected", [
    (BASE["alarm"], T_S), (BASE["location"], T_S), (BASE["call"], LATER_S),
    (BASE["subscriber"], T_S), (BASE["complaint"], T_S), (BASE["kpi"], T_S + 900),
    ({**BASE["kpi"], "period_s": 86_400}, T_S + 86_400), ({**BASE["kpi"], "period_s": 0.5},
                                                           T_S + 0.5),
    (BASE["cell"], float("-inf")), (BASE["maintenance"], float("-inf")),
    # read without validating the rest of the record
    ({"type": "location", "event_time": LATER}, LATER_S),
    ({"type": "cell"}, float("-inf")),
    ({**BASE["kpi"], "period_s": 0}, None), ({**BASE["kpi"], "period_s": -1}, None),
    ({**BASE["kpi"], "period_s": 86_401}, None), ({**BASE["kpi"], "period_s": True}, None),
    ({**BASE["kpi"], "period_s": "900"}, None), ({"type": "kpi", "period_s": 900}, None),
    ({**BASE["kpi"], "period_start": 5}, None), ({**BASE["kpi"], "period_start": [T]}, None),
    ({"type": "location"}, None), ({**BASE["location"], "event_time": "x"}, None),
    ({**BASE["location"], "event_time": "9999-12-31T00:00:01Z"}, None),
    ({"type": "bogus", "event_time": T}, None), ({"type": 5, "event_time": T}, None),
    ({"type": ["cell"]}, None), ({"event_time": T}, None),
])
def test_stream_time_of_a_raw_line(obj: dict, expected: float | None) -> None:
    assert stream_time(orjson.dumps(obj)) == expected


@pytest.mark.parametrize("raw", [b"", None, b"[1]", b"not json", b'"x"'])
def test_no_stream_time_for_what_is_not_a_record(raw: bytes | None) -> None:
    assert stream_time(raw) is None


# ---- outputs ---------------------------------------------------------------------


def test_an_action_on_the_wire() -> None:
    a = Action("act-1", "U1", "apology", "sms", "es", "Lo sentimos", "r-drops", 3, None,
               ("call:K1", "call:K2"), T_S, send_after=LATER_S, offer={"data_gb": 1},
               segment="vip", features={"not": "on the wire"})
    expected = {
        "type": "action", "action_id": "act-1", "subscriber_id": "U1", "kind": "apology",
        "channel": "sms", "language": "es", "message": "Lo sentimos", "rule_id": "r-drops",
        "rule_version": 3, "incident_id": None, "evidence": ["call:K1", "call:K2"],
        "event_time": "2026-11-23T10:15:00Z", "send_after": "2026-11-23T10:20:30Z",
        "offer": {"data_gb": 1}, "segment": "vip",
    }
    assert action_dict(a) == expected
    assert orjson.loads(encode(a)) == expected
    assert encode(a) == orjson.dumps(expected)
    b = Action("act-2", "U1", "outage_notice", "push", "en", "m", "r", 1, "inc-1", (), 0.25)
    assert action_dict(b)["send_after"] is None and action_dict(b)["incident_id"] == "inc-1"
    assert action_dict(b)["event_time"] == "1970-01-01T00:00:00.250Z"


def test_an_incident_on_the_wire() -> None:
    i = Incident("inc-1", "resolved", "outage", "site", "S1", ("C1", "C2"), T_S, LATER_S, 42,
                 LATER_S, region="north", maintenance_window="W1", evidence=("alarm:A1",),
                 silent_kind="sleeping", detector="silence")
    expected = {
        "type": "incident", "incident_id": "inc-1", "status": "resolved", "kind": "outage",
        "scope": "site", "site_id": "S1", "cell_ids": ["C1", "C2"],
        "start_time": "2026-11-23T10:15:00Z", "end_time": "2026-11-23T10:20:30Z",
        "impacted_subscribers": 42, "event_time": "2026-11-23T10:20:30Z", "region": "north",
        "maintenance_window": "W1", "evidence": ["alarm:A1"], "silent_kind": "sleeping",
        "detector": "silence", "parent_id": None,
    }
    assert incident_dict(i) == expected
    assert encode(i) == orjson.dumps(expected)
    open_ = Incident("inc-2", "open", "flapping", "cell", "S1", ("C1",), T_S, None, 0, T_S)
    assert incident_dict(open_)["end_time"] is None
    regional = Incident("reg-1", "open", "regional_outage", "region", "", (), T_S, None, 7,
                        T_S, region="north", child_ids=("inc-1", "inc-3"), sites=("S1", "S3"))
    assert incident_dict(regional) == {
        "type": "incident", "incident_id": "reg-1", "status": "open",
        "kind": "regional_outage", "scope": "region", "site_id": "", "cell_ids": [],
        "start_time": "2026-11-23T10:15:00Z", "end_time": None, "impacted_subscribers": 7,
        "event_time": "2026-11-23T10:15:00Z", "region": "north", "maintenance_window": None,
        "evidence": [], "silent_kind": None, "detector": None, "parent_id": None,
        "child_ids": ["inc-1", "inc-3"], "sites": ["S1", "S3"]}
    # only a regional event carries them
    assert "child_ids" not in incident_dict(Incident(
        "inc-4", "open", "outage", "site", "S1", ("C1",), T_S, None, 0, T_S, child_ids=("x",)))


def test_a_dead_letter_on_the_wire() -> None:
    d = DeadLetter("oss.alarms", "alarm.event_time: required field missing", b'{"type":"alarm"}',
                   "missing_field")
    expected = {"type": "dead_letter", "source": "oss.alarms",
                "reason": "alarm.event_time: required field missing",
                "raw": '{"type":"alarm"}', "raw_encoding": "utf-8", "code": "missing_field"}
    assert dead_letter_dict(d) == expected and encode(d) == orjson.dumps(expected)


@pytest.mark.parametrize("raw, text, encoding", [
    (b"x" * 4095 + "é".encode()[:1], "x" * 4095, "utf-8"),  # cut inside a 2-byte character
    (b"x" * 4094 + "€".encode()[:2], "x" * 4094, "utf-8"),  # inside a 3-byte one
    (b"x" * 4093 + "😀".encode()[:3], "x" * 4093, "utf-8"),  # inside a 4-byte one
    (b"x" * 4092 + "😀".encode(), "x" * 4092 + "😀", "utf-8"),  # whole
    (b"x" * 9 + "é".encode()[:1], None, "base64"),  # short: not a cut
    (b"x" * 4095 + b"\xff", None, "base64"),  # not a character's start
    (b"\xff" + b"x" * 4094 + "é".encode()[:1], None, "base64"),  # broken before the cut
    (b"x" * 4094 + b"\xc3\xa9"[:1] + b"x", None, "base64"),  # broken, not at the end
])
def test_dead_letter_raw_text_or_base64(raw: bytes, text: str | None, encoding: str) -> None:
    import base64

    out = dead_letter_dict(dead_letter(raw, "f", "r", DeadCode.BAD_VALUE))
    assert out["raw_encoding"] == encoding
    assert out["raw"] == (text if text is not None else base64.b64encode(raw[:4096]).decode())


@pytest.mark.parametrize("seconds, text", [
    (0.0, "1970-01-01T00:00:00Z"), (T_S, "2026-11-23T10:15:00Z"),
    (T_S + 0.25, "2026-11-23T10:15:00.250Z"), (T_S + 59.125, "2026-11-23T10:15:59.125Z"),
    (MAX, "9999-12-31T00:00:00Z"), (1e308, "1e+308 s"), (-1e20, "-1e+20 s"),
    (float("nan"), "nan s"), (float("inf"), "inf s"),
])
def test_times_written_as_rfc3339_utc(seconds: float, text: str, monkeypatch) -> None:
    import time

    assert fmt_time(seconds) == text
    monkeypatch.setenv("TZ", "America/St_Johns")  # whatever the machine's own zone
    time.tzset()
    try:
        assert fmt_time(seconds) == text
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_dead_letters_code_is_named_where_it_is_refused() -> None:
    """Codes are what metric labels and dashboards read: whoever refuses an input names
    its :class:`DeadCode` beside the reason (no code is read back out of a reason's text),
    and the flow's dead-letter metric has a series for each of the flow's codes from the
    start."""
    from forewarn import metrics

    assert [c.value for c in DeadCode] == [
        "too_large", "not_json", "not_object", "unknown_type", "missing_field", "bad_type",
        "bad_enum", "bad_time", "bad_value", "wrong_topic", "time_out_of_range", "future",
        "unknown_cell", "unknown_site", "no_adapter", "unsupported_event", "unknown_source",
        "unknown_condition", "clear_without_raise", "refused"]
    assert set(metrics.DEAD_LETTER_CODES) == set(DeadCode) - {DeadCode.REFUSED}
    # the same words in another reason change nothing: the code is the refuser's
    d = dead_letter(b"x", "f", "alarm.alarm_id: required field missing (wrong topic)",
                    DeadCode.WRONG_TOPIC)
    assert d.code == "wrong_topic" and dead_letter_dict(d)["code"] == "wrong_topic"
    with pytest.raises(Invalid) as exc:
        DECODERS["kpi"]({**BASE["kpi"], "period_s": 0})
    assert exc.value.code is DeadCode.BAD_TYPE
