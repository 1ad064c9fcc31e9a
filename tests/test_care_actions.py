"""The care stage's actions, whole: every field of each verdict kind's action, and every
suppression with its reason, driven through :meth:`CareShard.handle_batch` (no Bytewax).

Expected values come from the default rulebook (``rules/default/rulebook.yaml``) and the
contract: ids are the contract's pure function of rule, subscriber and incident (or the
triggering call), messages the rule's template, times the verdict's."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import replace

import pytest

from forewarn.codec import parse_time
from forewarn.dataflows import care
from forewarn.dataflows.care import (
    CareContext,
    CareShard,
    ComplaintSeen,
    Profile,
    SubscriberCare,
    Suppressed,
    order_key,
    profile_of,
    quiet_until,
)
from forewarn.dataflows.messages import (
    REAPPEARED,
    WALK_IN,
    DropNote,
    Escalation,
    Impact,
    IncidentFacts,
    Restored,
)
from forewarn.dataflows.propensity import CareFeatures
from forewarn.model import Action, Channel, Complaint, Subscriber
from forewarn.rules.rulebook import Audience, ChannelPolicy, Rule, Rulebook, Silence, load_rulebook

#: The default rulebook, without its one-event-per-region inhibition: these tests build
#: several incidents from one FACTS (one region, one start), which the default would take
#: for one regional event; that inhibition has tests of its own (test_storm_care.py).
BOOK = replace(load_rulebook(), inhibit_notice_in_region=False)
T0 = parse_time("2026-11-23T10:00:00Z")  # 10:00 in London (UTC+0 in November)
HOUR, DAY = 3600.0, 86400.0
ALARMS = ("alarm:A1", "alarm:A2")
FACTS = IncidentFacts("INC-S1-1", "outage", "S1", "Riverside", T0,
                      (("S1-C1", T0), ("S1-C2", T0 + 30)), ALARMS, region="north",
                      causes=("transmitterFailure",))
CREDIT = {"kind": "data_credit", "amount_gb": 5, "valid_days": 30}

NOTICE_EN = "Hi Ada, we know about a network problem around Riverside and are fixing it. " \
    "Sorry for the trouble."
RESTORED_EN = "Hi Ada, service around Riverside is back. Thank you for your patience."
APOLOGY_EN = "Hi Ada, sorry about your dropped calls. We're looking into the network " \
    "around Riverside."


@pytest.fixture(autouse=True)
def _fresh_profiles(monkeypatch):
    """Profiles are shared process-wide (memo and shapes): each test builds its own."""
    monkeypatch.setattr(care, "_PROFILES", {})
    monkeypatch.setattr(care, "_PROFILE_OF", {})


def aid(rule_id: str, sid: str, basis: str) -> str:
    """The contract's action id: a digest of rule, subscriber and incident (or evidence)."""
    text = f"{rule_id}|{sid}|{basis}".encode()
    return "act-" + hashlib.blake2b(text, digest_size=12).hexdigest()


def upsert(sid: str = "U", at: float = T0 - HOUR, *, language: str = "en",
           tz: str = "Europe/London", segment: str = "consumer",
           consent: tuple[str, ...] = ("sms", "email"), preferred: tuple[str, ...] = ("email",),
           name: str | None = "Ada", plan: str | None = "gold", tenure: int | None = 14,
           tags: tuple[str, ...] = ()) -> Subscriber:
    channels = tuple(Channel(c, f"{c}-address", c in consent) for c in ("push", "sms", "email"))
    return Subscriber(sid, "upsert", at, language=language, timezone=tz, segment=segment,
                      channels=channels, name=name, plan=plan, tenure_months=tenure, tags=tags,
                      preferred_channels=preferred)


def impact(at: float = T0 + 120, facts: IncidentFacts = FACTS, *, sid: str = "U",
           seen: tuple = (T0 - 300, "S1-C1", None), **kw) -> Impact:
    return Impact(sid, facts, at, seen, **kw)


def action(rule: str, kind: str, at: float, *, basis: str = "INC-S1-1",
           incident: str | None = "INC-S1-1", message: str = NOTICE_EN,
           evidence: tuple[str, ...] = ALARMS, channel: str = "email", language: str = "en",
           send_after: float | None = None, offer: dict | None = None,
           segment: str = "consumer", version: int = 1, sid: str = "U") -> Action:
    return Action(action_id=aid(rule, sid, basis), subscriber_id=sid, action_kind=kind,
                  channel=channel, language=language, message=message, rule_id=rule,
                  rule_version=version, incident_id=incident, evidence=evidence,
                  event_time=at, send_after=send_after, offer=offer, segment=segment)


def features(trigger: str, hour: int, *, outage_s: float = 0.0, site: bool = False,
             drops: int = 0, contacts: int = 0, age_s: float = 0.0, segment: str = "consumer",
             plan: str = "gold", tenure: float = 14.0) -> CareFeatures:
    return CareFeatures(segment=segment, plan=plan, tenure_months=tenure, trigger=trigger,
                        lost_s_24h=0.0, outage_s=outage_s, site_outage=site, drops_24h=drops,
                        contacts_24h=contacts, hour=hour, position_age_s=age_s)


def with_rules(*rules: Rule, book: Rulebook = BOOK, keep: bool = False, **kw) -> Rulebook:
    """The rulebook with only ``rules`` (or with them added, ``keep``), and ``kw`` changed."""
    return replace(book, rules=(book.rules if keep else ()) + rules, **kw)


def rule(rid: str = "r", *, action: str = "outage_notice", at: str | None = "hold_down",
         kinds: tuple[str, ...] = ("outage",), template: str = "$name|$area|$plan|"
         "$incident_id|$offer", **kw) -> Rule:
    return Rule(id=rid, version=7, owner="test", description="test", action=action,
                templates={"en": template}, incident_kinds=kinds, at=at, **kw)


def note(call: str, drop_time: float, *, incident: str | None = None,
         maintenance: bool = False, area: str = "Riverside", region: str | None = "north",
         delay: float = 60.0, sid: str = "U") -> DropNote:
    return DropNote(sid, call, "S1-C1", drop_time, incident, maintenance, area,
                    drop_time + delay, region)


def run(shard: CareShard, book: Rulebook, *msgs) -> list:
    return shard.handle_batch(list(msgs), book)


def kinds(out: list) -> list[tuple]:
    return [(o.rule_id, o.reason) if isinstance(o, Suppressed) else (o.rule_id, o.action_kind)
            for o in out]


# ---- an outage, whole: notice, compensation at 4 h, restored -------------------------------


