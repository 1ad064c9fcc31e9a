"""The codec: every defect becomes a precise dead letter; outputs follow the contract."""

from __future__ import annotations

import orjson
import pytest

from forewarn.codec import decode, encode, fmt_time, parse_time
from forewarn.model import Action, Alarm, Call, DeadLetter, Incident, Maintenance, Subscriber

T = "2026-11-23T10:15:00Z"


def reason(obj) -> str:
    out = decode(orjson.dumps(obj) if not isinstance(obj, bytes) else obj, "oss.test")
    assert isinstance(out, DeadLetter), out
    return out.reason


def test_valid_records_decode_to_domain_types():
    alarm = decode(orjson.dumps({"type": "alarm", "alarm_id": "A", "event_time": T,
                                 "perceived_severity": "major", "probable_cause": "lossOfSignal",
                                 "site_id": "S1", "extra": 1}), "x")
    assert isinstance(alarm, Alarm) and alarm.site_id == "S1" and alarm.at == parse_time(T)
    sub = decode(orjson.dumps({
        "type": "subscriber", "subscriber_id": "U", "op": "upsert", "updated_at": T,
        "language": "es", "timezone": "Europe/Madrid", "segment": "vip",
        "channels": {"sms": {"address": "+34", "consent": True}},
        "preferred_channels": ["sms"]}), "x")
    assert isinstance(sub, Subscriber) and sub.channels[0].consent is True
    assert isinstance(decode(orjson.dumps({"type": "subscriber", "subscriber_id": "U",
                                           "op": "delete", "updated_at": T}), "x"), Subscriber)
    m = decode(orjson.dumps({"type": "maintenance", "window_id": "W", "op": "upsert",
                             "start_time": T, "end_time": "2026-11-23T12:00:00+01:00",
                             "cell_ids": ["C1"]}), "x")
    assert isinstance(m, Maintenance) and m.at is None


@pytest.mark.parametrize("obj, expected", [
    (b"{oops", "not JSON"),
    (b"[1]", "expected a JSON object, got list"),
    ({"type": "bogus"}, "type: expected one of"),
    ({"type": "alarm", "alarm_id": "A", "event_time": T, "perceived_severity": "urgent",
      "probable_cause": "x", "cell_id": "C"},
     "alarm.perceived_severity: expected one of critical,major,minor,warning,indeterminate,"
     "cleared, got \"urgent\""),
    ({"type": "alarm", "alarm_id": "A", "event_time": "yesterday", "perceived_severity": "major",
      "probable_cause": "x", "cell_id": "C"}, "alarm.event_time: expected an RFC 3339 time"),
    ({"type": "alarm", "alarm_id": "A", "event_time": "2026-11-23T10:15:00",
      "perceived_severity": "major", "probable_cause": "x", "cell_id": "C"},
     "expected an RFC 3339 time with offset"),
    ({"type": "call", "call_id": "K", "subscriber_id": "U", "cell_id": "C", "start_time": T,
      "end_time": T, "dropped": "yes"}, "call.dropped: expected true or false, got \"yes\""),
    ({"type": "call", "call_id": "K", "subscriber_id": "U", "cell_id": "C",
      "start_time": "2026-11-23T10:16:00Z", "end_time": T, "dropped": False},
     "call.end_time: expected at or after start_time"),
    ({"type": "kpi", "cell_id": "C", "period_start": T, "period_s": 900, "call_attempts": -1,
      "dropped_calls": 0}, "kpi.call_attempts: expected a non-negative integer"),
    ({"type": "location", "subscriber_id": "U", "event_time": T},
     "location.cell_id: required field missing"),
    ({"type": "subscriber", "subscriber_id": "U", "op": "upsert", "updated_at": T,
      "language": "en", "timezone": "Mars/Olympus", "segment": "vip", "channels": {}},
     "subscriber.timezone: expected an IANA time zone"),
    ({"type": "subscriber", "subscriber_id": "U", "op": "upsert", "updated_at": T,
      "language": "en", "timezone": "UTC", "segment": "gold", "channels": {}},
     "subscriber.segment: expected one of consumer,business,vip"),
    ({"type": "subscriber", "subscriber_id": "U", "op": "upsert", "updated_at": T,
      "language": "en", "timezone": "UTC", "segment": "vip",
      "channels": {"sms": {"address": "+1", "consent": "y"}}},
     "subscriber.channels.sms.consent: expected true or false"),
    ({"type": "maintenance", "window_id": "W", "op": "upsert", "start_time": T, "end_time": T,
      "site_ids": ["S"]}, "maintenance.end_time: expected after start_time"),
    ({"type": "complaint", "complaint_id": "X", "subscriber_id": "U", "event_time": T,
      "category": "billing"}, "complaint.category: expected one of"),
])
def test_defects_name_field_expected_and_found(obj, expected):
    assert expected in reason(obj)


