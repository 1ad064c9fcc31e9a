"""Stage 3 — per-subscriber care (keyed by subscriber).

Joins a subscriber's BSS profile and own observations with what the sites say
and decides the actions: outage and restored notices, compensation or care
callback at 4 h, dropped-call apologies. It applies the contract's policy:
one contact per incident, the apology cooldown, consent and channel
preference, quiet hours (defer), unknown or deleted subscribers get nothing.

Inputs arrive from two stages: profiles and complaints from the sequencer,
verdicts from the sites (an epoch later, so the profile in force at a verdict's
time is here before it). They are applied in event-time order (records before
verdicts at equal times: :func:`care_order`); the flow holds them until the event-time
frontier passes them (:mod:`forewarn.dataflows.frontier`), so verdicts of several sites are
applied in one order whatever order they arrived in. Positions never come here: a site
judges where a subscriber was at a verdict's time T, on its own stream in event
order, and says so in the verdict (``Impact.seen``, ``Impact.moved``).

>>> from forewarn.rules.rulebook import load_rulebook
>>> book = load_rulebook()
>>> quiet_until(1795471200.0, "Europe/London", book)  # 2026-11-23 22:00 local
1795507200.0
>>> quiet_until(1795435200.0, "Europe/London", book) is None  # 12:00 local
True
"""

from __future__ import annotations

import hashlib
import struct
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any, NamedTuple

from forewarn.codec import fmt_time, zone
from forewarn.dataflows.messages import (
    EXPECTED,
    HOLD_DOWN,
    REAPPEARED,
    WALK_IN,
    DropNote,
    Escalation,
    Impact,
    IncidentFacts,
    Profiled,
    Restored,
    evidence_ref,
)
from forewarn.dataflows.profile_rows import Later, ProfileRows
from forewarn.dataflows.propensity import CareFeatures
from forewarn.model import FOREWARNING_KINDS, Action, Complaint, Subscriber, pickle_by_fields
from forewarn.rules.rulebook import CELL_CHANNELS, Rule, Rulebook

#: :meth:`SubscriberCare._gate`'s answer when a rule's audience leaves the subscriber out.
NOT_FOR_THEM = "not_for_them"
_intern = sys.intern


class Turn(NamedTuple):
    """A rule's turn at a trigger point (:meth:`SubscriberCare._decide`): why it may not
    act (None: it may; see :meth:`SubscriberCare._gate`), at what time, and what the
    trigger found for it (a drop rule: the drops of its burst)."""

    rule: Rule
    why: str | None
    at: float
    found: Any = None


@dataclass(frozen=True, slots=True)
class Profile:
    """What care needs of a BSS profile (no addresses: the gateway owns those)."""

    language: str
    timezone: str
    segment: str
    channels: tuple[str, ...]  # consented, in preference order
    plan: str
    tags: tuple[str, ...] = ()
    tenure: int | None = None


#: A subscriber care knows only the profile of, in a snapshot: ``(profile, name, since)``,
#: or ``(profile, name, since, known_since)`` when they were known before the profile in
#: force; the name as UTF-8 bytes. In memory a row of a care shard's
#: :class:`~forewarn.dataflows.profile_rows.ProfileRows`, or (a subscriber's own care key,
#: with recovery on a store of earlier versions) the same packed in one bytes object
#: (:data:`Packed`, :meth:`SubscriberCare.compact`).
Known = tuple[Profile, bytes, float | None] | tuple[Profile, bytes, float | None, float | None]

#: :data:`Known` packed: a tag byte (1: known since the profile in force, 2: before it),
#: the profile's number (:func:`profile_number`), ``since`` (and ``known_since``) as
#: doubles (NaN: None), then the name's UTF-8 bytes. One 64-byte block for a usual name,
#: where the tuple and its name cost 112.
Packed = bytes
_ONE = struct.Struct("<BId")
_TWO = struct.Struct("<BIdd")
_NAN = float("nan")

#: Every profile a profile-only subscriber has had, numbered: like ``_PROFILES``, the few
#: shapes of a process's life (a number is good in this process only: snapshots keep the
#: profile itself, :func:`known_of`). The care shards of a process share the numbers
#: from its worker threads: a new number is given under ``_NUMBERING``.
_NUMBERED: list[Profile] = []
_NUMBER: dict[Profile, int] = {}
_NUMBERING = threading.Lock()


def profile_number(profile: Profile) -> int:
    """``profile``'s number (an equal profile's, if one has one): ``_NUMBERED[n]``.

    A number is the profile's place in ``_NUMBERED``, so a new one is taken and filled
    under the lock: care shards on two worker threads numbering two new profiles at once
    would otherwise both take the same free place, and one of them would unpack as the
    other's profile (language, segment, channels: another subscriber's)."""
    n = _NUMBER.get(profile)
    if n is None:
        with _NUMBERING:
            n = _NUMBER.get(profile)  # (numbered meanwhile by another thread)
            if n is None:
                n = len(_NUMBERED)
                _NUMBERED.append(profile)
                _NUMBER[profile] = n  # (only once its place holds it)
    return n


def packed_of(known: Known) -> Packed:
    """:data:`Known` packed (:data:`Packed`).

    >>> p = Profile("en", "UTC", "consumer", ("sms",), "")
    >>> known_of(packed_of((p, "Zoë".encode(), 60.0))) == (p, "Zoë".encode(), 60.0)
    True
    >>> known_of(packed_of((p, b"", None, 30.0)))
    (Profile(language='en', ..., tenure=None), b'', None, 30.0)
    """
    profile, name, since = known[0], known[1], known[2]
    n = profile_number(profile)
    if len(known) == 3 or (known[3] == since and since is not None):
        return _ONE.pack(1, n, _NAN if since is None else since) + name
    later = known[3]
    return _TWO.pack(2, n, _NAN if since is None else since,
                     _NAN if later is None else later) + name


