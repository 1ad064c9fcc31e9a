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
from forewarn.dataflows.care import CareShard, SubscriberCare, care_order, known_of
from forewarn.dataflows.flow import CareKeyLogic, CareKeys, CareLogic, FlowConfig, check_resume
from forewarn.dataflows.held import Held, flatten
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
    keys = CareKeys(FlowConfig(book=BOOK, durable=True, care_per_subscriber=True))
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
                out, drop = logic.on_batch([(float(k), mine)])  # (a gate's list)
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
    keys = CareKeys(FlowConfig(book=BOOK, durable=True, care_per_subscriber=True))
    sid = "".join(["U", "7"])  # (a string of its own, not an interned constant)
    logic = keys(None)
    logic.on_batch([(T0, [upsert(sid)])])
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
    out, drop = logic.on_batch([(T0 + 1, [Complaint("K3", "U1", T0, "other")])])
    assert out[0].subscriber_id == "U1" and not drop
    assert logic.shard.subscribers["U1"].complaints == 1 and len(logic.shard) == 2


def test_a_snapshots_held_messages_are_applied_with_the_first_batch_of_a_resumed_key():
    """With recovery nothing waits for a frontier: held messages in a record (another
    layout's) go in with the first batch, in care order, and a key left with no state
    is dropped only once they have been applied."""
    cfg = FlowConfig(book=BOOK, durable=True)
    logic = CareKeys(cfg)(records.freeze_care(CareShard(), [upsert("U1", T0 - HOUR)]))
    out, drop = logic.on_batch([(T0 + 1, [Complaint("K1", "U1", T0, "other")])])
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


def test_with_recovery_subscribers_share_buckets_and_a_store_of_own_keys_keeps_them():
    """Recovery keys care by bucket (a key per subscriber costs Bytewax ~217 bytes of its
    own); a store written with a key per subscriber is resumed with one."""
    from forewarn.dataflows.flow import (
        CARE_BUCKETS,
        care_bucket,
        care_shard,
        is_care_bucket,
    )
    cfg = FlowConfig(book=BOOK, durable=True)
    sids = [f"SUB{i:07d}" for i in range(100_000)]
    keys = {cfg.care_state_key(sid) for sid in sids}
    assert keys == {care_bucket(sid) for sid in sids} and all(map(is_care_bucket, keys))
    assert len(keys) == CARE_BUCKETS  # (a hundred thousand: every bucket in use)
    # messages go to the care shards' keys (gates, with recovery), whatever the layout
    assert all(cfg.care_key(sid) == care_shard(sid) for sid in sids[:100])
    legacy = FlowConfig(book=BOOK, durable=True, care_per_subscriber=True)
    assert legacy.care_state_key("U7") == "U7" and legacy.care_key("U7") == care_shard("U7")
    assert type(CareKeys(cfg)(None)) is CareLogic
    assert not is_care_bucket("SUB0000001") and not is_care_bucket("care-07")


def test_a_bucket_decides_and_keeps_what_a_dict_of_objects_does_through_its_snapshots():
    """With recovery, a bucket takes its gate's lists (each what passed one frontier, in
    care order) in the order of their frontiers, however they arrive, applying
    profiles in runs as it goes; it resumes from its snapshot whole, and is dropped once
    no subscriber in it has anything left."""
    cfg = FlowConfig(book=BOOK, durable=True)
    for seed in range(60):
        rnd = random.Random(seed)
        model = Model()
        logic: CareLogic | CareKeyLogic | None = None
        k = 0
        for _ in range(rnd.randint(1, 12)):
            msgs = [message(rnd, k + i) for i in range(rnd.randint(1, 14))]
            k += len(msgs)
            held = Held(msgs)  # (released as a gate releases them, at a few frontiers)
            times = sorted({m.at for m in msgs})
            lists = [(f, box) for f in sorted(rnd.sample(times, min(2, len(times))))
                     + [times[-1] + 1.0] for _, box in held.take_runs_before(f, lambda s: "b")]
            rnd.shuffle(lists)  # (however Bytewax delivers them)
            logic = logic or CareKeys(cfg)(None)
            out, drop = logic.on_batch(lists)
            assert out == model.handle(sorted(msgs, key=care_order)), seed
            assert drop == (not model.subs), seed
            if drop:
                logic = None
                continue
            if rnd.random() < 0.4:
                blob = logic.snapshot()
                assert blob is not None
                check_resume(cfg, "care", blob)
                logic = CareKeys(cfg)(blob)
                assert type(logic) is CareLogic
            assert isinstance(logic, CareLogic)
            assert kept(logic.shard.known()) == model.known(), seed


