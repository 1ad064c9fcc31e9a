"""`--action-format tmf681`: actions as TM Forum TMF681 CommunicationMessages."""

from __future__ import annotations

from pathlib import Path

import orjson

from forewarn import tmf681
from forewarn.cli import main
from forewarn.connectors.kafka_sink import action_identity
from tests.builders import Scenario


def scenario() -> Scenario:
    """An outage notice and restored notice, a compensation and a care callback at 4 h,
    and an apology deferred by quiet hours (Tokyo), on three channels."""
    s = Scenario().site("S1").site("S2").site("FAR", cells=1)  # FAR: tick()'s cell
    s.subscriber("A")
    s.subscriber("V", segment="vip", channels={
        "email": {"address": "v@example.com", "consent": True}})
    s.subscriber("T", tz="Asia/Tokyo", channels={
        "push": {"address": "push:t", "consent": True}})
    s.seen("A", "S1-C1", 1).seen("V", "S1-C2", 1)
    s.alarm("A1", 10, site="S1")
    s.call("K1", "T", "S2-C1", 190, dropped=True).call("K2", "T", "S2-C1", 195, dropped=True)
    s.tick(10 + 245).clear("A1", 10 + 250, site="S1").tick(10 + 260)
    return s


def run(tmp_path: Path, fmt: str) -> list[dict]:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(scenario().lines) + b"\n")
    out = tmp_path / fmt
    assert main(["run", "--input", str(events), "--out", str(out), "--metrics-port", "-1",
                 "--log-level", "warning", "--action-format", fmt]) == 0
    return [orjson.loads(line) for line in (out / "actions.jsonl").read_bytes().splitlines()]


def test_tmf681_messages_carry_every_field_of_the_contracts_actions(tmp_path: Path) -> None:
    contract = run(tmp_path, "contract")
    messages = run(tmp_path, "tmf681")
    assert {a["kind"] for a in contract} == {"outage_notice", "restored_notice", "compensation",
                                             "care_callback", "apology"}
    # the same actions, in the same order, whole records
    assert [tmf681.to_contract(m) for m in messages] == contract
    for m, a in zip(messages, contract, strict=True):
        assert m["@type"] == "CommunicationMessage" and m["id"] == a["action_id"]
        assert m["messageType"] == {"sms": "SMS", "email": "Email",
                                    "push": "MobileAppPush"}[a["channel"]]
        assert m["content"] == a["message"] and m["state"] == "initial"
        assert m["receiver"][0]["id"] == a["subscriber_id"]
        assert m.get("scheduledSendTime") == a["send_after"]
        line = orjson.dumps(m)
        assert b"@example.com" not in line and b"+4477" not in line  # no address on the wire
    deferred = [m for m in messages if "scheduledSendTime" in m]
    assert deferred and all(tmf681.to_contract(m)["kind"] == "apology" for m in deferred)


def test_the_kafka_sink_knows_a_tmf681_message_by_its_action_id(tmp_path: Path) -> None:
    messages = run(tmp_path, "tmf681")
    assert [action_identity(orjson.dumps(m)) for m in messages] == [m["id"] for m in messages]
    assert action_identity(b'{"type":"action","action_id":"A-1"}') == "A-1"
    assert action_identity(b'{"@type":"CommunicationMessage"}') is None
