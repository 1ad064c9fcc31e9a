"""Care's state as it is kept, against a plain model of it: a care shard (profile-only
subscribers as rows, the others as objects) and a subscriber's own key with recovery
(:class:`CareKeyLogic`: their state alone, a profile packed) decide and keep exactly what
a dict of :class:`SubscriberCare` objects does, for random messages, batch cuts and
snapshots between batches."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from bytewax.operators import StatefulBatchLogic

from forewarn.dataflows import records
from forewarn.dataflows.care import CareShard, SubscriberCare, known_of
from forewarn.dataflows.flow import CareKeyLogic, CareKeys, CareLogic, FlowConfig, check_resume
from forewarn.dataflows.messages import Escalation, IncidentFacts, Restored
from forewarn.model import Complaint, Subscriber
from tests.test_care_actions import BOOK, FACTS, HOUR, T0, impact, note, upsert

NAMES = [None, "Ada", "Zoë Ng", "Ada Lovelace-Byron", "", "李小龙"]
SIDS = ["U1", "U2", "U3", "U4"]
INCIDENTS = [FACTS, replace(FACTS, incident_id="INC-2", down_cells=(("S2-C1", T0),)),
             IncidentFacts("INC-3", "outage", "S3", "Hill", T0 + HOUR,
                           (("S3-C1", T0 + HOUR),), ("alarm:A3",), region="south")]


def message(rnd: random.Random, k: int, sids: list[str] = SIDS,
            kinds: range = range(9)) -> object:
    """A random care message (of one of ``kinds``: 0-2 a profile), about one of ``sids``,
    a few incidents and times."""
    sid = rnd.choice(sids)
    at = T0 + rnd.randrange(-2, 12) * HOUR / 2
    facts = rnd.choice(INCIDENTS)
    kind = rnd.choice(kinds)
    if kind < 3:
        return upsert(sid, at, name=rnd.choice(NAMES), language=rnd.choice(("en", "fr")),
                      consent=rnd.choice((("sms", "email"), ())))
    if kind == 3:
        return Subscriber(sid, "delete", at)
    if kind == 4:
        return Complaint(f"K{k}", sid, at, "other")
    if kind == 5:
        return impact(max(at, facts.start_time) + 120, facts, sid=sid)
    if kind == 6:
        return Restored(sid, facts, max(at, facts.start_time) + HOUR)
    if kind == 7:
        return Escalation(sid, facts, 4 * HOUR, facts.start_time + 4 * HOUR)
    return note(f"C{k}", at, sid=sid)


def state(care: SubscriberCare) -> tuple:
    return tuple(getattr(care, name) for name in SubscriberCare.__slots__)


class Model:
    """Care as a dict of objects: a subscriber's state until nothing is left of it."""

    def __init__(self) -> None:
        self.subs: dict[str, SubscriberCare] = {}

    def handle(self, msgs: list) -> list:
        out: list = []
        for msg in msgs:
            sid = msg.subscriber_id
            care = self.subs.get(sid) or SubscriberCare()
            out += care.handle(sid, msg, BOOK)
            if care.empty():
                self.subs.pop(sid, None)
            else:
                self.subs[sid] = care
        return out

    def known(self) -> dict:
        return {sid: c.known() if c.only_profile() else state(c)
                for sid, c in self.subs.items()}


def kept(known: dict) -> dict:
    return {sid: c if isinstance(c, tuple) else state(c) for sid, c in known.items()}


@pytest.mark.parametrize(("subscribers", "seeds", "batches", "size"),
                         [(4, 150, 12, 8), (300, 20, 30, 200)])
def test_a_care_shard_decides_and_keeps_what_a_dict_of_objects_does(
        subscribers: int, seeds: int, batches: int, size: int):
    """With many subscribers, batches of profiles alternate with batches of the rest:
    rows freed in numbers, the table compacted."""
    sids = SIDS if subscribers == len(SIDS) else [f"U{k}" for k in range(subscribers)]
    for seed in range(seeds):
        rnd = random.Random(seed)
        model, shard = Model(), CareShard()
        k = 0
        for b in range(rnd.randint(1, batches)):
            kinds = range(9) if subscribers == len(SIDS) else (
                range(3) if b % 2 == 0 else range(3, 9))
            msgs = [message(rnd, k + i, sids, kinds) for i in range(rnd.randint(1, size))]
            k += len(msgs)
            assert shard.handle_batch(msgs, BOOK) == model.handle(msgs), seed
            assert kept(shard.known()) == model.known(), seed
            assert len(shard) == len(model.subs)
            for sid in sids:
                care = shard.care(sid)
                assert (care is None) == (sid not in model.subs)
                assert care is None or state(care) == state(model.subs[sid]), seed
            if rnd.random() < 0.3:  # a snapshot and back
                shard, _ = records.thaw_care(records.freeze_care(shard, []))