def test_a_store_keeps_care_per_subscriber_when_its_care_keys_are_not_buckets(tmp_path):
    import sqlite3

    from forewarn.connectors.kafka_run import care_keyed_per_subscriber

    def store(name: str, *care_keys: str):
        d = tmp_path / name
        d.mkdir()
        conn = sqlite3.connect(d / "part-0.sqlite3")
        conn.execute("CREATE TABLE snaps (step_id, state_key, snap_epoch, ser_change)")
        conn.executemany("INSERT INTO snaps VALUES (?, ?, 1, NULL)",
                         [("forewarn.care", k) for k in care_keys]
                         + [("forewarn.site", "S1"), ("forewarn.input", "SUB0000001")])
        conn.commit()
        conn.close()
        return d

    assert care_keyed_per_subscriber(store("old", "care-b0001", "SUB0000001"))
    assert not care_keyed_per_subscriber(store("buckets", "care-b0001", "care-b8191"))
    assert not care_keyed_per_subscriber(store("no-care-yet"))
    empty = tmp_path / "new"
    empty.mkdir()
    assert not care_keyed_per_subscriber(empty)


def test_a_gate_passes_on_what_the_frontier_passed_in_care_order_to_each_key():
    """With recovery, a care gate holds its subscribers' messages, from the sequencer and
    the sites in any arrival order and batching, until a frontier passes them; then
    each state key gets one list in care order. Whatever the cuts, a key applies the
    same messages in the same order."""
    from forewarn.dataflows.flow import CareGateLogic
    from forewarn.dataflows.messages import Frontier
    cfg = FlowConfig(book=BOOK, durable=True)
    for seed in range(40):
        rnd = random.Random(seed)
        msgs = [message(rnd, k) for k in range(rnd.randint(5, 40))]
        want: dict[str, list] = {}
        for m in sorted(msgs, key=care_order):
            want.setdefault(cfg.care_state_key(m.subscriber_id), []).append(m)
        # the sequencer's records in their order (one shard), the sites' verdicts in any
        records_ = [m for m in msgs if isinstance(m, Subscriber | Complaint)]
        verdicts = [m for m in msgs if not isinstance(m, Subscriber | Complaint)]
        rnd.shuffle(verdicts)
        arrival = []
        while records_ or verdicts:
            side = records_ if records_ and (not verdicts or rnd.random() < 0.5) else verdicts
            arrival.append(side.pop(0))
        gate = CareGateLogic(cfg, None)
        got: dict[str, list] = {}
        times = sorted({m.at for m in msgs})
        frontiers = sorted(rnd.sample(times, min(3, len(times)))) + [times[-1] + 1.0]
        for f in frontiers:
            # what the frontier rests on has arrived before it (some of the rest, too)
            cut = max((n + 1 for n, m in enumerate(arrival) if m.at < f), default=0)
            cut = rnd.randint(cut, len(arrival))
            batch, arrival = arrival[:cut], arrival[cut:]
            for j in range(0, len(batch), 3):
                out, _ = gate.on_batch([batch[j:j + 3]])
                assert out == []  # (nothing passes before its frontier)
            if rnd.random() < 0.5:
                blob = gate.snapshot()
                check_resume(cfg, "gate", blob)
                gate = CareGateLogic(cfg, blob)
            out, drop = gate.on_batch([Frontier(f)])
            for key, (frontier, items) in out:
                box = list(flatten(items))
                assert frontier == f and box == sorted(box, key=care_order)
                assert all(m.at < f for m in box)
                got.setdefault(key, []).extend(box)
        assert got == want, seed
        assert drop and not gate.held


def test_a_gates_snapshot_of_something_else_than_care_messages_is_refused():
    from forewarn.safe_pickle import UnsafePickle
    for held, why in (([("U1", 60.0)], "a tuple"),
                      ([Complaint("K1", "U1", "noon", "other")], "a Complaint")):
        blob = records._dump("gate", {"others": held})
        with pytest.raises(UnsafePickle, match=why):
            check_resume(FlowConfig(book=BOOK, durable=True), "gate", blob)


def test_a_records_held_messages_are_applied_at_the_end_if_no_batch_came():
    cfg = FlowConfig(book=BOOK, durable=True)
    logic = CareKeys(cfg)(records.freeze_care(CareShard(), [
        Complaint("K1", "U1", T0, "other")]))
    out, _ = logic.on_eof()
    assert [type(o).__name__ for o in out][:1] == ["ComplaintSeen"]
    assert not logic.held and logic.shard.care("U1").complaints == 1
    assert CareKeys(cfg)(None).on_eof() == ([], False)


def test_a_records_held_messages_go_in_with_the_list_of_the_first_frontier_past_them():
    cfg = FlowConfig(book=BOOK, durable=True)
    logic = CareKeys(cfg)(records.freeze_care(CareShard(), [
        Complaint("K2", "U1", T0 + HOUR, "other"), upsert("U1", T0 - HOUR)]))
    out, drop = logic.on_batch([(T0 + 1, [Complaint("K1", "U1", T0, "other")])])
    assert not drop and [m.at for m in logic.held] == [T0 + HOUR]
    assert logic.shard.care("U1").complaints == 1 and logic.shard.care("U1").profile
    blob = logic.snapshot()
    assert blob is not None and len(records.thaw_care_known(blob)[1]) == 1
    out, drop = logic.on_batch([(T0 + 2 * HOUR, [])])
    assert not logic.held and logic.shard.care("U1").complaints == 2