def test_an_outage_notice_compensation_and_restored_notice_whole():
    shard = CareShard()
    out = run(shard, BOOK, upsert(), impact())
    # channels: preferred email, then the rulebook's push, sms, email; push unconsented
    assert out == [action("outage-notice", "outage_notice", T0 + 120,
                          evidence=ALARMS + (f"location:S1-C1@{int(T0 - 300)}",))]
    assert out[0].features == features("outage", 10, outage_s=120.0, age_s=420.0)

    assert run(shard, BOOK, Escalation("U", FACTS, 2 * HOUR, T0 + 2 * HOUR)) == []  # no rule
    out = run(shard, BOOK, Escalation("U", FACTS, 4 * HOUR, T0 + 4 * HOUR))
    assert out == [action(
        "long-outage-compensation", "compensation", T0 + 4 * HOUR, offer=CREDIT,
        message="Hi Ada, sorry the outage around Riverside is taking long. We've added 5 GB "
                "of data to your account.")]
    # (contacts of the last day: counted by dispatch, in event-time order)
    assert out[0].features == features("escalation", 14, outage_s=4 * HOUR)
    # once per incident, subscriber and duration
    assert run(shard, BOOK, Escalation("U", FACTS, 4 * HOUR, T0 + 4 * HOUR + 60)) == []

    out = run(shard, BOOK, Restored("U", FACTS, T0 + 5 * HOUR))
    assert out == [action("restored-notice", "restored_notice", T0 + 5 * HOUR,
                          message=RESTORED_EN)]
    assert out[0].features is None  # no exposure: nothing for the model to score
    assert run(shard, BOOK, Restored("U", FACTS, T0 + 5 * HOUR + 60)) == []  # once
    assert run(shard, BOOK, Escalation("U", FACTS, 8 * HOUR, T0 + 8 * HOUR)) == []


def test_the_action_id_is_the_contracts_digest():
    out = run(CareShard(), BOOK, upsert("SUB1"),
              impact(facts=replace(FACTS, incident_id="INC-S1-20261123T101500"), sid="SUB1"))
    assert out[0].action_id == "act-b50ef37c244a5984cf9faa7d"


def test_a_site_outage_and_a_night_compensation_deferred_to_the_morning():
    start = parse_time("2026-11-23T19:00:00Z")  # 4 h later: 23:00 in London
    facts = replace(FACTS, start_time=start, scope="site")
    shard = CareShard()
    out = run(shard, BOOK, upsert(tenure=None, plan=None), impact(start + 200, facts,
                                                                   seen=(start - 10, "S1-C2",
                                                                         "call:K7")))
    assert out[0].evidence == ALARMS + ("call:K7",)
    assert out[0].features == features("outage", 19, outage_s=200.0, site=True, age_s=210.0,
                                       plan="", tenure=0.0)
    out = run(shard, BOOK, Escalation("U", facts, 4 * HOUR, start + 4 * HOUR))
    morning = parse_time("2026-11-24T08:00:00Z")
    assert [(a.action_kind, a.send_after, a.event_time) for a in out] == [
        ("compensation", morning, start + 4 * HOUR)]
    assert out[0].features == features("escalation", 23, outage_s=4 * HOUR, site=True,
                                       plan="", tenure=0.0)


@pytest.mark.parametrize("segment", ["vip", "business"])
def test_vip_and_business_get_a_care_callback_at_once_even_at_night(segment):
    start = parse_time("2026-11-23T19:00:00Z")
    facts = replace(FACTS, start_time=start)
    shard = CareShard()
    run(shard, BOOK, upsert(segment=segment, name="Bo"), impact(start + 120, facts))
    out = run(shard, BOOK, Escalation("U", facts, 4 * HOUR, start + 4 * HOUR))
    # no compensation (consumers only) and nothing recorded for it: not their rule
    assert out == [action(
        "long-outage-care-callback", "care_callback", start + 4 * HOUR, segment=segment,
        message="Hi Bo, a care specialist will call you about the outage around Riverside.")]


def test_a_consumer_gets_no_care_callback_and_only_the_told_get_compensation():
    shard = CareShard()
    run(shard, BOOK, upsert("U"), upsert("V"), impact())
    out = run(shard, BOOK, Escalation("U", FACTS, 4 * HOUR, T0 + 4 * HOUR),
              Escalation("V", FACTS, 4 * HOUR, T0 + 4 * HOUR))
    assert kinds(out) == [("long-outage-compensation", "compensation")]
    assert out[0].subscriber_id == "U"


def test_the_message_in_their_language_else_english():
    shard = CareShard()
    out = run(shard, BOOK, upsert("F", language="fr", name="Zoé"), impact(sid="F"),
              upsert("I", language="it"), impact(sid="I"))
    assert [(a.language, a.message) for a in out] == [
        ("fr", "Bonjour Zoé, nous savons qu'il y a un problème de réseau autour de Riverside "
               "et nous le réparons."),
        ("it", NOTICE_EN)]


# ---- restored notices after a deferred notice ------------------------------------------------


def test_a_restored_notice_goes_no_earlier_than_its_deferred_outage_notice():
    night = parse_time("2026-11-23T23:30:00Z")
    morning = parse_time("2026-11-24T08:00:00Z")
    sleeping = IncidentFacts("DEG-1", "degradation", "S1", "Riverside", night - 900,
                             (("S1-C1", night - 900),), ("traffic:S1-C1",), confirmed=False)
    for restored_at, send_after in ((morning - 1, morning), (morning, None),
                                    (morning + 60, None)):
        shard = CareShard()
        out = run(shard, BOOK, upsert(), impact(night, sleeping, seen=(night - 1000, "S1-C1",
                                                                        None)),
                  Restored("U", sleeping, restored_at))
        assert out == [
            action("silent-failure-notice", "outage_notice", night, basis="DEG-1",
                   incident="DEG-1", version=2, send_after=morning,
                   evidence=("traffic:S1-C1", f"location:S1-C1@{int(night - 1000)}"),
                   message="Hi Ada, we've found a network problem around Riverside and are "
                           "fixing it. Sorry for the trouble."),
            action("restored-notice", "restored_notice", restored_at, basis="DEG-1",
                   incident="DEG-1", evidence=("traffic:S1-C1",), send_after=send_after,
                   message=RESTORED_EN)], restored_at
        assert out[0].features == features("sleeping", 23, outage_s=900.0, age_s=1000.0)


# ---- dropped calls ----------------------------------------------------------------------------