def test_dead_letter_keeps_first_4k_and_base64_for_binary():
    big = b'{"type":"location",' + b"x" * 10_000
    d = decode(big, "oss.locations")
    assert isinstance(d, DeadLetter) and len(d.raw) == 4096
    out = orjson.loads(encode(decode(b"\xff\xfe", "oss.calls")))
    assert out["raw_encoding"] == "base64" and out["source"] == "oss.calls"
    assert set(out) >= {"type", "source", "reason", "raw"}


def test_outputs_carry_every_contract_field():
    a = Action("act-1", "U", "apology", "sms", "en", "m", "r", 1, None, ("call:K",), 0.0)
    assert set(orjson.loads(encode(a))) >= {
        "action_id", "subscriber_id", "kind", "channel", "language", "message", "rule_id",
        "rule_version", "incident_id", "evidence", "event_time", "send_after", "offer"}
    i = Incident("I", "open", "outage", "cell", "S", ("C",), 0.0, None, 3, 60.0)
    assert set(orjson.loads(encode(i))) >= {
        "incident_id", "status", "kind", "scope", "site_id", "cell_ids", "start_time",
        "end_time", "impacted_subscribers", "event_time"}


def test_time_round_trip():
    assert fmt_time(parse_time("2026-11-23T11:15:00.250+01:00")) == "2026-11-23T10:15:00.250Z"
    assert isinstance(decode(orjson.dumps({"type": "call", "call_id": "K", "subscriber_id": "U",
                                           "cell_id": "C", "start_time": T, "end_time": T,
                                           "dropped": True, "cause_code": 38}), "x"), Call)


def test_the_subscriber_short_path_reads_what_the_validator_reads() -> None:
    """Every simulated subscriber line (defects included) decodes to what the per-field
    validator makes of it; the short path takes only well-formed upserts."""
    from forewarn.codec import Invalid, _fast_subscriber, _subscriber
    from forewarn.simulator import ScenarioConfig, simulate

    lines = [line for line in simulate(ScenarioConfig(sites=20, hours=1)).lines
             if b'"subscriber"' in line]
    variants = [
        {"tags": None}, {"tags": ["a", ""]}, {"preferred_channels": ["fax"]},
        {"tenure_months": True}, {"tenure_months": -1}, {"name": ""}, {"plan": 5},
        {"timezone": "Mars/Olympus"}, {"segment": "gold"}, {"channels": {}},
        {"channels": {"sms": {"address": "+44", "consent": 1}}}, {"op": "delete"},
        {"updated_at": "2026-11-23T10:15:00"},
    ]
    base = orjson.loads(next(line for line in lines if b'"upsert"' in line))
    objs = [orjson.loads(line) for line in lines if line.startswith(b"{")]
    objs = [o for o in objs if isinstance(o, dict)] + [{**base, **v} for v in variants]
    for obj in objs:
        fast = _fast_subscriber(obj)
        try:
            slow = _subscriber(obj)
        except Invalid:
            slow = None
        if fast is not None:
            assert fast == slow and hash(fast) == hash(slow), obj
        elif slow is not None:  # the validator's own: deletes, and upserts it had to read
            assert slow.op == "delete" or obj in [{**base, **v} for v in variants], obj


