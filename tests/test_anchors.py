"""Anchor places learnt per subscriber (dataflows/anchors.py): learnt from the time between
positions, decayed so a move of house is followed, kept in recovery snapshots."""

from __future__ import annotations

import pickle

import pytest

from forewarn.dataflows import records
from forewarn.dataflows.anchors import (
    CAP_MIN,
    MAX_GAP_S,
    MAX_SITES,
    MIN_ANCHOR_MIN,
    NIGHT,
    WORK,
    Anchors,
    _unpack,
    bucket_of,
    credit,
    expected_bucket,
)
from forewarn.dataflows.sequencer import Routes, Sequencer
from forewarn.model import Cell, Location
from forewarn.rules.rulebook import load_rulebook

MONDAY = 1795392000.0  # 2026-11-23T00:00:00Z, a Monday
HOUR = 3600.0


def at(day: int, hour: float) -> float:
    return MONDAY + day * 86400.0 + hour * HOUR


def stay(a: Anchors, sid: str, site: str, start: float, end: float, every_s: float = 3000.0
         ) -> None:
    """``sid`` reported on ``site`` every ``every_s`` from ``start`` to ``end``."""
    t = start
    while t + every_s <= end:
        a.learn_one(sid, site, t, t + every_s)
        t += every_s


def commute(a: Anchors, sid: str, home: str, work: str, days: range) -> None:
    for d in days:
        stay(a, sid, home, at(d, -1), at(d, 6))  # 23:00 the evening before to 06:00
        stay(a, sid, work, at(d, 9.5), at(d, 16.5))


@pytest.mark.parametrize(("hour", "day", "bucket"), [
    (23, 0, NIGHT), (0, 1, NIGHT), (5.99, 1, NIGHT), (6, 1, None), (9.99, 1, None),
    (10, 1, WORK), (15.99, 4, WORK), (16, 1, None), (22.99, 1, None),
    (12, 5, None), (12, 6, None),  # Saturday, Sunday: no working hours
    (12, 7, WORK), (12, 8, WORK), (12, 11, WORK), (12, 12, None), (12, 13, None),  # a week on
    (10, 28, WORK), (12, 33, None),
])
def test_buckets_of_the_day(hour: float, day: int, bucket: int | None) -> None:
    assert bucket_of(at(day, hour)) == bucket


def test_working_hours_are_monday_to_friday_in_any_year() -> None:
    monday_2100 = 4130524800.0  # 2100-11-22T00:00:00Z
    assert bucket_of(monday_2100 + 10 * HOUR) == WORK
    assert bucket_of(monday_2100 + 4 * 86400 + 15.5 * HOUR) == WORK  # Friday
    assert bucket_of(monday_2100 - 86400 + 10 * HOUR) is None  # Sunday
    a = Anchors()
    a.learn_one("U1", "S1", monday_2100 + 10 * HOUR, monday_2100 + 11 * HOUR)
    a.learn_one("U2", "S1", monday_2100 - 86400 + 10 * HOUR, monday_2100 - 86400 + 11 * HOUR)
    assert _unpack(packed(a)["U1"] >> 52)[:2] == (1, 60) and "U2" not in packed(a)


@pytest.mark.parametrize(("hour", "day", "bucket"), [
    (18, 0, NIGHT), (7.99, 1, NIGHT), (8, 1, None), (9, 1, WORK), (16.99, 1, WORK),
    (17, 1, None), (12, 5, None),
])
def test_where_someone_is_expected_covers_the_evening_and_the_working_day(
        hour: float, day: int, bucket: int | None) -> None:
    assert expected_bucket(at(day, hour)) == bucket


def test_home_at_night_and_work_in_working_hours_are_learnt() -> None:
    a = Anchors()
    commute(a, "U1", "HOME", "WORK", range(2))
    stay(a, "U2", "HOME", at(0, 9.5), at(0, 16.5))  # stays at home all day
    assert (a.anchor("U1", NIGHT), a.anchor("U1", WORK)) == ("HOME", "WORK")
    assert (a.anchor("U2", NIGHT), a.anchor("U2", WORK)) == (None, "HOME")
    assert a.expected("U1", at(1, 19)) == "HOME" and a.expected("U1", at(1, 12)) == "WORK"
    assert a.anchored_buckets("U1", "WORK") == 1 << WORK
    assert a.anchored_buckets("U1", "ELSEWHERE") == 0
    assert a.table() == {"U1": ("HOME", "WORK"), "U2": (None, "HOME")}