def test_a_drop_apology_whole_then_its_cooldown():
    shard = CareShard()
    first = note("K1", T0 + 100)
    assert run(shard, BOOK, upsert(), first) == []
    second = note("K2", T0 + 1900)  # exactly the 30-minute window after the first
    out = run(shard, BOOK, second)
    assert out == [action("dropped-call-apology", "apology", second.at, basis="K2",
                          incident=None, evidence=("call:K1", "call:K2"), message=APOLOGY_EN)]
    assert out[0].features == features("drops", 10, drops=2)
    apology_at = second.at

    # two more the same day: held back by the one-a-day cooldown, at the latest note's time
    out = run(shard, BOOK, note("K3", T0 + 3000), note("K4", T0 + 3100, area="Hilltop"))
    assert out == [Suppressed("dropped-call-apology", "apology", "cooldown", T0 + 3160)]
    # exactly a day after the apology: the cooldown is over
    out = run(shard, BOOK, note("K5", apology_at + DAY - 200),
              note("K6", apology_at + DAY - 90, area="Hilltop", delay=90))
    assert out == [action("dropped-call-apology", "apology", apology_at + DAY, basis="K6",
                          incident=None, evidence=("call:K5", "call:K6"),
                          message=APOLOGY_EN.replace("Riverside", "Hilltop"))]
    # the first apology, exactly a day old, is no longer among the day's contacts
    assert out[0].features == features("drops", 10, drops=2)


def test_drops_further_apart_than_the_window_get_nothing():
    shard = CareShard()
    out = run(shard, BOOK, upsert(), note("K1", T0), note("K2", T0 + 1801), note("K3", T0 + 3700))
    assert out == []
    assert [d[1] for d in shard.subscribers["U"].drops] == ["K3"]  # the window's drops only


def test_a_night_apology_waits_for_the_morning():
    night = parse_time("2026-11-23T22:30:00Z")
    out = run(CareShard(), BOOK, upsert(), note("K1", night), note("K2", night + 60))
    assert [(a.action_kind, a.send_after) for a in out] == [
        ("apology", parse_time("2026-11-24T08:00:00Z"))]
    assert out[0].features == features("drops", 22, drops=2)


def test_drops_in_maintenance_or_explained_by_a_told_outage_get_no_apology():
    shard = CareShard()
    out = run(shard, BOOK, upsert(), note("K1", T0, maintenance=True),
              note("K2", T0 + 60, maintenance=True), note("K3", T0 + 120))
    assert out == []  # planned work: not even counted
    shard = CareShard()
    out = run(shard, BOOK, upsert(), impact(T0 + 120), note("K1", T0 + 130, incident="INC-S1-1"),
              note("K2", T0 + 140, incident="INC-S1-1"))
    assert kinds(out) == [("outage-notice", "outage_notice")]  # inhibited by the notice
    # an outage they were not told of explains nothing to them
    out = run(shard, BOOK, note("K3", T0 + 150, incident="INC-S9-1"),
              note("K4", T0 + 160, incident="INC-S9-1"))
    assert [(a.action_kind, a.incident_id, a.evidence) for a in out] == [
        ("apology", "INC-S9-1", ("call:K3", "call:K4"))]


def test_without_the_inhibition_a_told_outage_still_gets_its_apology():
    book = replace(BOOK, inhibit_apology_when_notified=False)
    out = run(CareShard(), book, upsert(), impact(T0 + 120),
              note("K1", T0 + 130, incident="INC-S1-1"), note("K2", T0 + 140, incident="INC-S1-1"))
    assert [(a.action_kind, a.incident_id, a.action_id) for a in out] == [
        ("outage_notice", "INC-S1-1", aid("outage-notice", "U", "INC-S1-1")),
        ("apology", "INC-S1-1", aid("dropped-call-apology", "U", "K2"))]


def test_a_drop_rule_whose_audience_leaves_them_out_records_nothing_and_keeps_the_drops():
    drops = replace(BOOK.rule("dropped-call-apology"), audience=Audience(regions=("south",)))
    book = with_rules(drops)
    shard = CareShard()
    assert run(shard, book, upsert(), note("K1", T0), note("K2", T0 + 60)) == []
    assert len(shard.subscribers["U"].drops) == 2
    out = run(shard, book, note("K3", T0 + 120, region="South"))  # the latest drop's region
    assert [(a.action_kind, a.evidence) for a in out] == [
        ("apology", ("call:K1", "call:K2", "call:K3"))]
    assert shard.subscribers["U"].drops == ()


def test_drops_of_an_unknown_subscriber_are_suppressed():
    shard = CareShard()
    out = run(shard, BOOK, note("K1", T0), note("K2", T0 + 60))
    assert out == [Suppressed("dropped-call-apology", "apology", "unknown_subscriber", T0 + 120)]


# ---- walk-ins, reappearances and the channel policy -------------------------------------------


def test_a_walk_in_gets_an_area_notice_and_nothing_follows_it():
    shard = CareShard()
    seen = (T0 - 2000, "S2-C1", "call:K9")
    out = run(shard, BOOK, upsert(), impact(T0 + 4380, seen=seen, trigger=WALK_IN))
    assert out == [action(
        "walk-in-notice", "area_notice", T0 + 4380, evidence=ALARMS + ("call:K9",),
        message="Hi Ada, if you are around Riverside: we know about a network problem there "
                "and are fixing it. Sorry for the trouble.")]
    assert out[0].features == features("outage", 11, outage_s=4380.0, age_s=6380.0)
    assert run(shard, BOOK, Escalation("U", FACTS, 4 * HOUR, T0 + 4 * HOUR)) == []
    assert run(shard, BOOK, Restored("U", FACTS, T0 + 5 * HOUR)) == []
    # on the down cell later: the outage notice (the area notice is no outage notice)
    out = run(shard, BOOK, impact(T0 + 5 * HOUR - 60))
    assert kinds(out) == [("outage-notice", "outage_notice")]


def test_channels_off_the_down_cell_while_it_is_down():
    off = ChannelPolicy(avoid_down_cell=True)
    book = with_rules(
        rule("hold", channels=off), rule("walk", at="walk_in", channels=off),
        rule("back", at="reappeared", channels=off),
        rule("fixed", at="resolved", action="restored_notice", channels=off),
        rule("long", at="duration", action="compensation", min_duration_s=4 * HOUR,
             channels=off))
    shard = CareShard()
    # push first (the rulebook's order), then email
    run(shard, book, upsert(consent=("push", "email"), preferred=()))
    walk = run(shard, book, impact(T0 + 100, trigger=WALK_IN))
    back = run(shard, book, impact(T0 + 110, trigger=REAPPEARED))
    hold = run(shard, book, impact(T0 + 120))
    long = run(shard, book, Escalation("U", FACTS, 4 * HOUR, T0 + 4 * HOUR))
    fixed = run(shard, book, Restored("U", FACTS, T0 + 5 * HOUR))
    assert [(a.rule_id, a.channel) for a in walk + back + hold + long + fixed] == [
        ("walk", "email"), ("back", "push"), ("hold", "email"), ("long", "email"),
        ("fixed", "push")]
    # push and sms only: their own channel (for when the cell is back)
    shard = CareShard()
    out = run(shard, book, upsert(consent=("sms", "push"), preferred=("sms",)), impact())
    assert [a.channel for a in out] == ["sms"]


