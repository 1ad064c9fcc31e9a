"""Care's held messages (forewarn.dataflows.held): what a shard takes at a frontier is
what it would take from a plain list of the messages, whatever the batches and times."""

from __future__ import annotations

import pickle
import random
from array import array

import pytest

from forewarn.dataflows.care import care_order
from forewarn.dataflows.held import Held, ProfileRun, flatten
from forewarn.dataflows.messages import Profiled
from forewarn.model import Complaint, Subscriber

SHAPES = [Subscriber("", "upsert", 0.0, language=lang) for lang in ("en", "pl", "de")]
NAMES = [None, "", "Ada", "Zoë Łukasiewicz", "李小龍", "\udcff broken", "x" * 300]


def key_of(sid: str) -> str:
    return f"k{int(sid[1:]) % 3}"  # (20 subscribers, three keys)


def message(rnd: random.Random, i: int) -> object:
    sid, at = f"U{rnd.randrange(20)}", float(rnd.randrange(100))
    kind = rnd.random()
    if kind < 0.6:
        return Profiled(sid, at, rnd.choice(NAMES), rnd.choice(SHAPES))
    if kind < 0.75:
        return Subscriber(sid, "delete", at)
    return Complaint(f"K{i}", sid, at, "other")


@pytest.mark.parametrize("seed", range(40))
def test_held_messages_come_back_as_a_list_would_give_them(seed: int) -> None:
    """A list holds messages as they come, and gives those before a frontier (kept in
    the order they came, then sorted in care order); so must the held columns, with
    upserts and deletes of one subscriber and time in the order they came."""
    rnd = random.Random(seed)
    held, plain = Held(), []
    frontier, i = 0.0, 0
    for _ in range(30):
        batch = []
        for _ in range(rnd.randrange(12)):
            batch.append(message(rnd, i))
            i += 1
        held.add(batch)
        plain += batch
        if rnd.random() < 0.3:  # a snapshot's columns and back (taken rows left out)
            held = Held.of_columns(pickle.loads(pickle.dumps(held.columns())))
        if rnd.random() < 0.5:
            frontier += rnd.randrange(15)
            want = sorted([m for m in plain if m.at < frontier], key=care_order)
            if rnd.random() < 0.5:
                got = sorted(held.take_before(frontier), key=care_order)
            else:  # by key (a gate's), the profiles in runs: each key's in care order
                runs = held.take_runs_before(frontier, key_of)
                assert len({key for key, _ in runs}) == len(runs)
                for key, items in runs:
                    assert list(flatten(items)) == [m for m in want
                                                    if key_of(m.subscriber_id) == key]
                    assert not any(type(a) is type(b) is ProfileRun
                                   for a, b in zip(items, items[1:], strict=False))
                assert sum(len(list(flatten(items))) for _, items in runs) == len(want)
                got = want  # (each key's were checked: across keys, order is no matter)
            plain = [m for m in plain if not m.at < frontier]
            assert got == want
            assert len(held) == len(plain)
            assert held.least == min((m.at for m in plain), default=float("inf"))
    assert sorted(held.messages(), key=care_order) == sorted(plain, key=care_order)
    assert sorted(held.take_before(float("inf")), key=care_order) == sorted(
        plain, key=care_order)
    assert len(held) == 0 and held.messages() == []


def test_a_frontier_that_passes_nothing_leaves_everything_held() -> None:
    held = Held([Profiled("U1", 50.0, "Ada", SHAPES[0]), Complaint("K1", "U1", 70.0, "x")])
    assert held.take_before(50.0) == [] and len(held) == 2
    assert [m.at for m in held.take_before(60.0)] == [50.0] and len(held) == 1


def test_an_upsert_and_a_delete_of_one_time_keep_their_order() -> None:
    """Both rank first among a time's messages: which one applies last is the order
    they came in, as the sequencer sent them."""
    up = Profiled("U1", 50.0, "Ada", SHAPES[1])
    gone = Subscriber("U1", "delete", 50.0)
    for first, second in ((up, gone), (gone, up)):
        held = Held([first, second])
        assert sorted(held.take_before(51.0), key=care_order) == [first, second]


def test_taken_rows_are_let_go_once_they_are_most() -> None:
    held = Held(Profiled(f"U{i}", float(i), "Ada", SHAPES[0]) for i in range(100))
    held.take_before(40.0)
    assert len(held.sids) == 100 and len(held) == 60  # (40 taken, kept in place)
    held.take_before(60.0)
    assert len(held.sids) == 40 and len(held) == 40 and held.least == 60.0
    assert [m.subscriber_id for m in held.messages()][:2] == ["U60", "U61"]


@pytest.mark.parametrize(("change", "why"), [
    ({"at": array("d", [1.0])}, "different lengths"),
    ({"at": [60.0, 70.0]}, "arrays of their kinds"),
    ({"ends": array("Q", [3, 99])}, "out of its buffer"),
    ({"named": bytes([1, 7])}, "of no kind"),
    ({"names": b"\xff\xfeAda"}, "invalid start byte"),
    ({"shapes": [SHAPES[0], "en"]}, "not an id and a profile shape"),
    ({"sids": ["U1", 2]}, "not an id and a profile shape"),
    ({"at": array("d", [60.0, float("nan")])}, "not finite"),
    ({"at": array("d", [float("inf"), 70.0])}, "not finite"),
    ({"others": [Complaint("K1", "U1", float("nan"), "other")]}, "not finite"),
    ({"shapes": [Subscriber("U1", "delete", 60.0), SHAPES[1]]}, "not an upsert's"),
    ({"shapes": [Subscriber("", "upsert", 0.0, language=5), SHAPES[1]]}, "language"),
    ({"named": bytes([3, 0])}, "taken but holds"),
])
def test_columns_that_do_not_agree_are_refused(change: dict, why: str) -> None:
    held = Held([Profiled("U1", 60.0, "Ada", SHAPES[0]), Profiled("U2", 70.0, None, SHAPES[1])])
    cols = {**held.columns(), **change}
    with pytest.raises((ValueError, TypeError, UnicodeDecodeError), match=why):
        Held.of_columns(cols)


def test_a_snapshot_makes_no_message_of_what_is_held() -> None:
    """The columns go to the record as they are, taken rows and all (no compaction,
    no message per row: a gate is snapshotted at every epoch)."""
    held = Held(Profiled(f"U{i}", float(i), "Ada", SHAPES[0]) for i in range(10))
    held.take_before(3.0)
    cols = held.columns()
    assert cols["sids"] is held.sids and cols["at"] is held.at and len(cols["sids"]) == 10
    back = Held.of_columns(pickle.loads(pickle.dumps(cols)))
    assert len(back) == 7 and back.least == 3.0 and back.messages() == held.messages()