def test_an_anchor_needs_enough_time_and_a_clear_lead() -> None:
    a = Anchors()
    stay(a, "U1", "S1", at(1, 0), at(1, 0) + (MIN_ANCHOR_MIN - 1) * 60, every_s=60.0)
    assert a.anchor("U1", NIGHT) is None  # a minute short
    a.learn_one("U1", "S1", at(1, 5), at(1, 5) + 60)
    assert a.anchor("U1", NIGHT) == "S1"
    b = Anchors()  # two places about as often: neither is sure
    stay(b, "U1", "S1", at(1, 0), at(1, 3))
    stay(b, "U1", "S2", at(1, 3), at(1, 5.5))
    assert b.anchor("U1", NIGHT) is None


def test_a_visit_during_the_day_is_not_taken_for_the_working_place() -> None:
    a = Anchors()
    stay(a, "U1", "HOME", at(0, 10), at(0, 12))
    stay(a, "U1", "SHOP", at(0, 12), at(0, 14.5))  # a long visit, on the first day
    assert a.anchor("U1", WORK) is None
    stay(a, "U1", "HOME", at(1, 10), at(1, 16))
    assert a.anchor("U1", WORK) == "HOME"


def test_credit_is_the_gap_capped_halved_on_a_move_and_only_in_a_bucket() -> None:
    a = Anchors()
    a.learn_one("U1", "S1", at(1, 0), at(1, 0) + 10 * HOUR)  # phone off: one hour at most
    assert (packed(a)["U1"] >> 16) & 0x3FF == MAX_GAP_S // 60
    a.learn_one("U2", "S1", at(1, 1), at(1, 1) + 1800, moved=True)  # left sometime between
    assert (packed(a)["U2"] >> 16) & 0x3FF == 15
    a.learn_one("U3", "S1", at(1, 19), at(1, 20))  # evening: no bucket learnt
    a.learn_one("U3", "S1", at(1, 1), at(1, 1) - 60)  # out of order: nothing
    a.learn_one("U3", "S1", at(1, 1), at(1, 1) + 59)  # under a minute: nothing
    assert "U3" not in packed(a)


def test_a_move_of_house_is_followed_within_a_few_nights_not_after_one() -> None:
    a = Anchors()
    commute(a, "U1", "OLD", "WORK", range(14))  # two weeks in the old home
    stay(a, "U1", "NEW", at(14, -1), at(14, 6))
    assert a.anchor("U1", NIGHT) == "OLD"  # one night away is not a move
    nights = 1
    while a.anchor("U1", NIGHT) != "NEW":
        stay(a, "U1", "NEW", at(14 + nights, -1), at(14 + nights, 6))
        nights += 1
        assert nights <= 5, "a move of house not followed within five nights"
    assert nights >= 2
    assert a.anchor("U1", WORK) == "WORK"  # the other bucket is untouched


def test_scores_stay_within_their_bits() -> None:
    state = 0
    for i in range(200):
        state = credit(state, 1 + i % 3, 60)
        anchor_min = (state >> 16) & 0x3FF
        assert anchor_min <= CAP_MIN and state >> 52 == 0
    assert state & 0xFFFF in (1, 2, 3)


def packed(a: Anchors) -> dict[str, int]:
    """``sid -> `` both buckets' bits in one int (NIGHT in the low half), as the format
    before the rows kept them."""
    col = a.heard.anchor
    assert col is not None
    return {sid: col[2 * r] | col[2 * r + 1] << 52 for r, sid in enumerate(a.heard.sids)}


def _feed(seq: Sequencer, sid: str, cell: str, t: float, out: Routes) -> None:
    seq.take(Location(sid, cell, t), b"", "f", t, out)


def _sequencer() -> tuple[Sequencer, Routes]:
    seq, out = Sequencer(warmup=1), Routes()
    for site in ("S1", "S2"):
        seq.take(Cell(cell_id=f"{site}-C1", site_id=site), b"", "f", None, out)
    return seq, out