@pytest.mark.parametrize(("order", "consent", "channel"), [
    (("sms", "email"), ("push", "email"), "email"),  # the rule's first consented
    (("email", "push"), ("push", "email"), "email"),
    (("sms",), ("push", "email"), "push"),  # none of the rule's: the subscriber's first
])
def test_a_rules_channel_order_wins_over_the_subscribers(order, consent, channel):
    book = with_rules(rule(channels=ChannelPolicy(order=order)))
    out = run(CareShard(), book, upsert(consent=consent, preferred=()), impact())
    assert [a.channel for a in out] == [channel]


def test_a_reappearance_is_not_remembered_as_told():
    book = with_rules(rule("back", at="reappeared", action="restored_notice"), keep=True)
    shard = CareShard()
    out = run(shard, book, upsert(), impact(T0 + 600, trigger=REAPPEARED))
    assert kinds(out) == [("back", "restored_notice")]
    assert run(shard, book, Restored("U", FACTS, T0 + 700)) == []


def test_an_impact_of_an_older_format_is_a_hold_down_not_moved():
    old = Impact.__new__(Impact)  # as pickle rebuilds one that predates moved and trigger
    for name, value in (("subscriber_id", "U"), ("facts", FACTS), ("at", T0 + 120),
                        ("seen", (T0 - 300, "S1-C1", None))):
        object.__setattr__(old, name, value)
    out = run(CareShard(), BOOK, upsert(), old)
    assert kinds(out) == [("outage-notice", "outage_notice")]


# ---- fields of the message ----------------------------------------------------------------


@pytest.mark.parametrize(("offer", "text"), [
    (None, ""), ({}, ""), ({"kind": "voucher", "amount_gb": 2}, "2 GB"),
    ({"kind": "voucher"}, "voucher"), ({"valid_days": 3}, "an offer")])
def test_the_message_fields(offer, text):
    book = with_rules(rule(offer=offer))
    out = run(CareShard(), book, upsert(), impact())
    assert [(a.message, a.offer) for a in out] == [
        (f"Ada|Riverside|gold|INC-S1-1|{text}", offer)]


def test_the_message_of_a_nameless_planless_subscriber_and_of_drops():
    drops = rule("d", action="apology", at=None, kinds=(), drop_count=2, drop_window_s=60)
    book = with_rules(rule(), drops)
    out = run(CareShard(), book, upsert(name=None, plan=None), impact(),
              note("K1", T0 + 200), note("K2", T0 + 210))
    assert [a.message for a in out] == ["there|Riverside||INC-S1-1|", "there|Riverside|||"]


# ---- repeated outages, reopening verdicts -----------------------------------------------------


def test_flapping_cells_get_one_notice_per_window():
    shard = CareShard()
    run(shard, BOOK, upsert(), impact(T0 + 120))
    again = replace(FACTS, incident_id="INC-S1-2", down_cells=(("S1-C2", T0 + 1800),),
                    start_time=T0 + 1800)
    other = replace(FACTS, incident_id="INC-S1-3", down_cells=(("S1-C3", T0 + 1800),),
                    start_time=T0 + 1800)
    # the same cell within the flapping window (inclusive): one notice is enough
    out = run(shard, BOOK, impact(T0 + 1920, again), impact(T0 + 1920, other))
    assert out[0] == Suppressed("outage-notice", "outage_notice", "repeat_outage", T0 + 1920)
    assert kinds(out[1:]) == [("outage-notice", "outage_notice")]
    assert out[1].incident_id == "INC-S1-3"
    later = replace(FACTS, incident_id="INC-S1-4", down_cells=(("S1-C3", T0),))
    out = run(shard, BOOK, impact(T0 + 1920 + 1801, later))
    assert kinds(out) == [("outage-notice", "outage_notice")]


def test_a_reopening_silent_failure_gets_one_notice_per_cell_cooldown():
    def sleeping(n: int, cell: str, at: float) -> IncidentFacts:
        return IncidentFacts(f"DEG-{n}", "degradation", "S1", "Riverside", at - 900,
                             ((cell, at - 900),), (f"traffic:{cell}",))

    shard = CareShard()
    out = run(shard, BOOK, upsert(), impact(T0, sleeping(1, "S1-C1", T0)))
    assert kinds(out) == [("silent-failure-notice", "outage_notice")]
    soon = T0 + 12 * HOUR - 1
    out = run(shard, BOOK, impact(soon, sleeping(2, "S1-C1", soon)))
    assert out == [Suppressed("silent-failure-notice", "outage_notice", "cell_cooldown", soon)]
    # twelve hours after the first notice: the cooldown is over
    out = run(shard, BOOK, impact(T0 + 12 * HOUR, sleeping(3, "S1-C1", T0 + 12 * HOUR)))
    assert kinds(out) == [("silent-failure-notice", "outage_notice")]
    assert out[0].incident_id == "DEG-3"
    # another cell (past the flapping window): another problem
    other = T0 + 12 * HOUR + 1801
    out = run(shard, BOOK, impact(other, sleeping(4, "S1-C2", other)))
    assert kinds(out) == [("silent-failure-notice", "outage_notice")]
    c = shard.subscribers["U"]  # each cell with its latest notice within the cooldown
    told = {"silent-failure-notice": (("S1-C1", T0 + 12 * HOUR), ("S1-C2", other))}
    assert c.cell_notices == told
    # an outage of that cell: another rule, with no cell cooldown
    outage = replace(FACTS, incident_id="INC-S1-9", down_cells=(("S1-C2", T0),))
    out = run(shard, BOOK, impact(other + 1801, outage))
    assert kinds(out) == [("outage-notice", "outage_notice")]
    assert c.cell_notices == told


# ---- suppressions and their reasons -----------------------------------------------------------


def test_moved_away_comes_first_and_the_incident_stays_untold():
    shard = CareShard()
    out = run(shard, BOOK, impact(moved=True))  # unknown too: moved away is the reason
    assert out == [Suppressed("outage-notice", "outage_notice", "moved_away", T0 + 120)]
    out = run(shard, BOOK, upsert(), impact(moved=True))
    assert out == [Suppressed("outage-notice", "outage_notice", "moved_away", T0 + 120)]
    assert run(shard, BOOK, Restored("U", FACTS, T0 + HOUR)) == []