def test_the_kpi_short_path_reads_what_the_validator_reads() -> None:
    """Every simulated KPI line, and each defect a KPI can have, decodes to what the
    per-field validator makes of it; the short path takes only well-formed records."""
    from forewarn.codec import Invalid, _fast_kpi, _kpi
    from forewarn.simulator import ScenarioConfig, simulate

    objs = []
    for line in simulate(ScenarioConfig(sites=20, hours=2)).lines:
        if b'"kpi"' in line:
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                objs.append(obj)
    base = next(o for o in objs if o.get("type") == "kpi" and _fast_kpi(o) is not None)
    variants = [
        {"cell_id": ""}, {"cell_id": 7}, {"cell_id": None}, {"period_start": "yesterday"},
        {"period_start": "2026-11-23T10:15:00+01:00"}, {"period_s": 0}, {"period_s": True},
        {"period_s": 60.5}, {"call_attempts": -1}, {"call_attempts": 1.0},
        {"dropped_calls": False}, {"rrc_success_rate": "high"}, {"rrc_success_rate": None},
        {"dl_throughput_mbps": True}, {"active_users": -3}, {"active_users": None},
    ]
    took = 0
    for obj in objs + [{**base, **v} for v in variants]:
        fast = _fast_kpi(obj)
        try:
            slow = _kpi(obj)
        except Invalid:
            slow = None
        if fast is not None:
            took += 1
            assert fast == slow and hash(fast) == hash(slow), obj
        else:  # refused: the short path reads every valid form (offset times too)
            assert slow is None, obj
    assert took >= len(objs) // 2


def test_the_flow_reads_positions_as_the_validator_reads_them() -> None:
    """Every simulated location and call line, and each defect they can have, gives
    through :func:`decode_input` the position the validated record stands for (or the
    same record or dead letter as :func:`decode`)."""
    from forewarn.codec import decode_input
    from forewarn.dataflows.messages import position
    from forewarn.model import DeadLetter, Location
    from forewarn.simulator import ScenarioConfig, simulate

    lines = [line for line in simulate(ScenarioConfig(sites=20, hours=2)).lines
             if b'"location"' in line or b'"call"' in line]
    loc = orjson.loads(next(line for line in lines if line.startswith(b'{"type":"location"')))
    call = orjson.loads(next(line for line in lines if line.startswith(b'{"type":"call"')))
    defects = [{"subscriber_id": ""}, {"subscriber_id": 5}, {"cell_id": None}, {"cell_id": ""},
               {"event_time": "2026-11-23T10:15:60Z"}, {"event_time": "2026-11-23T11:15:00+01:00"},
               {"end_time": "2026-11-23T00:00:00Z"}, {"dropped": "false"}, {"dropped": True},
               {"dropped": None}, {"cause_code": -1}, {"cause_code": 1.5}, {"call_id": ""}]
    extra = [orjson.dumps({**base, **d}) for base in (loc, call) for d in defects]
    took = 0
    for line in lines + extra:
        fast, slow = decode_input(line, "t"), decode(line, "t")
        if type(fast) is tuple:
            took += 1
            ref = None if isinstance(slow, Location) else f"call:{slow.call_id}"
            assert fast == position(slow.subscriber_id, slow.cell_id, slow.at, ref), line
            assert not getattr(slow, "dropped", False), line
        elif isinstance(slow, DeadLetter):
            assert isinstance(fast, DeadLetter) and fast.reason == slow.reason, line
        else:  # a dropped call, or a valid form only the validator reads (an offset time)
            assert fast == slow, line
    assert took >= len(lines) // 2