def test_the_sequencer_learns_from_the_positions_it_releases_and_snapshots_them() -> None:
    seq, out = _sequencer()
    t = at(1, 0)
    while t < at(1, 6):
        _feed(seq, "U1", "S1-C1", t, out)
        _feed(seq, "U2", "S2-C1", t, out)
        t += 600.0
    seq.finish(out)
    assert seq.anchors is not None and seq.nearby.anchors is seq.anchors
    assert seq.anchors.table() == {"U1": ("S1", None), "U2": ("S2", None)}
    back = records.thaw_sequence(records.freeze_sequence(seq), lateness_s=seq.lateness_s,
                                 tick_s=seq.tick_s, book=load_rulebook())
    assert back.anchors.table() == seq.anchors.table()
    assert back.nearby.anchors is back.anchors  # still one object: the watch reads it
    seq.learn_anchors(False)
    assert seq.anchors is None and seq.nearby.anchors is None
    seq.learn_anchors(True)
    assert seq.anchors is not None and seq.anchors.table() == {}


def test_a_snapshot_from_before_anchors_loads_and_learns_from_then_on() -> None:
    seq, out = _sequencer()
    _feed(seq, "U1", "S1-C1", at(1, 0), out)
    saved = dict(pickle.loads(pickle.dumps(seq)).__getstate__()[1])
    del saved["anchors"]  # what a version without anchors wrote
    old = Sequencer.__new__(Sequencer)
    old.__setstate__((None, saved))
    assert old.anchors is not None and old.anchors.table() == {}
    assert old.nearby.anchors is old.anchors
    for minutes in range(10, 300, 10):  # (within the sequencer's reach: not held ahead)
        _feed(old, "U1", "S1-C1", at(1, 0) + minutes * 60, out)
    assert old.anchors.anchor("U1", NIGHT) == "S1"


def test_sites_past_the_numbering_limit_are_counted_not_learnt() -> None:
    a = Anchors()
    for i in range(MAX_SITES):
        a.learn_one(f"U{i}", f"S{i}", at(1, 0), at(1, 1))
    assert len(a.heard.names) == MAX_SITES + 1 and a.unplaced == 0  # (index 0: no site)
    assert _unpack(packed(a)[f"U{MAX_SITES - 1}"]) == (MAX_SITES, 60, 0, 0)  # the last one
    a.learn_one("U0", "ONE-TOO-MANY", at(1, 1), at(1, 2))
    assert a.unplaced == 1 and a.heard.numbers["ONE-TOO-MANY"] == MAX_SITES + 1  # (a latest site)
    assert (packed(a)["U0"] >> 16) & 0x3FF == 60  # their S0 hour stands, nothing added
    a.learn_one("U0", "S0", at(1, 2), at(1, 3))  # a numbered site still learns
    assert (packed(a)["U0"] >> 16) & 0x3FF == 120


def test_positions_carry_the_sequencers_one_string_per_subscriber() -> None:
    seq, out = _sequencer()
    for minutes in range(0, 120, 10):  # each record decoded anew: a new string each time
        _feed(seq, "".join(["U", "1"]), "S1-C1", at(1, 0) + minutes * 60, out)
    (sid,) = seq.heard.sids
    assert sid == "U1" and seq.heard.sids == [sid]
    positions = [m for msgs in out.sites.values() for m in msgs if type(m) is tuple]
    assert len(positions) == 12 and all(p[0] is sid for p in positions)  # the sites' too


def test_credit_moves_minutes_between_the_anchor_and_its_challenger() -> None:
    s = credit(0, 7, 100)
    assert _unpack(s) == (7, 100, 0, 0)  # the first site becomes the anchor
    assert _unpack(credit(s, 7, 23)) == (7, 123, 0, 0)
    c = credit(s, 9, 30)
    assert _unpack(c) == (7, 100, 9, 30)  # a challenger, the anchor untouched
    assert _unpack(credit(c, 9, 20)) == (7, 100, 9, 50)  # more on the challenger
    assert _unpack(credit(c, 8, 20)) == (7, 100, 9, 10)  # a third site wears it down
    assert _unpack(credit(c, 8, 30)) == (7, 100, 0, 0)  # ... exactly to nothing
    assert _unpack(credit(c, 8, 50)) == (7, 100, 8, 20)  # ... and replaces it
    tie = credit(c, 9, 70)
    assert _unpack(tie) == (7, 100, 9, 100)  # level with the anchor: still the challenger
    assert _unpack(credit(tie, 8, 10)) == (7, 100, 9, 90)
    assert _unpack(credit(c, 9, 71)) == (9, 101, 7, 100)  # past it: takes its place