def test_unknown_deleted_and_unconsented_subscribers_get_nothing():
    assert run(CareShard(), BOOK, impact()) == [
        Suppressed("outage-notice", "outage_notice", "unknown_subscriber", T0 + 120)]
    # known only after the verdict's time
    assert run(CareShard(), BOOK, upsert(at=T0 + 121), impact()) == [
        Suppressed("outage-notice", "outage_notice", "unknown_subscriber", T0 + 120)]
    assert kinds(run(CareShard(), BOOK, upsert(at=T0 + 120), impact())) == [
        ("outage-notice", "outage_notice")]
    deleted = Subscriber("U", "delete", T0 + 120)
    assert run(CareShard(), BOOK, upsert(), deleted, impact()) == [
        Suppressed("outage-notice", "outage_notice", "deleted_subscriber", T0 + 120)]
    # deleted after the verdict's time: the verdict still acts; a new upsert undoes it
    late = Subscriber("U", "delete", T0 + 121)
    assert kinds(run(CareShard(), BOOK, upsert(), late, impact())) == [
        ("outage-notice", "outage_notice")]
    assert kinds(run(CareShard(), BOOK, upsert(), deleted, upsert(at=T0 + 120), impact())) == [
        ("outage-notice", "outage_notice")]
    assert run(CareShard(), BOOK, upsert(consent=()), impact()) == [
        Suppressed("outage-notice", "outage_notice", "no_consent", T0 + 120)]


def test_the_daily_contact_cap_counts_a_sliding_day_and_spares_restored_notices():
    book = replace(BOOK, max_contacts_per_day=2)

    def on(n: int, cell: str) -> IncidentFacts:
        return replace(FACTS, incident_id=f"INC-{n}", down_cells=((cell, T0),))

    shard = CareShard()
    t1 = T0 + 120
    out = run(shard, book, upsert(), impact(t1, on(1, "S1-C1")),
              impact(t1 + 2000, on(2, "S1-C2")), impact(t1 + 4000, on(3, "S1-C3")))
    assert kinds(out) == [("outage-notice", "outage_notice")] * 2 + [
        ("outage-notice", "contact_limit")]
    out = run(shard, book, Restored("U", on(1, "S1-C1"), t1 + 5000))
    assert kinds(out) == [("restored-notice", "restored_notice")]
    # a day after the second notice: that one no longer counts, the restored one does
    out = run(shard, book, impact(t1 + DAY + 2000, on(4, "S1-C4")))
    assert kinds(out) == [("outage-notice", "outage_notice")]
    out = run(shard, book, impact(t1 + DAY + 2100, on(5, "S1-C5")))
    assert out == [Suppressed("outage-notice", "outage_notice", "contact_limit", t1 + DAY + 2100)]


def test_contacts_of_the_last_day_are_kept_for_the_cap_and_left_to_dispatch_for_the_model():
    def on(n: int, cell: str) -> IncidentFacts:
        return replace(FACTS, incident_id=f"INC-{n}", down_cells=((cell, T0),))

    shard = CareShard()
    out = run(shard, BOOK, upsert(), impact(T0, on(1, "S1-C1")),
              impact(T0 + DAY, on(2, "S1-C2")), impact(T0 + DAY + 1, on(3, "S1-C3")))
    assert [a.features.contacts_24h for a in out] == [0, 0, 0]  # dispatch counts them
    # a day's contacts are kept, no more (without a daily cap too)
    assert shard.subscribers["U"].contacts == (T0 + DAY, T0 + DAY + 1)


def test_silences_stop_notices_but_not_restored_notices():
    storm = Silence("storm", T0 + 1000, T0 + 3 * DAY, regions=("north",))
    book = replace(BOOK, silences=(storm,))
    shard = CareShard()
    run(shard, book, upsert(), upsert("V", segment="vip"), impact(T0 + 120))
    out = run(shard, book, impact(T0 + 1100, replace(FACTS, incident_id="INC-S1-2",
                                                       down_cells=(("S1-C9", T0),))))
    assert out == [Suppressed("outage-notice", "outage_notice", "silenced", T0 + 1100)]
    south = replace(FACTS, incident_id="INC-S5-1", region="south", down_cells=(("S5-C1", T0),))
    assert kinds(run(shard, book, impact(T0 + 3000, south))) == [
        ("outage-notice", "outage_notice")]
    assert kinds(run(shard, book, Restored("U", FACTS, T0 + 2000))) == [
        ("restored-notice", "restored_notice")]
    # a VIP's escalation in the storm: the callback silenced; the compensation not theirs
    run(shard, book, impact(T0 + 120, sid="V"))
    out = run(shard, book, Escalation("V", FACTS, 4 * HOUR, T0 + 4 * HOUR))
    assert out == [Suppressed("long-outage-care-callback", "care_callback", "silenced",
                              T0 + 4 * HOUR)]


def test_audiences_scopes_causes_and_durations_choose_the_rules():
    book = with_rules(
        rule("vip-only", audience=Audience(segments=("vip",))),
        rule("north", audience=Audience(regions=("north",))),
        rule("south", audience=Audience(regions=("south",))),
        rule("complainers", audience=Audience(complaints_min=1)),
        rule("sites", scopes=("site",)),
        rule("power", causes=("powerProblem",)),
        rule("hour", at="duration", action="compensation", min_duration_s=HOUR),
        rule("day", at="duration", action="compensation", min_duration_s=DAY))
    shard = CareShard()
    out = run(shard, book, upsert(), impact())
    assert kinds(out) == [("north", "outage_notice")]
    assert run(shard, book, Escalation("U", FACTS, HOUR, T0 + HOUR)) == [
        action("hour", "compensation", T0 + HOUR, version=7,
               message="Ada|Riverside|gold|INC-S1-1|")]
    out = run(shard, book, Complaint("K1", "U", T0 + 200, "coverage"),
              impact(T0 + 7200, replace(FACTS, incident_id="INC-2", scope="site",
                                        causes=("lossOfSignal", "powerProblem"),
                                        down_cells=(("S2-C1", T0),))))
    # every rule that matches now; one contact per incident: the first acts, the others
    # are held back as a second notice about the same cells
    assert kinds(out[2:]) == [("north", "outage_notice"), ("complainers", "repeat_outage"),
                              ("sites", "repeat_outage"), ("power", "repeat_outage")]
    assert out[0] == ComplaintSeen("U", T0 + 200)
    assert type(out[1]) is CareContext and out[1].forewarned  # told of INC-S1-1 before