def known_of(packed: Packed) -> Known:
    """The :data:`Known` tuple ``packed`` stands for."""
    if packed[0] == 1:
        _, n, since = _ONE.unpack_from(packed)
        return (_NUMBERED[n], packed[_ONE.size:], None if since != since else since)
    _, n, since, later = _TWO.unpack_from(packed)
    return (_NUMBERED[n], packed[_TWO.size:], None if since != since else since,
            None if later != later else later)


@dataclass(frozen=True, slots=True)
class ComplaintSeen:
    """A complaint, passed on to label the propensity model's exposures."""

    subscriber_id: str
    at: float


@dataclass(frozen=True, slots=True)
class Suppressed:
    """An action a rule wanted but policy stopped (counted, never sent)."""

    rule_id: str
    action_kind: str
    reason: str
    at: float
    # what it was about, and what stopped it (``same_event``: the incident the subscriber
    # was told of, ``incident:<id>``)
    incident_id: str | None = None
    evidence: tuple[str, ...] = ()


#: What care sends on to dispatch.
@dataclass(frozen=True, slots=True)
class CareContext:
    """What care knows of a subscriber when they complain (the ``care.context`` output):
    for the agent desktop and the IVR, before the customer explains. No message text, no
    name: incidents (``(incident_id, kind, scope, area, start, cells, restored or None)``),
    actions sent in the last day (``(action_id, kind, channel, event_time, send_after,
    rule_id, incident_id)``), unexplained dropped calls (``(call_id, time, incident_id)``),
    and the next steps the rulebook has for an open incident they were told of
    (``(incident_id, rule_id, action, due)``)."""

    complaint_id: str
    subscriber_id: str
    at: float
    category: str
    channel: str | None
    incidents: tuple[tuple, ...] = ()
    sent: tuple[tuple, ...] = ()
    drops: tuple[tuple, ...] = ()
    next_steps: tuple[tuple, ...] = ()

    @property
    def forewarned(self) -> bool:
        """Told of a problem before this contact: a notice or an apology in the last day."""
        return any(s[1] in FOREWARNING_KINDS for s in self.sent)

    def record(self) -> dict[str, Any]:
        """The ``care_context`` record (``docs/care-context.md``).

        >>> ctx = CareContext("K1", "U1", 1795435200.0, "no_service", "ivr",
        ...                   incidents=(("INC-S1", "outage", "site", "North", 1795431600.0,
        ...                               ("S1-C1",), None),),
        ...                   sent=(("act-1", "outage_notice", "sms", 1795431720.0, None,
        ...                          "outage-notice", "INC-S1"),))
        >>> r = ctx.record()
        >>> r["forewarned"], r["incidents"][0]["status"], r["sent"][0]["event_time"]
        (True, 'open', '2026-11-23T11:02:00Z')
        """
        return {
            "type": "care_context",
            "context_id": "ctx-" + hashlib.blake2b(
                f"{self.subscriber_id}|{self.complaint_id}".encode(), digest_size=12).hexdigest(),
            "complaint_id": self.complaint_id,
            "subscriber_id": self.subscriber_id,
            "event_time": fmt_time(self.at),
            "category": self.category,
            "channel": self.channel,
            "forewarned": self.forewarned,
            "incidents": [
                {**_incident_record(*inc[:6]),
                 "status": "open" if inc[6] is None else "restored",
                 "restored_time": None if inc[6] is None else fmt_time(inc[6])}
                for inc in self.incidents],
            "sent": [
                {"action_id": aid, "kind": kind, "channel": channel,
                 "event_time": fmt_time(at),
                 "send_after": None if after is None else fmt_time(after),
                 "rule_id": rule_id, "incident_id": inc}
                for aid, kind, channel, at, after, rule_id, inc in self.sent],
            "dropped_calls": [{"call_id": call, "end_time": fmt_time(at), "incident_id": inc}
                              for call, at, inc in self.drops],
            "next_steps": [{"incident_id": inc, "rule_id": rule_id, "action": action,
                            "due_time": fmt_time(due)}
                           for inc, rule_id, action, due in self.next_steps],
        }


@dataclass(frozen=True, slots=True)
class CareStatus:
    """A subscriber's current impact (the ``care.status`` output, compacted by subscriber):
    the open incidents that impact them by the contract's rules, ``(incident_id, kind,
    scope, area, start, cells)``; none when the last is restored (a tombstone on Kafka)."""

    subscriber_id: str
    at: float
    incidents: tuple[tuple, ...] = ()

    def record(self) -> dict[str, Any]:
        """The ``care_status`` record (``docs/care-context.md``).

        >>> CareStatus("U1", 1795435200.0).record()["incidents"]
        []
        """
        return {
            "type": "care_status",
            "subscriber_id": self.subscriber_id,
            "event_time": fmt_time(self.at),
            "impacted": bool(self.incidents),
            "incidents": [_incident_record(*inc) for inc in self.incidents],
        }


def _incident_record(incident_id: str, kind: str, scope: str, area: str, start: float,
                     cells: tuple[str, ...]) -> dict[str, Any]:
    """An incident as the care context and status records show it."""
    return {"incident_id": incident_id, "kind": kind, "scope": scope, "area": area,
            "start_time": fmt_time(start), "cell_ids": list(cells)}


#: How far back a care context looks (incidents, actions, drops).
CONTEXT_S = 86400.0


CareOut = Action | Suppressed | ComplaintSeen | CareContext | CareStatus


_PROFILES: dict[tuple, Profile] = {}  # profiles are few shapes: share one object per shape


_PROFILE_OF: dict[tuple, Profile] = {}  # the inputs of profile_of -> its answer


def profile_of(sub: Subscriber | Profiled, default_order: tuple[str, ...]) -> Profile:
    """The care-relevant profile (everything but the name), shared between subscribers."""
    if type(sub) is Profiled:  # read its shape's fields, not through its properties
        sub = sub.shape  # (the same values: a profile here is an upsert's shape)
    consent = tuple(c.name for c in sub.channels if c.consent)
    inputs = (sub.language, sub.timezone, sub.segment, consent, sub.preferred_channels,
              default_order, sub.plan, sub.tags, sub.tenure_months)
    known = _PROFILE_OF.get(inputs)
    if known is None:
        if len(_PROFILE_OF) >= 100_000:  # a bound; shapes are normally a few thousand
            _PROFILE_OF.clear()
        known = _PROFILE_OF[inputs] = _profile(sub, set(consent), default_order)
    return known