def test_credit_halves_both_scores_only_past_the_cap() -> None:
    assert _unpack(credit(0, 7, CAP_MIN)) == (7, CAP_MIN, 0, 0)  # at the cap: kept
    assert _unpack(credit(0, 7, CAP_MIN + 1)) == (7, 512, 0, 0)
    assert _unpack(credit(credit(0, 7, CAP_MIN), 7, CAP_MIN)) == (7, CAP_MIN, 0, 0)
    assert _unpack(credit(credit(0, 7, CAP_MIN), 7, CAP_MIN + 2)) == (7, 512, 0, 0)  # twice
    s = credit(credit(0, 7, 1000), 9, 301)
    assert _unpack(credit(s, 7, 100)) == (7, 550, 9, 150)  # both halved
    one = credit(credit(0, 7, CAP_MIN), 9, 1)
    assert _unpack(credit(one, 7, 1)) == (7, 512, 0, 0)  # a challenger halved to nothing goes


def test_an_anchor_is_sure_with_at_least_twice_its_challengers_minutes() -> None:
    a = Anchors()
    for h in range(4):
        a.learn_one("U1", "S1", at(1, h), at(1, h + 1))
    a.learn_one("U1", "S2", at(1, 4), at(1, 4) + 2 * HOUR)  # 60 min: one hour at most
    a.learn_one("U1", "S2", at(1, 5), at(1, 5) + 60 * 60)  # 60 more
    assert _unpack(packed(a)["U1"] & 0xFFFFFFFFFFFFF)[1::2] == (240, 120)
    assert a.anchor("U1", NIGHT) == "S1" and a.anchored_buckets("U1", "S1") == 1 << NIGHT
    b = Anchors()
    for h in range(4):
        b.learn_one("U1", "S1", at(1, h), at(1, h + 1))
    b.learn_one("U1", "S2", at(1, 4), at(1, 5))
    b.learn_one("U1", "S2", at(1, 5), at(1, 5) + 61 * 60)  # (one hour at most)
    b.learn_one("U1", "S2", at(1, 2), at(1, 2) + 60)  # one minute more: 240 against 121
    assert b.anchor("U1", NIGHT) is None and b.anchored_buckets("U1", "S1") == 0
    assert b.table() == {}


def test_a_site_can_be_the_anchor_of_both_buckets() -> None:
    a = Anchors()
    stay(a, "U1", "HOME", at(0, -1), at(0, 6))
    stay(a, "U1", "HOME", at(0, 9.5), at(0, 16.5))
    assert a.anchored_buckets("U1", "HOME") == (1 << NIGHT) | (1 << WORK)
    assert a.expected("U1", at(1, 7.99)) == "HOME" and a.expected("U1", at(1, 9)) == "HOME"
    assert a.expected("U1", at(1, 8.5)) is None  # between the two: expected nowhere
    assert a.expected("U1", at(5, 12)) is None  # Saturday midday
    assert a.anchored_buckets("U2", "HOME") == 0  # someone else: no anchor
    assert a.anchor("U2", NIGHT) is None and a.expected("U2", at(1, 1)) is None