def test_a_verdict_is_judged_on_the_profile_in_force_at_its_time():
    shard = CareShard()
    run(shard, BOOK, upsert(), upsert(at=T0 + 200, language="fr", name="Zoé", segment="vip",
                                      consent=("sms",)))
    late, now = run(shard, BOOK, impact(T0 + 120)) + run(
        shard, BOOK, impact(T0 + 200, replace(FACTS, incident_id="INC-2",
                                              down_cells=(("S2-C1", T0),))))
    assert late == action("outage-notice", "outage_notice", T0 + 120,
                          evidence=ALARMS + (f"location:S1-C1@{int(T0 - 300)}",))
    assert (now.language, now.channel, now.segment) == ("fr", "sms", "vip")
    c = shard.care("U")  # the later profile is still in force
    assert (c.profile.language, c.name) == ("fr", "Zoé")


def test_an_update_delivered_twice_keeps_the_profile_before_it():
    shard = CareShard()
    update = upsert(at=T0 + 200, language="fr", name="Zoé")
    run(shard, BOOK, upsert(), update, update)
    out = run(shard, BOOK, impact(T0 + 120))
    assert [(a.language, a.message) for a in out] == [("en", NOTICE_EN)]


# ---- the shard, the profile, quiet hours ----------------------------------------------------


def test_the_shard_keeps_only_subscribers_with_state():
    shard = CareShard()
    out = run(shard, BOOK, impact(sid="X"), Complaint("K1", "Y", T0, "other"), upsert("Z"))
    assert out == [Suppressed("outage-notice", "outage_notice", "unknown_subscriber", T0 + 120),
                   ComplaintSeen("Y", T0), CareContext("K1", "Y", T0, "other", None)]
    assert sorted(shard.known()) == ["X", "Y", "Z"]  # X while the outage impacts them
    assert sorted(shard.subscribers) == ["X", "Y"]  # (Z: a profile only, a row)
    assert shard.subscribers["Y"].complaints == 1
    run(shard, BOOK, Restored("X", FACTS, T0 + HOUR))
    assert sorted(shard.known()) == ["Y", "Z"] and len(shard) == 2
    run(shard, BOOK, Subscriber("W", "delete", T0))
    assert shard.subscribers["W"].deleted_at == T0  # a deletion is remembered
    run(shard, BOOK, impact(sid="Z"), Restored("Z", FACTS, T0 + HOUR))
    assert shard.subscribers["Z"].notified == {}
    assert SubscriberCare().empty()


def test_records_come_before_verdicts_at_the_same_time():
    restored = Restored("U", FACTS, T0)
    assert sorted([restored, Complaint("K", "U", T0, "x"), upsert(at=T0)], key=order_key) == [
        upsert(at=T0), Complaint("K", "U", T0, "x"), restored]
    assert order_key(restored) == (T0, 2)


def test_a_profile_keeps_consented_channels_in_preference_order():
    p = profile_of(upsert(consent=("email", "push"), preferred=("email", "sms"), tags=("a",)),
                   ("push", "sms", "email"))
    assert (p.language, p.timezone, p.segment, p.channels, p.plan, p.tags, p.tenure) == (
        "en", "Europe/London", "consumer", ("email", "push"), "gold", ("a",), 14)
    assert profile_of(upsert(plan=None), ("sms",)).plan == ""


@pytest.mark.parametrize("change", [
    {"language": "de"}, {"tz": "Asia/Tokyo"}, {"segment": "vip"}, {"consent": ("sms",)},
    {"preferred": ("sms",)}, {"plan": "basic"}, {"tags": ("b",)}, {"tenure": 15}])
def test_profiles_differ_in_every_field_and_are_shared_when_equal(change):
    base = profile_of(upsert(), BOOK.channel_order)
    assert profile_of(upsert("V", name="Other"), BOOK.channel_order) is base
    # another preference that comes to the same consented order: the same profile
    assert profile_of(upsert(preferred=("email", "sms")), BOOK.channel_order) is base
    # no plan and an empty one: the same
    assert profile_of(upsert(plan=None), BOOK.channel_order) is profile_of(
        upsert("W", plan=""), BOOK.channel_order)
    other = profile_of(upsert(**change), BOOK.channel_order)
    assert other != base


def test_the_profile_cache_is_bounded(monkeypatch):
    cache: dict = {("filler", n): None for n in range(100_000)}
    monkeypatch.setattr(care, "_PROFILE_OF", cache)
    p = profile_of(upsert(), BOOK.channel_order)
    assert list(cache.values()) == [p]


def test_quiet_hours_within_one_day_and_ending_on_the_half_hour():
    book = replace(BOOK, quiet_start_min=60, quiet_end_min=5 * 60 + 30)  # 01:00-05:30
    day = "2026-11-23T"
    wake = parse_time(day + "05:30:00Z")
    assert [quiet_until(parse_time(day + t), "UTC", book) for t in (
        "00:59:00Z", "01:00:00Z", "05:29:00Z", "05:30:00Z")] == [None, wake, wake, None]
    book = replace(BOOK, quiet_end_min=8 * 60 + 30)  # 22:00-08:30
    assert quiet_until(parse_time(day + "22:00:00Z"), "UTC", book) == parse_time(
        "2026-11-24T08:30:00Z")
    assert quiet_until(parse_time(day + "08:29:00Z"), "UTC", book) == parse_time(
        day + "08:30:00Z")
    assert quiet_until(parse_time(day + "08:30:00Z"), "UTC", book) is None
    # local time: 23:00 in Tokyo is 14:00 UTC
    assert quiet_until(parse_time(day + "14:00:00Z"), "Asia/Tokyo", BOOK) == parse_time(
        "2026-11-24T08:00:00+09:00")


# ---- several rules at one point ---------------------------------------------------------------


def test_each_drop_counts_once_whatever_the_number_of_drop_rules():
    two = rule("two", action="apology", at=None, kinds=(), drop_count=2, drop_window_s=1800)
    three = rule("three", action="care_callback", at=None, kinds=(), drop_count=3,
                 drop_window_s=3600)
    shard = CareShard()
    out = run(shard, with_rules(three, two), upsert(), note("K1", T0), note("K2", T0 + 2000))
    assert out == []  # two drops (the second rule's window is too short for both)
    out = run(shard, with_rules(three, two), note("K3", T0 + 2100))
    assert [(a.rule_id, a.evidence) for a in out] == [("three", ("call:K1", "call:K2",
                                                                  "call:K3"))]
    assert shard.subscribers["U"].drops == ()  # accounted for: the other rule has none left