def _profile(sub: Subscriber | Profiled, consented: set[str],
             default_order: tuple[str, ...]) -> Profile:
    order = list(dict.fromkeys(sub.preferred_channels + default_order))
    key = (sub.language, sub.timezone, sub.segment,
           tuple(c for c in order if c in consented), sub.plan or "", sub.tags,
           sub.tenure_months)
    shared = _PROFILES.get(key)
    if shared is None:
        shared = _PROFILES[key] = Profile(
            language=_intern(sub.language),
            timezone=_intern(sub.timezone),
            segment=_intern(sub.segment),
            channels=tuple(_intern(c) for c in key[3]),
            plan=_intern(sub.plan or ""),
            tags=tuple(_intern(t) for t in sub.tags),
            tenure=sub.tenure_months,
        )
    return shared


def action_id(rule_id: str, subscriber_id: str, basis: str) -> str:
    """Pure function of rule, subscriber and incident (or triggering evidence).

    >>> action_id("outage-notice", "SUB1", "INC-S1-20261123T101500")
    'act-b50ef37c244a5984cf9faa7d'
    """
    digest = hashlib.blake2b(f"{rule_id}|{subscriber_id}|{basis}".encode(), digest_size=12)
    return "act-" + digest.hexdigest()


def quiet_until(at: float, tz: str, book: Rulebook) -> float | None:
    """If ``at`` falls in the subscriber's quiet hours, the next local end of them."""
    local = datetime.fromtimestamp(at, UTC).astimezone(zone(tz))
    minute = local.hour * 60 + local.minute
    start, end = book.quiet_start_min, book.quiet_end_min
    quiet = (minute >= start or minute < end) if start > end else (start <= minute < end)
    if not quiet:
        return None
    day = local.date() if minute < end else local.date() + timedelta(days=1)
    wake = datetime(day.year, day.month, day.day, end // 60, end % 60, tzinfo=zone(tz))
    return wake.timestamp()


_RANK = {Subscriber: 0, Profiled: 0, Complaint: 1}  # (Profiled: an upsert, slim)


def order_key(msg: Any) -> tuple[float, int]:
    """Event time, then records (profiles first) before verdicts at the same time.

    >>> order_key(Complaint("K1", "U1", 60.0, "other"))
    (60.0, 1)
    """
    return (msg.at, _RANK.get(type(msg), 2))


def care_order(msg: Any) -> tuple:
    """:func:`order_key`, then what tells messages of one time and rank apart (the
    incident, the call, the complaint), so that the order never depends on arrival.

    >>> care_order(Complaint("K1", "U1", 60.0, "other"))
    (60.0, 1, 0, 'K1', 0.0)
    """
    facts = getattr(msg, "facts", None)
    ref = (facts.incident_id if facts is not None else None) or getattr(
        msg, "call_id", None) or getattr(msg, "complaint_id", None) or ""
    return (msg.at, _RANK.get(type(msg), 2), _VERDICT_RANK.get(type(msg), 0), ref,
            getattr(msg, "duration_s", 0.0))


#: Verdicts of one time: an outage's hold-down decision before the drop notes it
#: explains (the site holds those notes back to its hold-down for this: care must know
#: who was told before it judges the drops).
_VERDICT_RANK = {Impact: 0, Escalation: 1, Restored: 2, DropNote: 3}


class SubscriberCare:
    """All care state of one subscriber."""

    __slots__ = ("profile", "name", "since", "prev", "deleted_at", "known_since",
                 "notified", "last_notice", "drops", "last_apology_at", "complaints", "contacts",
                 "cell_notices", "sent", "incidents", "impacts", "events")

    def __init__(self) -> None:
        self.profile: Profile | None = None
        self.name = ""  # for templates only; never logged
        self.since: float | None = None  # updated_at of the current profile
        self.prev: tuple | None = None  # (profile, name) before the last update
        self.deleted_at: float | None = None
        self.known_since: float | None = None
        # incident -> [notice time, escalated durations]; None until the first notice
        self.notified: dict[str, list] | None = None
        self.last_notice: tuple[float, tuple[str, ...]] | None = None  # (at, cells)
        # unexplained drops: (time, call id, note time, incident, area, region)
        self.drops: tuple[tuple, ...] = ()
        self.last_apology_at: float | None = None
        self.complaints = 0
        self.contacts: tuple[float, ...] = ()  # action times in the last day (contact cap)
        # rules with a cell cooldown: rule id -> ((cell, last action time), ...), the
        # cells it acted about within its cooldown
        self.cell_notices: dict[str, tuple] | None = None
        # for a care context: actions of the last day, (action_id, kind, channel,
        # event_time, send_after, rule_id, incident_id), and the incidents that impacted
        # them, id -> [kind, scope, area, start, cells, restored time or None]
        self.sent: tuple[tuple, ...] = ()
        self.incidents: dict[str, list] | None = None
        # the open incidents that impact them by the contract's rules (care.status)
        self.impacts: tuple[str, ...] = ()
        # regional events they were told of (inhibit.notice_when_notified_in_region), from
        # the first incident of the event that got no notice of its own: the incident
        # they were told of -> [region, {incident: [start, restored at or None]}, its
        # facts once restored]; the other incidents of the event got no notice, and
        # the restored notice waits for the last of them
        self.events: dict[str, list] | None = None

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        self.__init__()  # type: ignore[misc]  # slots a snapshot predates get their default
        for name, value in state[1].items():
            if name != "seen":  # a position history, in an older snapshot format
                setattr(self, name, value)

    def empty(self) -> bool:
        return (self.profile is None and self.deleted_at is None and not self.notified
                and not self.drops and not self.complaints and not self.impacts
                and not self.events)

    def only_profile(self) -> bool:
        """Does care know nothing of them but their profile (most of them, most of the
        time)? Then a :data:`Known` tuple holds all of it."""
        # (one C call fetches the slots; the tuples compare as all(==) would)
        return self.profile is not None and _OTHERS(self) == _DEFAULTS

    def compact(self) -> SubscriberCare | Packed:
        """A subscriber care knows nothing of but their profile: that profile
        :data:`Packed` in one bytes object (a tenth of the object's size); else ``self``."""
        if self.only_profile():
            return packed_of(self.known())
        return self

    def known(self) -> Known:
        """The profile, name, since (and known since) as a :data:`Known` tuple."""
        return (self.profile, self.name.encode(), self.since) + self.later()  # type: ignore[return-value]

    def later(self) -> Later:
        """A :data:`Known` tuple's tail: ``(known_since,)`` unless it is ``since``."""
        if self.known_since == self.since and self.since is not None:
            return ()
        return (self.known_since,)

    @classmethod
    def of(cls, known: Known | Packed) -> SubscriberCare:
        """The care state a :data:`Known` tuple (or its :data:`Packed` bytes) stands for."""
        if isinstance(known, bytes):
            known = known_of(known)
        care = cls()
        care.profile, care.name, care.since = known[0], known[1].decode(), known[2]
        care.known_since = known[3] if len(known) == 4 else known[2]
        return care

    @classmethod
    def of_row(cls, row: tuple[int, bytes, float | None, Later]) -> SubscriberCare:
        """The care state a row of :class:`~forewarn.dataflows.profile_rows.ProfileRows`
        (:meth:`~forewarn.dataflows.profile_rows.ProfileRows.get`) stands for."""
        number, name, since, later = row
        care = cls()
        care.profile, care.name, care.since = _NUMBERED[number], name.decode(), since
        care.known_since = later[0] if later else since
        return care

    def handle(self, sid: str, msg: Any, book: Rulebook, status: bool = False) -> list[CareOut]:
        """Apply one message; what it makes due (``status``: with :class:`CareStatus` when
        their current impact changes)."""
        if self.prev is not None and self.since is not None and self.since > msg.at \
                and isinstance(msg, Impact | Restored | Escalation | DropNote):
            # A verdict about time T judged on the profile in force at T, even when a
            # later update was already applied (verdicts may trail direct records).
            current = (self.profile, self.name)
            self.profile, self.name = self.prev
            try:
                return self._handle(sid, msg, book, status)
            finally:
                self.profile, self.name = current
        return self._handle(sid, msg, book, status)

    def _handle(self, sid: str, msg: Any, book: Rulebook, status: bool) -> list[CareOut]:
        if isinstance(msg, Subscriber | Profiled):
            if msg.op == "delete":
                self.deleted_at = msg.updated_at
            else:
                # the profile before this update's time (a second update of the same
                # time, or the same one again, leaves it as it is)
                if self.profile is not None and (self.since or 0.0) < msg.updated_at:
                    self.prev = (self.profile, self.name)
                self.profile = profile_of(msg, book.channel_order)
                self.name = msg.name or ""
                self.since = msg.updated_at
                self.deleted_at = None
                if self.known_since is None:
                    self.known_since = msg.updated_at
        elif isinstance(msg, Complaint):
            self.complaints += 1
            return [ComplaintSeen(sid, msg.event_time), self._context(sid, msg, book)]
        elif isinstance(msg, Impact):
            return _of_event(self._impact(sid, msg, book, status), msg)
        elif isinstance(msg, Restored):
            return _of_event(self._restored(sid, msg, book, status), msg)
        elif isinstance(msg, Escalation):
            return _of_event(self._escalation(sid, msg, book), msg)
        elif isinstance(msg, DropNote):
            return self._drop(sid, msg, book)
        return []

    # -- verdicts ------------------------------------------------------------------

    def _impact(self, sid: str, msg: Impact, book: Rulebook,
                status: bool = False) -> list[CareOut]:
        facts = msg.facts
        out: list[CareOut] = []
        self._remember(facts, msg.at)
        if getattr(msg, "trigger", HOLD_DOWN) == HOLD_DOWN \
                and facts.incident_id not in self.impacts:
            self.impacts += (facts.incident_id,)
            if status:
                out.append(self._status(sid, msg.at))
        if self.notified and facts.incident_id in self.notified:
            return out  # one contact per incident
        down = dict(facts.down_cells)
        latest = msg.seen  # their latest position at msg.at, on a down cell, unless moved
        moved = getattr(msg, "moved", False)  # (Impacts of an older format: False)
        trigger_at = getattr(msg, "trigger", HOLD_DOWN)
        back = trigger_at == REAPPEARED  # service is back
        # walk-ins, the expected and reappearances are not the contract's impacted: nothing follows
        # their action (no restored notice, no escalation), so nothing is kept for it
        untold = back or trigger_at in (WALK_IN, EXPECTED)
        if not untold and book.inhibit_notice_in_region:
            # (an area notice is not inhibited: it finds someone inside another dark
            # area an hour or more later, often after they came back into it)
            lead = self._same_event(msg, book.correlation.storm_window_s)
            if lead is not None:
                return out + self._inhibited(msg, lead, book, moved)

        def hold(turn: Turn) -> str | None:
            if self._told_within(msg.at, book.correlation.flapping_window_s, down):
                return "repeat_outage"  # the same cell again: flapping gets one notice at most
            if turn.rule.cell_cooldown_s and self._cell_cooling(turn.rule, msg.at, down):
                return "cell_cooldown"  # a verdict that reopened: the same problem
            return None

        def act(turn: Turn) -> Action:
            rule = turn.rule
            evidence = facts.evidence + (evidence_ref(*latest),)
            trigger = "sleeping" if facts.incident_kind == "degradation" else "outage"
            wake = None
            if not facts.confirmed and rule.action in book.defer_unconfirmed_kinds:
                wake = quiet_until(msg.at, self.profile.timezone, book)  # type: ignore[union-attr]
            action = self._act(sid, rule, facts.incident_id, facts.incident_id, evidence,
                               msg.at, facts.area, book, cell_down=not back,
                               exposure=(trigger, msg.at - facts.start_time,
                                         facts.scope == "site", msg.at - latest[0]),
                               send_after=wake)
            if not untold:
                self._told(rule, facts, msg.at, down, wake)
            return action

        return out + self._decide(self._rules_for(trigger_at, facts, msg.at, book,
                                                  first="moved_away" if moved else None),
                                  act, hold=hold)

    def _told(self, rule: Rule, facts: IncidentFacts, at: float, down: dict[str, float],
              wake: float | None) -> None:
        """They were told of an incident (an outage notice at ``at``, deferred to ``wake``
        or None): what its restored notice, its escalations, a regional event, flapping
        and the rule's cell cooldown look back on."""
        if self.notified is None:
            self.notified = {}
        # [notice time, escalated durations, deferred to (or None)]
        self.notified[facts.incident_id] = [at, [], wake]
        self.last_notice = (at, tuple(down))
        if rule.cell_cooldown_s:
            if self.cell_notices is None:
                self.cell_notices = {}
            told = {c: t for c, t in self._cells_told(rule).items()
                    if at - t < rule.cell_cooldown_s}
            told.update(dict.fromkeys(down, at))
            self.cell_notices[rule.id] = tuple(told.items())

    def _restored(self, sid: str, msg: Restored, book: Rulebook,
                  status: bool = False) -> list[CareOut]:
        facts = msg.facts
        known = self.incidents.get(facts.incident_id) if self.incidents else None
        if known is not None:
            known[5] = msg.at
        changed: list[CareOut] = []
        if facts.incident_id in self.impacts:
            self.impacts = tuple(i for i in self.impacts if i != facts.incident_id)
            if status:
                changed.append(self._status(sid, msg.at))
        evidence = facts.evidence
        lead = self._event_of(facts.incident_id)
        if lead is not None:  # one of a regional event they were told of
            assert self.events is not None
            event = self.events[lead]
            members = event[1]
            members[facts.incident_id][1] = msg.at
            if facts.incident_id == lead:
                event[2] = facts  # the incident they were told of, as it resolved
            lead_facts = event[2]
            if any(back is None for _, back in members.values()):
                return changed  # the restored notice waits for the last of them
            del self.events[lead]
            # the notice they got: its incident, rules and area (set by its restoration,
            # which came: it is one of them)
            facts = lead_facts
            evidence = lead_facts.evidence + tuple(
                f"incident:{i}" for i in sorted(members) if i != lead)
        told = self.notified.pop(facts.incident_id, None) if self.notified else None
        if told is None:
            return changed  # restored notices go to those who were told of the outage
        # A notice deferred to the morning: the restored notice goes no earlier than it.
        wake = told[2] if len(told) > 2 and told[2] is not None and told[2] > msg.at else None
        return changed + self._decide(
            self._rules_for("resolved", facts, msg.at, book, capped=False, silenced=False),
            lambda turn: self._act(sid, turn.rule, facts.incident_id, facts.incident_id,
                                   evidence, msg.at, facts.area, book, send_after=wake))

    # -- regional events (inhibit.notice_when_notified_in_region) --------------------

    def _same_event(self, msg: Impact, window_s: float) -> str | None:
        """The incident they were told of that is of the regional event ``msg``'s
        incident belongs to (``msg.event``: the region step's word, the event formed by
        then, with its children so far), while they wait for its restoration, and that
        began within ``window_s`` of it: None when it belongs to none, or they were told
        of no such incident. Two outages of one region that are not one regional event
        are never joined, nor an outage that joined a long-open event hours after its
        onset (the NOC's grouping) with one of that onset."""
        event = getattr(msg, "event", None)
        if event is None or not self.notified:
            return None
        children, start = event[1], msg.facts.start_time
        if self.events:  # an event they were told of, which others joined already
            for lead, (_, members, _) in sorted(self.events.items()):
                if any(i in children and back is None and abs(began - start) <= window_s
                       for i, (began, back) in members.items()):
                    return lead
        own = msg.facts.incident_id
        known = self.incidents or {}
        told = sorted(i for i in self.notified if i != own and i in children
                      and i in known and abs(known[i][3] - start) <= window_s)
        return told[0] if told else None

    def _event_of(self, incident_id: str) -> str | None:
        """The incident they were told of whose regional event holds ``incident_id``."""
        if not self.events:
            return None
        if incident_id in self.events:
            return incident_id
        for lead, (_, members, _) in self.events.items():
            if incident_id in members:
                return lead
        return None

    def _inhibited(self, msg: Impact, lead: str, book: Rulebook, moved: bool
                   ) -> list[CareOut]:
        """An incident of a regional event they were told of (``lead``): its outage
        notice is suppressed (``same_event``, evidence ``incident:<lead>``) and it joins
        the event, whose restored notice then waits for it."""
        facts = msg.facts
        joins: list[Turn] = []  # the rules that would have acted

        def hold(turn: Turn) -> str:
            joins.append(turn)
            return "same_event"

        out = self._decide(self._rules_for(HOLD_DOWN, facts, msg.at, book,
                                           first="moved_away" if moved else None),
                           None, hold=hold, incident=facts.incident_id,
                           evidence=(f"incident:{lead}",))
        if joins:
            if self.events is None:
                self.events = {}
            event = self.events.get(lead)
            if event is None:  # the first to join: the event of the incident told of
                # (its facts come with its restoration, before the event's last)
                known = (self.incidents or {}).get(lead)
                event = self.events[lead] = [
                    facts.region, {lead: [known[3] if known else None, None]}, None]
            event[1][facts.incident_id] = [facts.start_time, None]
        return out

    def _escalation(self, sid: str, msg: Escalation, book: Rulebook) -> list[CareOut]:
        facts = msg.facts
        told = self.notified.get(facts.incident_id) if self.notified else None
        if told is None and self.notified:  # told of it as one of a regional event:
            lead = self._event_of(facts.incident_id)  # once per event and duration
            told = self.notified.get(lead) if lead is not None else None
        if told is None or msg.duration_s in told[1]:
            return []  # once per incident, subscriber and duration; only to those told
        told[1].append(msg.duration_s)
        return self._decide(
            self._rules_for("duration", facts, msg.at, book, duration=msg.duration_s),
            lambda turn: self._act(sid, turn.rule, facts.incident_id, facts.incident_id,
                                   facts.evidence, msg.at, facts.area, book, cell_down=True,
                                   exposure=("escalation", msg.duration_s,
                                             facts.scope == "site", 0.0)))

    def _drop(self, sid: str, msg: DropNote, book: Rulebook) -> list[CareOut]:
        if msg.in_maintenance:
            return []  # planned work
        if book.inhibit_apology_when_notified and msg.incident_id and self.notified \
                and (msg.incident_id in self.notified or self._event_of(msg.incident_id)):
            return []  # inhibited: an outage they were told about explains it
        rules = book.drop_rules()
        if not rules:
            return []
        # Notes from different sites may arrive out of drop-time order: keep them sorted
        # and let the latest drop of a burst trigger a rule, so its action (id, time and
        # evidence) is the same in any arrival order. The note is added once, whatever
        # the number of rules, and kept as long as the widest window needs it.
        entry = (msg.drop_time, msg.call_id, msg.at, msg.incident_id, msg.area, msg.region)
        merged = tuple(sorted(self.drops + (entry,)))
        latest = merged[-1][0]
        widest = max(rule.drop_window_s for rule in rules)
        self.drops = tuple(d for d in merged if d[0] >= latest - widest)

        def act(turn: Turn) -> Action:
            drops = turn.found
            _, call_id, _, incident_id, area, _ = drops[-1]
            evidence = tuple(f"call:{d[1]}" for d in drops)
            action = self._act(sid, turn.rule, incident_id, call_id, evidence, turn.at, area,
                               book, exposure=("drops", 0.0, False, 0.0))
            self.last_apology_at = turn.at
            self.drops = ()
            return action

        return self._decide(self._bursts(rules, latest, msg.at, book), act)

    def _bursts(self, rules: Iterable[Rule], latest: float, at: float, book: Rulebook
                ) -> Iterator[Turn]:
        """The drop rules a burst of drops up to ``latest`` triggers, noted at ``at``:
        each with why it may not act (its cooldown first), when care knows of its burst,
        and the burst (looked at as each turn comes: a rule that acts takes the drops)."""
        for rule in rules:
            drops = tuple(d for d in self.drops if d[0] >= latest - rule.drop_window_s)
            if len(drops) < rule.drop_count:
                continue  # too few (or none left: a rule before this one acted on them)
            _, _, noted, _, _, region = drops[-1]
            # when care knows of the burst: the note that completed it may be an earlier
            # drop's, noted later (held back to an outage's hold-down)
            when = max(noted, at)
            cooling = self.last_apology_at is not None \
                and when - self.last_apology_at < rule.cooldown_s
            why = self._gate(rule, when, book, region, first="cooldown" if cooling else None)
            if why is not NOT_FOR_THEM:
                yield Turn(rule, why, when, drops)

    # -- care context ---------------------------------------------------------------

    def _recent_incidents(self, since: float) -> dict[str, list]:
        """The incidents that impacted them still open, or restored after ``since``."""
        return {i: v for i, v in (self.incidents or {}).items()
                if v[5] is None or v[5] > since}

    def _remember(self, facts: IncidentFacts, at: float) -> None:
        """An incident impacts them: kept a day for the care context."""
        incidents = self._recent_incidents(at - CONTEXT_S)
        if facts.incident_id not in incidents:
            incidents[facts.incident_id] = [
                facts.incident_kind, facts.scope, facts.area, facts.start_time,
                tuple(c for c, _ in facts.down_cells), None]
        self.incidents = incidents

    def _status(self, sid: str, at: float) -> CareStatus:
        """Their current impact (:class:`CareStatus`), after a change."""
        known = self.incidents or {}
        return CareStatus(sid, at, tuple((inc, *known[inc][:5]) for inc in self.impacts
                                         if inc in known))

    def _context(self, sid: str, msg: Complaint, book: Rulebook) -> CareContext:
        """What care knows when ``sid`` complains (:class:`CareContext`)."""
        at, since = msg.event_time, msg.event_time - CONTEXT_S
        recent = self._recent_incidents(since)
        incidents = tuple((inc, *v) for inc, v in sorted(recent.items(),
                                                         key=lambda kv: (kv[1][3], kv[0])))
        steps = []
        for inc, told in sorted((self.notified or {}).items()):
            known = recent.get(inc)
            if known is None:
                continue
            kind, start = known[0], known[3]
            due = [d for d in book.durations(kind) if start + d > at and d not in told[1]]
            if due:
                steps += [(inc, rule.id, rule.action, start + due[0])
                          for rule in book.incident_rules("duration", kind)
                          if rule.min_duration_s == due[0]]
        return CareContext(
            complaint_id=msg.complaint_id, subscriber_id=sid, at=at, category=msg.category,
            channel=msg.channel, incidents=incidents,
            sent=tuple(x for x in self.sent if x[3] > since),
            drops=tuple((d[1], d[0], d[3]) for d in self.drops if d[0] > since),
            next_steps=tuple(sorted(steps, key=lambda x: (x[3], x[0], x[1]))))

    # -- policy ---------------------------------------------------------------------

    def _rules_for(self, point: str, facts: IncidentFacts, at: float, book: Rulebook, *,
                   first: str | None = None, capped: bool = True, silenced: bool = True,
                   duration: float | None = None) -> Iterator[Turn]:
        """The incident rules acting at trigger ``point`` (of ``duration``, for escalations)
        whose trigger matches ``facts`` and whose audience holds this subscriber, each with
        why it may not act now (None: it may; see :meth:`_gate`): the one loop of trigger,
        gate and audience behind every verdict."""
        for rule in book.incident_rules(point, facts.incident_kind):
            if (duration is not None and rule.min_duration_s != duration) \
                    or not _triggers(rule, facts):
                continue
            why = self._gate(rule, at, book, facts.region, first=first, capped=capped,
                             silence=facts if silenced else None)
            if why is not NOT_FOR_THEM:
                yield Turn(rule, why, at)

    def _decide(self, turns: Iterable[Turn], act: Callable[[Turn], Action] | None, *,
                hold: Callable[[Turn], str | None] | None = None,
                incident: str | None = None, evidence: tuple[str, ...] = ()
                ) -> list[CareOut]:
        """The one loop behind every verdict: each rule's turn (trigger, gate and audience:
        :meth:`_rules_for`, :meth:`_bursts`), then ``hold`` (a reason the verdict finds
        for a rule that may act), ends in a :class:`Suppressed` with its reason (about
        ``incident``, stopped by ``evidence``) or in ``act``'s action. Turns are taken
        one at a time: a rule's gate sees the actions of the rules before it (the contact
        cap, a cooldown). ``act`` None: every rule is held (``hold`` gives a reason)."""
        out: list[CareOut] = []
        for turn in turns:
            why = turn.why
            if why is None and hold is not None:
                why = hold(turn)
            if why is not None:
                rule = turn.rule
                out.append(Suppressed(rule.id, rule.action, why, turn.at, incident, evidence))
                continue
            assert act is not None
            out.append(act(turn))
        return out

    def _told_within(self, at: float, window_s: float, cells: dict[str, float]) -> bool:
        """Told of an outage on one of these cells less than ``window_s`` ago?"""
        if self.last_notice is None:
            return False
        told_at, told_cells = self.last_notice
        return at - told_at <= window_s and any(c in cells for c in told_cells)

    def _cell_cooling(self, rule: Rule, at: float, cells: dict[str, float]) -> bool:
        """Did ``rule`` act for them about one of these cells less than its
        ``cell_cooldown_s`` ago?"""
        told = self._cells_told(rule)
        return any(at - told[c] < rule.cell_cooldown_s for c in cells if c in told)

    def _cells_told(self, rule: Rule) -> dict[str, float]:
        """The cells ``rule`` acted about for them, each with the time it last did."""
        last = self.cell_notices.get(rule.id) if self.cell_notices else None
        if not last:
            return {}
        if not isinstance(last[0], tuple):  # an older snapshot's (time, cells)
            return dict.fromkeys(last[1], last[0])
        return dict(last)

    def _gate(self, rule: Rule, at: float, book: Rulebook, region: str | None, *,
              first: str | None = None, capped: bool = True,
              silence: IncidentFacts | None = None) -> str | None:
        """Whether ``rule`` may act for this subscriber at ``at``: ``None`` if it may, a
        suppression reason if not, :data:`NOT_FOR_THEM` if the rule's audience leaves
        them out (nothing to record). Checked in order: ``first`` (a reason the caller
        found), :meth:`_blocked`, the audience, then silences of ``silence``'s area."""
        why = first or self._blocked(rule, at, book, region, capped)
        if why is None and not self._audience(rule, region):
            return NOT_FOR_THEM
        if why is None and silence is not None:
            why = _silenced(book, silence, at)
        return why

    def _blocked(self, rule: Rule, at: float, book: Rulebook, region: str | None,
                 capped: bool = True) -> str | None:
        """Why no action may go out at ``at`` at all (None: it may)."""
        if self.profile is None or (self.known_since is not None and self.known_since > at):
            return "unknown_subscriber"
        if self.deleted_at is not None and self.deleted_at <= at:
            return "deleted_subscriber"
        if not self.profile.channels:
            return "no_consent"
        if capped and book.max_contacts_per_day is not None:
            recent = tuple(t for t in self.contacts if t > at - 86400.0)
            self.contacts = recent
            if len(recent) >= book.max_contacts_per_day:
                return "contact_limit"
        return None

    def _audience(self, rule: Rule, region: str | None) -> bool:
        p = self.profile
        assert p is not None
        return rule.audience.matches(segment=p.segment, plan=p.plan, tags=p.tags,
                                     language=p.language, tenure=p.tenure,
                                     complaints=self.complaints, region=region)

    def _act(self, sid: str, rule: Rule, incident: str | None, basis: str,
             evidence: tuple[str, ...], at: float, area: str, book: Rulebook,
             cell_down: bool = False, exposure: tuple | None = None,
             send_after: float | None = None) -> Action:
        """The action of ``rule``; ``send_after`` when the caller deferred it (quiet
        hours otherwise apply to the rulebook's ``quiet_hours.defer`` kinds)."""
        p = self.profile
        assert p is not None
        # contacts of the last day: the model's input, and all that is kept of them (the
        # contact cap looks no further back)
        recent = tuple(t for t in self.contacts if t > at - 86400.0)
        features = None
        if exposure is not None:  # what the propensity model will score (in dispatch)
            trigger, outage_s, site_outage, age_s = exposure
            local = datetime.fromtimestamp(at, UTC).astimezone(zone(p.timezone))
            features = CareFeatures(
                segment=p.segment, plan=p.plan, tenure_months=float(p.tenure or 0),
                trigger=trigger, lost_s_24h=0.0, outage_s=outage_s, site_outage=site_outage,
                # verdicts of several sites reach a subscriber in no fixed order: a later
                # drop may be known already (not counted); contacts are counted by
                # dispatch, which sees every action in event-time order
                drops_24h=sum(1 for d in self.drops if at - 86400.0 < d[0] <= at),
                contacts_24h=0,
                hour=local.hour, position_age_s=age_s)
        if send_after is None and rule.action in book.defer_kinds:
            send_after = quiet_until(at, p.timezone, book)
        offer = rule.offer
        fields = {"name": self.name or "there", "area": area, "plan": p.plan,
                  "incident_id": incident or "", "offer": _offer_text(offer)}
        self.contacts = recent + (at,)
        act_id = action_id(rule.id, sid, basis)
        channel = _channel(p.channels, rule, cell_down)
        self.sent = tuple(x for x in self.sent if x[3] > at - CONTEXT_S) + (
            (act_id, rule.action, channel, at, send_after, rule.id, incident),)
        return Action(
            action_id=act_id,
            subscriber_id=sid,
            action_kind=rule.action,
            channel=channel,
            language=p.language,
            message=book.render(rule, p.language, fields),
            rule_id=rule.id,
            rule_version=rule.version,
            incident_id=incident,
            evidence=evidence,
            event_time=at,
            send_after=send_after,
            offer=offer,
            segment=p.segment,
            features=features,
        )



#: Every slot of :class:`SubscriberCare` but those a :data:`Known` tuple keeps, with its
#: value in a new one: a care state equal to these in all is just a profile (a slot added
#: later is covered without a change here).
_UNKNOWN = tuple((name, getattr(SubscriberCare(), name)) for name in SubscriberCare.__slots__
                 if name not in ("profile", "name", "since", "known_since"))
_OTHERS = attrgetter(*(name for name, _ in _UNKNOWN))
_DEFAULTS = tuple(default for _, default in _UNKNOWN)


class CareShard:
    """The care state of some subscribers (a shard of them), by id: the few with care
    state beyond a profile as :class:`SubscriberCare` objects (``subscribers``), the
    others as rows of columns (``profiles``, :class:`~forewarn.dataflows.profile_rows.ProfileRows`).

    >>> from forewarn.model import Complaint
    >>> from forewarn.rules.rulebook import load_rulebook
    >>> shard = CareShard()
    >>> seen, context = shard.handle_batch([Complaint("K1", "U1", 60.0, "other")],
    ...                                    load_rulebook())
    >>> seen, context.forewarned
    (ComplaintSeen(subscriber_id='U1', at=60.0), False)
    >>> shard.subscribers["U1"].complaints, len(shard)
    (1, 1)
    """

    __slots__ = ("subscribers", "profiles")

    def __init__(self) -> None:
        # the subscribers with care state beyond a profile (a notice, a complaint, ...)
        self.subscribers: dict[str, SubscriberCare] = {}
        # those care knows only the profile of (SubscriberCare.only_profile): most
        self.profiles = ProfileRows()

    def __len__(self) -> int:
        return len(self.subscribers) + len(self.profiles)

    def care(self, sid: str) -> SubscriberCare | None:
        """``sid``'s care state (a copy when only their profile is kept), or ``None``."""
        care = self.subscribers.get(sid)
        if care is None:
            row = self.profiles.row(sid)
            if row is not None:
                return SubscriberCare.of_row(self.profiles.get(row))
        return care

    def known(self) -> dict[str, SubscriberCare | Known]:
        """The subscribers as a snapshot keeps them: profiles as :data:`Known` tuples."""
        known: dict[str, SubscriberCare | Known] = dict(self.subscribers)
        for sid, number, name, since, later in self.profiles.items():
            known[sid] = (_NUMBERED[number], name, since) + later  # type: ignore[assignment]
        return known

    def restore(self, saved: dict[str, SubscriberCare | Known]) -> None:
        """Take the subscribers of a snapshot (:meth:`known`)."""
        self.subscribers = {}
        self.profiles = rows = ProfileRows()
        for sid, care in saved.items():  # (exact tuples or care states: thaw_care_known)
            if isinstance(care, tuple):
                rows.add(sid, profile_number(care[0]), care[1], care[2], _tail(care))
            else:
                self.subscribers[sid] = care

    def handle_batch(self, msgs: Iterable, book: Rulebook, status: bool = False
                     ) -> list[CareOut]:
        """Apply messages in :func:`order_key` order (taken one at a time: an iterator
        does); return what they make due."""
        out: list[CareOut] = []
        subs, rows = self.subscribers, self.profiles
        find = rows.index.find  # (the table keeps its index object: good for the batch)
        for msg in msgs:
            sid = msg.subscriber_id
            care = subs.get(sid)
            row = None
            if care is None:
                row = find(sid)
                care = SubscriberCare() if row is None else SubscriberCare.of_row(rows.get(row))
            out += care.handle(sid, msg, book, status)
            if care.only_profile():
                number = profile_number(care.profile)  # type: ignore[arg-type]
                if row is None:
                    subs.pop(sid, None)
                    rows.add(sid, number, care.name.encode(), care.since, care.later())
                else:
                    rows.write(row, number, care.name.encode(), care.since, care.later())
            elif row is not None:
                rows.drop(row)
                if not care.empty():
                    subs[sid] = care
            elif care.empty():
                subs.pop(sid, None)
            else:
                subs[sid] = care
        return out


def _tail(known: Known) -> Later:
    """A :data:`Known` tuple's tail: ``(known_since,)``, none when it is ``since``
    (:func:`packed_of` makes the same choice)."""
    if len(known) == 3 or (known[3] == known[2] and known[2] is not None):
        return ()
    return (known[3],)


def _of_event(out: list[CareOut], msg: Impact | Restored | Escalation) -> list[CareOut]:
    """The actions of a verdict about an incident of a regional event, marked with it
    (``Action.regional_event``: dispatch paces them when the budgets say so)."""
    event = getattr(msg, "event", None)
    if event is None or not out:
        return out
    return [replace(x, regional_event=event[0]) if type(x) is Action else x for x in out]


def _triggers(rule: Rule, facts: IncidentFacts) -> bool:
    if rule.scopes and facts.scope not in rule.scopes:
        return False
    return not rule.causes or bool(set(rule.causes) & set(facts.causes))


def _silenced(book: Rulebook, facts: IncidentFacts, at: float) -> str | None:
    return "silenced" if book.silenced(facts.site_id, facts.region, at) else None


def _channel(consented: tuple[str, ...], rule: Rule, cell_down: bool) -> str:
    """The first consented channel by the rule's order (else the subscriber's)."""
    order = [c for c in rule.channels.order if c in consented] or list(consented)
    if cell_down and rule.channels.avoid_down_cell:
        off_cell = [c for c in order if c not in CELL_CHANNELS]
        order = off_cell or order  # nothing else consented: their own channel, when back
    return order[0]


def _offer_text(offer: dict | None) -> str:
    if not offer:
        return ""
    if "amount_gb" in offer:
        return f"{offer['amount_gb']} GB"
    return str(offer.get("kind", "an offer"))


pickle_by_fields(__name__)  # verdicts and actions cross workers: pickled by their field values