@pytest.mark.parametrize(("since", "until", "moved", "night", "work"), [
    (at(1, 22 + 20 / 60), at(1, 23 + 20 / 60), False, 0, 0),  # middle 22:50: no bucket
    (at(1, 22.5), at(1, 23.5), False, 60, 0),  # middle exactly 23:00
    (at(1, 22.5) - 1, at(1, 23.5) - 1, False, 0, 0),  # middle 22:59:59
    (at(1, 22 + 40 / 60), at(1, 23 + 40 / 60), False, 60, 0),  # middle 23:10
    (at(1, 22 + 50 / 60), at(1, 23.5), True, 20, 0),  # moved: half of 40 min, middle 23:00
    (at(1, 22 + 50 / 60) - 1, at(1, 23.5) - 1, True, 0, 0),
    (at(1, 22.5) - 0.25, at(1, 22.5) + 10 * HOUR, False, 0, 0),  # silent: its 1st hour
    (at(1, 22.5), at(1, 22.5) + 10 * HOUR, False, 60, 0),
    (at(1, 5.5) - 1, at(1, 6.5) - 1, False, 60, 0),  # middle 05:59:59
    (at(1, 5.5), at(1, 6.5), False, 0, 0),  # middle 06:00
    (at(0, 9.5), at(0, 10.5), False, 0, 60),  # middle 10:00 on Monday
    (at(0, 9.5) - 1, at(0, 10.5) - 1, False, 0, 0),
    (at(4, 15.5) - 1, at(4, 16.5) - 1, False, 0, 60),  # Friday 15:59:59
    (at(4, 15.5), at(4, 16.5), False, 0, 0),  # Friday 16:00
    (at(5, 11), at(5, 12), False, 0, 0),  # Saturday
    (at(6, 11), at(6, 12), False, 0, 0),  # Sunday
    (at(7, 11), at(7, 12), False, 0, 60),  # Monday, a week on
    (at(11, 11), at(11, 12), False, 0, 60),  # Friday
    (at(12, 11), at(12, 12), False, 0, 0),  # Saturday
    (at(1, 1), at(1, 1) + 60, False, 1, 0),  # one minute exactly
    (at(1, 1), at(1, 1) + 119, False, 1, 0),
    (at(1, 1), at(1, 1) + 120, True, 1, 0),  # moved: one minute of two
    (at(1, 1), at(1, 1) + 119, True, None, None),  # moved: under a minute, nothing at all
])
def test_credit_goes_to_the_bucket_of_the_credited_spans_middle(
        since: float, until: float, moved: bool, night: int | None, work: int | None) -> None:
    a = Anchors()
    a.learn_one("U1", "S1", since, until, moved)
    if night is None:
        assert packed(a) == {} and a.heard.names == [""] and a.heard.numbers == {}
        return
    state = packed(a).get("U1", 0)
    assert (_unpack(state & 0xFFFFFFFFFFFFF)[1], _unpack(state >> 52)[1]) == (night, work)


def test_learnt_anchors_keep_their_bits_from_snapshot_to_snapshot() -> None:
    """The packed layout is what recovery snapshots hold: a snapshot written before (one
    int per subscriber) reads the same anchors, and learning writes the same bits."""
    snapshot = 0x280004FA000200000012C0001  # night: HOME 300 min; work: WORK 250, HOME 10
    old = Anchors.__new__(Anchors)  # format 1: one int per subscriber, in a dict
    old.__setstate__((None, {"packed": {"U1": snapshot}, "sites": ["", "HOME", "WORK"],
                             "number": {"HOME": 1, "WORK": 2}, "unplaced": 0}))
    assert old.table() == {"U1": ("HOME", "WORK")}
    assert old.anchored_buckets("U1", "HOME") == 1 << NIGHT
    a = Anchors()
    for h in range(5):
        a.learn_one("U1", "HOME", at(1, h), at(1, h + 1))
    a.learn_one("U1", "HOME", at(1, 10), at(1, 10) + 600)  # work: 10 min at home, then
    for m in range(250):
        a.learn_one("U1", "WORK", at(1, 10.5) + m * 60, at(1, 10.5) + (m + 1) * 60)
    assert packed(a) == {"U1": snapshot} and a.heard.names == ["", "HOME", "WORK"]


def test_every_credit_lost_past_the_numbering_limit_is_counted(monkeypatch) -> None:
    monkeypatch.setattr("forewarn.dataflows.anchors.MAX_SITES", 2)
    a = Anchors()
    a.learn_one("U1", "S1", at(1, 0), at(1, 1))
    a.learn_one("U1", "S2", at(1, 1), at(1, 2))
    a.learn_one("U1", "S3", at(1, 2), at(1, 3))
    a.learn_one("U2", "S4", at(1, 2), at(1, 3))
    assert a.unplaced == 2 and a.heard.names == ["", "S1", "S2", "S3", "S4"]
    assert _unpack(packed(a)["U1"]) == (1, 60, 2, 60) and packed(a)["U2"] == 0