def test_every_rule_at_a_point_acts_or_is_recorded():
    book = with_rules(
        rule("cool", cell_cooldown_s=43200),
        rule("plain"), rule("w1", at="walk_in"), rule("w2", at="walk_in"),
        rule("e1", at="duration", action="compensation", min_duration_s=4 * HOUR),
        rule("e2", at="duration", action="care_callback", min_duration_s=4 * HOUR),
        rule("f1", at="resolved", action="restored_notice"),
        rule("f2", at="resolved", action="restored_notice"))
    shard = CareShard()
    out = run(shard, book, upsert(), impact(T0 + 100, trigger=WALK_IN), impact(T0 + 120))
    # one contact per incident: the second hold-down rule is held back
    assert kinds(out) == [("w1", "outage_notice"), ("w2", "outage_notice"),
                          ("cool", "outage_notice"), ("plain", "repeat_outage")]
    out = run(shard, book, Escalation("U", FACTS, 4 * HOUR, T0 + 4 * HOUR),
              Restored("U", FACTS, T0 + 5 * HOUR))
    assert kinds(out) == [("e1", "compensation"), ("e2", "care_callback"),
                          ("f1", "restored_notice"), ("f2", "restored_notice")]
    # the same cell again after the flapping window: the cooling rule is held back alone
    again = replace(FACTS, incident_id="INC-S1-2", down_cells=(("S1-C1", T0 + 6 * HOUR),))
    out = run(shard, book, impact(T0 + 6 * HOUR, again))
    assert kinds(out) == [("cool", "cell_cooldown"), ("plain", "outage_notice")]
    # deleted since the notice: each rule's action is recorded as suppressed
    run(shard, book, Subscriber("U", "delete", T0 + 7 * HOUR))
    out = run(shard, book, Escalation("U", again, 4 * HOUR, T0 + 10 * HOUR),
              Restored("U", again, T0 + 11 * HOUR))
    assert out == [Suppressed("e1", "compensation", "deleted_subscriber", T0 + 10 * HOUR),
                   Suppressed("e2", "care_callback", "deleted_subscriber", T0 + 10 * HOUR),
                   Suppressed("f1", "restored_notice", "deleted_subscriber", T0 + 11 * HOUR),
                   Suppressed("f2", "restored_notice", "deleted_subscriber", T0 + 11 * HOUR)]


def test_an_outage_told_in_an_older_snapshot_format_is_restored():
    told = SubscriberCare.__new__(SubscriberCare)  # [notice time, escalated durations]
    told.__setstate__((None, {"profile": profile_of(upsert(), BOOK.channel_order),
                              "name": "Ada", "since": T0 - HOUR, "known_since": T0 - HOUR,
                              "notified": {"INC-S1-1": [T0 + 120, []]}}))
    shard = CareShard()
    shard.subscribers["U"] = told
    out = run(shard, BOOK, Restored("U", FACTS, T0 + HOUR))
    assert out == [action("restored-notice", "restored_notice", T0 + HOUR, message=RESTORED_EN)]


def test_audiences_by_plan_tags_language_and_tenure():
    book = with_rules(*(rule(rid, audience=aud) for rid, aud in (
        ("gold", Audience(plans=("gold",))), ("platinum", Audience(plans=("platinum",))),
        ("tagged", Audience(tags=("b", "a"))), ("untagged", Audience(tags=("z",))),
        ("english", Audience(languages=("en",))), ("german", Audience(languages=("de",))),
        ("senior", Audience(tenure_min=14)), ("junior", Audience(tenure_max=13)))))
    out = run(CareShard(), book, upsert(tags=("a",)), impact())
    assert kinds(out) == [("gold", "outage_notice"), ("tagged", "repeat_outage"),
                          ("english", "repeat_outage"), ("senior", "repeat_outage")]


def test_quiet_hours_starting_when_they_end_are_none():
    book = replace(BOOK, quiet_start_min=8 * 60, quiet_end_min=8 * 60)
    assert [quiet_until(parse_time(f"2026-11-23T{t}:00Z"), "UTC", book)
            for t in ("07:59", "08:00", "23:00")] == [None, None, None]


def test_each_drop_rule_is_checked_in_turn():
    def drops(rid: str, count: int, **kw) -> Rule:
        return rule(rid, action="apology", at=None, kinds=(), drop_count=count,
                    drop_window_s=1800, **kw)

    book = with_rules(drops("three", 3), drops("two", 2))  # too few for the first
    out = run(CareShard(), book, upsert(), note("K1", T0), note("K2", T0 + 60))
    assert kinds(out) == [("two", "apology")]
    book = with_rules(drops("vip", 2, audience=Audience(segments=("vip",))), drops("all", 2))
    out = run(CareShard(), book, upsert(), note("K1", T0), note("K2", T0 + 60))
    assert kinds(out) == [("all", "apology")]  # not for them: nothing recorded
    book = with_rules(drops("daily", 2, cooldown_s=DAY), drops("any", 2))
    shard = CareShard()
    out = run(shard, book, upsert(), note("K1", T0), note("K2", T0 + 60))
    assert kinds(out) == [("daily", "apology")]  # the drops are its: none left for "any"
    out = run(shard, book, note("K3", T0 + 600), note("K4", T0 + 660))
    assert kinds(out) == [("daily", "cooldown"), ("any", "apology")]


# ---- remaining edges ----------------------------------------------------------------------------


def test_local_hours_are_the_subscribers():
    tokyo = upsert(tz="Asia/Tokyo")
    out = run(CareShard(), BOOK, tokyo, impact())  # 10:02 UTC: 19:02 in Tokyo
    assert out[0].features.hour == 19
    late = parse_time("2026-11-23T14:00:00Z")  # 23:00 in Tokyo
    out = run(CareShard(), BOOK, tokyo, note("K1", late - 120), note("K2", late - 60))
    assert [(a.send_after, a.features.hour) for a in out] == [
        (parse_time("2026-11-24T08:00:00+09:00"), 23)]


def test_a_silence_of_a_site():
    book = replace(BOOK, silences=(Silence("works", T0, T0 + DAY, site_ids=("S1",)),))
    out = run(CareShard(), book, upsert(), impact(), impact(T0 + 130, replace(
        FACTS, incident_id="INC-S2-1", site_id="S2", down_cells=(("S2-C1", T0),))))
    assert kinds(out) == [("outage-notice", "silenced"), ("outage-notice", "outage_notice")]


def test_complaints_are_counted_for_audiences():
    book = with_rules(rule("twice", audience=Audience(complaints_min=2)))
    shard = CareShard()
    complaints = [Complaint(f"K{n}", "U", T0 + n, "coverage") for n in range(2)]
    out = run(shard, book, upsert(), complaints[0], impact())
    assert out == [ComplaintSeen("U", T0), CareContext("K0", "U", T0, "coverage", None)]
    again = replace(FACTS, incident_id="INC-2", down_cells=(("S2-C1", T0),))
    out = run(shard, book, complaints[1], impact(T0 + 3600, again))
    assert kinds(out[2:]) == [("twice", "outage_notice")]
    assert shard.subscribers["U"].complaints == 2