def test_a_subscribers_own_key_decides_and_keeps_what_a_dict_of_objects_does():
    """With recovery: each subscriber's messages to their own key, the key dropped when
    nothing is left, resumed from its snapshot."""
    keys = CareKeys(FlowConfig(book=BOOK, durable=True))
    for seed in range(150):
        rnd = random.Random(seed)
        model = Model()
        logics: dict[str, CareKeyLogic | CareLogic] = {}
        k = 0
        for _ in range(rnd.randint(1, 12)):
            msgs = [message(rnd, k + i) for i in range(rnd.randint(1, 8))]
            k += len(msgs)
            for sid in SIDS:
                mine = [m for m in msgs if m.subscriber_id == sid]
                if not mine:
                    continue
                logic = logics.get(sid) or keys(None)
                out, drop = logic.on_batch([mine])
                assert out == model.handle(mine), seed  # (a subscriber's state is theirs)
                if drop:
                    logics.pop(sid, None)
                    assert sid not in model.subs
                    continue
                if rnd.random() < 0.3:
                    blob = logic.snapshot()
                    assert blob is not None
                    check_resume(keys.cfg, "care", blob)
                    logic = keys(blob)
                    assert type(logic) is CareKeyLogic
                logics[sid] = logic
            assert set(logics) == set(model.subs), seed
            for sid, logic in logics.items():
                assert isinstance(logic, CareKeyLogic) and logic.sid == sid
                c = logic.kept
                got = known_of(c) if isinstance(c, bytes) else state(c)  # type: ignore[arg-type]
                assert got == model.known()[sid], seed


def test_a_key_of_its_own_keeps_the_id_string_of_its_messages():
    keys = CareKeys(FlowConfig(book=BOOK, durable=True))
    sid = "".join(["U", "7"])  # (a string of its own, not an interned constant)
    logic = keys(None)
    logic.on_batch([[upsert(sid)]])
    assert isinstance(logic, CareKeyLogic) and logic.sid is sid
    assert isinstance(logic.kept, bytes)  # a profile only: packed
    # a logic Bytewax takes, with no __dict__ (nor __weakref__) per key
    assert isinstance(logic, StatefulBatchLogic) and not hasattr(logic, "__dict__")
    assert logic.on_notify() == ([], False) and logic.notify_at() is None
    shard = CareShard()
    shard.handle_batch([upsert(sid)], BOOK)
    assert shard.profiles.sids[0] is sid


def test_a_snapshot_of_several_subscribers_or_held_messages_resumes_as_a_shard():
    """A care record of another layout of the keys (a shard's, held messages) resumes
    whole, as a care shard, and passes the check before a resume."""
    cfg = FlowConfig(book=BOOK, durable=True)
    shard = CareShard()
    shard.handle_batch([upsert("U1"), upsert("U2"), Complaint("K1", "U2", T0, "other")],
                       BOOK)
    several = records.freeze_care(shard, [])
    held = records.freeze_care(CareShard(), [Complaint("K2", "U1", T0, "other")])
    for blob in (several, held):
        check_resume(cfg, "care", blob)
        logic = CareKeys(cfg)(blob)
        assert type(logic) is CareLogic
        assert records.thaw_care_known(logic.snapshot())[0].keys() == \
            records.thaw_care_known(blob)[0].keys()
    logic = CareKeys(cfg)(several)
    out, drop = logic.on_batch([[Complaint("K3", "U1", T0, "other")]])
    assert out[0].subscriber_id == "U1" and not drop
    assert logic.shard.subscribers["U1"].complaints == 1 and len(logic.shard) == 2


def test_a_snapshots_held_messages_are_applied_with_the_first_batch_of_a_resumed_key():
    """With recovery nothing waits for a frontier: held messages in a record (another
    layout's) go in with the first batch, in care order, and a key left with no state
    is dropped only once they have been applied."""
    cfg = FlowConfig(book=BOOK, durable=True)
    logic = CareKeys(cfg)(records.freeze_care(CareShard(), [upsert("U1", T0 - HOUR)]))
    out, drop = logic.on_batch([[Complaint("K1", "U1", T0, "other")]])
    assert not drop and not logic.held
    care = logic.shard.care("U1")
    assert care is not None and care.complaints == 1 and care.profile is not None


@pytest.mark.parametrize(("kept", "why"), [
    (b"\x01\xff\xff" + bytes(10), "a bytes"),  # packed bytes: good in their process only
    ("profile", "a str"),
])
def test_a_durable_keys_record_of_a_subscriber_in_another_form_is_refused(kept, why):
    from forewarn.safe_pickle import UnsafePickle
    blob = records._dump("care", {"subscribers": {"U1": kept}})
    with pytest.raises(UnsafePickle, match=why):
        check_resume(FlowConfig(book=BOOK, durable=True), "care", blob)


def test_every_profile_of_a_record_is_checked_in_outline_not_only_the_first_few():
    from forewarn.safe_pickle import UnsafePickle
    shard = CareShard()
    shard.handle_batch([upsert(f"U{i}") for i in range(5)], BOOK)
    known = shard.known()
    profile, name, since = known["U4"][:3]
    known["U4"] = (profile, name, since, "yesterday")  # the fifth: a str for a time
    blob = records._dump("care", {"subscribers": known})
    with pytest.raises(UnsafePickle, match="care's subscriber 4 in the snapshot"):
        check_resume(FlowConfig(book=BOOK, durable=True), "care", blob)