def test_a_format_1_sequencer_snapshot_becomes_one_table_of_rows() -> None:
    """Latest sites and times in two dicts and anchors in a dict of ints (format 1) load
    into the rows, anchors and positions alike; a table without its id column too."""
    import pickle

    from forewarn.dataflows.heard import Heard
    from forewarn.dataflows.sequencer import Sequencer

    snapshot = 0x280004FA000200000012C0001  # night: HOME 300 min; work: WORK 250, HOME 10
    anchors = Anchors.__new__(Anchors)
    anchors.__setstate__((None, {"packed": {"U1": snapshot}, "sites": ["", "HOME", "WORK"],
                                 "number": {"HOME": 1, "WORK": 2}, "unplaced": 3}))
    seq = Sequencer.__new__(Sequencer)
    seq.__setstate__((None, {"last_site": {"U1": "WORK", "U2": "AWAY"},
                             "last_at": {"U1": 50.0, "U2": 60.0}, "anchors": anchors}))
    assert seq.heard is seq.anchors.heard and seq.nearby.anchors is seq.anchors
    assert sorted(seq.heard.items()) == [("U1", "WORK", 50.0), ("U2", "AWAY", 60.0)]
    assert seq.anchors.table() == {"U1": ("HOME", "WORK")} and seq.anchors.unplaced == 3
    assert seq.heard.sids == ["U1", "U2"] and seq.heard.names == ["", "HOME", "WORK", "AWAY"]
    again = pickle.loads(pickle.dumps(seq))
    assert list(again.heard.items()) == list(seq.heard.items())
    assert again.anchors.table() == seq.anchors.table()

    without = Sequencer.__new__(Sequencer)  # anchors not learnt
    without.__setstate__((None, {"last_site": {"U1": "S1"}, "last_at": {"U1": 5.0},
                                 "anchors": None}))
    assert without.heard.latest("U1") == ("S1", 5.0) and without.heard.anchor is None

    table = Heard.of({"U1": "S1", "U2": "S2"}, {"U1": 1.0, "U2": 2.0})
    state = (None, {"rows": {"U1": 0, "U2": 1},  # (sequence record version 2: no ids)
                    **{f: getattr(table, f) for f in ("site", "at", "anchor", "names",
                                                      "numbers")}})
    old = Heard.__new__(Heard)
    old.__setstate__(state)
    assert old.sids == ["U1", "U2"] and old.latest("U2") == ("S2", 2.0)


def test_the_rows_index_finds_every_row_as_it_grows_and_after_a_reload():
    """``Heard.row`` is an open-addressing index by the id's hash (not saved: rebuilt
    from the id column); a version 2 table (a dict of rows, ids saved) loads too."""
    from forewarn.dataflows.heard import Heard

    heard = Heard()
    ids = ["".join(["U", str(i)]) for i in range(5000)]
    for i, sid in enumerate(ids):
        heard.note(sid, heard.number(f"S{i % 7}"), float(i))
        assert heard.row(sid) == i and heard.row("X" + sid) is None
        assert len(heard.index.slots) >= 1.5 * len(heard)  # at most 2/3 full
    assert [heard.row(s) for s in ids] == list(range(5000)) and len(heard) == 5000
    heard.note(ids[10], heard.number("S6"), 9999.0)  # an existing row: no new one
    assert len(heard) == 5000 and heard.latest(ids[10]) == ("S6", 9999.0)
    state = heard.__getstate__()
    assert "index" not in state[1]  # (a hash is only good in the process that made it)
    again = pickle.loads(pickle.dumps(heard))
    assert [again.row(s) for s in ids] == list(range(5000)) and again.row("U5000") is None
    assert list(again.items()) == list(heard.items())
    v2 = Heard.__new__(Heard)
    v2.__setstate__((None, {"rows": {s: i for i, s in enumerate(ids)},
                            **{f: v for f, v in state[1].items()}}))
    assert [v2.row(s) for s in ids] == list(range(5000))