def test_a_restored_incident_they_were_not_told_of_is_nothing_to_them():
    shard = CareShard()
    run(shard, BOOK, upsert(), impact())
    other = replace(FACTS, incident_id="INC-S7-1")
    assert run(shard, BOOK, Restored("U", other, T0 + HOUR)) == []
    assert list(shard.subscribers["U"].notified) == ["INC-S1-1"]


def test_the_daily_contact_cap_holds_back_apologies_too():
    book = replace(BOOK, max_contacts_per_day=1)
    out = run(CareShard(), book, upsert(), impact(), note("K1", T0 + 200), note("K2", T0 + 260))
    assert out[1:] == [Suppressed("dropped-call-apology", "apology", "contact_limit", T0 + 320)]


def test_the_cell_cooldown_holds_for_each_cell_told_of():
    def sleeping(n: int, cell: str, at: float) -> IncidentFacts:
        return IncidentFacts(f"DEG-{n}", "degradation", "S1", "Riverside", at - 900,
                             ((cell, at - 900),), (f"traffic:{cell}",))

    shard = CareShard()
    out = run(shard, BOOK, upsert(), impact(T0, sleeping(1, "S1-C1", T0)),
              impact(T0 + HOUR, sleeping(2, "S1-C2", T0 + HOUR)),  # they moved to C2
              impact(T0 + 2 * HOUR, sleeping(3, "S1-C1", T0 + 2 * HOUR)))  # C1 again
    assert kinds(out) == [("silent-failure-notice", "outage_notice")] * 2 + [
        ("silent-failure-notice", "cell_cooldown")]
    # kept: the cells told of within the cooldown (C1's notice is exactly 12 h old)
    out = run(shard, BOOK, impact(T0 + 12 * HOUR, sleeping(4, "S1-C3", T0 + 12 * HOUR)))
    assert kinds(out) == [("silent-failure-notice", "outage_notice")]
    assert shard.subscribers["U"].cell_notices == {
        "silent-failure-notice": (("S1-C2", T0 + HOUR), ("S1-C3", T0 + 12 * HOUR))}


def test_a_cell_cooldown_of_an_older_snapshot_format_still_holds():
    care_ = SubscriberCare.__new__(SubscriberCare)  # rule id -> (time, cells)
    care_.__setstate__((None, {"profile": profile_of(upsert(), BOOK.channel_order),
                               "name": "Ada", "since": T0 - HOUR, "known_since": T0 - HOUR,
                               "cell_notices": {"silent-failure-notice": (T0, ("S1-C1",))}}))
    shard = CareShard()
    shard.subscribers["U"] = care_
    facts = IncidentFacts("DEG-1", "degradation", "S1", "Riverside", T0 + HOUR,
                          (("S1-C1", T0 + HOUR), ("S1-C2", T0 + HOUR)), ("traffic:S1",))
    assert kinds(run(shard, BOOK, impact(T0 + 2 * HOUR, facts))) == [
        ("silent-failure-notice", "cell_cooldown")]
    assert kinds(run(shard, BOOK, impact(T0 + 2 * HOUR, replace(
        facts, incident_id="DEG-2", down_cells=(("S1-C3", T0),))))) == [
        ("silent-failure-notice", "outage_notice")]


def test_only_a_profile_is_kept_compact_any_other_care_state_keeps_the_object():
    """A shard keeps a row of (profile, name, since[, known since]), and a key of its
    own (SubscriberCare.compact) packed bytes, only when every other slot is as in a new
    one: set any of them and the object stays."""
    from forewarn.dataflows.care import SubscriberCare, packed_of

    shard = CareShard()
    shard.handle_batch([upsert()], BOOK)
    assert not shard.subscribers and len(shard.profiles) == 1
    assert shard.care("U").profile == shard.known()["U"][0]
    kept = packed_of(shard.known()["U"])
    others = [n for n in SubscriberCare.__slots__
              if n not in ("profile", "name", "since", "known_since")]
    assert len(others) >= 13
    for name in others:
        care = SubscriberCare.of(kept)
        assert care.compact() == kept and care.only_profile()
        setattr(care, name, object())  # any value but a new one's
        assert care.compact() is care and not care.only_profile(), name


def test_a_profile_only_subscriber_is_packed_name_as_bytes_known_since_when_it_differs():
    from forewarn.dataflows.care import SubscriberCare, packed_of

    shard = CareShard()
    shard.handle_batch([upsert(name="Zoë Ng")], BOOK)
    (kept,) = shard.known().values()
    assert kept[1:] == ("Zoë Ng".encode(), T0 - HOUR)  # one profile: known since it
    assert len(packed_of(kept)) == 13 + len("Zoë Ng".encode())  # packed, in a key of its own
    assert bytes(shard.profiles.names) == "Zoë Ng".encode()  # a row of a shard
    care = shard.care("U")
    assert (care.name, care.since, care.known_since) == ("Zoë Ng", T0 - HOUR, T0 - HOUR)
    # an update older than the profile in force (no earlier profile kept): known since
    # the first, so a 4-tuple
    shard.handle_batch([upsert(at=T0 - 2 * HOUR, name=None)], BOOK)
    (kept,) = shard.known().values()
    assert kept[1:] == (b"", T0 - 2 * HOUR, T0 - HOUR)
    care = shard.care("U")
    assert (care.name, care.since, care.known_since) == ("", T0 - 2 * HOUR, T0 - HOUR)
    assert SubscriberCare.of(kept).known() == kept
    assert SubscriberCare.of(kept).compact() == packed_of(kept)
    assert shard.profiles.later == {"U": T0 - HOUR}


class _YieldingProfile(Profile):
    """A profile whose hashing hands the GIL to another thread, as a thread switch may
    at any point: two threads numbering such profiles interleave inside the numbering."""

    __slots__ = ()

    def __hash__(self) -> int:
        time.sleep(0.0002)
        return super().__hash__()


def test_care_shards_on_two_worker_threads_each_unpack_their_own_new_profiles():
    """The care shards of a process pack profiles from its worker threads at once: each
    packed profile unpacks as itself, whichever thread numbered it first (a profile
    number shared by two would give one subscriber another's language and channels)."""
    start = threading.Barrier(2)
    got: dict[int, list[tuple[Profile, bytes]]] = {}

    def shard(k: int) -> None:
        mine = [_YieldingProfile("en", "UTC", f"thread-{k}-{i}", ("sms",), "")
                for i in range(40)]
        start.wait()
        got[k] = [(p, care.packed_of((p, b"", 60.0))) for p in mine]

    threads = [threading.Thread(target=shard, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    unpacked = [(p.segment, care.known_of(packed)[0].segment)
                for k in (0, 1) for p, packed in got[k]]
    assert [(mine, back) for mine, back in unpacked if back != mine] == []
