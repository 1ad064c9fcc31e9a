"""Actions as TM Forum TMF681 CommunicationMessages (``--action-format tmf681``).

An operator's notification platform often takes TMF681 (Communication Management)
messages rather than Forewarn's own action record. Each action becomes one
``CommunicationMessage``:

* ``id``: the action's id (deterministic: a replay or restart re-sends the same id, and
  the Kafka sink drops what is already on the topic, as for contract-format actions);
* ``messageType`` from the channel: ``SMS``, ``Email``, ``MobileAppPush``;
* ``content``: the rendered message; ``scheduledSendTime``: ``send_after`` (absent: send
  now); ``state``: ``initial``;
* ``receiver``: the subscriber, by id only (the platform knows the address; Forewarn puts
  no phone number or e-mail address on the wire);
* ``characteristic``: every other field of the contract's action (kind, rule id and
  version, incident, evidence, event time, language, channel, segment, offer), so
  :func:`to_contract` gives the contract record back.

The Kafka key stays the subscriber id.

>>> from forewarn.model import Action
>>> a = Action("act-1", "SUB1", "outage_notice", "sms", "en", "Hi", "outage-notice", 1,
...            "INC-S1-20261123T101000", ("alarm:A1",), 1795428720.0)
>>> m = communication_message(a)
>>> m["@type"], m["id"], m["messageType"], m["receiver"][0]["id"], "scheduledSendTime" in m
('CommunicationMessage', 'act-1', 'SMS', 'SUB1', False)
>>> to_contract(m) == action_dict(a)
True
"""

from __future__ import annotations

from typing import Any

import orjson

from forewarn.codec import action_dict
from forewarn.model import Action

#: A channel's TMF681 message type.
MESSAGE_TYPES = {"sms": "SMS", "email": "Email", "push": "MobileAppPush"}
#: The contract's action fields carried as characteristics (all but those mapped above).
CHARACTERISTICS = ("kind", "rule_id", "rule_version", "incident_id", "evidence", "event_time",
                   "language", "channel", "segment", "offer")
_TYPE = "CommunicationMessage"


def communication_message(a: Action) -> dict[str, Any]:
    """The TMF681 CommunicationMessage of an action."""
    d = action_dict(a)
    msg: dict[str, Any] = {
        "@type": _TYPE,
        "id": d["action_id"],
        "messageType": MESSAGE_TYPES.get(d["channel"], d["channel"]),
        "content": d["message"],
        "state": "initial",
        "receiver": [{"@type": "Receiver", "id": d["subscriber_id"],
                      "party": {"id": d["subscriber_id"], "@referredType": "Individual"}}],
        "sender": {"@type": "Sender", "id": "forewarn", "name": "Forewarn"},
        "characteristic": [{"name": name, "value": d[name]} for name in CHARACTERISTICS],
    }
    if d["send_after"] is not None:
        msg["scheduledSendTime"] = d["send_after"]
    return msg


def encode(a: Action) -> bytes:
    """One JSON line (no newline) of an action as a TMF681 message."""
    return orjson.dumps(communication_message(a))


def is_message(obj: Any) -> bool:
    """Is ``obj`` (a decoded JSON value) a TMF681 CommunicationMessage?"""
    return isinstance(obj, dict) and obj.get("@type") == _TYPE


def to_contract(msg: dict[str, Any]) -> dict[str, Any]:
    """The contract's action record a message was made from (summaries, comparisons)."""
    chars = {c["name"]: c.get("value") for c in msg.get("characteristic", ())}
    return {
        "type": "action",
        "action_id": msg["id"],
        "subscriber_id": msg["receiver"][0]["id"],
        "kind": chars.get("kind"),
        "channel": chars.get("channel"),
        "language": chars.get("language"),
        "message": msg.get("content"),
        "rule_id": chars.get("rule_id"),
        "rule_version": chars.get("rule_version"),
        "incident_id": chars.get("incident_id"),
        "evidence": chars.get("evidence") or [],
        "event_time": chars.get("event_time"),
        "send_after": msg.get("scheduledSendTime"),
        "offer": chars.get("offer"),
        "segment": chars.get("segment"),
    }
